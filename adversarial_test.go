package geofailover_test

// Tests for the defects hostile use found (issue 10): each reproduces one
// way the client could cause an outage or a crash, on real servers.

import (
	"context"
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
	evs, _ := c.Events(1024)
	go func() {
		for ev := range evs { // closed by c's Close
			l.mu.Lock()
			l.evs = append(l.evs, ev)
			l.mu.Unlock()
		}
	}()
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
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
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
			failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
			log := logEvents(c)
			w := failovertest.Workload{Workers: 8}.Start(c)
			defer w.Stop()
			time.Sleep(200 * time.Millisecond)
			pause(t, east)
			defer func() { _ = east.Resume() }()
			failovertest.WaitActive(t, c, "west")
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
		ctx := t.Context()
		var wg sync.WaitGroup
		wg.Go(func() { _ = c.RemoveEndpoint(ctx, "b") })
		wg.Go(func() { _ = c.RemoveEndpoint(ctx, "a") })
		wg.Go(func() { _ = c.Close() })
		wg.Wait()
	}
}

// TestCloseDespiteStuckSubscribers: Close returns promptly whatever the
// event subscribers do: a channel nobody reads, a callback that blocks.
func TestCloseDespiteStuckSubscribers(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{}, 1)
	_, _, c := pair(t, func(o *geofailover.Options) {
		o.OnEvent = func(geofailover.Event) {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
	})
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
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

// TestPubSubStaysWithTheTraffic: subscriptions never stay behind on an
// endpoint that commands have left. The preferred endpoint, a, becomes a
// replica (its writes fail with READONLY, its health checks pass) while the
// other, b, is in its grace period but answering: commands go to b, and the
// subscription must follow them (with the gap reported), or else PUBLISHes
// acknowledged by b reach no subscriber and no gap is open.
func TestPubSubStaysWithTheTraffic(t *testing.T) {
	a, b := failovertest.StartServer(t, failovertest.WithMinVersion("7.0")), failovertest.StartServer(t, failovertest.WithMinVersion("7.0"))
	c := newClient(t, &geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "a", Weight: 1, Options: &redis.Options{Addr: a.Addr}},
		{Name: "b", Weight: 0.5, Options: &redis.Options{Addr: b.Addr}},
	}, GracePeriod: time.Minute, HealthCheckInterval: 100 * time.Millisecond})
	ctx := ctxFor(t, testTimeout)
	failovertest.WaitHealth(t, c, "b", geofailover.Healthy)
	// b fails while active: its breaker opens, its grace period begins.
	if err := c.SwitchTo(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	pause(t, b)
	w := failovertest.Workload{Workers: 4}.Start(c)
	failovertest.WaitActive(t, c, "a")
	w.Stop()
	if err := b.Resume(); err != nil {
		t.Fatal(err)
	}
	waitPassing(t, c, "b") // answering again, but in its grace period

	log := logEvents(c)
	ps := c.Subscribe(ctx, "ch")
	defer ps.Close()
	if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Fatalf("subscription not confirmed: %v", err)
	}
	received := make(chan struct{}, 100000)
	go func() {
		for range ps.Channel() {
			received <- struct{}{}
		}
	}()
	// a turns into a replica of a server that is not there: writes fail
	// with READONLY, PING and PUBLISH still work.
	if err := direct(t, a).Do(ctx, "REPLICAOF", "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer direct(t, a).Do(context.Background(), "REPLICAOF", "NO", "ONE")
	type pub struct {
		start, end time.Time
		receivers  int64
	}
	var pubs []pub
	for i := 0; len(pubs) < 400; i++ {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		for range 5 {
			_ = c.Set(cctx, "k", i, 0).Err() // READONLY on a: retried on b
		}
		start := time.Now()
		n, err := c.Publish(cctx, "ch", i).Result()
		cancel()
		if err == nil {
			pubs = append(pubs, pub{start, time.Now(), n})
		}
		time.Sleep(time.Millisecond)
	}
	// Gaps as reported, with a margin for the reports' own timing.
	type gap struct{ from, to time.Time }
	var gaps []gap
	var open time.Time
	for _, ev := range log.all() {
		switch ev.Kind {
		case geofailover.EventPubSubInterrupted:
			open = ev.At
		case geofailover.EventPubSubRestored:
			gaps = append(gaps, gap{ev.GapStart.Add(-10 * time.Millisecond), ev.At.Add(10 * time.Millisecond)})
			open = time.Time{}
		}
	}
	if !open.IsZero() {
		gaps = append(gaps, gap{open, time.Now().Add(time.Hour)})
	}
	lost := 0
	for _, p := range pubs {
		inGap := false
		for _, g := range gaps {
			inGap = inGap || (p.end.After(g.from) && p.start.Before(g.to))
		}
		if p.receivers == 0 && !inGap {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged PUBLISHes reached no subscriber outside a reported gap (active %q, gaps %v)", lost, len(pubs), c.Active(), gaps)
	}
	if c.Active() != "b" {
		t.Fatalf("active %q: writes failing on a should have moved traffic to b", c.Active())
	}
}

// waitPassing waits until the named endpoint's latest health check passed.
func waitPassing(t *testing.T, c *geofailover.Client, name string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		for _, st := range c.Status() {
			if st.Name == name && st.ConsecutivePasses > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not passed a check after %v: %+v", name, testTimeout, c.Status())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEventsChannelClosedAtClose: a loop ranging over Events ends when the
// client closes, also for a channel subscribed after Close.
func TestEventsChannelClosedAtClose(t *testing.T) {
	_, _, c := pair(t, nil)
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	ch, stop := c.Events(4)
	defer stop()
	ended := make(chan int)
	go func() {
		n := 0
		for range ch {
			n++
		}
		ended <- n
	}()
	must(t, c.SwitchTo(ctxFor(t, testTimeout), "west"))
	must(t, c.Close())
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("ranging over Events did not end after Close")
	}
	late, stopLate := c.Events(1)
	defer stopLate()
	if _, open := <-late; open {
		t.Fatal("a channel from Events after Close is open")
	}
}

// TestEventsStopClosesChannel: the stop function closes the channel, also
// while a delivery to it is blocked (nobody reads), so a loop ranging over
// it ends; the client's other subscribers go on receiving.
func TestEventsStopClosesChannel(t *testing.T) {
	_, _, c := pair(t, nil)
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	stuck, stopStuck := c.Events(0) // nobody reads: the delivery blocks
	other, stopOther := c.Events(16)
	defer stopOther()
	ctx := ctxFor(t, testTimeout)
	must(t, c.SwitchTo(ctx, "west"))
	time.Sleep(50 * time.Millisecond) // the delivery to stuck is under way
	stopStuck()
	stopStuck() // idempotent
	ended := make(chan struct{})
	go func() {
		for range stuck {
		}
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("ranging over a stopped Events channel did not end")
	}
	must(t, c.SwitchTo(ctx, "east"))
	failovertest.NextEvent(t, other, geofailover.EventSwitch, func(ev geofailover.Event) bool { return ev.To == "east" })
}
