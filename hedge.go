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
// the fallback; the first answer wins. This file holds what both designs
// share: the decisions (hedged: is this read hedged; hedgeNow: does its
// hedge go now), the budget, the delay and the hand-over of the answer.
// Two designs, by endpoint (capabilities.inlineHedging):
//
//   - processHedgedInline (hedge_inline.go), for endpoints we build from
//     URL, Options or FailoverOptions (a *redis.Client): the
//     first attempt runs on the caller's goroutine, on the caller's command,
//     as an unhedged read does; a pooled timer sends the hedge, on a copy,
//     from the timer's goroutine; if the hedge answers first, the first
//     attempt's connection is cut (hedgeconn.go) and the caller returns the
//     hedge's answer. A read costs no allocation more than an unhedged one
//     and no goroutine unless it is hedged.
//   - processHedged (hedge_async.go), for Cluster and Client endpoints, whose connections
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

// copyCmd returns a shallow copy of cmd (same arguments and context, its
// own result fields).
func copyCmd(cmd redis.Cmder) redis.Cmder {
	v := reflect.ValueOf(cmd).Elem()
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	return p.Interface().(redis.Cmder)
}

// answered reports an attempt that got an answer: success or an error
// reply, not the caller's context ending.
func answered(err error) bool {
	return failureOf(err) == failNone && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// hedged is the one decision whether a read is hedged, taken before it is
// sent: hedged reads are on, the route has a fallback, and the command is
// hedgeable.
func (c *Client) hedged(r *route, cmd redis.Cmder) bool {
	return c.cfg.HedgeReads && r.fallback != nil && r.fallback != r.active && hedgeable(cmd)
}

// processHedgedRead runs a hedged read by the design the active endpoint's
// capabilities allow: inline (hedge_inline.go) where its connections can be
// cut, else with a goroutine per attempt (hedge_async.go).
func (c *Client) processHedgedRead(ctx context.Context, r *route, cmd redis.Cmder) error {
	if r.active.caps.inlineHedging {
		return c.processHedgedInline(ctx, r, cmd)
	}
	return c.processHedged(ctx, r, cmd)
}

// hedgeNow is the one decision whether a hedged read whose delay has passed
// without an answer sends its hedge: the caller's deadline leaves time for
// it, and the budget has one (which it then spends).
func (c *Client) hedgeNow(ctx context.Context) bool {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < retryBudgetFloor {
		return false
	}
	return c.hedges.take()
}

// hedgeDelayFor is how long a read to e waits before it is hedged:
// Options.HedgeDelay, or else derived from e's read round trips.
func (c *Client) hedgeDelayFor(e *endpoint) time.Duration {
	if d := c.cfg.HedgeDelay; d > 0 {
		return d
	}
	return e.live.rtt.hedgeDelay()
}
