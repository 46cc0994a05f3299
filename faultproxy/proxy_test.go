package faultproxy_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/faultproxy"
)

func TestMain(m *testing.M) {
	failovertest.VerifyTestMain(m)
}

// TestProxyFaults: each fault does what it says to real traffic, and
// goes away when removed.
func TestProxyFaults(t *testing.T) {
	s := failovertest.StartServer(t)
	p := faultproxy.Start(t, s.Addr)
	c := failovertest.Connect(t, p.Addr)
	ctx := context.Background()
	timed := func(d time.Duration, f func(context.Context) error) (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		start := time.Now()
		err := f(cctx)
		return time.Since(start), err
	}
	ping := func(ctx context.Context) error { return c.Ping(ctx).Err() }
	if _, err := timed(time.Second, ping); err != nil {
		t.Fatalf("PING through the proxy: %v", err)
	}

	lat := p.Latency(100*time.Millisecond, 0, faultproxy.Downstream)
	if d, err := timed(time.Second, ping); err != nil || d < 90*time.Millisecond {
		t.Errorf("with 100 ms latency: %v, %v", d, err)
	}
	lat.Remove()
	if d, err := timed(time.Second, ping); err != nil || d > 80*time.Millisecond {
		t.Errorf("latency removed: %v, %v", d, err)
	}

	bh := p.BlackHole(faultproxy.Both)
	if _, err := timed(200*time.Millisecond, ping); err == nil {
		t.Error("PING through a black hole succeeded")
	}
	bh.Remove()
	c.Close()
	c = failovertest.Connect(t, p.Addr) // the black hole kept the old connections silent
	if _, err := timed(time.Second, ping); err != nil {
		t.Errorf("black hole removed: %v", err)
	}

	rst := p.ResetPeer(faultproxy.Upstream)
	if _, err := timed(time.Second, ping); err == nil {
		t.Error("PING through reset_peer succeeded")
	}
	rst.Remove()
	if _, err := timed(time.Second, ping); err != nil {
		t.Errorf("reset removed: %v", err)
	}

	cut := p.CutAfter(10, faultproxy.Upstream)
	if _, err := timed(time.Second, func(ctx context.Context) error {
		return c.Set(ctx, "k", strings.Repeat("x", 100), 0).Err()
	}); err == nil {
		t.Error("a 100-byte SET passed a 10-byte cut")
	}
	cut.Remove()

	bw := p.Bandwidth(10*1024, faultproxy.Downstream)
	if err := c.Set(ctx, "big", strings.Repeat("x", 20*1024), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if d, err := timed(10*time.Second, func(ctx context.Context) error { return c.Get(ctx, "big").Err() }); err != nil || d < time.Second {
		t.Errorf("20 KB at 10 KB/s took %v (%v), want >= 1s", d, err)
	}
	bw.Remove()

	p.Disable()
	// Open connections are closed (EOF), new ones refused.
	_, _ = timed(time.Second, ping)
	var opErr *net.OpError
	if _, err := timed(time.Second, ping); !errors.As(err, &opErr) || opErr.Op != "dial" {
		t.Errorf("PING through a disabled proxy = %v, want a refused dial", err)
	}
	if err := p.Enable(); err != nil {
		t.Fatal(err)
	}
	if _, err := timed(time.Second, ping); err != nil {
		t.Errorf("re-enabled: %v", err)
	}
}
