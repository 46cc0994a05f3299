package geofailover

import (
	"context"
	"time"

	"github.com/geofailover/geofailover/internal/breaker"
	"github.com/geofailover/geofailover/internal/window"
)

// supervisor owns every routing decision of one Client. It runs on a single
// goroutine; all its fields, and the supervisor-state fields of the
// endpoints, are touched by that goroutine only. Inputs arrive on channels:
// health-check results, wake-ups from the command path after a failure, a
// ticker (window rotation, stall detection, grace expiry), and requests from
// the API (SwitchTo, SetWeight, AddEndpoint, RemoveEndpoint, Status).
type supervisor struct {
	c   *Client
	cfg *config
	eps []*endpoint // configuration order: it breaks weight ties
	// lastTag is the SCAN cursor tag given out last (see freeScanTag).
	lastTag uint8
	// retired are replaced traffic clients waiting to be closed (refresh).
	retired []retiredClient
	// lastStep is when step last ran (see unwatched).
	lastStep time.Time
	// leaving are removed endpoints whose clients close once their
	// in-flight commands are done (see remove).
	leaving []leavingEndpoint

	active    *endpoint
	fallback  *endpoint
	pinned    *endpoint // chosen by SwitchTo
	pinForced bool
	started   bool // the initial selection is made (or every endpoint was checked)
	allDown   bool

	results  chan checkResult
	requests chan request
	evs      []Event // collected during a step, published at its end
}

type request struct {
	fn   func(now time.Time)
	done chan struct{}
}

func newSupervisor(c *Client, cfg *config) *supervisor {
	s := &supervisor{
		c:        c,
		cfg:      cfg,
		results:  make(chan checkResult),
		requests: make(chan request),
	}
	return s
}

// tickInterval is how often the supervisor looks at the endpoints without
// being woken: a fifth of the stall timeout, within [10 ms, 100 ms].
func (s *supervisor) tickInterval() time.Duration {
	return min(max(s.cfg.StallTimeout/5, 10*time.Millisecond), 100*time.Millisecond)
}

func (s *supervisor) run(ctx context.Context) {
	ticker := time.NewTicker(s.tickInterval())
	defer ticker.Stop()
	s.step(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case res := <-s.results:
			s.onCheck(res)
		case <-s.c.wake:
		case <-ticker.C:
		case req := <-s.requests:
			now := time.Now()
			req.fn(now)
			s.step(now)
			close(req.done)
			continue
		}
		s.step(time.Now())
	}
}

// step brings the state up to date with what was observed and applies the
// selection rule. It is the supervisor's whole decision; tests call it
// directly.
func (s *supervisor) step(now time.Time) {
	if len(s.retired) > 0 || len(s.leaving) > 0 {
		s.closeRetired(now)
	}
	s.unwatched(now)
	for _, e := range s.eps {
		s.observe(e, now)
	}
	s.decide(now)
	if len(s.evs) > 0 {
		s.c.emit(s.evs...)
		s.evs = s.evs[:0]
	}
}

// unwatched keeps time in which the supervisor did not run out of the
// stall rule. A step that comes more than two ticks after the previous one
// means this process was not running (starved of CPU, stopped, a long VM
// pause): the endpoints' replies may be waiting unread, so that time is not
// theirs to be charged as a stall (the same rule as a caller's deadline
// spent elsewhere: never count a failure the endpoint did not cause).
func (s *supervisor) unwatched(now time.Time) {
	tick := s.tickInterval()
	if gap := now.Sub(s.lastStep); !s.lastStep.IsZero() && gap > 2*tick {
		for _, e := range s.eps {
			if !e.stallSince.IsZero() {
				e.stallSince = e.stallSince.Add(gap - tick)
			}
		}
	}
	s.lastStep = now
}

