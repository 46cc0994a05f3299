package geofailover

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/internal/cmdtable"
)

// Hedged reads (Options.HedgeReads). A read-only command that has had no
// answer from the active endpoint after the hedge delay is also sent to
// the fallback; the first answer wins. Two ways, by endpoint:
//
//   - processHedgedInline, for endpoints we build from URL, Options or
//     FailoverOptions (a *redis.Client, see connWatch.attach): the
//     first attempt runs on the caller's goroutine, on the caller's command,
//     as an unhedged read does; a pooled timer sends the hedge, on a copy,
//     from the timer's goroutine; if the hedge answers first, the first
//     attempt's connection is cut (hedgeconn.go) and the caller returns the
//     hedge's answer. A read costs no allocation more than an unhedged one
//     and no goroutine unless it is hedged.
//   - processHedged, for Cluster and Client endpoints, whose connections
//     we do not cut: both attempts run on copies, each on a
//     goroutine of its own, so the loser can be abandoned: it ends by
//     itself (its answer, its error, or the caller's deadline), its outcome
//     still counts against its endpoint, and its connection goes back to
//     its pool. The winner's copy is copied into the caller's command.

// hedgeShare is the most hedges sent, over time, per read that could be
// hedged: 5 %. hedgeBurst more may be sent at once (during a freeze of the
// active endpoint, every read needs one); the allowance refills at
// hedgeShare per read.
const (
	hedgeShare = 0.05
	hedgeBurst = 100
)

// minHedgeDelay is the least derived hedge delay (Options.HedgeDelay zero).
const minHedgeDelay = 5 * time.Millisecond

// hedgeBudget is a token bucket in thousandths of a hedge.
type hedgeBudget struct{ tokens atomic.Int64 }

const (
	hedgeCost    = 1000
	hedgeRefill  = int64(hedgeShare * hedgeCost)
	hedgeBucket  = hedgeBurst * hedgeCost
	maxHedgeWait = time.Second
)

func (b *hedgeBudget) init() { b.tokens.Store(hedgeBucket) }

// read credits one hedgeable read.
func (b *hedgeBudget) read() {
	if b.tokens.Load() < hedgeBucket {
		b.tokens.Add(hedgeRefill)
	}
}

// take spends one hedge, if the budget allows.
func (b *hedgeBudget) take() bool {
	if b.tokens.Add(-hedgeCost) >= 0 {
		return true
	}
	b.tokens.Add(hedgeCost)
	return false
}

// rtt is an endpoint's smoothed read round trip, as RFC 6298 smooths TCP's
// (gains 1/8 and 1/4), in nanoseconds. Updates from concurrent reads may
// overwrite each other: a lost sample does not matter.
type rtt struct{ srtt, rttvar atomic.Int64 }

func (r *rtt) observe(d time.Duration) {
	s, v := r.srtt.Load(), r.rttvar.Load()
	x := int64(d)
	if s == 0 {
		r.srtt.Store(x)
		r.rttvar.Store(x / 2)
		return
	}
	dev := s - x
	if dev < 0 {
		dev = -dev
	}
	r.rttvar.Store(v - v/4 + dev/4)
	r.srtt.Store(s - s/8 + x/8)
}

// hedgeDelay is SRTT + 4·RTTVAR, at least minHedgeDelay and at most 1 s.
func (r *rtt) hedgeDelay() time.Duration {
	d := time.Duration(r.srtt.Load() + 4*r.rttvar.Load())
	return min(max(d, minHedgeDelay), maxHedgeWait)
}

// hedgeWork counts the hedged reads under way and the goroutines they run
// (attempts on a goroutine of their own, the hedge timer's callback while
// it sends), so that Close can wait for them. Two atomic adds per hedged
// read; after closeAndWait, enter refuses.
type hedgeWork struct {
	state atomic.Int64 // count of work under way, plus hedgeClosed once closing
	idle  chan struct{}
	once  sync.Once
}

const hedgeClosed = 1 << 62

func (w *hedgeWork) init() { w.idle = make(chan struct{}) }

// enter counts one more piece of work; false once Close has begun.
func (w *hedgeWork) enter() bool {
	if w.state.Add(1)&hedgeClosed != 0 {
		w.leave()
		return false
	}
	return true
}

func (w *hedgeWork) leave() {
	if w.state.Add(-1) == hedgeClosed {
		w.once.Do(func() { close(w.idle) })
	}
}

// closeAndWait refuses new work and waits for the work under way.
func (w *hedgeWork) closeAndWait() {
	if w.state.Add(hedgeClosed) == hedgeClosed {
		w.once.Do(func() { close(w.idle) })
	}
	<-w.idle
}

