package geofailover

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// route is the routing decision the supervisor publishes for the command
// path. It is immutable; the command path reads it with one atomic load.
type route struct {
	active   *endpoint // takes all traffic; nil when none can
	fallback *endpoint // where a command that never reached active goes; may be nil
	// err says why active is nil: a *NoHealthyEndpointError, or ErrClosed.
	// It is nil while the client is still making its initial selection.
	err error
	// avoid, in a route made by anticipate, is the active endpoint it
	// steered away from: a retry must not go there either.
	avoid *endpoint
	// changed is closed when a newer route replaces this one.
	changed chan struct{}
}

// retryBudgetFloor is the least time a caller's deadline must leave for a
// command to be sent a second time: a retry with less would only turn into
// a deadline error. (ctx.Err() lags the deadline, so the clock is checked.)
const retryBudgetFloor = time.Millisecond

// awaitRoute returns a route with an active endpoint, waiting while the
// client starts (or, with WaitWhenAllDown, while all endpoints are down),
// bounded by ctx.
func (c *Client) awaitRoute(ctx context.Context, r *route) (*route, error) {
	for r.active == nil {
		if r.err != nil && (!c.cfg.WaitWhenAllDown || errors.Is(r.err, ErrClosed)) {
			return nil, r.err
		}
		select {
		case <-r.changed:
			r = c.route.Load()
		case <-ctx.Done():
			if r.err != nil {
				return nil, r.err
			}
			return nil, ctx.Err()
		}
	}
	return r, nil
}

// retryTarget returns where a command that failed with err on r.active
// (unsent, or replayable) may go once more: the new active endpoint if the
// supervisor has already switched, else the fallback; with neither, r.active
// itself if its connection died under the command (connectionDied: most
// often one the server had closed while it sat in the pool) and it still
// has the traffic. It returns nil when there is nowhere to go or ctx leaves
// too little time.
func (c *Client) retryTarget(ctx context.Context, r *route, err error) *endpoint {
	if !hasRetryBudget(ctx) {
		return nil
	}
	cur := c.route.Load()
	if cur.active != nil && cur.active != r.active && cur.active != r.avoid {
		return cur.active
	}
	if r.fallback != nil && r.fallback != r.active {
		return r.fallback
	}
	if cur.active == r.active && r.avoid == nil && connectionDied(err) {
		return r.active
	}
	return nil
}

// resendable is the one rule for whether a call that failed with err may
// be sent again: it never reached the server (unsent), or it may have been
// applied but each of its commands is safe to run twice (replayable; a call
// with no commands listed, such as a Watch before fn ran, only if unsent).
// It returns the failure, or failNone when the call must not be resent.
func (c *Client) resendable(ctx context.Context, err error, cmds ...redis.Cmder) failure {
	f := pipelineFailure(cmds, err)
	if f != failAmbiguous {
		return f
	}
	if len(cmds) == 0 {
		return failNone
	}
	for _, cmd := range cmds {
		if !c.replayable(ctx, cmd) {
			return failNone
		}
	}
	return f
}

// resendTo is the one rule for retrying on the next endpoint, shared by
// single commands, pipelines, Watch and both designs of hedged reads: after
// the attempt on r.active failed with err, it returns where the call goes
// once more (retryTarget) if it may be resent (resendable), and counts the
// retry against r.active; else nil.
func (c *Client) resendTo(ctx context.Context, r *route, err error, cmds ...redis.Cmder) *endpoint {
	f := c.resendable(ctx, err, cmds...)
	if f == failNone {
		return nil
	}
	next := c.retryTarget(ctx, r, err)
	if next != nil {
		r.active.live.countRetry(f)
	}
	return next
}

// process is the command path: route cmd to the active endpoint; if it
// failed unsent, or may have been applied but is safe to replay, send it
// once more to the next one (docs/rules.md's replay rules).
func (c *Client) process(ctx context.Context, cmd redis.Cmder) error {
	r := c.route.Load()
	if r.active == nil {
		var err error
		if r, err = c.awaitRoute(ctx, r); err != nil {
			return err
		}
	}
	if sc, ok := cmd.(*redis.ScanCmd); ok {
		return c.processScan(ctx, r, sc)
	}
	if isBlocking(cmd) {
		return c.processBlocking(ctx, r, cmd)
	}
	r = c.anticipate(r)
	if c.hedged(r, cmd) {
		return c.processHedgedRead(ctx, r, cmd)
	}
	_, err := c.processOne(ctx, r, cmd)
	return err
}

