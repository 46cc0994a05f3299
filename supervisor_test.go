package geofailover

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/geofailover/geofailover/internal/window"
)

// harness is a supervisor with fake endpoints and no goroutines of its own:
// tests feed it health results and command outcomes and call step, under
// synctest's fake clock.
type harness struct {
	t  *testing.T
	c  *Client
	s  *supervisor
	mu sync.Mutex
	ev []Event
}

func newHarness(t *testing.T, tune func(*Options), weights ...float64) *harness {
	opts := &Options{}
	for i, w := range weights {
		opts.Endpoints = append(opts.Endpoints, Endpoint{Name: []string{"east", "west", "north", "south"}[i], Weight: w, URL: "redis://127.0.0.1:1"})
	}
	if tune != nil {
		tune(opts)
	}
	cfg, err := validate(opts)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t}
	h.c = &Client{cfg: cfg, wake: make(chan struct{}, 1), events: newEventQueue()}
	t.Cleanup(h.c.events.close)
	h.c.events.subscribe(func(ev Event) { h.mu.Lock(); h.ev = append(h.ev, ev); h.mu.Unlock() }, true)
	h.c.route.Store(&route{changed: make(chan struct{})})
	h.s = newSupervisor(h.c, cfg)
	h.c.sup = h.s
	for _, spec := range cfg.Endpoints {
		h.s.eps = append(h.s.eps, &endpoint{name: spec.Name, weight: spec.Weight,
			window: window.New(cfg.bucketCount, cfg.BreakerBucket)})
	}
	return h
}

func (h *harness) ep(name string) *endpoint { return h.s.find(name) }

// check delivers one health result for name and steps.
func (h *harness) check(name string, err error) {
	e := h.ep(name)
	h.s.onCheck(checkResult{ep: e, epoch: e.epoch.Load(), err: err, at: time.Now()})
	h.s.step(time.Now())
}

// checkAll delivers a result for every endpoint: pass unless listed as down.
func (h *harness) checkAll(down ...string) {
	for _, e := range h.s.eps {
		var err error
		for _, d := range down {
			if d == e.name {
				err = io.EOF
			}
		}
		h.check(e.name, err)
	}
}

func (h *harness) active() string { return h.c.Active() }

func (h *harness) events(kind EventKind) []Event {
	synctest.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, ev := range h.ev {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func TestStartupWaitsForPreferredFirstCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil, 1, 0.5)
		h.check("west", nil)
		if got := h.active(); got != "" {
			t.Fatalf("active = %q before east's first check, want none yet", got)
		}
		h.check("east", io.EOF)
		if got := h.active(); got != "west" {
			t.Fatalf("active = %q after east failed its first check, want west", got)
		}
		if ev := h.events(EventInitialSelection); len(ev) != 1 || ev[0].To != "west" {
			t.Errorf("initial selection events %+v", ev)
		}
	})
}

func TestHealthHysteresis(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil, 1, 0.5)
		h.checkAll()
		if h.active() != "east" {
			t.Fatalf("active = %q", h.active())
		}
		h.check("east", io.EOF) // one failure: still healthy (UnhealthyAfter 2)
		if h.ep("east").health != Healthy || h.active() != "east" {
			t.Fatalf("one failed check changed health to %v", h.ep("east").health)
		}
		time.Sleep(time.Second)
		h.check("east", io.EOF)
		if h.ep("east").health != Unhealthy || h.active() != "west" {
			t.Fatalf("two failed checks: health %v, active %q", h.ep("east").health, h.active())
		}
		sw := h.events(EventSwitch)
		if len(sw) != 1 || sw[0].Reason != ReasonHealth || sw[0].DetectionTime != time.Second {
			t.Fatalf("switch events %+v, want one for health detected over 1s", sw)
		}
		for range 2 {
			h.check("east", nil)
		}
		if h.ep("east").health != Unhealthy {
			t.Fatal("two passes made east healthy; HealthyAfter is 3")
		}
		h.check("east", nil)
		if h.ep("east").health != Healthy {
			t.Fatal("three passes did not make east healthy")
		}
	})
}