// drain returns the outcomes recorded on e since the last drain. The
// command path counts a non-blocking call's failure (or neutral outcome)
// before its completion, and drain reads completions first, so a call in
// between can only make successes look one lower for a moment: such a
// shortfall is not folded in, and shows up on a later drain.
func (e *endpoint) drain() window.Counts {
	s := &e.live
	completed := s.completed.Load()
	failedNB, neutral := s.failedNB.Load(), s.neutralNB.Load()
	failures := failedNB + s.failedB.Load()
	successes := s.blockingOK.Load()
	if completed >= failedNB+neutral {
		successes += completed - failedNB - neutral
	}
	slow := s.slow.Load()
	var c window.Counts
	if successes > e.seen.successes {
		c.Successes, e.seen.successes = successes-e.seen.successes, successes
	}
	c.Failures, e.seen.failures = failures-e.seen.failures, failures
	c.Slow, e.seen.slow = slow-e.seen.slow, slow
	return c
}

// stallLatencyFactor: the stall rule waits at least this many times an
// endpoint's smoothed check latency, so a far endpoint whose replies take
// longer than StallTimeout is not taken for a hung one.
const stallLatencyFactor = 4

// observe folds e's live counters into its window and moves its breaker:
// Closed -> Open when the trip rule says so; Open -> Closed when the grace
// period is over and health checks pass.
func (s *supervisor) observe(e *endpoint, now time.Time) {
	c := e.drain()
	e.window.Add(now, c)
	rule := s.cfg.rule
	if rule.Stall > 0 {
		rule.Stall = max(rule.Stall, stallLatencyFactor*e.checkRTT)
	}
	if e.live.inflight() <= 0 || c.Calls() > 0 || e.stallSince.IsZero() {
		e.stallSince = now
	} else if rule.Stall > 0 && e.breaker == BreakerClosed && now.Sub(e.stallSince) >= rule.Stall/2 {
		// Commands are outstanding and none completes: ask the server
		// whether it is alive. A check that passes moves stallSince (see
		// onCheck), so a long reply from a live server is not a stall.
		e.suspect()
	}
	if b := e.live.lastErr.Load(); b != nil && c.Failures > 0 {
		e.lastErr, e.downHard = b.err, provenDown(b.err)
	}
	switch e.breaker {
	case BreakerClosed:
		cause := rule.Trip(e.window.Totals(now), e.live.consecutive.Load(), now.Sub(e.stallSince))
		if cause != breaker.CauseNone {
			s.openBreaker(e, cause, now)
		}
	case BreakerOpen:
		if n := s.cfg.rule.Consecutive; n > 0 && e.live.consecutive.Load() >= n {
			// A new run of failures on an endpoint whose breaker is already
			// open: it kept traffic only because nothing better had passed
			// a check, and that check is now stale. It may keep traffic no
			// longer until a new check passes (decide moves traffic to an
			// endpoint whose last check passed, if any), and the run is
			// reset, so the command path's early steer (anticipate) never
			// outlives this step: commands and subscriptions stay together.
			e.lastPassed, e.passingSince = false, time.Time{}
			e.live.consecutive.Store(0)
			e.suspect()
		}
		// Only a check that started after the breaker opened can close it
		// (older results are discarded by epoch), so a server that froze
		// never gets traffic back on the strength of its grace period ending.
		if e.health == Healthy && e.lastPassed && !now.Before(e.graceUntil) {
			e.breaker = BreakerClosed
			e.window.Reset()
			e.live.consecutive.Store(0)
			e.stallSince = now
			s.emit(Event{Kind: EventBreakerClosed, At: now, Endpoint: e.name})
		}
	}
}

func (s *supervisor) openBreaker(e *endpoint, cause breaker.Cause, now time.Time) {
	e.breaker = BreakerOpen
	e.openedAt = now
	switch cause {
	case breaker.CauseConsecutive:
		if ns := e.live.runStart.Load(); ns != 0 {
			e.openedAt = time.Unix(0, ns)
		}
	case breaker.CauseStall:
		e.openedAt = e.stallSince
	}
	e.epoch.Add(1)
	e.lastPassed, e.passingSince = false, time.Time{} // a new check must pass
	e.window.Reset()
	e.live.consecutive.Store(0)
	s.startGrace(e, now)
	s.emit(Event{Kind: EventBreakerOpened, At: now, Endpoint: e.name, Cause: tripCause(cause), Err: e.lastErr})
}

