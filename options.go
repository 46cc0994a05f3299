package geofailover

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/internal/breaker"
)

// Defaults for every Options knob (docs/client.md: "Options and defaults"). A zero Options field means the
// matching default below.
const (
	DefaultHealthCheckInterval        = 1 * time.Second
	DefaultHealthCheckTimeout         = 1 * time.Second
	DefaultUnhealthyAfter             = 2
	DefaultHealthyAfter               = 3
	DefaultBreakerWindow              = 5 * time.Second
	DefaultBreakerBucket              = 1 * time.Second
	DefaultBreakerMinFailures         = 10
	DefaultBreakerFailureRatio        = 0.2
	DefaultBreakerConsecutiveFailures = 5
	DefaultSlowCallRatio              = 0.5
	DefaultSlowCallMinCalls           = 10
	DefaultStallTimeout               = 500 * time.Millisecond
	DefaultGracePeriod                = 10 * time.Second
	DefaultGracePeriodMax             = 5 * time.Minute
	DefaultFailbackDelay              = 3 * time.Second
	DefaultLatencySwitchAfter         = 30 * time.Second
)

// Options configures a Client. Only Endpoints is required; every other field
// has a documented default that a zero value selects. Switching a feature off
// is always an explicit Disable… field, never a magic negative number.
type Options struct {
	// Endpoints lists the databases to fail over between. At least one is
	// required; names must be unique.
	Endpoints []Endpoint

	// HealthCheckInterval is the time between two health checks of one
	// endpoint. Default 1 s. After a failed check, and while every endpoint
	// is down, the next check comes after a quarter of it; a failed command
	// or a broken Pub/Sub connection asks for one at once (at most one per
	// tenth of the interval).
	HealthCheckInterval time.Duration
	// HealthCheckTimeout bounds each command of a health check (a check that
	// must dial may spend up to the endpoint's DialTimeout dialling, on top).
	// It is also the dial timeout of member clients we build whose options
	// leave DialTimeout at zero. Default 1 s.
	HealthCheckTimeout time.Duration
	// HealthCheck is the probe run on each endpoint's dedicated connection.
	// Default PingCheck; EchoCheck sends a random payload and checks the echo.
	HealthCheck HealthCheckFunc
	// UnhealthyAfter is the number of failed checks in a row that make a
	// healthy endpoint unhealthy. Default 2.
	UnhealthyAfter int
	// HealthyAfter is the number of passed checks in a row that make an
	// unhealthy endpoint healthy again. Default 3. (An endpoint's very first
	// check decides its initial health on its own.)
	HealthyAfter int

	// BreakerWindow is the length of the sliding time window of command
	// outcomes kept per endpoint. Default 5 s. It is rounded up to a whole
	// number of BreakerBucket.
	BreakerWindow time.Duration
	// BreakerBucket is the granularity of the window. Default 1 s.
	BreakerBucket time.Duration
	// BreakerMinFailures and BreakerFailureRatio trip the breaker when the
	// window holds at least BreakerMinFailures failures AND failures make up
	// at least BreakerFailureRatio of its calls. Defaults 10 and 0.2.
	BreakerMinFailures  int
	BreakerFailureRatio float64
	// DisableRatioTrip switches the failures-and-ratio rule off.
	DisableRatioTrip bool
	// BreakerConsecutiveFailures trips the breaker on that many failed
	// commands in a row, so a dead endpoint is detected at any traffic level.
	// Default 5.
	BreakerConsecutiveFailures int
	// DisableConsecutiveTrip switches the consecutive-failures rule off.
	DisableConsecutiveTrip bool
	// SlowCallThreshold marks a command that took longer than it as slow; the
	// breaker trips when at least SlowCallMinCalls calls in the window were
	// slow and they make up at least SlowCallRatio of its calls. Blocking
	// commands (BLPOP, XREAD BLOCK, WAIT, ...) are exempt. Default 0: slow-call
	// detection is off, and the hot path reads no clock.
	SlowCallThreshold time.Duration
	// SlowCallRatio: see SlowCallThreshold. Default 0.5.
	SlowCallRatio float64
	// SlowCallMinCalls: see SlowCallThreshold. Default 10.
	SlowCallMinCalls int
	// StallTimeout trips the breaker of an endpoint that has commands
	// outstanding and has completed none of them for this long (a hung
	// server), unless a health check sent meanwhile has passed: a live
	// server still delivering a long reply is not hung. After half of it a
	// check is asked for at once. Blocking commands are exempt. It is
	// never less than four times the endpoint's smoothed check latency, so
	// a far endpoint whose replies take longer is not taken for a hung one,
	// and time in which this process did not run is not counted. Default
	// 500 ms.
	StallTimeout time.Duration
	// DisableStallDetection switches the stalled-endpoint rule off.
	DisableStallDetection bool

	// GracePeriod is how long an endpoint cannot be chosen again after its
	// breaker opened, or after traffic left it because it turned unhealthy
	// (a standby that merely fails its checks gets no grace period: it is
	// unhealthy until its checks pass). It doubles each time the same
	// endpoint fails again within twice its current grace period after
	// being restored, up to GracePeriodMax, and falls back to GracePeriod
	// once it stays good that long. When every endpoint is down, an
	// endpoint whose last check passed may serve despite its grace period.
	// Defaults: GracePeriod 10 s; GracePeriodMax the larger of 5 min and
	// GracePeriod.
	GracePeriod    time.Duration
	GracePeriodMax time.Duration
	// FailbackDelay is how long an endpoint with a higher weight than the
	// active one must have been healthy, every health check passing since
	// its last failure, before traffic fails back to it (it must also be out
	// of its grace period, and its new connection pool warmed up). Default
	// 3 s.
	FailbackDelay time.Duration
	// DisableFailback keeps traffic on the endpoint it failed over to until
	// that one fails too or SwitchTo is called.
	DisableFailback bool

	// LatencySwitchAfter: among endpoints of equal weight, traffic moves
	// from the active one to one whose health checks have been clearly
	// faster (by 25 % and at least 5 ms) for this long, without a break. Default
	// 30 s. At a failover, the clearly fastest of the best-weighted
	// candidates is chosen at once. DisableFailback also stops these moves.
	LatencySwitchAfter time.Duration
	// DisableLatencyTies breaks ties in weight by configuration order only,
	// never by latency.
	DisableLatencyTies bool

	// WaitWhenAllDown makes commands issued while no endpoint is usable wait
	// (bounded by their context) for one to recover, instead of failing fast
	// with ErrNoHealthyEndpoint. Default false: fail fast.
	WaitWhenAllDown bool

	// ReplayWrites lets a command that may have reached a failed endpoint
	// (its answer was lost to a timeout, EOF or reset) be sent again to the
	// next endpoint even when it is a write or a blocking command. Default
	// false: only commands Redis flags read-only are replayed, so INCR,
	// LPUSH, EXEC or BLPOP are never applied twice. Turn it on only if every
	// write the app sends is idempotent; AllowReplay opts in per call.
	// Commands that never reached the server are always retried.
	ReplayWrites bool

	// HedgeReads sends a read-only command (Redis's read-only flag, not
	// blocking, not SCAN: the replay table) that has had no answer from the
	// active endpoint after HedgeDelay also to the fallback endpoint; the
	// first answer wins and the other attempt is abandoned (it ends by
	// itself; its outcome still counts against its endpoint). Never for
	// writes, blocking commands, transactions, pipelines, Watch or Pub/Sub.
	// Hedges are at most 5 % of hedgeable reads over time,
	// plus a burst of 100. On an endpoint built from URL,
	// Options or FailoverOptions the first attempt runs on the caller's
	// goroutine and is cut when the hedge answers first (it then counts as a
	// timeout against its endpoint); on Cluster and Client endpoints it runs
	// on a goroutine of its own. Default false. See EndpointStatus.Calls for the
	// counts.
	HedgeReads bool
	// HedgeDelay is how long a hedgeable read waits for the active endpoint
	// before it is hedged. Zero: derived per endpoint from its recent read
	// round trips as TCP derives its retransmission timeout (SRTT +
	// 4·RTTVAR, RFC 6298), at least 5 ms and at most 1 s.
	HedgeDelay time.Duration

	// IsEndpointFailure decides whether a command error counts against the
	// endpoint that returned it. Default DefaultIsEndpointFailure. It does
	// not change which failed commands are retried elsewhere: that depends
	// on whether the command can have run (docs/rules.md: "What happens to each
	// kind of command during a switch"). An error
	// that is the caller's context ending (cancelled, or its deadline spent
	// before the command reached a connection) never counts, whatever this
	// function says.
	IsEndpointFailure func(err error) bool

	// OnEvent, if set, receives every Event in order, from the first (the
	// initial selection), on the client's event goroutine (never on the
	// command path, never under a lock). A callback that blocks delays
	// later deliveries, never the client or Close; while deliveries are
	// behind, at most 10,000 events wait (see Client.Events). Subscribers
	// added later use Client.Events.
	OnEvent func(Event)

	// OnNewClient, if set, is called with every go-redis client the library
	// builds to carry the application's commands: each endpoint's traffic
	// client (which also carries its Pub/Sub), its client for blocking
	// commands, and every replacement of either (traffic leaving an
	// endpoint, an endpoint coming back, a switch interrupting blocking
	// commands). It is called before the client serves a command, on the
	// goroutine that built it (New's, or the client's supervisor goroutine:
	// keep it quick), never under a lock. A panic in it is recovered and
	// logged. Use it to instrument the clients, e.g. with redisotel (see
	// the example in extra/geofailoverotel), naming the endpoint in an
	// attribute. It is not called for an Endpoint.Client (it is yours:
	// instrument it yourself), nor for the small clients of health checks.
	OnNewClient func(endpoint string, client redis.UniversalClient)

	// Logger receives the client's log records. Default: silent.
	Logger *slog.Logger
}