// failCommands records n failed commands on name, as the command path does.
func (h *harness) failCommands(name string, n int) {
	for range n {
		h.call(context.Background(), h.ep(name), io.EOF, false)
	}
	h.s.step(time.Now())
}

func TestBreakerFailoverGraceAndFailback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil, 1, 0.5)
		h.checkAll()
		h.failCommands("east", 4)
		if h.active() != "east" {
			t.Fatal("4 failures tripped the breaker; the rule is 5 in a row")
		}
		h.call(context.Background(), h.ep("east"), nil, false) // a success ends the run
		h.failCommands("east", 4)
		if h.active() != "east" {
			t.Fatal("a success did not reset the consecutive count")
		}
		h.failCommands("east", 1)
		if h.active() != "west" {
			t.Fatalf("5 failures in a row: active %q, want west", h.active())
		}
		if ev := h.events(EventBreakerOpened); len(ev) != 1 || ev[0].Cause != CauseConsecutiveFailures {
			t.Fatalf("breaker events %+v", ev)
		}
		e := h.ep("east")
		if got := time.Until(e.graceUntil); got != DefaultGracePeriod {
			t.Fatalf("grace %v, want %v", got, DefaultGracePeriod)
		}
		// East stays healthy by its checks but is barred for the grace period.
		for range 9 {
			time.Sleep(time.Second)
			h.checkAll()
			if h.active() != "west" {
				t.Fatalf("failed back during the grace period, at %v", time.Until(e.graceUntil))
			}
		}
		time.Sleep(time.Second)
		h.checkAll()
		if h.active() != "east" {
			t.Fatalf("no failback after the grace period: active %q", h.active())
		}
		if ev := h.events(EventSwitch); len(ev) != 2 || ev[1].Reason != ReasonFailback {
			t.Fatalf("switch events %+v", ev)
		}
		if ev := h.events(EventBreakerClosed); len(ev) != 1 {
			t.Fatalf("breaker-closed events %+v", ev)
		}

		// Failing again soon after being restored doubles the grace period.
		time.Sleep(5 * time.Second)
		h.failCommands("east", 5)
		if got := time.Until(e.graceUntil); got != 2*DefaultGracePeriod {
			t.Fatalf("grace after a quick relapse %v, want %v", got, 2*DefaultGracePeriod)
		}
		// The first check since the relapse passes after the grace period:
		// failback waits until checks have passed for FailbackDelay.
		time.Sleep(21 * time.Second)
		h.checkAll()
		if h.active() != "west" {
			t.Fatalf("active %q, failed back on the first check since the relapse", h.active())
		}
		time.Sleep(DefaultFailbackDelay)
		h.checkAll()
		if h.active() != "east" {
			t.Fatalf("active %q, want east back", h.active())
		}
		// After staying good long enough it is back to the base period.
		time.Sleep(2 * 2 * DefaultGracePeriod)
		h.checkAll()
		h.failCommands("east", 5)
		if got := time.Until(e.graceUntil); got != DefaultGracePeriod {
			t.Fatalf("grace after a long good stretch %v, want %v", got, DefaultGracePeriod)
		}
	})
}

// TestFailbackWaitsForStableHealth: after failed health checks,
// FailbackDelay is counted from the check that made the endpoint healthy
// again (the HealthyAfter-th pass in a row, at 3 s), not from its first
// pass (1 s): no failback at 5 s, failback at 6 s.
func TestFailbackWaitsForStableHealth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil, 1, 0.5)
		h.checkAll("east") // east down at start
		if h.active() != "west" {
			t.Fatalf("active %q", h.active())
		}
		for range 3 {
			time.Sleep(time.Second)
			h.checkAll()
		}
		if h.ep("east").health != Healthy || h.active() != "west" {
			t.Fatal("east must be healthy but not yet active (failback delay)")
		}
		for range 2 {
			time.Sleep(time.Second)
			h.checkAll()
		}
		if h.active() != "west" {
			t.Fatal("failed back before FailbackDelay")
		}
		time.Sleep(time.Second)
		h.checkAll()
		if h.active() != "east" {
			t.Fatal("no failback after FailbackDelay of stable health")
		}
	})
}

func TestAllDownFailsFastAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil, 1, 0.5)
		h.checkAll()
		for range 2 {
			h.checkAll("east", "west")
		}
		err := h.c.process(context.Background(), nil)
		var nh *NoHealthyEndpointError
		if !errors.Is(err, ErrNoHealthyEndpoint) || !errors.As(err, &nh) || len(nh.LastErrors) != 2 {
			t.Fatalf("all down: %v", err)
		}
		if len(h.events(EventAllDown)) != 1 {
			t.Fatal("no all-down event")
		}
		// One passing check of any endpoint is enough when all are down.
		h.check("west", nil)
		if h.active() != "west" {
			t.Fatalf("active %q after west passed once, want west", h.active())
		}
		if ev := h.events(EventRecovered); len(ev) != 1 || ev[0].To != "west" {
			t.Fatalf("recovered events %+v", ev)
		}
	})
}

func TestStallTripsBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil, 1, 0.5)
		h.checkAll()
		e := h.ep("east")
		e.live.started.Add(3) // three commands sent, none answered
		for range 4 {
			time.Sleep(100 * time.Millisecond)
			h.s.step(time.Now())
		}
		if h.active() != "east" {
			t.Fatal("tripped before StallTimeout")
		}
		time.Sleep(100 * time.Millisecond)
		h.s.step(time.Now())
		if h.active() != "west" {
			t.Fatal("no trip after StallTimeout without progress")
		}
		if ev := h.events(EventSwitch); len(ev) != 1 || ev[0].Reason != ReasonBreaker || ev[0].DetectionTime != 500*time.Millisecond {
			t.Fatalf("switch events %+v", ev)
		}
	})
}

// TestStallNotCountedWhileStarved: a step that comes long after the
// previous one (this process did not run: starved of CPU, stopped, a VM
// pause) does not count the time nobody watched as the endpoint's stall,
// since its replies may be waiting unread; the rule still trips once the
// endpoint has shown no progress for StallTimeout of watched time.
func TestStallNotCountedWhileStarved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil, 1, 0.5)
		h.checkAll()
		e := h.ep("east")
		e.live.started.Add(3) // three commands sent, none answered yet
		h.s.step(time.Now())
		time.Sleep(600 * time.Millisecond) // no step: the supervisor did not run
		h.s.step(time.Now())
		if h.active() != "east" {
			t.Fatal("tripped on 600 ms the supervisor did not watch")
		}
		for range 5 {
			time.Sleep(100 * time.Millisecond)
			h.s.step(time.Now())
		}
		if h.active() != "west" {
			t.Fatal("no trip after StallTimeout of watched time without progress")
		}
	})
}

func TestRetryTimeoutNotChargedToStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil, 1, 0.5)
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		time.Sleep(2 * time.Millisecond)
		for range 10 {
			h.call(ctx, h.ep("west"), context.DeadlineExceeded, true)
		}
		if n := h.ep("west").live.failedNB.Load(); n != 0 {
			t.Fatalf("%d caller-deadline failures of retries charged to west", n)
		}
	})
}

// call simulates one non-blocking command on e that ends with err, as the
// command path counts it.
func (h *harness) call(ctx context.Context, e *endpoint, err error, retry bool) {
	start := h.c.begin(e, false)
	h.c.end(ctx, e, false, start, err, retry)
}