// startGrace bars e from being chosen for its grace period. The period
// doubles (up to GracePeriodMax) when e fails again within twice its current
// period after traffic returned to it, and is back to GracePeriod otherwise.
func (s *supervisor) startGrace(e *endpoint, now time.Time) {
	if !e.restoredAt.IsZero() && now.Sub(e.restoredAt) < 2*s.grace(e.graceLevel) {
		if s.grace(e.graceLevel) < s.cfg.GracePeriodMax {
			e.graceLevel++
		}
	} else {
		e.graceLevel = 0
	}
	e.graceUntil = now.Add(s.grace(e.graceLevel))
}

// grace is the grace period at a level: GracePeriod doubled level times,
// capped at GracePeriodMax.
func (s *supervisor) grace(level int) time.Duration {
	g := s.cfg.GracePeriod
	for range level {
		g *= 2
		if g >= s.cfg.GracePeriodMax {
			return s.cfg.GracePeriodMax
		}
	}
	return g
}

// choose is the selection rule, the one place that decides which endpoint
// should be active now. Postcondition: it returns
//   - the pinned endpoint (SwitchTo) while it is usable, or always if forced;
//   - else, at startup, a client's only endpoint before its first check
//     (there is nothing to choose, and waiting for the check would add its
//     dial and round trip to the first commands);
//   - else the active endpoint while it is usable, unless an endpoint of
//     higher weight is eligible, not held back, and has been healthy, with
//     every check passing, for FailbackDelay, and its traffic client is
//     warm: then the highest-weight such endpoint (failback), even if a
//     better one is not yet stable; else, unless DisableLatencyTies, an
//     endpoint of the same weight, eligible, not held back and warm, that
//     has been clearly faster for LatencySwitchAfter (latency.go);
//   - else the highest-weight eligible endpoint (failover), one not held
//     back if there is one (see candidate), except that at startup it waits
//     for the first check of endpoints of higher or equal weight (of every
//     endpoint, if the best is held back);
//   - else, since anything beats nothing, the active endpoint if its last
//     check passed, or the highest-weight endpoint whose last check passed;
//   - else the active endpoint if nothing proves it cannot serve (it is
//     slow or paused: its failures are timeouts and stalls, not refusals
//     or resets): with nowhere else to go, commands wait for their own
//     deadlines there, as with a plain client;
//   - else nil: all endpoints are down.
//
// Usable means healthy, breaker closed and out of the grace period;
// eligible means usable with a health check passed since the last failure
// (so no endpoint is given traffic without one). Ties in weight go to a
// clearly faster endpoint, else to configuration order. choose only reads the state; decide carries out
// what it returns.
func (s *supervisor) choose(now time.Time) *endpoint {
	if p := s.pinned; p != nil && !p.removed && (s.pinForced || p.usable(now)) {
		return p
	}
	if !s.started && len(s.eps) == 1 && s.eps[0].health == HealthUnknown {
		return s.eps[0] // nothing to choose: it serves at once, as a plain client's server
	}
	best := s.candidate(now, nil)
	a := s.active
	if a != nil && a.usable(now) {
		if s.cfg.DisableFailback {
			return a
		}
		// Failback: the best of the endpoints preferred to a that have been
		// stable for FailbackDelay, even if a better one is not yet.
		if up := s.best(func(e *endpoint) bool {
			return e.weight > a.weight && e.eligible(now) && e.heldBack == nil && !e.cold && now.Sub(e.stableSince()) >= s.cfg.FailbackDelay
		}); up != nil {
			return up
		}
		if s.latencyTies() {
			// A clearly faster endpoint of the same weight, for long enough.
			if up := s.best(func(e *endpoint) bool {
				return e.weight == a.weight && e.eligible(now) && e.heldBack == nil && !e.cold &&
					!e.fasterSince.IsZero() && now.Sub(e.fasterSince) >= s.cfg.LatencySwitchAfter
			}); up != nil {
				return up
			}
		}
		return a
	}
	if best == nil {
		if a != nil && !a.removed && a.lastPassed {
			return a
		}
		best = s.best(func(e *endpoint) bool { return !e.removed && e.lastPassed })
		if best == nil && a != nil && !a.removed && !a.downHard {
			return a
		}
	}
	if best != nil && !s.started {
		for _, e := range s.eps {
			if e.health == HealthUnknown && (e.weight >= best.weight || best.heldBack != nil) {
				// A preferred endpoint, or one as good (ties go by latency,
				// then configuration order), has not answered its first
				// check yet, or one that is not held back may yet answer.
				return nil
			}
		}
	}
	return best
}

