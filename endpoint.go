package geofailover

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/geofailover/geofailover/internal/window"
)

// endpoint is one member database. The fields up to "supervisor state" are
// set before the endpoint is published and never change; the live counters
// are written by the command path with atomics; the rest belongs to the
// supervisor goroutine alone.
type endpoint struct {
	name   string
	spec   Endpoint
	member atomic.Pointer[memberRef] // the client that takes the traffic; see client()
	owned  bool                      // we built client and must close it
	// blocking, if set, runs e's blocking commands on connections that a
	// switch away from e can interrupt (see blocking.go).
	blocking *blockingPool
	// scanTag marks the SCAN cursors this endpoint returns (see scan.go).
	scanTag uint8

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
	lastLatency  time.Duration
	lastCheck    time.Time

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

	consecutive atomic.Int64
	runStart    atomic.Int64 // UnixNano of the first failure of the current run
	lastErr     atomic.Pointer[errBox]
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

// buildMember returns the traffic client for spec, configured to fail fast
// (see knobs.failFast), and whether we own it.
func buildMember(spec Endpoint, dialTimeout time.Duration) (redis.UniversalClient, bool, error) {
	switch {
	case spec.Client != nil:
		return spec.Client, false, nil
	case spec.URL != "", spec.Options != nil:
		o, err := standaloneOptions(spec)
		if err != nil {
			return nil, false, err
		}
		standaloneKnobs(o).failFast(dialTimeout)
		return redis.NewClient(o), true, nil
	case spec.ClusterOptions != nil:
		o := *spec.ClusterOptions
		clusterKnobs(&o).failFast(dialTimeout)
		return redis.NewClusterClient(&o), true, nil
	default:
		o := *spec.FailoverOptions
		sentinelKnobs(&o).failFast(dialTimeout)
		return redis.NewFailoverClient(&o), true, nil
	}
}

// buildProbe returns a small client for health checks, with a fresh pool,
// so that a probe never sees a dial error go-redis cached in a traffic pool,
// and the time it may spend dialling: the endpoint's DialTimeout, or
// timeout when that is zero. Each command of a check is bounded by timeout
// on its own (read and write timeouts), so a check may take up to the dial
// time plus timeout when it must dial: an endpoint that dials slowly but
// within its DialTimeout still passes, and a hung one is still caught by
// timeout. For a caller's client it returns that client (owned=false) and
// no dial allowance.
func buildProbe(spec Endpoint, timeout time.Duration) (c redis.UniversalClient, owned bool, dial time.Duration) {
	switch {
	case spec.Client != nil:
		return spec.Client, false, 0
	case spec.URL != "", spec.Options != nil:
		o, _ := standaloneOptions(spec) // validated in New
		k := standaloneKnobs(o)
		k.probe(timeout)
		o.MaxIdleConns, o.MaxActiveConns = 0, 0
		o.ReadBufferSize, o.WriteBufferSize = 4096, 4096 // a check is a few bytes
		o.PipelinePoolSize = -1
		return redis.NewClient(o), true, o.DialTimeout
	case spec.ClusterOptions != nil:
		o := *spec.ClusterOptions
		clusterKnobs(&o).probe(timeout)
		return redis.NewClusterClient(&o), true, o.DialTimeout
	default:
		o := *spec.FailoverOptions
		sentinelKnobs(&o).probe(timeout)
		return redis.NewFailoverClient(&o), true, o.DialTimeout
	}
}

// standaloneOptions returns a copy of the options of an endpoint given by
// URL or Options.
func standaloneOptions(spec Endpoint) (*redis.Options, error) {
	if spec.URL != "" {
		o, err := redis.ParseURL(spec.URL)
		if err != nil {
			return nil, redactURLError(err, spec.URL)
		}
		return o, nil
	}
	o := *spec.Options
	return &o, nil
}

// knobs points at the fields that the clients we build set, in one of
// go-redis's three option structs, so that each setting is stated once
// (failFast, probe) for standalone, Cluster and Sentinel endpoints alike.
type knobs struct {
	maxRetries, dialerRetries, poolSize, minIdleConns *int
	contextTimeout                                    *bool
	dialTimeout, readTimeout, writeTimeout            *time.Duration
	clientName                                        *string
	maint                                             **maintnotifications.Config // nil: no such setting (Sentinel)
}

func standaloneKnobs(o *redis.Options) knobs {
	return knobs{&o.MaxRetries, &o.DialerRetries, &o.PoolSize, &o.MinIdleConns, &o.ContextTimeoutEnabled,
		&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ClientName, &o.MaintNotificationsConfig}
}

func clusterKnobs(o *redis.ClusterOptions) knobs {
	return knobs{&o.MaxRetries, &o.DialerRetries, &o.PoolSize, &o.MinIdleConns, &o.ContextTimeoutEnabled,
		&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ClientName, &o.MaintNotificationsConfig}
}

func sentinelKnobs(o *redis.FailoverOptions) knobs {
	return knobs{&o.MaxRetries, &o.DialerRetries, &o.PoolSize, &o.MinIdleConns, &o.ContextTimeoutEnabled,
		&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ClientName, nil}
}

// failFast sets what every client we build for traffic has, so that a dead
// endpoint costs one dial: no go-redis command retries, one dial attempt,
// socket deadlines that follow the caller's context, and dialTimeout when
// the options leave DialTimeout at zero. Maintenance notifications are off
// unless the options set MaintNotificationsConfig (see maintOff).
func (k knobs) failFast(dialTimeout time.Duration) {
	*k.maxRetries, *k.dialerRetries, *k.contextTimeout = -1, 1, true
	if *k.dialTimeout == 0 {
		*k.dialTimeout = dialTimeout
	}
	if k.maint != nil && *k.maint == nil {
		*k.maint = maintOff()
	}
}

// probe sets what a health-check client has: failFast's settings, a pool
// of two with no idle connections kept warm, every command bounded by
// timeout (a dial too, when the options give no positive DialTimeout), our
// own client name, and no maintenance notifications.
func (k knobs) probe(timeout time.Duration) {
	if *k.dialTimeout < 0 {
		*k.dialTimeout = 0
	}
	k.failFast(timeout)
	*k.poolSize, *k.minIdleConns = 2, 0
	*k.readTimeout, *k.writeTimeout = timeout, timeout
	*k.clientName = internalName(*k.clientName, "check")
	if k.maint != nil {
		*k.maint = maintOff()
	}
}

// maintOff is the maintenance-notifications setting of the members we
// build when the caller's options leave it unset. go-redis's default,
// "auto", tries a handshake on every new connection and, on a server
// without the feature (any open-source Redis), rewrites the client's
// options while a Conn or a Watch transaction reads the same options under
// another lock: a data race (go-redis v9.23.0). Failover between regions is
// this client's job, so the notifications add nothing to it; a caller who
// wants them (Redis Enterprise, Redis Cloud) sets them explicitly.
func maintOff() *maintnotifications.Config {
	return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// internalName is the CLIENT SETNAME of a connection the client opens for
// its own purposes (role "check": health checks; "blocking": the pool that
// runs blocking commands so a switch can interrupt them), so CLIENT LIST and
// CLIENT KILL by name tell it from the application's: the application's
// name with ":geofailover-<role>" appended, or "geofailover-<role>".
func internalName(app, role string) string {
	if app == "" {
		return "geofailover-" + role
	}
	return app + ":geofailover-" + role
}

// memberRef holds an endpoint's traffic client. Owned clients are replaced
// when the endpoint comes back from an outage (see supervisor.refresh).
type memberRef struct{ c redis.UniversalClient }

// client returns the client that takes e's traffic now.
func (e *endpoint) client() redis.UniversalClient { return e.member.Load().c }

// close closes the clients we built for e.
func (e *endpoint) close() error {
	var errs []error
	if e.owned {
		errs = append(errs, e.client().Close())
	}
	if e.blocking != nil {
		errs = append(errs, e.blocking.close())
	}
	return errors.Join(errs...)
}

// suspect asks for a health check of e now, because something that does not
// feed the breaker (a Pub/Sub connection) or the first failure of a run saw
// it fail. The checker honours it at most once per tenth of the check
// interval. It never blocks.
func (e *endpoint) suspect() {
	select {
	case e.probeNow <- struct{}{}:
	default:
	}
}
