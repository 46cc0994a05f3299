package breaker

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/geofailover/geofailover/internal/window"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTrip(t *testing.T) {
	rule := Rule{Consecutive: 5, MinFailures: 10, FailureRatio: 0.2, SlowMinCalls: 10, SlowRatio: 0.5, Stall: 500 * time.Millisecond}
	cases := []struct {
		name        string
		counts      window.Counts
		consecutive int64
		stalled     time.Duration
		want        Cause
	}{
		{"quiet", window.Counts{}, 0, 0, CauseNone},
		{"healthy traffic", window.Counts{Successes: 1000, Failures: 9}, 1, 0, CauseNone},
		{"four in a row", window.Counts{Failures: 4}, 4, 0, CauseNone},
		{"five in a row", window.Counts{Failures: 5}, 5, 0, CauseConsecutive},
		{"ten failures but low ratio", window.Counts{Successes: 1000, Failures: 10}, 0, 0, CauseNone},
		{"ten failures at 20%", window.Counts{Successes: 40, Failures: 10}, 0, 0, CauseFailures},
		{"slow ratio", window.Counts{Successes: 20, Slow: 10}, 0, 0, CauseSlow},
		{"few slow", window.Counts{Successes: 2, Slow: 2}, 0, 0, CauseNone},
		{"stalled", window.Counts{}, 0, 500 * time.Millisecond, CauseStall},
		{"nearly stalled", window.Counts{}, 0, 499 * time.Millisecond, CauseNone},
	}
	for _, tc := range cases {
		if got := rule.Trip(tc.counts, tc.consecutive, tc.stalled); got != tc.want {
			t.Errorf("%s: Trip = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A zero threshold switches its test off.
	if got := (Rule{}).Trip(window.Counts{Failures: 100}, 100, time.Hour); got != CauseNone {
		t.Errorf("zero rule tripped: %v", got)
	}
}
