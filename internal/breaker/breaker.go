// Package breaker holds the circuit breaker's trip rule: given what an
// endpoint's sliding window and its run of consecutive failures show, should
// the breaker open, and why.
package breaker

import (
	"time"

	"github.com/geofailover/geofailover/internal/window"
)

// Cause says why a breaker opened.
type Cause int

// The causes, in the order Trip checks them.
const (
	CauseNone        Cause = iota
	CauseConsecutive       // a run of failed commands
	CauseFailures          // enough failures, and a high enough ratio, in the window
	CauseSlow              // enough slow calls, and a high enough ratio, in the window
	CauseStall             // commands outstanding and none completing
)

func (c Cause) String() string {
	switch c {
	case CauseConsecutive:
		return "consecutive failures"
	case CauseFailures:
		return "failure ratio"
	case CauseSlow:
		return "slow calls"
	case CauseStall:
		return "stalled"
	}
	return "none"
}

// Rule holds the trip thresholds. A zero threshold switches its test off.
type Rule struct {
	Consecutive  int64   // trip on this many failures in a row
	MinFailures  uint64  // trip on at least this many failures in the window...
	FailureRatio float64 // ...that are at least this share of its calls
	SlowMinCalls uint64  // trip on at least this many slow calls in the window...
	SlowRatio    float64 // ...that are at least this share of its calls
	Stall        time.Duration
}

// Trip returns why a breaker with these observations must open, or
// CauseNone. stalledFor is how long the endpoint has had commands
// outstanding without completing any.
func (r Rule) Trip(c window.Counts, consecutive int64, stalledFor time.Duration) Cause {
	calls := float64(c.Calls())
	switch {
	case r.Consecutive > 0 && consecutive >= r.Consecutive:
		return CauseConsecutive
	case r.MinFailures > 0 && c.Failures >= r.MinFailures && float64(c.Failures) >= r.FailureRatio*calls:
		return CauseFailures
	case r.SlowMinCalls > 0 && c.Slow >= r.SlowMinCalls && float64(c.Slow) >= r.SlowRatio*calls:
		return CauseSlow
	case r.Stall > 0 && stalledFor >= r.Stall:
		return CauseStall
	}
	return CauseNone
}
