// Command demo shows geofailover at work on this machine, with nothing to
// set up but redis-server on PATH: it starts two local Redis servers, "east"
// (weight 1) and "west" (weight 0.5), runs a workload through a
// geofailover.Client with default options (8 writers, plus a Pub/Sub
// subscriber and publisher), SIGKILLs east, restarts it, and reports the
// failover, the failback and the Pub/Sub re-subscriptions as they happen.
//
//	go run ./examples/demo
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	redis.SetLogger(quiet{}) // go-redis logs every refused dial
	dir, err := os.MkdirTemp("", "geofailover-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	east, err := failovertest.LaunchServer(dir + "/east")
	if err != nil {
		return err
	}
	defer east.Kill()
	west, err := failovertest.LaunchServer(dir + "/west")
	if err != nil {
		return err
	}
	defer west.Kill()
	say("started east on %s (weight 1) and west on %s (weight 0.5)", east.Addr, west.Addr)

	c, err := geofailover.New(&geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "east", Weight: 1, Options: &redis.Options{Addr: east.Addr}},
			{Name: "west", Weight: 0.5, Options: &redis.Options{Addr: west.Addr}},
		},
		OnEvent: func(ev geofailover.Event) { sayEvent(ev) },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		return err
	}

	var ok, failed atomic.Int64
	var lastErr atomic.Value
	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("demo:%d", i)
			for n := 0; wctx.Err() == nil; n++ {
				cctx, cancel := context.WithTimeout(wctx, 100*time.Millisecond)
				err := c.Set(cctx, key, n, 0).Err()
				cancel()
				if err != nil && wctx.Err() == nil {
					failed.Add(1)
					lastErr.Store(err.Error())
				} else if err == nil {
					ok.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	// Pub/Sub through the same client: the subscription follows the switch.
	sub := c.Subscribe(ctx, "demo:news")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		stopWork()
		wg.Wait()
		return err
	}
	var received, published atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range sub.Channel() {
			received.Add(1)
		}
	}()
	go func() {
		defer wg.Done()
		for wctx.Err() == nil {
			if c.Publish(wctx, "demo:news", "tick").Err() == nil {
				published.Add(1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	defer func() { stopWork(); sub.Close(); wg.Wait() }()

	report := func(d time.Duration) error {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			say("active=%-5s ok=%-7d errors=%-3d pubsub published=%d received=%d",
				c.Active(), ok.Load(), failed.Load(), published.Load(), received.Load())
		}
		return nil
	}
	if err := report(2 * time.Second); err != nil {
		return err
	}
	say("SIGKILL east (pid %d)", east.PID())
	killed := time.Now()
	east.Kill()
	if err := report(3 * time.Second); err != nil {
		return err
	}
	say("restarting east")
	if err := east.Restart(); err != nil {
		return err
	}
	restarted := time.Now()
	for c.Active() != "east" {
		if err := report(time.Second); err != nil {
			return err
		}
		if time.Since(restarted) > time.Minute {
			return fmt.Errorf("no failback within a minute")
		}
	}
	say("summary: east killed %v ago; failback %v after restart; %d commands ok, %d failed (last: %v); pubsub %d published, %d received",
		time.Since(killed).Round(time.Millisecond), time.Since(restarted).Round(100*time.Millisecond),
		ok.Load(), failed.Load(), lastErr.Load(), published.Load(), received.Load())
	return nil
}

func say(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func sayEvent(ev geofailover.Event) {
	switch ev.Kind {
	case geofailover.EventSwitch:
		say("EVENT switch %s -> %s (reason %v, detected in %v)", ev.From, ev.To, ev.Reason, ev.DetectionTime.Round(10*time.Microsecond))
	case geofailover.EventHealthChanged:
		say("EVENT %s is %v", ev.Endpoint, ev.Health)
	case geofailover.EventBreakerOpened:
		say("EVENT %s breaker opened (%s)", ev.Endpoint, ev.Cause)
	case geofailover.EventPubSubInterrupted:
		say("EVENT pubsub: %d subscription(s) lost with %s", ev.Subscriptions, ev.From)
	case geofailover.EventPubSubRestored:
		say("EVENT pubsub: %d subscription(s) restored on %s, gap %v", ev.Subscriptions, ev.To, ev.At.Sub(ev.GapStart).Round(10*time.Microsecond))
	default:
		say("EVENT %v %s%s", ev.Kind, ev.Endpoint, ev.To)
	}
}
