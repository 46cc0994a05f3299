package geofailover_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// TestStressManagementAndTraffic runs, all at once under -race, ordinary
// traffic, Conn, Watch, pipelines, Pub/Sub, blocking commands and the whole
// management API (SwitchTo, SetWeight, AddEndpoint, RemoveEndpoint, Status,
// event subscribers), with switches in between, then Close while all of it
// is still going. It fails on a data race, a panic, a hang or a leaked
// goroutine (TestMain), and on an error a healthy endpoint cannot explain.
func TestStressManagementAndTraffic(t *testing.T) {
	servers := failovertest.StartServers(t, 3)
	names := []string{"a", "b", "c"}
	var eps []geofailover.Endpoint
	for i, s := range servers[:2] {
		eps = append(eps, geofailover.Endpoint{Name: names[i], Weight: float64(3 - i), URL: "redis://" + s.Addr})
	}
	var events atomic.Int64
	c, err := geofailover.New(&geofailover.Options{Endpoints: eps,
		HealthCheckInterval: 50 * time.Millisecond, GracePeriod: 100 * time.Millisecond, FailbackDelay: 50 * time.Millisecond,
		OnEvent: func(geofailover.Event) { events.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxFor(t, testTimeout)
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	evs, stopEvs := c.Events(0) // read by nobody after a while: it holds up deliveries, not the client
	defer stopEvs()
	go func() {
		for range 3 {
			<-evs
		}
	}()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops, switches atomic.Int64
	var unexplained atomic.Pointer[error]
	// expected are the errors a switch can cause; anything else is a bug.
	expected := func(err error) bool {
		return err == nil || errors.Is(err, redis.Nil) || errors.Is(err, geofailover.ErrEndpointChanged) ||
			errors.Is(err, geofailover.ErrClosed) || errors.Is(err, redis.TxFailedErr) ||
			errors.Is(err, context.DeadlineExceeded) || errors.Is(err, geofailover.ErrNoHealthyEndpoint) ||
			geofailover.NotApplied(err) || isConnErr(err)
	}
	var closing atomic.Bool
	note := func(what string, err error) {
		ops.Add(1)
		if closing.Load() && (errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)) {
			return // in flight when Close closed the connections
		}
		if !expected(err) {
			e := fmt.Errorf("%s: %w", what, err)
			unexplained.CompareAndSwap(nil, &e)
		}
	}
	loop := func(fn func(ctx context.Context, i int)) {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				fn(ctx, i)
				cancel()
			}
		})
	}
	for w := range 4 {
		loop(func(ctx context.Context, i int) {
			note("set", c.Set(ctx, fmt.Sprint("k", w), i, 0).Err())
			note("get", c.Get(ctx, fmt.Sprint("k", w)).Err())
		})
	}
	loop(func(ctx context.Context, i int) {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { p.Incr(ctx, "p"); p.Get(ctx, "p"); return nil })
		note("pipeline", err)
	})
	loop(func(ctx context.Context, i int) {
		cn, err := c.Conn(ctx)
		if err != nil {
			note("conn", err)
			return
		}
		note("conn set", cn.Set(ctx, "conn", i, 0).Err())
		note("conn get", cn.Get(ctx, "conn").Err())
		_ = cn.Close()
	})
	loop(func(ctx context.Context, i int) {
		note("watch", c.Watch(ctx, func(tx *redis.Tx) error {
			n, err := tx.Get(ctx, "w").Int()
			if err != nil && err != redis.Nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Set(ctx, "w", n+1, 0); return nil })
			return err
		}, "w"))
	})
	loop(func(ctx context.Context, i int) {
		err := c.BLPop(ctx, 20*time.Millisecond, "empty-list").Err()
		note("blpop", err)
	})
	loop(func(ctx context.Context, i int) {
		ps := c.Subscribe(ctx, "news")
		_, err := ps.ReceiveTimeout(ctx, 50*time.Millisecond)
		if err != nil && !isTimeoutErr(err) {
			note("subscribe", err)
		}
		_ = ps.Close()
	})
	// The management API, concurrently with all the above.
	loop(func(ctx context.Context, i int) {
		target := names[i%2]
		err := c.SwitchTo(ctx, target)
		if err == nil {
			switches.Add(1)
		} else if !errors.Is(err, geofailover.ErrEndpointUnhealthy) {
			note("switchto", err)
		}
		time.Sleep(20 * time.Millisecond)
	})
	loop(func(ctx context.Context, i int) {
		if err := c.SetWeight(ctx, "b", float64(1+i%4)); err != nil {
			note("setweight", err)
		}
		_ = c.Status()
		time.Sleep(10 * time.Millisecond)
	})
	loop(func(ctx context.Context, i int) {
		if err := c.AddEndpoint(ctx, geofailover.Endpoint{Name: "c", Weight: 0.5, URL: "redis://" + servers[2].Addr}); err != nil {
			note("add", err)
		}
		time.Sleep(30 * time.Millisecond)
		if err := c.RemoveEndpoint(ctx, "c"); err != nil {
			note("remove", err)
		}
	})

	time.Sleep(3 * time.Second)
	closed := make(chan error, 1)
	closing.Store(true)
	go func() { closed <- c.Close() }() // while everything is running
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10 s under load")
	}
	close(stop)
	wg.Wait()
	if e := unexplained.Load(); e != nil {
		t.Fatalf("unexplained error: %v", *e)
	}
	if ops.Load() < 1000 || switches.Load() < 10 || events.Load() == 0 {
		t.Fatalf("too little happened: %d operations, %d switches, %d events", ops.Load(), switches.Load(), events.Load())
	}
	t.Logf("%d operations, %d SwitchTo calls, %d events delivered before the stuck reader", ops.Load(), switches.Load(), events.Load())
}

func isTimeoutErr(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// isConnErr: a Conn or blocking command pinned to an endpoint whose
// connections were closed by a switch or removal.
func isConnErr(err error) bool {
	return errors.Is(err, redis.ErrClosed) || isTimeoutErr(err)
}