// hedgeable reports whether cmd may be hedged: Redis flags it read-only
// and it cannot block (the replay table), and it is not a SCAN (its
// cursor belongs to one endpoint). Options.ReplayWrites does not widen it.
func hedgeable(cmd redis.Cmder) bool {
	if _, scan := cmd.(*redis.ScanCmd); scan {
		return false
	}
	f := commandFlags(cmd)
	return f&cmdtable.ReadOnly != 0 && f&cmdtable.Blocking == 0
}

type hedgeResult struct {
	e    *endpoint
	cmd  redis.Cmder
	err  error
	kind attemptKind
}

// attemptKind says which attempt of a hedged read a result is.
type attemptKind int

const (
	firstAttempt attemptKind = iota // to the active endpoint
	hedgeAttempt                    // to the fallback, after the hedge delay
	retryAttempt                    // to the next endpoint, after the first failed
)

// hedgeCall is the rendezvous of one hedged read: its attempts' results
// and its timer. It is pooled: the last of the caller and the attempts to
// be done with it puts it back.
type hedgeCall struct {
	results chan hedgeResult // capacity 2: an abandoned attempt never blocks
	timer   *time.Timer
	refs    atomic.Int32 // the caller and each attempt not yet delivered
}

var hedgeCalls = sync.Pool{New: func() any {
	h := &hedgeCall{results: make(chan hedgeResult, 2), timer: time.NewTimer(time.Hour)}
	h.timer.Stop()
	return h
}}

// release drops one reference; the last one empties the call and pools it.
func (h *hedgeCall) release() {
	if h.refs.Add(-1) != 0 {
		return
	}
	for len(h.results) > 0 {
		<-h.results // delivered after the caller returned
	}
	hedgeCalls.Put(h)
}

// processHedged sends cmd to r.active and, without an answer after the
// hedge delay, also to r.fallback (within the budget); if the first attempt
// fails before that, the second goes at once, as a retry. It returns the
// first answer (an error reply included), or the last failure.
func (c *Client) processHedged(ctx context.Context, r *route, cmd redis.Cmder) error {
	c.hedges.read()
	delay := c.cfg.HedgeDelay
	if delay == 0 {
		delay = r.active.live.rtt.hedgeDelay()
	}
	if !c.hedgeWork.enter() {
		cmd.SetErr(ErrClosed)
		return ErrClosed
	}
	h := hedgeCalls.Get().(*hedgeCall)
	h.refs.Store(2)
	go c.runAttempt(ctx, r.active, copyCmd(cmd), firstAttempt, h)
	h.timer.Reset(delay)
	defer func() {
		h.timer.Stop()
		h.release()
	}()
	pending, sent := 1, false
	var firstErr error
	for {
		var next *endpoint
		kind := retryAttempt
		select {
		case res := <-h.results:
			pending--
			final := failureOf(res.err) == failNone
			if final || pending == 0 && sent {
				if res.kind == firstAttempt && res.err != nil {
					firstErr = res.err
				}
				return c.hedgeDone(ctx, cmd, res, sent, firstErr)
			}
			if res.kind != firstAttempt {
				continue // the first attempt may still answer
			}
			firstErr = res.err
			if sent {
				continue
			}
			// The first attempt failed before the hedge: retry it now by
			// the replay rules (a read-only command may be replayed).
			if next = c.retryTarget(ctx, r, res.err); next == nil {
				return c.hedgeDone(ctx, cmd, res, false, firstErr)
			}
			r.active.live.countRetry(failureOf(res.err))
		case <-h.timer.C:
			if sent || !c.hedges.take() {
				continue
			}
			if d, ok := ctx.Deadline(); ok && time.Until(d) < retryBudgetFloor {
				continue
			}
			next, kind = r.fallback, hedgeAttempt
			next.live.hedged.Add(1)
		}
		if !c.hedgeWork.enter() {
			continue // closing: the first attempt's answer (ErrClosed) is near
		}
		sent = true
		pending++
		h.refs.Add(1)
		go c.runAttempt(ctx, next, copyCmd(cmd), kind, h)
	}
}

