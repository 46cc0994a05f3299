package geofailover

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/geofailover/geofailover/internal/rawcmd"
	"github.com/geofailover/geofailover/internal/window"
)

// An endpoint's life, from birth to close: it is built (add, with its
// traffic client from buildMember, configured by knobs.failFast), given a
// fresh traffic client when it comes back from an outage (refresh) or when
// traffic leaves it because it failed (abandon), its blocking commands are
// interrupted when traffic leaves it (interruptBlocking, blocking.go), its
// replaced clients are closed once their commands are done (closeRetired),
// and it is removed (remove) or closed with the client (closeAll). All of
// these run on the supervisor goroutine, or before it starts or after it
// has exited.

// maxScanTag is the highest SCAN cursor tag: tags stay within 1-127, so a
// tagged cursor (tag in the top byte) is below 2^63, as clients that read
// cursors as signed 64-bit integers need.
const maxScanTag = 127

// freeScanTag returns a SCAN cursor tag (1-maxScanTag) no current endpoint
// uses, preferring one no endpoint has used recently. (maxEndpoints is
// below maxScanTag, so there is always one.)
func (s *supervisor) freeScanTag() uint8 {
	for {
		s.lastTag++
		if s.lastTag > maxScanTag {
			s.lastTag = 1
		}
		inUse := false
		for _, e := range s.eps {
			inUse = inUse || (!e.removed && e.scanTag == s.lastTag)
		}
		if !inUse {
			return s.lastTag
		}
	}
}

// add builds the endpoint for spec, starts its health checker and appends
// it. It runs before the supervisor starts, or on the supervisor goroutine.
func (s *supervisor) add(spec Endpoint) (*endpoint, error) {
	names := make([]string, len(s.eps))
	for i, e := range s.eps {
		names[i] = e.name
	}
	if err := admit(names, spec.Name); err != nil {
		return nil, fmt.Errorf("geofailover: %w", err)
	}
	member, owned, err := buildMember(spec, s.cfg.HealthCheckTimeout)
	if err != nil {
		return nil, fmt.Errorf("geofailover: endpoint %q: %w", spec.Name, err)
	}
	e := &endpoint{
		name: spec.Name, spec: spec, owned: owned, caps: capabilitiesOf(member, owned),
		scanTag:  s.freeScanTag(),
		addr:     addrOf(spec),
		probeNow: make(chan struct{}, 1),
		weight:   spec.Weight,
		window:   window.New(s.cfg.bucketCount, s.cfg.BreakerBucket),
	}
	if e.caps.inlineHedging && s.cfg.HedgeReads {
		e.watch = newConnWatch()
		e.watch.attach(member)
	}
	if owned {
		s.announce(spec.Name, member)
	}
	e.member.Store(&memberRef{member})
	s.c.scanTags.Store(e.scanTag, e.name)
	if e.caps.interruptibleBlocking {
		var onNew func(redis.UniversalClient)
		if s.cfg.OnNewClient != nil {
			onNew = func(c redis.UniversalClient) { s.announce(spec.Name, c) }
		}
		e.blocking = newBlockingPool(func() redis.UniversalClient {
			return buildBlocking(spec, s.cfg.HealthCheckTimeout)
		}, onNew)
	}
	ctx, cancel := context.WithCancel(s.c.ctx)
	e.stopChecker = cancel
	s.c.wg.Add(1)
	go s.c.runChecker(ctx, e)
	s.eps = append(s.eps, e)
	return e, nil
}

// closeAll stops every checker and closes what we built. It runs after the
// supervisor has exited (or before it started).
func (s *supervisor) closeAll() error {
	var errs []error
	for _, e := range s.eps {
		e.stopChecker()
	}
	s.c.wg.Wait()
	for _, e := range s.eps {
		errs = append(errs, e.close())
	}
	errs = append(errs, s.closeRetired(time.Time{}))
	return errors.Join(errs...)
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
		return withRawErrors(redis.NewClient(o)), true, nil
	case spec.ClusterOptions != nil:
		o := *spec.ClusterOptions
		clusterKnobs(&o).failFast(dialTimeout)
		return withRawErrors(redis.NewClusterClient(&o)), true, nil
	default:
		o := *spec.FailoverOptions
		sentinelKnobs(&o).failFast(dialTimeout)
		return withRawErrors(redis.NewFailoverClient(&o)), true, nil
	}
}

