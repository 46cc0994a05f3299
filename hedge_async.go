package geofailover

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Hedged reads on Cluster endpoints and endpoints given as a ready Client
// (capabilities.inlineHedging false): both attempts run on copies of the
// command, each on a goroutine of its own, so the loser can be abandoned.

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
	delay := c.hedgeDelayFor(r.active)
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
			if next = c.resendTo(ctx, r, res.err, cmd); next == nil {
				return c.hedgeDone(ctx, cmd, res, false, firstErr)
			}
		case <-h.timer.C:
			if sent || !c.hedgeNow(ctx) {
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
