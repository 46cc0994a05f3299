package geofailover

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/internal/window"
)

// capabilities is what the client can do for an endpoint beyond routing
// its commands, decided once, by the kind of endpoint, when it is added.
// It is the one place for these rules; the table in docs/rules.md "What each kind
// of endpoint can do" is this one:
//
//	endpoint given as             interruptibleBlocking  inlineHedging  conn
//	URL or Options (standalone)   yes                    yes            yes
//	FailoverOptions (Sentinel)    yes                    yes            yes
//	ClusterOptions                yes                    no             no
//	Client (a client of yours)    no                     no             if a *redis.Client
type capabilities struct {
	// interruptibleBlocking: its blocking commands run on a client of
	// their own that a switch away from it closes (blocking.go). Only a
	// client we built can be closed without closing yours.
	interruptibleBlocking bool
	// inlineHedging: a hedged read's first attempt runs on the caller's
	// goroutine, and is cut when the hedge answers first (hedgeconn.go):
	// it needs connections we dialled and can watch, and not a cluster
	// client's (go-redis's cluster client dials again within the call when
	// a connection is cut, so the read would not return). Else a hedged
	// read runs its attempts on goroutines of their own (hedge_async.go).
	inlineHedging bool
	// conn: Conn can pin one of its connections (its client is a
	// *redis.Client; a cluster client has no single connection to give).
	conn bool
}

// capabilitiesOf is the table above, for a member client (owned: we built
// it).
func capabilitiesOf(member redis.UniversalClient, owned bool) capabilities {
	_, single := member.(*redis.Client)
	return capabilities{interruptibleBlocking: owned, inlineHedging: owned && single, conn: single}
}

// endpoint is one member database. The fields up to "supervisor state" are
// set before the endpoint is published and never change; the live counters
// are written by the command path with atomics; the rest belongs to the
// supervisor goroutine alone.
type endpoint struct {
	name   string
	spec   Endpoint
	member atomic.Pointer[memberRef] // the client that takes the traffic; see client()
	owned  bool                      // we built client and must close it
	caps   capabilities              // what its kind lets the client do for it
	// blocking, if set (caps.interruptibleBlocking), runs e's blocking
	// commands on connections that a switch away from e can interrupt (see
	// blocking.go).
	blocking *blockingPool
	// watch, with HedgeReads where caps.inlineHedging, holds its traffic
	// connections so that a read whose hedge answered first can be cut
	// (hedgeconn.go).
	watch *connWatch
	// scanTag marks the SCAN cursors this endpoint returns (see scan.go).
	scanTag uint8
	// addr is the server's address for messages (a standalone endpoint's
	// host:port; else the first seed address, or the endpoint's name).
	addr string

	live liveStats

	// probeNow asks e's health checker for a check now (see suspect).
	probeNow chan struct{}

	// epoch counts breaker openings; a health check started in an older
	// epoch is discarded (it cannot settle the new episode).
	epoch atomic.Uint64

	// supervisor state
	seen   drained // totals already folded into window
	weight float64
	health Health
	passes int // consecutive passed checks
	fails  int // consecutive failed checks
	// lastPassed: the latest health check passed, and none has failed nor
	// has the breaker opened since (see eligible).
	lastPassed bool
	// passingSince is when the current run of passed checks began (zero
	// while lastPassed is false).
	passingSince time.Time
	healthySince time.Time
	firstFailAt  time.Time // first failed check of the current run
	lastErr      error
	// downHard: the latest failure seen here (a check's or a command's)
	// proves the endpoint cannot serve now, rather than that it is slow:
	// anything but a timeout (see provenDown). A passed check clears it.
	downHard bool
	// heldBack is why the latest health check held the endpoint back (a
	// *HoldBackError's reason), or nil.
	heldBack    error
	lastLatency time.Duration
	// checkRTT smooths the latency of passed checks (see latency.go);
	// fasterSince is when the endpoint became clearly faster than the
	// active one of equal weight (zero when it is not).
	checkRTT     time.Duration
	checkSamples int // passed checks seen (the first is not averaged)
	fasterSince  time.Time
	lastCheck    time.Time
	// cold: the endpoint's traffic client is new and has not been warmed
	// up; warming: its warm-up is under way. Failback to it waits for both
	// to clear (see supervisor.warm).
	cold, warming bool

	breaker     BreakerState
	window      *window.Window
	openedAt    time.Time
	stallSince  time.Time // last time the endpoint was seen making progress: a completion, or the start of a check that passed
	graceUntil  time.Time
	graceLevel  int
	restoredAt  time.Time
	removed     bool
	stopChecker context.CancelFunc
}