// buildBlocking returns a client for spec's blocking commands (an
// endpoint we build): as its traffic client (buildMember), with no idle
// connections kept and our own client name (role "blocking").
func buildBlocking(spec Endpoint, dialTimeout time.Duration) redis.UniversalClient {
	blocking := func(k knobs) {
		k.failFast(dialTimeout)
		*k.minIdleConns = 0
		*k.clientName = internalName(*k.clientName, "blocking")
	}
	switch {
	case spec.ClusterOptions != nil:
		o := *spec.ClusterOptions
		blocking(clusterKnobs(&o))
		return withRawErrors(redis.NewClusterClient(&o))
	case spec.FailoverOptions != nil:
		o := *spec.FailoverOptions
		blocking(sentinelKnobs(&o))
		return withRawErrors(redis.NewFailoverClient(&o))
	}
	o, _ := standaloneOptions(spec) // parsed by buildMember already
	blocking(standaloneKnobs(o))
	return withRawErrors(redis.NewClient(o))
}

// withRawErrors returns c with the hook that makes an error reply to the
// proxy's raw commands an error (package internal/rawcmd), so that they are
// classified, and redirected by a cluster client, as typed commands are.
func withRawErrors(c redis.UniversalClient) redis.UniversalClient {
	rawcmd.Install(c)
	return c
}

// addrOf is an endpoint's address for messages: a standalone server's
// host:port, a cluster's or Sentinel group's first seed address, else the
// endpoint's name.
func addrOf(spec Endpoint) string {
	switch {
	case spec.URL != "" || spec.Options != nil:
		if o, err := standaloneOptions(spec); err == nil {
			return o.Addr
		}
	case spec.ClusterOptions != nil && len(spec.ClusterOptions.Addrs) > 0:
		return spec.ClusterOptions.Addrs[0]
	case spec.FailoverOptions != nil && len(spec.FailoverOptions.SentinelAddrs) > 0:
		return spec.FailoverOptions.SentinelAddrs[0]
	}
	return spec.Name
}

// standaloneOptions returns a copy of the options of an endpoint given by
// URL or Options.
func standaloneOptions(spec Endpoint) (*redis.Options, error) {
	if spec.URL != "" {
		o, err := redis.ParseURL(spec.URL)
		if err != nil {
			return nil, redactURLError(err, spec.URL)
		}
		if spec.TLSConfig != nil && o.TLSConfig != nil {
			name := o.TLSConfig.ServerName
			o.TLSConfig = spec.TLSConfig.Clone()
			if o.TLSConfig.ServerName == "" {
				o.TLSConfig.ServerName = name
			}
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
	minBackoff, maxBackoff                            *time.Duration
	clientName                                        *string
	maint                                             **maintnotifications.Config // nil: no such setting (Sentinel)
}

func standaloneKnobs(o *redis.Options) knobs {
	return knobs{&o.MaxRetries, &o.DialerRetries, &o.PoolSize, &o.MinIdleConns, &o.ContextTimeoutEnabled,
		&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MinRetryBackoff, &o.MaxRetryBackoff, &o.ClientName, &o.MaintNotificationsConfig}
}

func clusterKnobs(o *redis.ClusterOptions) knobs {
	return knobs{&o.MaxRetries, &o.DialerRetries, &o.PoolSize, &o.MinIdleConns, &o.ContextTimeoutEnabled,
		&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MinRetryBackoff, &o.MaxRetryBackoff, &o.ClientName, &o.MaintNotificationsConfig}
}

func sentinelKnobs(o *redis.FailoverOptions) knobs {
	return knobs{&o.MaxRetries, &o.DialerRetries, &o.PoolSize, &o.MinIdleConns, &o.ContextTimeoutEnabled,
		&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MinRetryBackoff, &o.MaxRetryBackoff, &o.ClientName, nil}
}

// failFast sets what every client we build for traffic has, so that a dead
// endpoint costs one dial: no go-redis command retries, one dial attempt,
// no backoff sleep between go-redis's own attempts, socket deadlines that
// follow the caller's context, and dialTimeout when the options leave
// DialTimeout at zero. (A cluster client still follows MOVED and ASK, and
// retries a failed node up to MaxRedirects times, which resharding needs:
// without the backoff, a dead master's dials fail within microseconds, so
// its commands fail fast as never sent.) Maintenance notifications are off
// unless the options set MaintNotificationsConfig (see maintOff).
func (k knobs) failFast(dialTimeout time.Duration) {
	*k.maxRetries, *k.dialerRetries, *k.contextTimeout = -1, 1, true
	*k.minBackoff, *k.maxBackoff = -1, -1
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

// retireDelay is how long a replaced traffic client stays open for the
// commands still running on it.
const retireDelay = 5 * time.Second

type retiredClient struct {
	c  redis.UniversalClient
	at time.Time
}

// refresh gives an owned endpoint that passed its first check after an
// outage a new traffic client: go-redis keeps returning a cached dial error
// from a pool that saw many failed dials, for up to a second after the
// server is back. The old client is closed retireDelay later; the new one
// is warmed up.
func (s *supervisor) refresh(e *endpoint, now time.Time) {
	if old := s.replaceMember(e); old != nil {
		s.retired = append(s.retired, retiredClient{old, now})
	}
}

// maxWarmConns bounds the connections a warm-up opens.
const maxWarmConns = 128

// warm opens connections on e's new traffic client (cold: replaced when
// traffic left e, or when e came back) once e is eligible again, before
// failback may move traffic to it: as many as the active endpoint's client
// holds now (at least one, at most maxWarmConns), by PINGs sent at once,
// each bounded by twice HealthCheckTimeout. On a cold pool the first
// command of every caller after a failback would dial and set up its
// connection (HELLO, CLIENT SETINFO) within its own deadline: a few round
// trips, which a short deadline to a not-so-near endpoint misses. Failback
// to e waits until the warm-up is over, whether its PINGs passed or not
// (normally long before FailbackDelay); failover does not wait.
func (s *supervisor) warm(e *endpoint) {
	n := 1
	if a := s.active; a != nil && a != e {
		n = max(n, int(a.client().PoolStats().TotalConns))
	}
	n = min(n, maxWarmConns)
	client := e.client()
	e.warming = true
	c, timeout := s.c, 2*s.cfg.HealthCheckTimeout
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, timeout)
		var pings sync.WaitGroup
		for range n {
			pings.Go(func() { _ = client.Ping(ctx).Err() })
		}
		pings.Wait()
		cancel()
		_ = c.call(c.ctx, func(s *supervisor, _ time.Time) {
			e.warming = false
			if e.client() == client {
				e.cold = false // else it was replaced meanwhile: warm the new one
			}
		})
	}()
}

// replaceMember gives an owned endpoint a new traffic client and returns
// the old one (nil when the endpoint's client is the caller's).
func (s *supervisor) replaceMember(e *endpoint) redis.UniversalClient {
	if !e.owned || e.removed {
		return nil
	}
	fresh, _, err := buildMember(e.spec, s.cfg.HealthCheckTimeout)
	if err != nil {
		return nil // the spec was valid when the endpoint was added
	}
	e.cold = true // warmed before failback (see warm)
	if e.watch != nil {
		e.watch.attach(fresh)
	}
	s.announce(e.name, fresh)
	return e.member.Swap(&memberRef{fresh}).c
}

// announce hands a client we built to carry the application's commands to
// Options.OnNewClient, before it serves any; a panic there is recovered
// and logged, so it cannot take the supervisor down.
func (s *supervisor) announce(endpoint string, c redis.UniversalClient) {
	hook := s.cfg.OnNewClient
	if hook == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logger.Error("geofailover: Options.OnNewClient panicked", "endpoint", endpoint, "panic", fmt.Sprint(p))
		}
	}()
	hook(endpoint, c)
}

