package geofailover

import (
	"context"
	"errors"
	"sync/atomic"
)

// Trace tells which endpoint served a call. Pass a context from WithTrace to
// any command, pipeline or transaction of a Client; when the call returns,
// the Trace says where its attempts went. A Trace belongs to one call at a
// time.
type Trace struct {
	// Endpoint is the endpoint of the last attempt ("" if none was made,
	// e.g. when every endpoint was down).
	Endpoint string
	// Attempts is how many times the call was sent: 1, or 2 after a retry
	// on the next endpoint.
	Attempts int
	// FirstErr is the error of the first attempt (nil if it succeeded).
	FirstErr error
}

// WithTrace returns a context that makes the Client fill in t for each call
// made with it. The command path looks for a Trace only once WithTrace has
// been called in the process, so it costs nothing until then.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	tracing.Store(true)
	return context.WithValue(ctx, traceKey{}, t)
}

type traceKey struct{}

// tracing is set once any Trace exists, so that the command path only pays
// for the context lookup in processes that use tracing.
var tracing atomic.Bool

// traceAttempt records an attempt on e in ctx's Trace, if any.
func traceAttempt(ctx context.Context, e *endpoint, err error) {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	if t == nil {
		return
	}
	t.Attempts++
	t.Endpoint = e.name
	if t.Attempts == 1 {
		t.FirstErr = err
	}
}

// NotApplied reports whether err proves that the command it came from was
// not executed: the Client sent it nowhere (ErrNoHealthyEndpoint,
// ErrClosed before it was sent, an EndpointChangedError for EXEC or SCAN), it never reached a
// server (refused dial, closed or exhausted pool), or the server refused it
// without running it (LOADING, READONLY, ...). A failed write for which it
// is false may or may not have been applied (its answer was lost to a
// timeout, EOF or reset, or a blocking command was interrupted).
func NotApplied(err error) bool {
	var ece *EndpointChangedError
	var cif *closedInFlightError
	switch {
	case err == nil, errors.As(err, &cif):
		return false
	case errors.Is(err, ErrNoHealthyEndpoint), errors.Is(err, ErrClosed):
		return true
	case errors.As(err, &ece):
		return !ece.sent
	}
	return failureOf(err) == failUnsent
}