// candidate returns the endpoint traffic would move to, other than not: the
// best eligible one that is not held back, or else the best eligible one
// (holding back never leaves the client without an endpoint).
func (s *supervisor) candidate(now time.Time, not *endpoint) *endpoint {
	if c := s.best(func(e *endpoint) bool { return e != not && e.eligible(now) && e.heldBack == nil }); c != nil {
		return c
	}
	return s.best(func(e *endpoint) bool { return e != not && e.eligible(now) })
}

// best returns the highest-weight endpoint that ok accepts; among equals,
// a clearly faster one (see clearlyFaster), else the first in
// configuration order.
func (s *supervisor) best(ok func(*endpoint) bool) *endpoint {
	var b *endpoint
	ties := s.latencyTies()
	for _, e := range s.eps {
		if ok(e) && (b == nil || e.weight > b.weight || ties && e.weight == b.weight && clearlyFaster(e, b)) {
			b = e
		}
	}
	return b
}

// decide applies choose and carries out its decision: the pin, the grace
// period of an endpoint that traffic left because it turned unhealthy, the
// route and its events, and the clients of the endpoint left behind.
func (s *supervisor) decide(now time.Time) {
	s.trackLatency(now) // after new check results or weights
	target := s.choose(now)
	if s.pinned != nil && target != s.pinned {
		s.pinned, s.pinForced = nil, false // the pinned endpoint failed: the normal rules apply
	}
	from := s.active
	if target != from {
		reason, detection := s.switchReason(from, target, now)
		if reason == ReasonHealth && from.health != Healthy {
			s.startGrace(from, now)
		}
		s.switchTo(from, target, reason, detection, now)
	}
	if !s.started && (target != nil || s.allChecked()) {
		s.started = true
		if target == nil {
			s.enterAllDown(now)
			s.emit(Event{Kind: EventAllDown, At: now})
		}
	}
	for _, e := range s.eps {
		if e != target && e.cold && !e.warming && e.eligible(now) {
			s.warm(e)
		}
	}
	fallback := s.candidate(now, target)
	if fallback == nil {
		fallback = s.best(func(e *endpoint) bool { return e != target && !e.removed && e.lastPassed })
	}
	if s.pinForced && target == s.pinned {
		fallback = nil // SwitchTo with Force: nothing goes elsewhere, not even retries
	}
	if target != from || fallback != s.fallback {
		s.fallback = fallback
		if target != nil || !s.allDown {
			s.c.publish(&route{active: target, fallback: fallback, changed: make(chan struct{})})
		}
	}
	if from != nil && target != from {
		// After the new route is out, so a blocking command either sees it
		// or is interrupted (see blocking.go).
		from.interruptBlocking()
		if from.breaker == BreakerOpen || from.health == Unhealthy {
			s.abandon(from)
		}
	}
}

func (s *supervisor) allChecked() bool {
	for _, e := range s.eps {
		if e.health == HealthUnknown {
			return false
		}
	}
	return true
}