// abandon ends the commands still waiting on an owned endpoint that traffic
// has just left because it failed: it gets a fresh traffic client and the
// old one is closed at once. On a hung server those commands would
// otherwise wait out their deadlines; now they fail at once, and the reads
// among them are replayed on the new endpoint.
func (s *supervisor) abandon(e *endpoint) {
	if old := s.replaceMember(e); old != nil {
		_ = old.Close()
	}
}

// closeRetired closes the replaced clients retired before now-retireDelay,
// and the clients of removed endpoints whose commands are done or whose
// time is up (all of them when now is zero).
func (s *supervisor) closeRetired(now time.Time) error {
	var errs []error
	keep := s.retired[:0]
	for _, r := range s.retired {
		if now.IsZero() || now.Sub(r.at) >= retireDelay {
			_ = r.c.Close()
		} else {
			keep = append(keep, r)
		}
	}
	s.retired = keep
	stay := s.leaving[:0]
	for _, l := range s.leaving {
		if now.IsZero() || l.e.live.inflight() <= 0 || !now.Before(l.until) {
			errs = append(errs, l.e.close())
		} else {
			stay = append(stay, l)
		}
	}
	s.leaving = stay
	return errors.Join(errs...)
}

// removeDelay bounds how long a removed endpoint's client stays open for
// the commands still running on it.
const removeDelay = time.Second

type leavingEndpoint struct {
	e     *endpoint
	until time.Time
}

// remove takes e out of the set; the decision step that follows moves
// traffic away if it was active. Its clients are closed by closeRetired,
// on this goroutine, so no goroutine outlives the supervisor.
func (s *supervisor) remove(e *endpoint, now time.Time) {
	e.removed = true
	s.c.scanTags.Delete(e.scanTag)
	e.stopChecker()
	if s.pinned == e {
		s.pinned = nil
	}
	eps := make([]*endpoint, 0, len(s.eps)-1)
	for _, o := range s.eps {
		if o != e {
			eps = append(eps, o)
		}
	}
	s.eps = eps
	s.leaving = append(s.leaving, leavingEndpoint{e: e, until: now.Add(removeDelay)})
}