// Endpoint is one database the client can send traffic to. Set exactly one of
// URL, Options, ClusterOptions, FailoverOptions and Client.
//
// For the members we build (all but Client), go-redis's own retries are
// switched off so that a dead endpoint costs one fast dial, not several:
// MaxRetries and dial retries are set to one attempt, no backoff is slept
// between go-redis's attempts (a cluster client still follows MOVED and
// ASK, up to MaxRedirects), context deadlines are honoured on the socket
// (ContextTimeoutEnabled), and a zero DialTimeout becomes
// Options.HealthCheckTimeout. Maintenance notifications are off unless
// MaintNotificationsConfig is set (see docs/client.md). A Client passed in is
// used as it is and is never closed by us; configure it the same way for
// fast failover.
type Endpoint struct {
	// Name identifies the endpoint in events, Status and the API. Required,
	// unique within a client.
	Name string
	// Weight ranks the endpoint: higher is preferred; ties go to the endpoint
	// listed (or added) first. Must be > 0 and finite.
	Weight float64

	// URL is a redis:// or rediss:// URL, as redis.ParseURL accepts.
	URL string
	// TLSConfig is the TLS configuration of a rediss:// URL endpoint (a
	// private CA, a client certificate), which a URL cannot carry. Without
	// it a rediss:// URL trusts the system's roots. Its ServerName defaults
	// to the URL's host. Only for URL endpoints (the option structs have a
	// TLSConfig of their own), and only with rediss://. It is cloned.
	TLSConfig *tls.Config
	// Options describes a standalone server.
	Options *redis.Options
	// ClusterOptions describes a Redis Cluster.
	ClusterOptions *redis.ClusterOptions
	// FailoverOptions describes a Sentinel-managed group.
	FailoverOptions *redis.FailoverOptions
	// Client is an existing client owned by the caller. Health checks run
	// through it, since there is no way to open a dedicated connection.
	Client redis.UniversalClient
}

