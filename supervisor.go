package geofailover

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

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
	// leaving are removed endpoints whose clients close once their
	// in-flight commands are done (see remove).
	leaving []leavingEndpoint

	active    *endpoint
	fallback  *endpoint
	pinned    *endpoint // chosen by SwitchTo
	pinForced bool
	manual    bool // a SwitchTo is being applied in this step
	started   bool // the initial selection is made (or every endpoint was checked)
	allDown   bool

	results  chan checkResult
	requests chan request
	evs      []Event // collected during a step, published at its end
}

type checkResult struct {
	ep      *endpoint
	epoch   uint64
	err     error
	latency time.Duration
	at      time.Time
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
	for _, e := range s.eps {
		s.observe(e, now)
	}
	s.decide(now)
	if len(s.evs) > 0 {
		s.c.emit(s.evs...)
		s.evs = s.evs[:0]
	}
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

// observe folds e's live counters into its window and moves its breaker:
// Closed -> Open when the trip rule says so; Open -> Closed when the grace
// period is over and health checks pass.
func (s *supervisor) observe(e *endpoint, now time.Time) {
	c := e.drain()
	e.window.Add(now, c)
	if e.live.inflight() <= 0 || c.Calls() > 0 || e.stallSince.IsZero() {
		e.stallSince = now
	} else if s.cfg.rule.Stall > 0 && e.breaker == BreakerClosed && now.Sub(e.stallSince) >= s.cfg.rule.Stall/2 {
		// Commands are outstanding and none completes: ask the server
		// whether it is alive. A check that passes moves stallSince (see
		// onCheck), so a long reply from a live server is not a stall.
		e.suspect()
	}
	if b := e.live.lastErr.Load(); b != nil && c.Failures > 0 {
		e.lastErr = b.err
	}
	switch e.breaker {
	case BreakerClosed:
		cause := s.cfg.rule.Trip(e.window.Totals(now), e.live.consecutive.Load(), now.Sub(e.stallSince))
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
	s.emit(Event{Kind: EventBreakerOpened, At: now, Endpoint: e.name, Cause: cause.String(), Err: e.lastErr})
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

// retireDelay is how long a replaced traffic client stays open for the
// commands still running on it.
const retireDelay = 5 * time.Second

type retiredClient struct {
	c  redis.UniversalClient
	at time.Time
}

// refresh gives an owned endpoint that passed its first check after an
// outage a new traffic client: go-redis keeps returning a cached dial error
// from a pool that saw many failed dials, for up to a second after the
// server is back. The old client is closed retireDelay later.
func (s *supervisor) refresh(e *endpoint, now time.Time) {
	if old := s.replaceMember(e); old != nil {
		s.retired = append(s.retired, retiredClient{old, now})
	}
}

// replaceMember gives an owned endpoint a new traffic client and returns
// the old one (nil when the endpoint's client is the caller's).
func (s *supervisor) replaceMember(e *endpoint) redis.UniversalClient {
	if !e.owned || e.removed {
		return nil
	}
	fresh, _, err := buildMember(e.spec, s.cfg.HealthCheckTimeout)
	if err != nil {
		return nil // the spec was valid when the endpoint was added
	}
	return e.member.Swap(&memberRef{fresh}).c
}

// abandon ends the commands still waiting on an owned endpoint that traffic
// has just left because it failed: it gets a fresh traffic client and the
// old one is closed at once. On a hung server those commands would
// otherwise wait out their deadlines; now they fail at once, and the reads
// among them are replayed on the new endpoint.
func (s *supervisor) abandon(e *endpoint) {
	if old := s.replaceMember(e); old != nil {
		_ = old.Close()
	}
}

// closeRetired closes the replaced clients retired before now-retireDelay,
// and the clients of removed endpoints whose commands are done or whose
// time is up (all of them when now is zero).
func (s *supervisor) closeRetired(now time.Time) error {
	var errs []error
	keep := s.retired[:0]
	for _, r := range s.retired {
		if now.IsZero() || now.Sub(r.at) >= retireDelay {
			_ = r.c.Close()
		} else {
			keep = append(keep, r)
		}
	}
	s.retired = keep
	stay := s.leaving[:0]
	for _, l := range s.leaving {
		if now.IsZero() || l.e.live.inflight() <= 0 || !now.Before(l.until) {
			errs = append(errs, l.e.close())
		} else {
			stay = append(stay, l)
		}
	}
	s.leaving = stay
	return errors.Join(errs...)
}

// removeDelay bounds how long a removed endpoint's client stays open for
// the commands still running on it.
const removeDelay = time.Second

type leavingEndpoint struct {
	e     *endpoint
	until time.Time
}

// remove takes e out of the set; the decision step that follows moves
// traffic away if it was active. Its clients are closed by closeRetired,
// on this goroutine, so no goroutine outlives the supervisor.
func (s *supervisor) remove(e *endpoint, now time.Time) {
	e.removed = true
	s.c.scanTags.Delete(e.scanTag)
	e.stopChecker()
	if s.pinned == e {
		s.pinned = nil
	}
	eps := make([]*endpoint, 0, len(s.eps)-1)
	for _, o := range s.eps {
		if o != e {
			eps = append(eps, o)
		}
	}
	s.eps = eps
	s.leaving = append(s.leaving, leavingEndpoint{e: e, until: now.Add(removeDelay)})
}

// onCheck applies one health-check result, with N/M hysteresis: the first
// result decides on its own; later, UnhealthyAfter failures in a row make an
// endpoint unhealthy and HealthyAfter passes in a row make it healthy.
func (s *supervisor) onCheck(r checkResult) {
	e := r.ep
	if e.removed || r.epoch != e.epoch.Load() {
		return // a stale probe, from before the endpoint's breaker opened
	}
	e.lastCheck, e.lastLatency = r.at, r.latency
	prev := e.health
	if r.err == nil {
		if prev == Unhealthy && e.passes == 0 {
			s.refresh(e, r.at)
		}
		if !e.lastPassed {
			e.passingSince = r.at
		}
		if started := r.at.Add(-r.latency); started.After(e.stallSince) {
			e.stallSince = started // the server answered: it is not hung
		}
		e.passes, e.fails, e.lastPassed = e.passes+1, 0, true
		if prev != Healthy && (prev == HealthUnknown || e.passes >= s.cfg.HealthyAfter) {
			e.health, e.healthySince = Healthy, r.at
		}
	} else {
		e.passes, e.fails, e.lastPassed, e.lastErr = 0, e.fails+1, false, r.err
		e.passingSince = time.Time{}
		if e.fails == 1 {
			e.firstFailAt = r.at
		}
		if prev != Unhealthy && (prev == HealthUnknown || e.fails >= s.cfg.UnhealthyAfter) {
			e.health = Unhealthy
		}
	}
	if e.health != prev {
		s.emit(Event{Kind: EventHealthChanged, At: r.at, Endpoint: e.name, Health: e.health, PrevHealth: prev, Err: r.err})
	}
}

// choose is the selection rule, the one place that decides which endpoint
// should be active now. Postcondition: it returns
//   - the pinned endpoint (SwitchTo) while it is usable, or always if forced;
//   - else the active endpoint while it is usable, unless an endpoint of
//     higher weight is eligible and has been healthy, with every check
//     passing, for FailbackDelay: then the highest-weight such endpoint
//     (failback), even if a better one is not yet stable;
//   - else the highest-weight eligible endpoint (failover), except that at
//     startup it waits for higher-weight endpoints' first check;
//   - else, since anything beats nothing, the active endpoint if its last
//     check passed, or the highest-weight endpoint whose last check passed;
//   - else nil: all endpoints are down.
//
// Usable means healthy, breaker closed and out of the grace period;
// eligible means usable with a health check passed since the last failure
// (so no endpoint is given traffic without one). Ties in weight go to
// configuration order.
func (s *supervisor) choose(now time.Time) *endpoint {
	if p := s.pinned; p != nil {
		if !p.removed && (s.pinForced || p.usable(now)) {
			return p
		}
		s.pinned = nil
	}
	best := s.best(func(e *endpoint) bool { return e.eligible(now) })
	a := s.active
	if a != nil && a.usable(now) {
		if s.cfg.DisableFailback {
			return a
		}
		// Failback: the best of the endpoints preferred to a that have been
		// stable for FailbackDelay, even if a better one is not yet.
		if up := s.best(func(e *endpoint) bool {
			return e.weight > a.weight && e.eligible(now) && now.Sub(e.stableSince()) >= s.cfg.FailbackDelay
		}); up != nil {
			return up
		}
		return a
	}
	if best == nil {
		if a != nil && !a.removed && a.lastPassed {
			return a
		}
		best = s.best(func(e *endpoint) bool { return !e.removed && e.lastPassed })
	}
	if best != nil && !s.started {
		for _, e := range s.eps {
			if e.health == HealthUnknown && e.weight > best.weight {
				return nil // a preferred endpoint has not answered its first check yet
			}
		}
	}
	return best
}

// best returns the highest-weight endpoint that ok accepts, first in
// configuration order among equals.
func (s *supervisor) best(ok func(*endpoint) bool) *endpoint {
	var b *endpoint
	for _, e := range s.eps {
		if ok(e) && (b == nil || e.weight > b.weight) {
			b = e
		}
	}
	return b
}

// decide applies choose and publishes any change of route, with its events.
func (s *supervisor) decide(now time.Time) {
	target := s.choose(now)
	from := s.active
	if target != from {
		s.switchTo(from, target, now)
	}
	if !s.started && (target != nil || s.allChecked()) {
		s.started = true
		if target == nil {
			s.enterAllDown(now)
			s.emit(Event{Kind: EventAllDown, At: now})
		}
	}
	fallback := s.best(func(e *endpoint) bool { return e != target && e.eligible(now) })
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
	s.manual = false
}

func (s *supervisor) allChecked() bool {
	for _, e := range s.eps {
		if e.health == HealthUnknown {
			return false
		}
	}
	return true
}

func (s *supervisor) switchTo(from, to *endpoint, now time.Time) {
	reason, detection := ReasonNone, time.Duration(0)
	var lastErr error
	if from != nil {
		lastErr = from.lastErr
		switch {
		case from.removed:
			reason = ReasonRemoved
		case s.manual:
			reason = ReasonManual
		case from.breaker == BreakerOpen:
			reason, detection = ReasonBreaker, now.Sub(from.openedAt)
		case from.health != Healthy:
			reason, detection = ReasonHealth, now.Sub(from.firstFailAt)
			s.startGrace(from, now)
		case from.usable(now):
			reason = ReasonFailback
		default:
			reason = ReasonHealth
		}
	}
	s.active = to
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
			LastError: e.lastErr, LastCheckLatency: e.lastLatency, LastCheck: e.lastCheck,
			GraceUntil: e.graceUntil, InFlight: e.live.inflight(),
		})
	}
	return out
}