// TestDrainCounts: the window gets exactly the outcomes the command path
// recorded, whatever their mix, and each only once.
func TestDrainCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil, 1, 0.5)
		e := h.ep("east")
		e.drain() // whatever the start-up left
		ctx := context.Background()
		for range 7 {
			h.call(ctx, e, nil, false)
		}
		for range 3 {
			h.call(ctx, e, io.EOF, false)
		}
		h.call(ctx, e, context.Canceled, false) // neutral
		h.c.record(ctx, e, nil, time.Time{}, false, true)
		h.c.record(ctx, e, io.EOF, time.Time{}, false, true)
		got := e.drain()
		if got.Successes != 8 || got.Failures != 4 {
			t.Fatalf("drain = %+v, want 8 successes and 4 failures", got)
		}
		if again := e.drain(); again.Successes != 0 || again.Failures != 0 {
			t.Fatalf("second drain = %+v, want nothing new", again)
		}
		if n := e.live.inflight(); n != 0 {
			t.Fatalf("inflight %d after all calls ended", n)
		}
	})
}

// TestFailbackToABetterEndpointNotTheBest: with the best endpoint not yet
// stable, traffic fails back to a better one that is, then on to the best
// once it is stable too.
func TestFailbackToABetterEndpointNotTheBest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil, 1, 0.6, 0.3)
		h.checkAll("east", "west") // only north is up at start
		if h.active() != "north" {
			t.Fatalf("active %q, want north", h.active())
		}
		// west comes back first; east 3 s later, so that east is healthy
		// (at 5 s) before it has been so for FailbackDelay, while west has.
		for i := range 11 {
			time.Sleep(time.Second)
			if i >= 3 {
				h.check("east", nil)
			} else {
				h.check("east", io.EOF)
			}
			h.check("west", nil)
			h.check("north", nil)
		}
		// west has been healthy since 2 s, east since 5 s: both stable now.
		if got := h.active(); got != "east" {
			t.Fatalf("active %q after both recovered, want east", got)
		}
		sw := h.events(EventSwitch)
		if len(sw) != 2 || sw[0].To != "west" || sw[1].To != "east" {
			t.Fatalf("switches %+v: want failback to west (stable first), then to east", sw)
		}
	})
}

// TestOneEndpointTakesTrafficAtOnce: with a single endpoint there is
// nothing to choose, so it takes traffic before its first check, as a plain
// client's server does (waiting added a dial and a round trip to the first
// commands: go-redis's "does not contend on connection dial" spec took 2 s
// where a plain client takes 1). A first check that proves it down still
// makes the client fail fast.
func TestOneEndpointTakesTrafficAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil, 1)
		h.s.step(time.Now())
		if got := h.active(); got != "east" {
			t.Fatalf("active = %q before the first check, want the only endpoint", got)
		}
		if ev := h.events(EventInitialSelection); len(ev) != 1 || ev[0].To != "east" {
			t.Errorf("initial selection events %+v", ev)
		}
		h.check("east", syscall.ECONNREFUSED)
		if got := h.active(); got != "" {
			t.Fatalf("active = %q after a refused first check, want none (all down)", got)
		}
	})
}

// TestScanTagsKeepCursorsSigned: the tags SCAN cursors carry in their top
// byte stay within 1-127, so a tagged cursor is below 2^63 and a client that
// reads cursors as signed 64-bit integers (StackExchange.Redis, through
// geofailover proxy) reads it right, however many endpoints have come and
// gone.
func TestScanTagsKeepCursorsSigned(t *testing.T) {
	if maxEndpoints >= maxScanTag {
		t.Fatalf("maxEndpoints %d leaves no free tag among %d", maxEndpoints, maxScanTag)
	}
	h := newHarness(t, nil, 1, 0.5)
	for e, i := h.s.eps[1], 0; i < 600; i++ {
		e.scanTag = h.s.freeScanTag() // as a removed endpoint's slot is taken by a new one
		if e.scanTag == 0 || e.scanTag > 127 {
			t.Fatalf("tag %d after %d endpoints added", e.scanTag, i+1)
		}
		if e.scanTag == h.s.eps[0].scanTag {
			t.Fatalf("tag %d given twice", e.scanTag)
		}
	}
}