// HealthCheckFunc probes one endpoint through c, a small client dedicated to
// health checks. It returns nil when the endpoint is fit to serve traffic.
// ctx carries Options.HealthCheckTimeout.
type HealthCheckFunc func(ctx context.Context, c redis.UniversalClient) error

// config is Options with every default applied; it is what the client reads.
type config struct {
	Options
	bucketCount int
	// rule is the breaker's trip rule, built from the options here and
	// nowhere else (a zero threshold is a rule switched off).
	rule breaker.Rule
}

// Validate checks opts as New does, without starting anything. Errors name
// the field ("Options.Endpoints[1]: ...", "Options.GracePeriod ...").
func Validate(opts *Options) error {
	_, err := validate(opts)
	return err
}

// maxEndpoints is the most endpoints a Client can have at once (fewer than
// the SCAN cursor tags, maxScanTag).
const maxEndpoints = 100

// validate checks opts and returns a copy with the defaults filled in.
// Errors name the offending field.
func validate(opts *Options) (*config, error) {
	if opts == nil {
		return nil, fmt.Errorf("geofailover: Options is nil")
	}
	if len(opts.Endpoints) == 0 {
		return nil, fmt.Errorf("geofailover: Options.Endpoints is empty: at least one endpoint is required")
	}
	cfg := &config{Options: *opts}
	cfg.Endpoints = append([]Endpoint(nil), opts.Endpoints...)
	names := make([]string, 0, len(cfg.Endpoints))
	for i := range cfg.Endpoints {
		ep := &cfg.Endpoints[i]
		if err := validateEndpoint(ep); err != nil {
			return nil, fmt.Errorf("geofailover: Options.Endpoints[%d]: %w", i, err)
		}
		if err := admit(names, ep.Name); err != nil {
			return nil, fmt.Errorf("geofailover: Options.Endpoints[%d]: %w", i, err)
		}
		names = append(names, ep.Name)
	}

	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"HealthCheckInterval", &cfg.HealthCheckInterval, DefaultHealthCheckInterval},
		{"HealthCheckTimeout", &cfg.HealthCheckTimeout, DefaultHealthCheckTimeout},
		{"BreakerWindow", &cfg.BreakerWindow, DefaultBreakerWindow},
		{"BreakerBucket", &cfg.BreakerBucket, DefaultBreakerBucket},
		{"SlowCallThreshold", &cfg.SlowCallThreshold, 0},
		{"StallTimeout", &cfg.StallTimeout, DefaultStallTimeout},
		{"GracePeriod", &cfg.GracePeriod, DefaultGracePeriod},
		{"GracePeriodMax", &cfg.GracePeriodMax, 0},
		{"FailbackDelay", &cfg.FailbackDelay, DefaultFailbackDelay},
		{"HedgeDelay", &cfg.HedgeDelay, 0},
		{"LatencySwitchAfter", &cfg.LatencySwitchAfter, DefaultLatencySwitchAfter},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return nil, fmt.Errorf("geofailover: Options.%s is negative (%v)", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.GracePeriodMax == 0 {
		cfg.GracePeriodMax = max(DefaultGracePeriodMax, cfg.GracePeriod)
	}
	if cfg.GracePeriodMax < cfg.GracePeriod {
		return nil, fmt.Errorf("geofailover: Options.GracePeriodMax (%v) is shorter than GracePeriod (%v)", cfg.GracePeriodMax, cfg.GracePeriod)
	}
	if cfg.BreakerBucket > cfg.BreakerWindow {
		return nil, fmt.Errorf("geofailover: Options.BreakerBucket (%v) is longer than BreakerWindow (%v)", cfg.BreakerBucket, cfg.BreakerWindow)
	}
	cfg.bucketCount = int((cfg.BreakerWindow + cfg.BreakerBucket - 1) / cfg.BreakerBucket)
	if cfg.bucketCount > 3600 {
		return nil, fmt.Errorf("geofailover: Options.BreakerWindow/BreakerBucket gives %d buckets; at most 3600 are allowed", cfg.bucketCount)
	}

	counts := []struct {
		name string
		v    *int
		def  int
	}{
		{"UnhealthyAfter", &cfg.UnhealthyAfter, DefaultUnhealthyAfter},
		{"HealthyAfter", &cfg.HealthyAfter, DefaultHealthyAfter},
		{"BreakerMinFailures", &cfg.BreakerMinFailures, DefaultBreakerMinFailures},
		{"BreakerConsecutiveFailures", &cfg.BreakerConsecutiveFailures, DefaultBreakerConsecutiveFailures},
		{"SlowCallMinCalls", &cfg.SlowCallMinCalls, DefaultSlowCallMinCalls},
	}
	for _, c := range counts {
		if *c.v < 0 {
			return nil, fmt.Errorf("geofailover: Options.%s is negative (%d)", c.name, *c.v)
		}
		if *c.v == 0 {
			*c.v = c.def
		}
	}

	ratios := []struct {
		name string
		v    *float64
		def  float64
	}{
		{"BreakerFailureRatio", &cfg.BreakerFailureRatio, DefaultBreakerFailureRatio},
		{"SlowCallRatio", &cfg.SlowCallRatio, DefaultSlowCallRatio},
	}
	for _, r := range ratios {
		if math.IsNaN(*r.v) || *r.v < 0 || *r.v > 1 {
			return nil, fmt.Errorf("geofailover: Options.%s must be within [0, 1], got %v", r.name, *r.v)
		}
		if *r.v == 0 {
			*r.v = r.def
		}
	}

	if cfg.HealthCheck == nil {
		cfg.HealthCheck = PingCheck
	}
	if cfg.IsEndpointFailure == nil {
		cfg.IsEndpointFailure = DefaultIsEndpointFailure
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.rule = breaker.Rule{FailureRatio: cfg.BreakerFailureRatio, SlowRatio: cfg.SlowCallRatio}
	if !cfg.DisableConsecutiveTrip {
		cfg.rule.Consecutive = int64(cfg.BreakerConsecutiveFailures)
	}
	if !cfg.DisableRatioTrip {
		cfg.rule.MinFailures = uint64(cfg.BreakerMinFailures)
	}
	if cfg.SlowCallThreshold > 0 {
		cfg.rule.SlowMinCalls = uint64(cfg.SlowCallMinCalls)
	}
	if !cfg.DisableStallDetection {
		cfg.rule.Stall = cfg.StallTimeout
	}
	return cfg, nil
}

// validateWeight checks an endpoint's weight: finite and > 0.
func validateWeight(name string, w float64) error {
	if math.IsNaN(w) || math.IsInf(w, 0) || w <= 0 {
		return fmt.Errorf("endpoint %q: Weight must be a finite number > 0, got %v", name, w)
	}
	return nil
}

// admit is the one rule for joining a client's set of endpoints (at New and
// at AddEndpoint): at most maxEndpoints, and a name not already taken.
func admit(names []string, name string) error {
	if len(names) >= maxEndpoints {
		return fmt.Errorf("endpoint %q would be one more than the %d a client can have", name, maxEndpoints)
	}
	if slices.Contains(names, name) {
		return fmt.Errorf("duplicate Name %q", name)
	}
	return nil
}

// validateEndpoint checks one endpoint; the caller adds its position.
func validateEndpoint(ep *Endpoint) error {
	if ep.Name == "" {
		return fmt.Errorf("name is empty")
	}
	if err := validateWeight(ep.Name, ep.Weight); err != nil {
		return err
	}
	targets := 0
	for _, set := range []bool{ep.URL != "", ep.Options != nil, ep.ClusterOptions != nil, ep.FailoverOptions != nil, ep.Client != nil} {
		if set {
			targets++
		}
	}
	switch {
	case targets == 0:
		return fmt.Errorf("endpoint %q has no target: set one of URL, Options, ClusterOptions, FailoverOptions, Client", ep.Name)
	case targets > 1:
		return fmt.Errorf("endpoint %q has %d targets: set exactly one of URL, Options, ClusterOptions, FailoverOptions, Client", ep.Name, targets)
	}
	if ep.URL != "" {
		o, err := redis.ParseURL(ep.URL)
		if err != nil {
			return fmt.Errorf("endpoint %q: URL: %w", ep.Name, redactURLError(err, ep.URL))
		}
		if ep.TLSConfig != nil && o.TLSConfig == nil {
			return fmt.Errorf("endpoint %q: TLSConfig is set but the URL is not rediss://", ep.Name)
		}
	} else if ep.TLSConfig != nil {
		return fmt.Errorf("endpoint %q: TLSConfig is for URL endpoints; set the TLSConfig of the Options, ClusterOptions or FailoverOptions", ep.Name)
	}
	if ep.FailoverOptions != nil && (ep.FailoverOptions.MasterName == "" || len(ep.FailoverOptions.SentinelAddrs) == 0) {
		return fmt.Errorf("endpoint %q: FailoverOptions needs MasterName and SentinelAddrs", ep.Name)
	}
	if ep.ClusterOptions != nil && len(ep.ClusterOptions.Addrs) == 0 && ep.ClusterOptions.ClusterSlots == nil {
		return fmt.Errorf("endpoint %q: ClusterOptions.Addrs is empty", ep.Name)
	}
	return nil
}