// anticipate sends a command to the fallback when the active endpoint has
// just failed enough commands in a row to trip its breaker: the supervisor
// is about to switch, and a command sent in the meantime would meet the same
// failure (on a hung server, for its whole deadline). One atomic load.
func (c *Client) anticipate(r *route) *route {
	if n := c.cfg.rule.Consecutive; n > 0 && r.fallback != nil && r.active.live.consecutive.Load() >= n {
		return &route{active: r.fallback, avoid: r.active, changed: r.changed}
	}
	return r
}

// processOne sends cmd to r.active and, if the replay rules allow, once
// more to the next endpoint. It returns the endpoint of the last attempt.
func (c *Client) processOne(ctx context.Context, r *route, cmd redis.Cmder) (*endpoint, error) {
	err := c.attempt(ctx, r.active, cmd, false)
	if err == nil {
		return r.active, nil
	}
	if next := c.resendTo(ctx, r, err, cmd); next != nil {
		return next, c.attempt(ctx, next, cmd, true)
	}
	return r.active, err
}

// processBlocking sends a blocking command to the active endpoint, and
// never ahead of a switch to the standby (as anticipate does for other
// commands): a wait begun there could outlast the supervisor's decision.
// If it failed unsent, or may have been applied but is safe to replay, it
// is sent once more to the endpoint that has traffic once the supervisor
// has decided (awaitDecision): the one it switched to, or the same one if
// it kept it.
func (c *Client) processBlocking(ctx context.Context, r *route, cmd redis.Cmder) error {
	if c.anticipate(r) != r {
		// The active endpoint has failed enough to be left: wait for
		// the switch rather than begin a wait there.
		var err error
		if r, err = c.awaitDecision(ctx, r.active); err != nil {
			cmd.SetErr(err)
			return err
		}
	}
	err := c.attempt(ctx, r.active, cmd, false)
	if err == nil {
		return nil
	}
	if f := c.resendable(ctx, err, cmd); f != failNone && hasRetryBudget(ctx) {
		if next, aerr := c.awaitDecision(ctx, r.active); aerr == nil {
			r.active.live.countRetry(f)
			r = next
			err = c.attempt(ctx, r.active, cmd, true)
		}
	}
	if errors.Is(err, errInterrupted) {
		// Traffic left the endpoint before the command was sent, twice.
		err = &EndpointChangedError{Op: cmd.Name(), From: r.active.name, To: nameOf(c.route.Load().active), At: time.Now()}
		cmd.SetErr(err)
	}
	return err
}

// decisionWait bounds how long awaitDecision waits for the supervisor to
// settle an endpoint's fate: the time a health check may take, for the
// check a failure asks for at once, and a little more to decide.
func (c *Client) decisionWait() time.Duration {
	return c.cfg.HealthCheckTimeout + c.cfg.HealthCheckTimeout/4
}

