package geofailover

// Internal limits, for the external tests (package geofailover_test).
const (
	HedgeShare   = hedgeShare
	HedgeBurst   = hedgeBurst
	MaxEndpoints = maxEndpoints
)
