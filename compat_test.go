package geofailover_test

// Drop-in fidelity (issue 11): on a healthy endpoint the client behaves as
// go-redis does. Each test compares with a plain *redis.Client where the
// behaviour is go-redis's own.

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

func oneEndpoint(t *testing.T, o *redis.Options, tune func(*geofailover.Options)) *geofailover.Client {
	t.Helper()
	opts := &geofailover.Options{Endpoints: []geofailover.Endpoint{{Name: "only", Weight: 1, Options: o}}}
	if tune != nil {
		tune(opts)
	}
	return newClient(t, opts)
}

// TestErrClosedIsGoRedis: after Close, errors are redis.ErrClosed itself,
// as a closed go-redis client's are (go-redis's specs compare with ==), and
// ErrClosed is that same error.
func TestErrClosedIsGoRedis(t *testing.T) {
	srv := failovertest.StartServer(t)
	c := oneEndpoint(t, &redis.Options{Addr: srv.Addr}, nil)
	ctx := ctxFor(t, testTimeout)
	must(t, c.Close())
	checks := map[string]error{
		"Get": c.Get(ctx, "k").Err(),
		"Pipelined": func() error {
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, "k"); return nil })
			return err
		}(),
		"TxPipeline": func() error {
			_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, "k"); return nil })
			return err
		}(),
		"Watch": c.Watch(ctx, func(*redis.Tx) error { return nil }, "k"),
	}
	for name, err := range checks {
		if err != redis.ErrClosed || !errors.Is(err, geofailover.ErrClosed) {
			t.Errorf("%s after Close: %v; errors.Is(redis.ErrClosed) %v, errors.Is(ErrClosed) %v", name, err,
				errors.Is(err, redis.ErrClosed), errors.Is(err, geofailover.ErrClosed))
		}
	}
}

type namesHook struct {
	mu    sync.Mutex
	names []string
}

func (h *namesHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *namesHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.names = append(h.names, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (h *namesHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		for _, cmd := range cmds {
			h.names = append(h.names, cmd.Name())
		}
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// failWatch makes WATCH fail, as a hook may.
type failWatch struct{}

var errWatchRefused = errors.New("watch refused by a hook")

func (failWatch) DialHook(next redis.DialHook) redis.DialHook { return next }
func (failWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "watch" {
			cmd.SetErr(errWatchRefused)
			return errWatchRefused
		}
		return next(ctx, cmd)
	}
}
func (failWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestWatchAsGoRedis: hooks see WATCH, an error on WATCH is Watch's error
// (fn does not run), and a WATCH that fails on the endpoint counts toward
// its breaker — all as with a plain client.
func TestWatchAsGoRedis(t *testing.T) {
	srv := failovertest.StartServer(t)
	ctx := ctxFor(t, testTimeout)
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer plain.Close()
	c := oneEndpoint(t, &redis.Options{Addr: srv.Addr}, nil)
	for name, cl := range map[string]interface {
		AddHook(redis.Hook)
		Watch(context.Context, func(*redis.Tx) error, ...string) error
	}{"plain": plain, "geofailover": c} {
		h := &namesHook{}
		cl.AddHook(h)
		err := cl.Watch(ctx, func(tx *redis.Tx) error {
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Set(ctx, "w", 1, 0); return nil })
			return err
		}, "w")
		if err != nil {
			t.Fatalf("%s: Watch: %v", name, err)
		}
		if got := strings.Join(h.names, " "); !strings.HasPrefix(got, "watch") {
			t.Errorf("%s: hooks saw %q, want WATCH first", name, got)
		}
		cl.AddHook(failWatch{})
		ran := false
		err = cl.Watch(ctx, func(*redis.Tx) error { ran = true; return nil }, "w")
		if !errors.Is(err, errWatchRefused) || ran {
			t.Errorf("%s: Watch with a failing WATCH returned %v (fn ran: %v), want the WATCH error", name, err, ran)
		}
	}

	// A WATCH the endpoint fails counts toward its breaker.
	srv2 := failovertest.StartServer(t)
	c2 := oneEndpoint(t, &redis.Options{Addr: srv2.Addr}, nil)
	failovertest.WaitHealth(t, c2, "only", geofailover.Healthy) // not down at its first check
	evs, stop := c2.Events(16)
	defer stop()
	srv2.Kill()
	for range 5 {
		_ = c2.Watch(ctx, func(*redis.Tx) error { t.Error("fn ran on a dead endpoint"); return nil }, "w")
	}
	ev := failovertest.NextEvent(t, evs, geofailover.EventBreakerOpened, nil)
	if ev.Cause != geofailover.CauseConsecutiveFailures && ev.Cause != geofailover.CauseStalled {
		t.Fatalf("breaker opened for %q, want the WATCH failures", ev.Cause)
	}
}

// TestInternalConnectionNames: health-check and blocking-command
// connections carry a suffixed name, so CLIENT LIST by the application's
// name sees only its own connection, as with a plain client.
func TestInternalConnectionNames(t *testing.T) {
	srv := failovertest.StartServer(t)
	ctx := ctxFor(t, testTimeout)
	c := oneEndpoint(t, &redis.Options{Addr: srv.Addr, ClientName: "app", PoolSize: 1}, nil)
	must(t, c.Set(ctx, "k", "v", 0).Err())
	if err := c.BLPop(ctx, 10*time.Millisecond, "empty").Err(); !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	list, err := direct(t, srv).ClientList(ctx).Result()
	must(t, err)
	names := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		for _, f := range strings.Fields(line) {
			if n, ok := strings.CutPrefix(f, "name="); ok {
				names[n]++
			}
		}
	}
	if names["app"] != 1 || names["app:geofailover-check"] < 1 || names["app:geofailover-blocking"] != 1 {
		t.Fatalf("connection names %v: want one app, one or two app:geofailover-check, one app:geofailover-blocking", names)
	}
}