// awaitDecision returns the route once the active endpoint is other than
// failed, waiting for that at most decisionWait (then the route as it is:
// the supervisor kept failed), bounded by ctx. It waits for an endpoint
// while none is active as awaitRoute does.
func (c *Client) awaitDecision(ctx context.Context, failed *endpoint) (*route, error) {
	r := c.route.Load()
	if r.active == failed {
		timer := time.NewTimer(c.decisionWait())
		defer timer.Stop()
	wait:
		for r.active == failed {
			select {
			case <-r.changed:
				r = c.route.Load()
			case <-timer.C:
				break wait
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	if r.active == nil {
		return c.awaitRoute(ctx, r)
	}
	return r, nil
}

// hasRetryBudget reports whether ctx leaves time to send a command again.
func hasRetryBudget(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return !ok || time.Until(d) >= retryBudgetFloor
}

// attempt sends cmd to e once and records the outcome against e.
func (c *Client) attempt(ctx context.Context, e *endpoint, cmd redis.Cmder, retry bool) error {
	blocking := isBlocking(cmd)
	if blocking && e.blocking != nil {
		return c.attemptBlocking(ctx, e, cmd)
	}
	start := c.begin(e, blocking)
	m := e.member.Load()
	err := m.c.Process(ctx, cmd)
	if err != nil {
		err = c.interruptedCmd(e, m, cmd)
	}
	c.end(ctx, e, blocking, start, err, retry)
	return err
}

// interrupted returns err, the failure of op on e's member client m, as
// what it is when we closed the client under it: Close
// (closedInFlightError), or a switch that replaced e's client while op was
// in flight (memberReplacedError: a cluster client reports its closed node
// as redis.ErrClosed, "never sent", though op may have reached the
// server). m nil: the client is not e's member (the blocking pool's).
func (c *Client) interrupted(e *endpoint, m *memberRef, op string, err error) error {
	switch {
	case c.closing():
		if errors.As(err, new(*closedInFlightError)) {
			return err
		}
		return &closedInFlightError{op: op, cause: err}
	case m != nil && errors.Is(err, redis.ErrClosed) && e.member.Load() != m:
		return &memberReplacedError{op: op, cause: err}
	}
	return err
}

// interruptedCmd applies interrupted to cmd's own error.
func (c *Client) interruptedCmd(e *endpoint, m *memberRef, cmd redis.Cmder) error {
	err := cmd.Err()
	if err == nil {
		return nil
	}
	if told := c.interrupted(e, m, cmd.Name(), err); told != err {
		cmd.SetErr(told)
		return told
	}
	return err
}

// closing reports whether Close has begun.
func (c *Client) closing() bool { return c.ctx != nil && c.ctx.Err() != nil }

// begin counts a call to e as in flight (blocking calls are not: they may
// wait legitimately) and returns its start time when slow calls are
// tracked.
func (c *Client) begin(e *endpoint, blocking bool) (start time.Time) {
	if blocking {
		return start
	}
	e.live.started.Add(1)
	if c.cfg.SlowCallThreshold > 0 {
		start = time.Now()
	}
	return start
}

// end closes what begin opened and records the outcome against e (and in
// the caller's Trace, if any).
func (c *Client) end(ctx context.Context, e *endpoint, blocking bool, start time.Time, err error, retry bool) {
	c.settle(ctx, e, blocking, start, err, retry)
	if tracing.Load() {
		traceAttempt(ctx, e, err)
	}
}

// settle is end without the Trace, for attempts that may outlive their
// call (hedged reads fill the Trace themselves).
func (c *Client) settle(ctx context.Context, e *endpoint, blocking bool, start time.Time, err error, retry bool) {
	c.record(ctx, e, err, start, retry, blocking)
	if !blocking {
		e.live.completed.Add(1) // after the outcome's own counter (see supervisor.drain)
	}
}

// processPipeline routes a whole pipeline (tx: a MULTI/EXEC transaction) to
// one endpoint. If it failed unsent, or may have been applied but every
// command in it is safe to replay, it is sent once more, whole, to the next
// one; otherwise each command keeps its own result or error.
func (c *Client) processPipeline(ctx context.Context, cmds []redis.Cmder, tx bool) error {
	r := c.route.Load()
	if r.active == nil {
		var err error
		if r, err = c.awaitRoute(ctx, r); err != nil {
			setCmdsErr(cmds, err)
			return err
		}
	}
	err := c.attemptPipeline(ctx, r.active, cmds, tx, false)
	if err == nil {
		return nil
	}
	if next := c.resendTo(ctx, r, err, cmds...); next != nil {
		return c.attemptPipeline(ctx, next, cmds, tx, true)
	}
	return err
}

func (c *Client) attemptPipeline(ctx context.Context, e *endpoint, cmds []redis.Cmder, tx, retry bool) error {
	m := e.member.Load()
	var p redis.Pipeliner
	if tx {
		p = m.c.TxPipeline()
	} else {
		p = m.c.Pipeline()
	}
	blocking := false
	for _, cmd := range cmds {
		blocking = blocking || isBlocking(cmd)
	}
	_ = p.BatchProcess(ctx, cmds...)
	start := c.begin(e, blocking)
	_, err := p.Exec(ctx)
	if err != nil {
		for _, cmd := range cmds {
			c.interruptedCmd(e, m, cmd)
		}
		err = c.interrupted(e, m, "pipeline", err)
	}
	c.end(ctx, e, blocking, start, err, retry)
	return err
}

// record counts one outcome against e. The supervisor folds the counters
// into e's window; a failure wakes it at once.
//
// For a non-blocking call a success is implied (completed minus the rest),
// so the success path adds nothing here; the caller counts the completion.
func (c *Client) record(ctx context.Context, e *endpoint, err error, start time.Time, retry, blocking bool) {
	s := &e.live
	if errors.Is(err, errCut) || errors.As(err, new(*memberReplacedError)) {
		// Cut because another read's hedge answered first (hedgeconn.go),
		// or its client closed by us at a switch: says nothing about e.
		// (A read's own cut is counted by processHedgedInline as
		// errCutTimeout.)
		if !blocking {
			s.neutralNB.Add(1)
		}
		return
	}
	if err == nil || callerGaveUp(ctx, err) || !c.cfg.IsEndpointFailure(err) {
		if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			if !blocking {
				s.neutralNB.Add(1)
			}
			return // the caller gave up: says nothing about e
		}
		if blocking {
			s.blockingOK.Add(1)
		}
		if s.consecutive.Load() != 0 {
			s.consecutive.Store(0)
		}
		if !start.IsZero() && time.Since(start) > c.cfg.SlowCallThreshold {
			s.slow.Add(1)
			c.wakeSupervisor()
		}
		return
	}
	if retry && isTimeout(err) {
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			// The caller's deadline ran out during a retry: the time was
			// spent on the endpoint that failed first, not on e.
			if !blocking {
				s.neutralNB.Add(1)
			}
			return
		}
	}
	now := time.Now()
	if blocking {
		s.failedB.Add(1)
	} else {
		s.failedNB.Add(1)
	}
	if s.consecutive.Add(1) == 1 {
		s.runStart.Store(now.UnixNano())
		e.suspect()
	}
	s.lastErr.Store(&errBox{err})
	c.wakeSupervisor()
}

func (c *Client) wakeSupervisor() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func setCmdsErr(cmds []redis.Cmder, err error) {
	for _, cmd := range cmds {
		cmd.SetErr(err)
	}
}

// routingHook is installed on the front clients whose command methods the
// Client exposes. It never calls next: it hands every command, through the
// hooks the user added with Client.AddHook, to the routing code above.
type routingHook struct {
	c  *Client
	tx bool // installed on the front client that runs transactions
}

func (h routingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h routingHook) ProcessHook(redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		return h.c.hooks.Load().process(ctx, cmd)
	}
}

