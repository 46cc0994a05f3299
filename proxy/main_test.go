package proxy_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/proxy"
)

func TestMain(m *testing.M) { failovertest.VerifyTestMain(m) }

// rig is a proxy in front of a geofailover.Client over real servers.
type rig struct {
	srv    *proxy.Server
	client *geofailover.Client
	addr   string
	east   *failovertest.Server
	west   *failovertest.Server
}

// startRig starts two servers (east preferred), a Client with fast checks
// (then tuned by tune, if given), and a proxy on a free loopback port; all
// are closed when the test ends. If the test fails, the client's events
// are logged.
func startRig(t *testing.T, popts *proxy.Options, tune ...func(*geofailover.Options)) *rig {
	t.Helper()
	servers := failovertest.StartServers(t, 2)
	r := &rig{east: servers[0], west: servers[1]}
	opts := &geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "east", Weight: 1, URL: "redis://" + r.east.Addr},
			{Name: "west", Weight: 0.5, URL: "redis://" + r.west.Addr},
		},
		HealthCheckInterval: 50 * time.Millisecond,
		HealthCheckTimeout:  200 * time.Millisecond,
		FailbackDelay:       200 * time.Millisecond,
		GracePeriod:         100 * time.Millisecond,
	}
	for _, f := range tune {
		f(opts)
	}
	c, err := geofailover.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	failovertest.LogEventsOnFailure(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	r.client = c
	r.srv, r.addr = serve(t, c, popts)
	return r
}

// serve runs a proxy for c on a free loopback port until the test ends.
func serve(t *testing.T, c *geofailover.Client, popts *proxy.Options) (*proxy.Server, string) {
	t.Helper()
	srv, err := proxy.New(c, popts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != proxy.ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv, ln.Addr().String()
}

// connect returns a plain go-redis client of the proxy speaking protocol
// (2 or 3), with go-redis's own retries off so that every error shows.
func (r *rig) connect(t *testing.T, protocol int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.addr, Protocol: protocol, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
