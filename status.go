package geofailover

import "time"

// Health is an endpoint's health as its checks see it.
type Health int

// The health states. An endpoint starts Unknown; its first check decides
// Healthy or Unhealthy; afterwards it takes UnhealthyAfter failed checks in
// a row to become Unhealthy and HealthyAfter passed checks to become Healthy.
const (
	HealthUnknown Health = iota
	Healthy
	Unhealthy
)

// String returns the health's name: "unknown", "healthy" or "unhealthy".
func (h Health) String() string {
	switch h {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	}
	return "unknown"
}

// BreakerState is the state of an endpoint's circuit breaker.
type BreakerState int

// The breaker states. An open breaker closes again when the endpoint is
// healthy and its grace period has ended.
const (
	BreakerClosed BreakerState = iota
	BreakerOpen
)

// String returns the state's name: "closed" or "open".
func (s BreakerState) String() string {
	if s == BreakerOpen {
		return "open"
	}
	return "closed"
}

// EndpointStatus is a snapshot of one endpoint, as Client.Status returns it.
type EndpointStatus struct {
	Name   string
	Weight float64
	// Active is true for the endpoint taking traffic.
	Active  bool
	Health  Health
	Breaker BreakerState
	// ConsecutivePasses and ConsecutiveFailures count the current run of
	// health-check results (one of them is zero).
	ConsecutivePasses   int
	ConsecutiveFailures int
	// LastError is the last error of a health check or a command (nil if the
	// last check passed and no command failed since).
	LastError error
	// HeldBack is why the last health check held the endpoint back (see
	// HoldBackError), or nil: traffic is not moved to it while another
	// endpoint can take it.
	HeldBack error
	// CheckLatency is the smoothed latency of its passed health checks
	// (moving average, gain 1/8); ties in weight go to a clearly faster
	// endpoint (Options.LatencySwitchAfter).
	CheckLatency time.Duration
	// LastCheckLatency is how long the last health check took.
	LastCheckLatency time.Duration
	// LastCheck is when the last health check finished (zero before the first).
	LastCheck time.Time
	// GraceUntil is when the endpoint's grace period ends (zero if it has none).
	GraceUntil time.Time
	// InFlight is the number of non-blocking commands outstanding on it.
	InFlight int64
	// Calls counts what became of the calls (commands, pipelines,
	// transactions) sent to it since it was added.
	Calls CallCounts
}

// CallCounts counts the calls sent to one endpoint, by outcome. Every
// count only grows. A call retried on the next endpoint is counted on
// both: here as RetriedUnsent or Replayed (and Failed), there by its own
// outcome.
type CallCounts struct {
	// Served: the endpoint answered (an error reply such as WRONGTYPE
	// included).
	Served uint64
	// Failed: failures that count against the endpoint (Options.
	// IsEndpointFailure).
	Failed uint64
	// CallerGaveUp: the caller's context ended first (not the endpoint's
	// doing).
	CallerGaveUp uint64
	// RetriedUnsent: failed without running here (never sent, or refused
	// unrun) and sent to the next endpoint.
	RetriedUnsent uint64
	// Replayed: lost their answer here and, being safe to replay, were
	// sent to the next endpoint.
	Replayed uint64
	// Hedged: reads sent here as hedges (Options.HedgeReads) because the
	// active endpoint had not answered within the hedge delay; HedgeWins:
	// those whose answer came first and was returned.
	Hedged, HedgeWins uint64
}