// TestSlowDialBecomesReady: an endpoint whose dial takes 700 ms (within its
// DialTimeout) becomes ready with a 500 ms HealthCheckTimeout, as a plain
// client works with it.
func TestSlowDialBecomesReady(t *testing.T) {
	srv := failovertest.StartServer(t)
	slow := func(ctx context.Context, network, addr string) (net.Conn, error) {
		time.Sleep(700 * time.Millisecond)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	o := &redis.Options{Addr: srv.Addr, Dialer: slow, DialTimeout: 2 * time.Second}
	plain := redis.NewClient(o)
	defer plain.Close()
	ctx := ctxFor(t, testTimeout)
	must(t, plain.Ping(ctx).Err())
	opts := &geofailover.Options{Endpoints: []geofailover.Endpoint{{Name: "only", Weight: 1, Options: o}},
		HealthCheckTimeout: 500 * time.Millisecond}
	c, err := geofailover.New(opts)
	must(t, err)
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitReady(rctx); err != nil {
		t.Fatalf("an endpoint that dials in 700 ms (DialTimeout 2 s) never became ready: %v; %+v", err, c.Status())
	}
	must(t, c.Set(ctx, "k", "v", 0).Err())
}

// TestPubSubReceiveAtClose: a ReceiveMessage blocked when the client closes
// gets an error satisfying errors.Is(err, net.ErrClosed), as with go-redis.
func TestPubSubReceiveAtClose(t *testing.T) {
	_, c, ps := subscribed(t, "ch")
	ctx := ctxFor(t, testTimeout)
	got := make(chan error, 1)
	go func() { _, err := ps.ReceiveMessage(ctx); got <- err }()
	time.Sleep(50 * time.Millisecond)
	must(t, c.Close())
	select {
	case err := <-got:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReceiveMessage at Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReceiveMessage still blocked 5 s after Close")
	}
}

// TestPubSubReceiveAtPubSubClose: a ReceiveMessage blocked when its own
// PubSub closes gets an error satisfying errors.Is(err, net.ErrClosed), as
// with go-redis, never a bare EOF from the bridge ending (go-redis's spec
// "should return on Close"; the race was lost about once in 20 tries).
func TestPubSubReceiveAtPubSubClose(t *testing.T) {
	srv := failovertest.StartServer(t)
	c := oneEndpoint(t, &redis.Options{Addr: srv.Addr}, nil)
	ctx := ctxFor(t, testTimeout)
	for i := range 200 {
		ps := c.Subscribe(ctx, "ch")
		got := make(chan error, 1)
		go func() { _, err := ps.ReceiveMessage(ctx); got <- err }()
		if i%2 == 0 {
			time.Sleep(time.Millisecond) // sometimes blocked in Read, sometimes not yet
		}
		must(t, ps.Close())
		select {
		case err := <-got:
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, redis.ErrClosed) {
				t.Fatalf("try %d: ReceiveMessage at PubSub.Close: %v, want net.ErrClosed or redis.ErrClosed", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("try %d: ReceiveMessage still blocked 5 s after PubSub.Close", i)
		}
	}
}

// TestPoolStatsCountBlocking: PoolStats covers the connection a blocking
// command used, as a plain client's stats do.
func TestPoolStatsCountBlocking(t *testing.T) {
	srv := failovertest.StartServer(t)
	ctx := ctxFor(t, testTimeout)
	c := oneEndpoint(t, &redis.Options{Addr: srv.Addr}, nil)
	before := c.PoolStats()
	if err := c.BLPop(ctx, 10*time.Millisecond, "empty").Err(); !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	after := c.PoolStats()
	if after.Hits+after.Misses != before.Hits+before.Misses+1 || after.TotalConns < 1 {
		t.Fatalf("PoolStats before %+v, after a BLPOP %+v: the BLPOP's connection is not counted", before, after)
	}
}

// subscribed starts a server and a one-endpoint client over it, and returns
// them with a PubSub on channel whose subscription the server confirmed.
func subscribed(t *testing.T, channel string) (*failovertest.Server, *geofailover.Client, *redis.PubSub) {
	t.Helper()
	srv := failovertest.StartServer(t)
	c := oneEndpoint(t, &redis.Options{Addr: srv.Addr}, nil)
	ctx := ctxFor(t, testTimeout)
	ps := c.Subscribe(ctx, channel)
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	return srv, c, ps
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
