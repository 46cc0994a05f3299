package geofailover_test

// Tests for the defects hostile use found (issue 10): each reproduces one
// way the client could cause an outage or a crash, on real servers.

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// breakerOpenings counts EventBreakerOpened events per endpoint.
type eventLog struct {
	mu  sync.Mutex
	evs []geofailover.Event
}

func logEvents(c *geofailover.Client) *eventLog {
	l := &eventLog{}
	c.OnEvent(func(ev geofailover.Event) { l.mu.Lock(); l.evs = append(l.evs, ev); l.mu.Unlock() })
	return l
}

func (l *eventLog) count(kind geofailover.EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.evs {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func (l *eventLog) all() []geofailover.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]geofailover.Event(nil), l.evs...)
}

// TestSpentDeadlineIsNotAFailure: commands whose deadline has passed before
// they are issued never reach a server; they must not count against any
// endpoint (a service under overload would otherwise cut itself off from
// every healthy region).
func TestSpentDeadlineIsNotAFailure(t *testing.T) {
	_, _, c := pair(t, nil)
	waitHealthy(t, c, "west")
	log := logEvents(c)
	spent, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for range 20 {
		if err := c.Get(spent, "k").Err(); err == nil {
			t.Fatal("Get with a spent deadline succeeded")
		}
		_, _ = c.Pipelined(spent, func(p redis.Pipeliner) error { p.Get(spent, "k"); return nil })
		_ = c.Watch(spent, func(*redis.Tx) error { return nil }, "k")
	}
	// Also a deadline that runs out while the command waits for nothing:
	// the caller's own short deadline on a healthy endpoint.
	time.Sleep(300 * time.Millisecond) // several supervisor steps
	if n := log.count(geofailover.EventBreakerOpened); n != 0 {
		t.Fatalf("%d breakers opened for commands that never reached a server: %+v", n, log.all())
	}
	for _, st := range c.Status() {
		if st.Breaker != geofailover.BreakerClosed {
			t.Errorf("%s: breaker %v after spent deadlines", st.Name, st.Breaker)
		}
	}
	if got := c.Active(); got != "east" {
		t.Fatalf("active is %q, want east", got)
	}
	if err := c.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("a command with time left failed: %v", err)
	}
}

// TestNoFlapBackToFrozenServer: while the preferred endpoint is frozen
// (SIGSTOP), traffic must not return to it when its grace period ends: its
// breaker may close only after a health check has passed since it opened.
func TestNoFlapBackToFrozenServer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tune  func(*geofailover.Options)
		for_  time.Duration
		names string
	}{
		{"default checks, 500ms grace", func(o *geofailover.Options) { o.GracePeriod = 500 * time.Millisecond }, 4 * time.Second, ""},
		{"200ms checks, 1s grace", func(o *geofailover.Options) {
			o.HealthCheckInterval = 200 * time.Millisecond
			o.HealthCheckTimeout = 200 * time.Millisecond
			o.GracePeriod = time.Second
		}, 4 * time.Second, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			east, _, c := pair(t, tc.tune)
			waitHealthy(t, c, "west")
			log := logEvents(c)
			w := startWorkload(c, 8)
			defer w.halt()
			time.Sleep(200 * time.Millisecond)
			pause(t, east)
			defer func() { _ = east.Resume() }()
			waitActive(t, c, "west")
			time.Sleep(tc.for_)
			var switches []string
			for _, ev := range log.all() {
				if ev.Kind == geofailover.EventSwitch {
					switches = append(switches, ev.From+"->"+ev.To+" ("+ev.Reason.String()+")")
				}
			}
			if len(switches) != 1 {
				t.Fatalf("%d switches while east was frozen, want 1: %v", len(switches), switches)
			}
			if got := c.Active(); got != "west" {
				t.Fatalf("active is %q while east is frozen", got)
			}
		})
	}
}

// TestRemoveEndpointDuringClose: RemoveEndpoint racing Close must neither
// panic nor leak.
func TestRemoveEndpointDuringClose(t *testing.T) {
	servers := failovertest.StartServers(t, 3)
	for range 10 {
		var eps []geofailover.Endpoint
		for i, s := range servers {
			eps = append(eps, geofailover.Endpoint{Name: []string{"a", "b", "c"}[i], Weight: float64(3 - i), URL: "redis://" + s.Addr})
		}
		c := newClient(t, &geofailover.Options{Endpoints: eps})
		var wg sync.WaitGroup
		wg.Go(func() { _ = c.RemoveEndpoint("b") })
		wg.Go(func() { _ = c.RemoveEndpoint("a") })
		wg.Go(func() { _ = c.Close() })
		wg.Wait()
	}
}

// TestCloseDespiteStuckSubscribers: Close returns promptly whatever the
// event subscribers do: a channel nobody reads, a callback that blocks.
func TestCloseDespiteStuckSubscribers(t *testing.T) {
	_, _, c := pair(t, nil)
	waitHealthy(t, c, "west")
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{}, 1)
	c.OnEvent(func(geofailover.Event) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	})
	_, stop := c.Events(1) // never read
	defer stop()
	ctx := ctxFor(t, testTimeout)
	for _, to := range []string{"west", "east", "west", "east"} {
		if err := c.SwitchTo(ctx, to); err != nil {
			t.Fatal(err)
		}
	}
	<-entered // the callback is stuck in a delivery
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5 s while a subscriber was stuck")
	}
}

// TestBigReplyIsNotAStall: a healthy server delivering a long reply over a
// slow route (health checks keep passing) is not hung: the stall rule must
// not trip, and the read must not be replayed elsewhere.
func TestBigReplyIsNotAStall(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	proxy := failovertest.StartProxy(t, east.Addr)
	c := newClient(t, &geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, Options: &redis.Options{Addr: proxy.Addr}},
		{Name: "west", Weight: 0.5, Options: &redis.Options{Addr: west.Addr}},
	}})
	waitHealthy(t, c, "west")
	log := logEvents(c)
	value := strings.Repeat("x", 8<<20)
	if err := direct(t, east).Set(ctxFor(t, testTimeout), "big", value, 0).Err(); err != nil {
		t.Fatal(err)
	}
	proxy.Bandwidth(4<<20, failovertest.Downstream) // about 2 s for the reply
	start := time.Now()
	got, err := c.Get(ctxFor(t, testTimeout), "big").Result()
	took := time.Since(start)
	if err != nil || len(got) != len(value) {
		t.Fatalf("GET of the 8 MB value: %d bytes, %v, after %v; events %+v", len(got), err, took, log.all())
	}
	if took < time.Second {
		t.Fatalf("the reply took %v: the bandwidth limit did not hold, the test proves nothing", took)
	}
	if n := log.count(geofailover.EventBreakerOpened); n != 0 {
		t.Fatalf("a breaker opened while a healthy server delivered a long reply: %+v", log.all())
	}
	if a := c.Active(); a != "east" {
		t.Fatalf("active %q, want east", a)
	}
}