func (h routingHook) ProcessPipelineHook(redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	if h.tx {
		return func(ctx context.Context, cmds []redis.Cmder) error {
			chain := h.c.hooks.Load()
			if len(chain.user) == 0 {
				return h.c.processPipeline(ctx, cmds, true)
			}
			return chain.txPipeline(ctx, wrapMultiExec(ctx, cmds))
		}
	}
	return func(ctx context.Context, cmds []redis.Cmder) error {
		return h.c.hooks.Load().pipeline(ctx, cmds)
	}
}

// hookChain is the user's hooks wrapped around the routing functions,
// rebuilt copy-on-write by AddHook.
type hookChain struct {
	user       []redis.Hook
	process    redis.ProcessHook
	pipeline   redis.ProcessPipelineHook
	txPipeline redis.ProcessPipelineHook
}

// newHookChain wraps the routing functions in hooks, the first hook
// outermost, as go-redis orders them.
func (c *Client) newHookChain(hooks []redis.Hook) *hookChain {
	h := &hookChain{
		user:       hooks,
		process:    c.process,
		pipeline:   func(ctx context.Context, cmds []redis.Cmder) error { return c.processPipeline(ctx, cmds, false) },
		txPipeline: func(ctx context.Context, cmds []redis.Cmder) error { return c.processTxWrapped(ctx, cmds) },
	}
	for i := len(hooks) - 1; i >= 0; i-- {
		if p := hooks[i].ProcessHook(h.process); p != nil {
			h.process = p
		}
		if p := hooks[i].ProcessPipelineHook(h.pipeline); p != nil {
			h.pipeline = p
		}
		if p := hooks[i].ProcessPipelineHook(h.txPipeline); p != nil {
			h.txPipeline = p
		}
	}
	return h
}

// wrapMultiExec returns cmds between a MULTI and an EXEC, as go-redis hands
// a transaction to its hooks: the app's hooks see what they would see on a
// plain client.
func wrapMultiExec(ctx context.Context, cmds []redis.Cmder) []redis.Cmder {
	wrapped := make([]redis.Cmder, 0, len(cmds)+2)
	wrapped = append(wrapped, redis.NewStatusCmd(ctx, "multi"))
	wrapped = append(wrapped, cmds...)
	return append(wrapped, redis.NewSliceCmd(ctx, "exec"))
}

// processTxWrapped runs a transaction that the app's hooks saw wrapped in
// MULTI and EXEC (wrapMultiExec): the commands between them go to the
// endpoint as one transaction, and MULTI and EXEC get the outcome a plain
// client gives them.
func (c *Client) processTxWrapped(ctx context.Context, cmds []redis.Cmder) error {
	n := len(cmds)
	if n < 2 || cmds[0].Name() != "multi" || cmds[n-1].Name() != "exec" {
		return c.processPipeline(ctx, cmds, true) // a hook rewrote it
	}
	err := c.processPipeline(ctx, cmds[1:n-1], true)
	if multi, ok := cmds[0].(*redis.StatusCmd); ok && err == nil {
		multi.SetVal("OK")
	}
	if err != nil {
		cmds[0].SetErr(err)
		cmds[n-1].SetErr(err)
	}
	return err
}