// liveStats are the counters the command path updates. They only grow
// (except consecutive); the supervisor derives what happened since its last
// look from the totals (see supervisor.drain). A successful non-blocking
// call costs two atomic adds: started and completed.
type liveStats struct {
	started    atomic.Uint64 // non-blocking calls begun
	completed  atomic.Uint64 // non-blocking calls ended, whatever the outcome
	failedNB   atomic.Uint64 // non-blocking calls that failed (counted before completed)
	neutralNB  atomic.Uint64 // non-blocking outcomes that count neither way (counted before completed)
	blockingOK atomic.Uint64 // blocking calls that succeeded
	failedB    atomic.Uint64 // blocking calls that failed
	slow       atomic.Uint64
	// Calls sent on to the next endpoint after failing here (the retry
	// path only): never run, or replayed.
	retriedUnsent, replayed atomic.Uint64
	// Hedged reads sent here (Options.HedgeReads), and those of them
	// whose answer came first.
	hedged, hedgeWins atomic.Uint64
	// rtt smooths the round trip of reads here, for the hedge delay.
	rtt rtt

	consecutive atomic.Int64
	runStart    atomic.Int64 // UnixNano of the first failure of the current run
	lastErr     atomic.Pointer[errBox]
}

// countRetry counts a call that failed here (f) and is sent on.
func (s *liveStats) countRetry(f failure) {
	if f == failUnsent {
		s.retriedUnsent.Add(1)
	} else {
		s.replayed.Add(1)
	}
}

// calls returns the counts by outcome.
func (s *liveStats) calls() CallCounts {
	failedNB, neutral := s.failedNB.Load(), s.neutralNB.Load()
	completed := s.completed.Load() // after the rest: they are counted first
	served := uint64(0)
	if completed > failedNB+neutral {
		served = completed - failedNB - neutral
	}
	return CallCounts{
		Served: served + s.blockingOK.Load(), Failed: failedNB + s.failedB.Load(), CallerGaveUp: neutral,
		RetriedUnsent: s.retriedUnsent.Load(), Replayed: s.replayed.Load(),
		Hedged: s.hedged.Load(), HedgeWins: s.hedgeWins.Load(),
	}
}

// inflight is the number of non-blocking calls outstanding.
func (s *liveStats) inflight() int64 {
	done := s.completed.Load()
	return int64(s.started.Load() - done)
}

// drained is what the supervisor has already folded into the window.
type drained struct {
	successes, failures, slow uint64
}

type errBox struct{ err error }

// usable reports whether the endpoint may keep traffic under the normal
// rules: healthy, breaker closed and out of its grace period.
func (e *endpoint) usable(now time.Time) bool {
	return !e.removed && e.health == Healthy && e.breaker == BreakerClosed && !now.Before(e.graceUntil)
}

// eligible reports whether traffic may be moved to the endpoint: it is
// usable and a health check has passed since its last failure (a failed
// check or the breaker opening). It is the one rule for a switch target.
func (e *endpoint) eligible(now time.Time) bool {
	return e.lastPassed && e.usable(now)
}

// stableSince is when the endpoint's current good stretch began: it became
// healthy and its checks have passed since then.
func (e *endpoint) stableSince() time.Time {
	if e.passingSince.After(e.healthySince) {
		return e.passingSince
	}
	return e.healthySince
}