// answered reports an attempt that got an answer: success or an error
// reply, not the caller's context ending.
func answered(err error) bool {
	return failureOf(err) == failNone && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// runAttempt is one attempt of a hedged read, on its own goroutine. It
// records its outcome against e, as attempt does, but leaves the caller's
// Trace to processHedged (the attempt may outlive the call).
func (c *Client) runAttempt(ctx context.Context, e *endpoint, cmd redis.Cmder, kind attemptKind, h *hedgeCall) {
	defer c.hedgeWork.leave()
	if !e.owned {
		// Close does not close a client we were given: it cancels the
		// attempts waiting on it instead.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer context.AfterFunc(c.ctx, cancel)()
		defer cancel()
	}
	began := monoNow()
	start := c.begin(e, false)
	err := e.client().Process(ctx, cmd)
	c.settle(ctx, e, false, start, err, kind != firstAttempt)
	if err == nil && kind == firstAttempt {
		e.live.rtt.observe(time.Duration(monoNow() - began))
	}
	h.results <- hedgeResult{e: e, cmd: cmd, err: err, kind: kind}
	h.release()
}

// hedgeDone hands the winner's result to the caller's command (unless it
// is the caller's command), counts a hedge's win and fills the caller's
// Trace.
func (c *Client) hedgeDone(ctx context.Context, cmd redis.Cmder, res hedgeResult, sent bool, firstErr error) error {
	if res.cmd != cmd {
		reflect.ValueOf(cmd).Elem().Set(reflect.ValueOf(res.cmd).Elem())
	}
	if res.kind == hedgeAttempt {
		res.e.live.hedgeWins.Add(1)
	}
	if tracing.Load() {
		if t, _ := ctx.Value(traceKey{}).(*Trace); t != nil {
			t.Endpoint, t.Attempts, t.FirstErr = res.e.name, 1, firstErr
			if sent {
				t.Attempts = 2
			}
		}
	}
	return res.err
}

// copyOf returns a copy of cmd (copyCmd), in the spare left by the call's
// previous use when it is of the same type.
func (h *inlineCall) copyOf(cmd redis.Cmder) redis.Cmder {
	if sp := h.spare; sp != nil && reflect.TypeOf(sp) == reflect.TypeOf(cmd) {
		h.spare = nil
		reflect.ValueOf(sp).Elem().Set(reflect.ValueOf(cmd).Elem())
		return sp
	}
	return copyCmd(cmd)
}

// copyCmd returns a shallow copy of cmd (same arguments and context, its
// own result fields).
func copyCmd(cmd redis.Cmder) redis.Cmder {
	v := reflect.ValueOf(cmd).Elem()
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	return p.Interface().(redis.Cmder)
}

// inlineCall is one hedged read whose first attempt runs on the caller's
// goroutine (the endpoint's connections can be cut, see hedgeconn.go). Its
// timer fires the hedge on a goroutine of its own. Pooled.
type inlineCall struct {
	c     *Client
	timer *time.Timer
	done  chan hedgeResult // the hedge's result, if it was sent
	fired chan struct{}    // a fire of this call's timer has ended (see fire)
	refs  atomic.Int32

	mu      sync.Mutex
	state   inlineState
	ctx     context.Context
	r       *route
	clone   redis.Cmder // the hedge's copy of the command, made before the first attempt writes to it
	spare   redis.Cmder // the previous use's copy, reused when the next command has its type
	uses    uint        // counts uses, to sample round trips
	delay   time.Duration
	started int64 // monoNow when the first attempt began
}

type inlineState int

const (
	inlineArmed   inlineState = iota // waiting for the first answer or the delay
	inlineHedging                    // the hedge was sent
	inlineOver                       // the caller has its answer
)

var inlineCalls sync.Pool // of *inlineCall; see newInlineCall

func newInlineCall() *inlineCall {
	if h, ok := inlineCalls.Get().(*inlineCall); ok {
		return h
	}
	h := &inlineCall{done: make(chan hedgeResult, 1), fired: make(chan struct{}, 1)}
	h.timer = time.AfterFunc(time.Hour, h.fire)
	h.timer.Stop()
	return h
}

func (h *inlineCall) release() {
	if h.refs.Add(-1) != 0 {
		return
	}
	for len(h.done) > 0 {
		<-h.done
	}
	for len(h.fired) > 0 {
		<-h.fired // a hedging fire's: the caller did not wait for it
	}
	h.spare = h.clone // no one uses it any more; the next copyInto overwrites all of it
	h.ctx, h.r, h.clone, h.c = nil, nil, nil, nil
	inlineCalls.Put(h)
}

// fire runs on the timer's goroutine. It sends the hedge (sendHedge) and
// then signals fired, before its reference is released, so a caller whose
// Stop came too late can wait for it: no fire outlives its call unless it
// is sending a hedge, which Client.hedgeWork counts.
func (h *inlineCall) fire() {
	hedged := h.sendHedge()
	h.fired <- struct{}{}
	if hedged {
		h.release()
	}
}

// sendHedge sends the hedge if the call still waits for its first answer
// and the budget, the caller's deadline and Close allow, and cuts the first
// attempt if the hedge answers first while the caller still waits. It
// reports whether it sent it (it then holds a reference).
func (h *inlineCall) sendHedge() bool {
	h.mu.Lock()
	// No fire outlives its call (the caller waits for a late one), so the
	// call here is the one that armed the timer; the clock check only keeps
	// a hedge from ever going before its delay.
	if h.state != inlineArmed || monoNow()-h.started < int64(h.delay) || !h.c.hedges.take() {
		h.mu.Unlock()
		return false
	}
	if d, ok := h.ctx.Deadline(); ok && time.Until(d) < retryBudgetFloor {
		h.mu.Unlock()
		return false
	}
	work := &h.c.hedgeWork // h.c is cleared when the last reference is released
	if !work.enter() {
		h.mu.Unlock()
		return false // closing
	}
	defer work.leave()
	h.state = inlineHedging
	h.refs.Add(1)
	c, ctx, r, clone := h.c, h.ctx, h.r, h.clone
	from, to := h.started, h.started+int64(min(h.delay/2, time.Millisecond))
	h.mu.Unlock()

	f := r.fallback
	f.live.hedged.Add(1)
	start := c.begin(f, false)
	err := f.client().Process(ctx, clone)
	c.settle(ctx, f, false, start, err, true)

	h.mu.Lock()
	if h.state == inlineHedging && failureOf(err) == failNone {
		r.active.watch.cutLate(from, to) // the caller waits: cut its first attempt
	}
	h.mu.Unlock()
	h.done <- hedgeResult{e: f, cmd: clone, err: err, kind: hedgeAttempt}
	return true
}

// processHedgedInline is processHedged for an endpoint whose connections
// can be cut: no goroutine unless the hedge is sent.
func (c *Client) processHedgedInline(ctx context.Context, r *route, cmd redis.Cmder) error {
	if !c.hedgeWork.enter() {
		_, err := c.processOne(ctx, r, cmd) // closing: no hedge
		return err
	}
	defer c.hedgeWork.leave() // Close waits for the call, and so for its timer's fire
	c.hedges.read()
	e := r.active
	h := newInlineCall()
	h.refs.Store(1)
	h.mu.Lock()
	h.c, h.ctx, h.r, h.clone, h.state, h.started = c, ctx, r, h.copyOf(cmd), inlineArmed, monoNow()
	h.uses++
	h.delay = c.cfg.HedgeDelay
	if h.delay == 0 {
		h.delay = e.live.rtt.hedgeDelay()
	}
	h.mu.Unlock()
	h.timer.Reset(h.delay)

	start := c.begin(e, false)
	err := e.client().Process(ctx, cmd)
	stopped := h.timer.Stop()
	h.mu.Lock()
	hedging := h.state == inlineHedging
	h.state = inlineOver
	h.mu.Unlock()
	if !stopped && !hedging {
		<-h.fired // the timer fired: its fire finds the call over and returns
	}
	defer h.release()

	counted := err // a cut for another read's hedge counts neither way (record)
	if hedging && errors.Is(err, errCut) {
		counted = errCutTimeout // its own cut: it did not answer before its hedge
	}
	c.record(ctx, e, counted, start, false, false)
	e.live.completed.Add(1)
	if err == nil && h.uses%4 == 0 {
		e.live.rtt.observe(time.Duration(monoNow() - h.started)) // one read in four: a clock read saved
	}
	first := hedgeResult{e: e, cmd: cmd, err: err, kind: firstAttempt}
	if answered(err) {
		return c.hedgeDone(ctx, cmd, first, hedging, nil)
	}
	if hedging {
		// The first attempt failed, or ran out the caller's deadline: the
		// hedge's answer, if it has one, is what the caller wants.
		if res := <-h.done; answered(res.err) {
			return c.hedgeDone(ctx, cmd, res, true, err)
		}
		return c.hedgeDone(ctx, cmd, first, true, err)
	}
	if failureOf(err) == failNone {
		return c.hedgeDone(ctx, cmd, first, false, nil) // the caller gave up
	}
	// Failed before the delay: a read may be replayed (processOne's rules).
	next := c.retryTarget(ctx, r, err)
	if next == nil {
		return c.hedgeDone(ctx, cmd, first, false, err)
	}
	e.live.countRetry(failureOf(err))
	return c.attempt(ctx, next, cmd, true)
}