// switchReason says why traffic moves from one endpoint to another, and
// how long the failure that caused it took to detect (0 when no failure
// did). A move to the pinned endpoint is SwitchTo's doing: traffic reaches
// a pinned endpoint only when the pin is made.
func (s *supervisor) switchReason(from, to *endpoint, now time.Time) (SwitchReason, time.Duration) {
	switch {
	case from == nil:
		return ReasonNone, 0
	case from.removed:
		return ReasonRemoved, 0
	case to != nil && to == s.pinned:
		return ReasonManual, 0
	case from.breaker == BreakerOpen:
		return ReasonBreaker, now.Sub(from.openedAt)
	case from.health != Healthy:
		return ReasonHealth, now.Sub(from.firstFailAt)
	case from.usable(now) && to != nil && to.weight == from.weight:
		return ReasonLatency, 0
	case from.usable(now):
		return ReasonFailback, 0
	}
	return ReasonHealth, 0
}

// switchTo makes to the active endpoint and reports it.
func (s *supervisor) switchTo(from, to *endpoint, reason SwitchReason, detection time.Duration, now time.Time) {
	var lastErr error
	if from != nil {
		lastErr = from.lastErr
	}
	s.active = to
	s.trackLatency(now)
	if to != nil && !to.graceUntil.IsZero() {
		to.restoredAt = now // traffic returns to an endpoint that failed before
	}
	fromName, toName := nameOf(from), nameOf(to)
	switch {
	case to == nil:
		s.enterAllDown(now)
		s.emit(Event{Kind: EventAllDown, At: now, From: fromName, Reason: reason, DetectionTime: detection, Err: lastErr})
		return
	case !s.started:
		s.emit(Event{Kind: EventInitialSelection, At: now, To: toName})
	case s.allDown:
		s.emit(Event{Kind: EventRecovered, At: now, To: toName, From: fromName})
	default:
		s.emit(Event{Kind: EventSwitch, At: now, From: fromName, To: toName, Reason: reason, DetectionTime: detection, Err: lastErr})
	}
	s.allDown = false
	s.c.allDown.Store(false)
}

// enterAllDown publishes a route that fails commands fast with each
// endpoint's last error.
func (s *supervisor) enterAllDown(now time.Time) {
	errs := make(map[string]error, len(s.eps))
	for _, e := range s.eps {
		err := e.lastErr
		if err == nil {
			err = errWhyUnusable(e, now)
		}
		errs[e.name] = err
	}
	s.allDown = true
	s.c.allDown.Store(true)
	for _, e := range s.eps {
		e.suspect() // re-check now, then at the faster all-down pace
	}
	s.c.publish(&route{err: &NoHealthyEndpointError{LastErrors: errs}, changed: make(chan struct{})})
}

func errWhyUnusable(e *endpoint, now time.Time) error {
	switch {
	case e.breaker == BreakerOpen:
		return errorString("breaker open")
	case now.Before(e.graceUntil):
		return errorString("in grace period")
	case e.health != Healthy:
		return errorString("health " + e.health.String())
	}
	return errorString("unusable")
}

func nameOf(e *endpoint) string {
	if e == nil {
		return ""
	}
	return e.name
}

func (s *supervisor) emit(ev Event) { s.evs = append(s.evs, ev) }

// status returns a snapshot of every endpoint.
func (s *supervisor) status() []EndpointStatus {
	out := make([]EndpointStatus, 0, len(s.eps))
	for _, e := range s.eps {
		out = append(out, EndpointStatus{
			Name: e.name, Weight: e.weight, Active: e == s.active,
			Health: e.health, Breaker: e.breaker,
			ConsecutivePasses: e.passes, ConsecutiveFailures: e.fails,
			LastError: e.lastErr, HeldBack: e.heldBack, LastCheckLatency: e.lastLatency, CheckLatency: e.checkRTT, LastCheck: e.lastCheck,
			GraceUntil: e.graceUntil, InFlight: e.live.inflight(), Calls: e.live.calls(),
		})
	}
	return out
}
