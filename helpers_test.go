package geofailover_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// testTimeout bounds every wait in these tests, so a hang fails instead of
// stalling the suite.
const testTimeout = 30 * time.Second

// pair starts east (weight 1) and west (weight 0.5) and a client over them.
func pair(t *testing.T, tune func(*geofailover.Options)) (east, west *failovertest.Server, c *geofailover.Client) {
	t.Helper()
	east, west = failovertest.StartServer(t, failovertest.WithMinVersion("7.0")), failovertest.StartServer(t, failovertest.WithMinVersion("7.0"))
	return east, west, clientFor(t, east, west, tune)
}

// clientFor returns a ready client over east (weight 1) and west (0.5).
func clientFor(t *testing.T, east, west *failovertest.Server, tune func(*geofailover.Options)) *geofailover.Client {
	t.Helper()
	opts := &geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, Options: &redis.Options{Addr: east.Addr}},
		{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr + "/0"},
	}}
	if tune != nil {
		tune(opts)
	}
	return newClient(t, opts)
}

func newClient(t *testing.T, opts *geofailover.Options) *geofailover.Client {
	t.Helper()
	c, err := geofailover.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	return c
}

// fast tunes a client for quick tests: 100 ms checks, short grace and
// failback delay.
func fast(o *geofailover.Options) {
	o.HealthCheckInterval = 100 * time.Millisecond
	o.HealthCheckTimeout = 100 * time.Millisecond
	o.GracePeriod = 300 * time.Millisecond
	o.FailbackDelay = 200 * time.Millisecond
}

// to matches an event whose To is name (for failovertest.NextEvent).
func to(name string) func(geofailover.Event) bool {
	return func(ev geofailover.Event) bool { return ev.To == name }
}
