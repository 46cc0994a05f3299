package geofailover_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// startRegions starts two local redis-server processes, east and west, for
// the examples (in a test, failovertest.StartServer does it and cleans up),
// and returns a function that stops them.
func startRegions() (east, west *failovertest.Server, stop func()) {
	dir, err := os.MkdirTemp("", "geofailover-example")
	if err != nil {
		panic(err)
	}
	east, err = failovertest.LaunchServer(filepath.Join(dir, "east"))
	if err != nil {
		panic(err)
	}
	west, err = failovertest.LaunchServer(filepath.Join(dir, "west"))
	if err != nil {
		panic(err)
	}
	return east, west, func() {
		_ = east.Kill()
		_ = west.Kill()
		_ = os.RemoveAll(dir)
	}
}

// waitUntil polls cond every 10 ms, for at most 10 s.
func waitUntil(cond func() bool) {
	for deadline := time.Now().Add(10 * time.Second); !cond() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// A client over two regions: east, preferred (weight 1), and west, its
// standby. Commands go to east while it is usable.
func ExampleNew() {
	east, west, stop := startRegions()
	defer stop()

	c, err := geofailover.New(&geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
			{Name: "west", Weight: 0.5, Options: &redis.Options{Addr: west.Addr}},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	if err := c.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Get(ctx, "greeting").Val(), "from", c.Active())
	// Output: hello from east
}

// Bad options are refused with an error that names the field.
func ExampleNew_badOptions() {
	_, err := geofailover.New(&geofailover.Options{
		Endpoints: []geofailover.Endpoint{{Name: "east", Weight: -1, URL: "redis://localhost:6379"}},
	})
	fmt.Println(err)
	// Output: geofailover: Options.Endpoints[0]: endpoint "east": Weight must be a finite number > 0, got -1
}

// Move traffic by hand (to drain a region before maintenance), then give
// the choice back to the rules.
func ExampleClient_SwitchTo() {
	east, west, stop := startRegions()
	defer stop()
	c, err := geofailover.New(&geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
			{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
		},
		FailbackDelay: 100 * time.Millisecond,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx := context.Background()
	// SwitchTo refuses an endpoint that has passed no health check yet.
	waitUntil(func() bool { return c.Status()[1].Health == geofailover.Healthy })

	if err := c.SwitchTo(ctx, "west"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("pinned to", c.Active())

	_ = c.SwitchTo(ctx, "") // the rules choose again: east, once stable for FailbackDelay
	waitUntil(func() bool { return c.Active() == "east" })
	fmt.Println("back to", c.Active())
	// Output:
	// pinned to west
	// back to east
}

// Subscribe to events after New (Options.OnEvent sees them from the first).
// The channel closes when the client does, or when stop is called.
func ExampleClient_Events() {
	east, west, stop := startRegions()
	defer stop()
	c, err := geofailover.New(&geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
			{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	events, stopEvents := c.Events(16)
	defer stopEvents()
	waitUntil(func() bool { return c.Active() == "east" && c.Status()[1].Health == geofailover.Healthy })

	_ = c.SwitchTo(context.Background(), "west")
	for ev := range events {
		if ev.Kind == geofailover.EventSwitch {
			fmt.Println(ev.Kind, ev.From, "->", ev.To, "reason:", ev.Reason)
			break
		}
	}
	// Output: switch east -> west reason: manual
}

// A write whose answer was lost is not sent again (it may have run). When
// running it twice is harmless (it sets a fixed value), say so for that
// call, and it is replayed on the next endpoint like a read.
func ExampleAllowReplay() {
	east, west, stop := startRegions()
	defer stop()
	c, err := geofailover.New(&geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
			{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := geofailover.AllowReplay(context.Background())
	fmt.Println(c.Set(ctx, "feature:checkout", "on", 0).Err())
	// Output: <nil>
}

// A health check may pass with a proviso: the endpoint answers, but should
// not take traffic while another can (a lagging replica, say). HoldBack
// says so; traffic goes to west, and Status shows why east is held back.
func ExampleHoldBack() {
	east, west, stop := startRegions()
	defer stop()
	lagging := errors.New("replication lag 3s")
	c, err := geofailover.New(&geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
			{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
		},
		HealthCheck: func(ctx context.Context, rc redis.UniversalClient) error {
			if err := geofailover.PingCheck(ctx, rc); err != nil {
				return err
			}
			if rc.(*redis.Client).Options().Addr == east.Addr { // in real life: a lag measurement
				return geofailover.HoldBack(lagging)
			}
			return nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_ = c.WaitReady(context.Background())

	fmt.Println("active:", c.Active())
	fmt.Println("east held back:", errors.Is(c.Status()[0].HeldBack, lagging))
	// Output:
	// active: west
	// east held back: true
}
