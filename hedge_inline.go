package geofailover

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Hedged reads on endpoints whose connections we can cut (standalone and
// Sentinel endpoints we build: capabilities.inlineHedging): the first
// attempt runs on the caller's goroutine, on the caller's command; the
// hedge, if the delay passes, runs from the timer's goroutine on a copy;
// if it answers first, the first attempt's connection is cut
// (hedgeconn.go).

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
	if h.state != inlineArmed || monoNow()-h.started < int64(h.delay) || !h.c.hedgeNow(h.ctx) {
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
	h.delay = c.hedgeDelayFor(e)
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
	next := c.resendTo(ctx, r, err, cmd)
	if next == nil {
		return c.hedgeDone(ctx, cmd, first, false, err)
	}
	return c.attempt(ctx, next, cmd, true)
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
