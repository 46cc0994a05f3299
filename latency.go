package geofailover

import "time"

// Latency-aware ties. Endpoints of equal weight are told apart by the
// smoothed latency of their passed health checks: at a failover the
// clearly faster one is chosen, and while traffic is on one, it moves to
// another of the same weight that has been clearly faster for
// Options.LatencySwitchAfter without a break. "Clearly" is the hysteresis
// that keeps noise from causing a switch: faster by at least latencyMargin
// of the slower one's latency and by at least latencyMarginMin.

// latencyMargin and latencyMarginMin: an endpoint is clearly faster than
// another when its smoothed check latency is lower by at least 25 % of the
// other's and by at least 5 ms.
const (
	latencyMargin    = 0.25
	latencyMarginMin = 5 * time.Millisecond
)

// observeCheckRTT folds a passed check's latency into the endpoint's
// moving average (gain 1/8, as TCP's SRTT). The first passed check is left
// out: it carries the check connection's dial and handshake, which on a
// busy machine can make an equal endpoint look clearly slower at startup.
func (e *endpoint) observeCheckRTT(d time.Duration) {
	switch e.checkSamples++; {
	case e.checkSamples == 1:
		return
	case e.checkRTT == 0:
		e.checkRTT = max(d, 1)
		return
	}
	e.checkRTT += (d - e.checkRTT) / 8
}

// clearlyFaster reports whether a's checks are clearly faster than b's.
func clearlyFaster(a, b *endpoint) bool {
	if a.checkRTT == 0 || b.checkRTT == 0 {
		return false
	}
	gap := b.checkRTT - a.checkRTT
	return gap >= latencyMarginMin && float64(gap) >= latencyMargin*float64(b.checkRTT)
}

func (s *supervisor) latencyTies() bool { return !s.cfg.DisableLatencyTies }

// trackLatency keeps each endpoint's fasterSince: when it became clearly
// faster than the active endpoint of the same weight, or zero.
func (s *supervisor) trackLatency(now time.Time) {
	a := s.active
	for _, e := range s.eps {
		if a != nil && e != a && e.weight == a.weight && s.latencyTies() && clearlyFaster(e, a) {
			if e.fasterSince.IsZero() {
				e.fasterSince = now
			}
		} else {
			e.fasterSince = time.Time{}
		}
	}
}
