// Package config loads geofailover.Options from a YAML file, for the
// geofailover command and for applications that want the same file format.
//
//	endpoints:
//	  - name: eu-west
//	    weight: 1
//	    url: redis://:${EU_PASSWORD}@eu.example:6379/0
//	  - name: us-east
//	    weight: 0.5
//	    url: rediss://us.example:6380/0
//	health_check: echo          # ping (default), echo, or lag (with lag_check)
//	health_check_interval: 1s
//	grace_period: 10s
//
// Every scalar field of geofailover.Options has a snake_case key (durations
// as "500ms", "10s"); an endpoint is a url, a cluster (addrs, username,
// password) or a sentinel (master_name, sentinel_addrs, username, password,
// db), with an optional tls section (ca_file, cert_file, key_file,
// server_name, insecure_skip_verify_unsafe), an optional options section
// (go-redis's client options: protocol, client_name, pool_size,
// min_idle_conns, max_idle_conns, pool_timeout, dial_timeout, read_timeout,
// write_timeout, conn_max_idle_time, conn_max_lifetime, and for a url
// client_side_cache) and, for health_check: lag, the rest_api of its
// cluster. health_check: lag (package lagcheck) takes
// a lag_check section: username, password, lag_tolerance, local, strict,
// redis_check and tls. ${NAME} in any value is replaced by the environment variable NAME;
// values are never printed. Errors give the file, the line and the field.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/lagcheck"
)

// File is the YAML document.
type File struct {
	Endpoints []EndpointFile `yaml:"endpoints"`

	HealthCheck         string        `yaml:"health_check"`
	LagCheck            *LagCheckFile `yaml:"lag_check"`
	HealthCheckInterval Duration      `yaml:"health_check_interval"`
	HealthCheckTimeout  Duration      `yaml:"health_check_timeout"`
	UnhealthyAfter      int           `yaml:"unhealthy_after"`
	HealthyAfter        int           `yaml:"healthy_after"`

	BreakerWindow              Duration `yaml:"breaker_window"`
	BreakerBucket              Duration `yaml:"breaker_bucket"`
	BreakerMinFailures         int      `yaml:"breaker_min_failures"`
	BreakerFailureRatio        float64  `yaml:"breaker_failure_ratio"`
	DisableRatioTrip           bool     `yaml:"disable_ratio_trip"`
	BreakerConsecutiveFailures int      `yaml:"breaker_consecutive_failures"`
	DisableConsecutiveTrip     bool     `yaml:"disable_consecutive_trip"`
	SlowCallThreshold          Duration `yaml:"slow_call_threshold"`
	SlowCallRatio              float64  `yaml:"slow_call_ratio"`
	SlowCallMinCalls           int      `yaml:"slow_call_min_calls"`
	StallTimeout               Duration `yaml:"stall_timeout"`
	DisableStallDetection      bool     `yaml:"disable_stall_detection"`

	GracePeriod     Duration `yaml:"grace_period"`
	GracePeriodMax  Duration `yaml:"grace_period_max"`
	FailbackDelay   Duration `yaml:"failback_delay"`
	DisableFailback bool     `yaml:"disable_failback"`
	WaitWhenAllDown bool     `yaml:"wait_when_all_down"`
	ReplayWrites    bool     `yaml:"replay_writes"`

	LatencySwitchAfter Duration `yaml:"latency_switch_after"`
	DisableLatencyTies bool     `yaml:"disable_latency_ties"`
	HedgeReads         bool     `yaml:"hedge_reads"`
	HedgeDelay         Duration `yaml:"hedge_delay"`
}

// EndpointFile is one endpoint in the YAML document: set exactly one of
// url, cluster and sentinel.
type EndpointFile struct {
	Name     string        `yaml:"name"`
	Weight   float64       `yaml:"weight"`
	URL      string        `yaml:"url"`
	Cluster  *ClusterFile  `yaml:"cluster"`
	Sentinel *SentinelFile `yaml:"sentinel"`
	// TLS configures the endpoint's TLS: for a url (which must then be
	// rediss://), a cluster or a sentinel endpoint.
	TLS *TLSFile `yaml:"tls"`
	// RESTAPI is the base URL of the REST API of the Redis Software
	// cluster serving the endpoint, for health_check: lag (default
	// https://<the endpoint's host>:9443). Not for sentinel endpoints.
	RESTAPI string `yaml:"rest_api"`
	// Options are the go-redis client options people set per endpoint.
	Options *ClientFile `yaml:"options"`
}

// ClientFile is an endpoint's go-redis client options (redis.Options,
// ClusterOptions or FailoverOptions, by the endpoint's kind); a key left
// out keeps go-redis's default. Durations as "500ms", "10s".
// client_side_cache (go-redis's client-side caching with its default
// size; it needs RESP3) is for url endpoints only.
type ClientFile struct {
	Protocol        int      `yaml:"protocol"`
	ClientName      string   `yaml:"client_name"`
	PoolSize        int      `yaml:"pool_size"`
	MinIdleConns    int      `yaml:"min_idle_conns"`
	MaxIdleConns    int      `yaml:"max_idle_conns"`
	PoolTimeout     Duration `yaml:"pool_timeout"`
	DialTimeout     Duration `yaml:"dial_timeout"`
	ReadTimeout     Duration `yaml:"read_timeout"`
	WriteTimeout    Duration `yaml:"write_timeout"`
	ConnMaxIdleTime Duration `yaml:"conn_max_idle_time"`
	ConnMaxLifetime Duration `yaml:"conn_max_lifetime"`
	ClientSideCache bool     `yaml:"client_side_cache"`
}

// clientFields points at the fields ClientFile sets, in one of go-redis's
// three option structs.
type clientFields struct {
	protocol, poolSize, minIdle, maxIdle                         *int
	clientName                                                   *string
	poolTimeout, dial, read, write, connMaxIdleTime, connMaxLife *time.Duration
}

// apply sets the fields the file gives (path names it in errors).
func (c *ClientFile) apply(f clientFields, path string) error {
	if c.Protocol != 0 && c.Protocol != 2 && c.Protocol != 3 {
		return &fieldError{path: path + ".protocol", msg: fmt.Sprintf("%s.protocol must be 2 or 3, not %d", path, c.Protocol)}
	}
	for key, v := range map[string]int{"pool_size": c.PoolSize, "min_idle_conns": c.MinIdleConns, "max_idle_conns": c.MaxIdleConns} {
		if v < 0 {
			return &fieldError{path: path + "." + key, msg: fmt.Sprintf("%s.%s must not be negative", path, key)}
		}
	}
	setInt := func(dst *int, v int) {
		if v != 0 {
			*dst = v
		}
	}
	setDur := func(dst *time.Duration, v Duration) {
		if v != 0 {
			*dst = time.Duration(v)
		}
	}
	setInt(f.protocol, c.Protocol)
	setInt(f.poolSize, c.PoolSize)
	setInt(f.minIdle, c.MinIdleConns)
	setInt(f.maxIdle, c.MaxIdleConns)
	if c.ClientName != "" {
		*f.clientName = c.ClientName
	}
	setDur(f.poolTimeout, c.PoolTimeout)
	setDur(f.dial, c.DialTimeout)
	setDur(f.read, c.ReadTimeout)
	setDur(f.write, c.WriteTimeout)
	setDur(f.connMaxIdleTime, c.ConnMaxIdleTime)
	setDur(f.connMaxLife, c.ConnMaxLifetime)
	return nil
}

// applyClientFile sets e's client options on ep: a url endpoint becomes an
// Options endpoint (the URL parsed as go-redis parses it, the tls section
// applied as the library applies Endpoint.TLSConfig).
func applyClientFile(e EndpointFile, ep *geofailover.Endpoint, path string) error {
	c := e.Options
	if ep.ClusterOptions != nil || ep.FailoverOptions != nil {
		if c.ClientSideCache {
			return &fieldError{path: path + ".client_side_cache", msg: path + ".client_side_cache is for url endpoints only"}
		}
		if o := ep.ClusterOptions; o != nil {
			return c.apply(clientFields{&o.Protocol, &o.PoolSize, &o.MinIdleConns, &o.MaxIdleConns, &o.ClientName,
				&o.PoolTimeout, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ConnMaxIdleTime, &o.ConnMaxLifetime}, path)
		}
		o := ep.FailoverOptions
		return c.apply(clientFields{&o.Protocol, &o.PoolSize, &o.MinIdleConns, &o.MaxIdleConns, &o.ClientName,
			&o.PoolTimeout, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ConnMaxIdleTime, &o.ConnMaxLifetime}, path)
	}
	o, err := redis.ParseURL(ep.URL)
	if err != nil {
		return &fieldError{path: path, msg: fmt.Sprintf("%s: the url does not parse", path)}
	}
	if ep.TLSConfig != nil && o.TLSConfig == nil {
		return &fieldError{path: path, msg: fmt.Sprintf("%s: a tls section needs a rediss:// url", path)}
	}
	if ep.TLSConfig != nil {
		name := o.TLSConfig.ServerName
		o.TLSConfig = ep.TLSConfig.Clone()
		if o.TLSConfig.ServerName == "" {
			o.TLSConfig.ServerName = name
		}
	}
	if err := c.apply(clientFields{&o.Protocol, &o.PoolSize, &o.MinIdleConns, &o.MaxIdleConns, &o.ClientName,
		&o.PoolTimeout, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ConnMaxIdleTime, &o.ConnMaxLifetime}, path); err != nil {
		return err
	}
	if c.ClientSideCache {
		if c.Protocol == 2 {
			return &fieldError{path: path + ".client_side_cache", msg: path + ".client_side_cache needs protocol 3"}
		}
		o.Protocol = 3
		o.ClientSideCacheConfig = &redis.ClientSideCacheConfig{}
	}
	ep.URL, ep.TLSConfig, ep.Options = "", nil, o
	return nil
}

// LagCheckFile configures health_check: lag (package lagcheck): the REST
// API's credentials and TLS, the lag tolerance (none: availability only),
// local (ask the node's endpoint availability), strict (the API's
// "unavailable" fails the check instead of holding the endpoint back) and
// redis_check (ping, the default; echo; or none).
type LagCheckFile struct {
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	LagTolerance Duration `yaml:"lag_tolerance"`
	Local        bool     `yaml:"local"`
	Strict       bool     `yaml:"strict"`
	RedisCheck   string   `yaml:"redis_check"`
	TLS          *TLSFile `yaml:"tls"`
}

// TLSFile is an endpoint's TLS configuration. Without ca_file the system's
// roots are trusted; cert_file and key_file (both or neither) give a
// client certificate; server_name overrides the name checked in the
// server's certificate (default: the host dialled).
type TLSFile struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerifyUnsafe accepts any server certificate: anyone on
	// the path can read and change the traffic. For tests only.
	InsecureSkipVerifyUnsafe bool `yaml:"insecure_skip_verify_unsafe"`
}

// config returns the tls.Config the section describes; path names it in
// errors.
func (t *TLSFile) config(path string) (*tls.Config, error) {
	c := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerifyUnsafe, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, &fieldError{path: path + ".ca_file", msg: fmt.Sprintf("%s.ca_file: %v", path, err)}
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, &fieldError{path: path + ".ca_file", msg: fmt.Sprintf("%s.ca_file: %s holds no PEM certificate", path, t.CAFile)}
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, &fieldError{path: path, msg: fmt.Sprintf("%s: cert_file and key_file go together", path)}
	}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, &fieldError{path: path + ".cert_file", msg: fmt.Sprintf("%s: client certificate: %v", path, err)}
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// ClusterFile is a Redis Cluster endpoint.
type ClusterFile struct {
	Addrs    []string `yaml:"addrs"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
}

// SentinelFile is a Sentinel-managed endpoint.
type SentinelFile struct {
	MasterName    string   `yaml:"master_name"`
	SentinelAddrs []string `yaml:"sentinel_addrs"`
	Username      string   `yaml:"username"`
	Password      string   `yaml:"password"`
	DB            int      `yaml:"db"`
}

// Duration is a time.Duration written as "500ms", "10s" or "1m".
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write e.g. 500ms, 10s, 1m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Load reads and parses the YAML file at path.
func Load(path string) (*geofailover.Options, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses YAML data; name (a file name) prefixes error messages. The
// result has passed geofailover.Validate.
func Parse(name string, data []byte) (*geofailover.Options, error) {
	return ParseSection(name, data, "")
}

// LoadSection reads the library's settings from the top-level key section
// of an application's own YAML file (the rest of the file is not looked
// at), as Load reads a whole file; "" means the whole file.
func LoadSection(path, section string) (*geofailover.Options, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseSection(path, data, section)
}

// ParseSection is Parse for the top-level key section of data ("" for the
// whole document). Errors give lines of the whole file.
func ParseSection(name string, data []byte, section string) (*geofailover.Options, error) {
	fail, yamlErr := reporters(name)
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fail(0, "the file is empty: it must be a mapping with an endpoints list")
		}
		return nil, yamlErr(err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fail(doc.Line, "the document must be a mapping with an endpoints list")
	}
	root := doc.Content[0]
	if section != "" {
		n := value(root, section)
		if n == nil {
			return nil, fail(root.Line, "the file has no top-level %q section", section)
		}
		if n.Kind != yaml.MappingNode {
			return nil, fail(n.Line, "the %q section must be a mapping with an endpoints list", section)
		}
		root = n
	}
	return parseNode(root, fail, yamlErr)
}

// reporters return the error makers for a file called name: fail for a
// message at a line (0: none), yamlErr for an error from the YAML decoder.
func reporters(name string) (fail func(int, string, ...any) error, yamlErr func(error) error) {
	fail = func(line int, format string, args ...any) error {
		if line > 0 {
			return fmt.Errorf("config: %s:%d: %s", name, line, fmt.Sprintf(format, args...))
		}
		return fmt.Errorf("config: %s: %s", name, fmt.Sprintf(format, args...))
	}
	yamlErr = func(err error) error {
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			var line int
			fmt.Sscan(m[1], &line)
			return fail(line, "%s", m[2])
		}
		return fail(0, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return fail, yamlErr
}

// parseNode checks and converts a mapping node: a whole file (Parse) or a
// section of one (Section).
func parseNode(root *yaml.Node, fail func(int, string, ...any) error, yamlErr func(error) error) (*geofailover.Options, error) {
	if err := checkKeys(root, reflect.TypeOf(File{}), ""); err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			return nil, fail(ke.line, "%s", ke.msg)
		}
		return nil, fail(0, "%v", err)
	}
	if err := expandEnv(root); err != nil {
		var ke *keyError
		errors.As(err, &ke)
		return nil, fail(ke.line, "%s", ke.msg)
	}
	var f File
	if err := root.Decode(&f); err != nil {
		return nil, yamlErr(err)
	}
	opts, err := f.options()
	if err != nil {
		return nil, fail(lineOf(root, err), "%v", err)
	}
	if err := geofailover.Validate(opts); err != nil {
		return nil, fail(lineOf(root, err), "%s", strings.TrimPrefix(err.Error(), "geofailover: "))
	}
	return opts, nil
}

// Section is the library's settings embedded in your application's own
// YAML file, with the keys Parse accepts. Give your config struct a field of
// this type, decode your file with gopkg.in/yaml.v3, then call Options (see
// ExampleSection). Errors give the lines of your file.
type Section struct{ node *yaml.Node }

// UnmarshalYAML keeps the section's node for Options.
func (s *Section) UnmarshalYAML(n *yaml.Node) error {
	s.node = n
	return nil
}

// Options checks and converts the section as Parse does a whole file; name
// (your file's name) prefixes error messages. The result has passed
// geofailover.Validate; set Logger and OnEvent on it before geofailover.New.
func (s *Section) Options(name string) (*geofailover.Options, error) {
	fail, yamlErr := reporters(name)
	if s == nil || s.node == nil {
		return nil, fail(0, "the geofailover section is missing")
	}
	if s.node.Kind != yaml.MappingNode {
		return nil, fail(s.node.Line, "the geofailover section must be a mapping with an endpoints list")
	}
	return parseNode(s.node, fail, yamlErr)
}

// options converts the document.
func (f *File) options() (*geofailover.Options, error) {
	o := &geofailover.Options{
		HealthCheckInterval:        time.Duration(f.HealthCheckInterval),
		HealthCheckTimeout:         time.Duration(f.HealthCheckTimeout),
		UnhealthyAfter:             f.UnhealthyAfter,
		HealthyAfter:               f.HealthyAfter,
		BreakerWindow:              time.Duration(f.BreakerWindow),
		BreakerBucket:              time.Duration(f.BreakerBucket),
		BreakerMinFailures:         f.BreakerMinFailures,
		BreakerFailureRatio:        f.BreakerFailureRatio,
		DisableRatioTrip:           f.DisableRatioTrip,
		BreakerConsecutiveFailures: f.BreakerConsecutiveFailures,
		DisableConsecutiveTrip:     f.DisableConsecutiveTrip,
		SlowCallThreshold:          time.Duration(f.SlowCallThreshold),
		SlowCallRatio:              f.SlowCallRatio,
		SlowCallMinCalls:           f.SlowCallMinCalls,
		StallTimeout:               time.Duration(f.StallTimeout),
		DisableStallDetection:      f.DisableStallDetection,
		GracePeriod:                time.Duration(f.GracePeriod),
		GracePeriodMax:             time.Duration(f.GracePeriodMax),
		FailbackDelay:              time.Duration(f.FailbackDelay),
		DisableFailback:            f.DisableFailback,
		WaitWhenAllDown:            f.WaitWhenAllDown,
		ReplayWrites:               f.ReplayWrites,
		LatencySwitchAfter:         time.Duration(f.LatencySwitchAfter),
		DisableLatencyTies:         f.DisableLatencyTies,
		HedgeReads:                 f.HedgeReads,
		HedgeDelay:                 time.Duration(f.HedgeDelay),
	}
	lag := strings.ToLower(f.HealthCheck) == "lag"
	if check, ok := redisChecks[strings.ToLower(f.HealthCheck)]; ok {
		o.HealthCheck = check
	} else if !lag {
		return nil, &fieldError{path: "health_check", msg: fmt.Sprintf("health_check must be ping, echo or lag, not %q", f.HealthCheck)}
	}
	if lag != (f.LagCheck != nil) {
		return nil, &fieldError{path: "lag_check", msg: "health_check: lag and a lag_check section go together"}
	}
	apis := map[string]string{}
	for i, e := range f.Endpoints {
		ep := geofailover.Endpoint{Name: e.Name, Weight: e.Weight, URL: e.URL}
		var tc *tls.Config
		if e.TLS != nil {
			var err error
			if tc, err = e.TLS.config(fmt.Sprintf("endpoints[%d].tls", i)); err != nil {
				return nil, err
			}
			if e.URL != "" {
				ep.TLSConfig = tc
			}
		}
		if e.Cluster != nil {
			ep.ClusterOptions = &redis.ClusterOptions{Addrs: e.Cluster.Addrs, Username: e.Cluster.Username, Password: e.Cluster.Password, TLSConfig: tc}
		}
		if e.Sentinel != nil {
			ep.FailoverOptions = &redis.FailoverOptions{MasterName: e.Sentinel.MasterName, SentinelAddrs: e.Sentinel.SentinelAddrs,
				Username: e.Sentinel.Username, Password: e.Sentinel.Password, DB: e.Sentinel.DB, TLSConfig: tc}
		}
		if e.URL == "" && e.Cluster == nil && e.Sentinel == nil {
			return nil, &fieldError{path: fmt.Sprintf("endpoints[%d]", i), msg: fmt.Sprintf("endpoints[%d] (%q) needs one of url, cluster, sentinel", i, e.Name)}
		}
		if e.Options != nil {
			if err := applyClientFile(e, &ep, fmt.Sprintf("endpoints[%d].options", i)); err != nil {
				return nil, err
			}
		}
		if e.RESTAPI != "" {
			path := fmt.Sprintf("endpoints[%d].rest_api", i)
			addr, err := redisAddr(ep)
			if err != nil || !lag {
				if err == nil {
					err = errors.New("needs health_check: lag")
				}
				return nil, &fieldError{path: path, msg: fmt.Sprintf("%s: %v", path, err)}
			}
			apis[addr] = e.RESTAPI
		}
		o.Endpoints = append(o.Endpoints, ep)
	}
	if lag {
		check, err := f.LagCheck.check(apis)
		if err != nil {
			return nil, err
		}
		o.HealthCheck = check.Func()
	}
	return o, nil
}

// redisChecks are the health checks by name.
var redisChecks = map[string]geofailover.HealthCheckFunc{
	"": geofailover.PingCheck, "ping": geofailover.PingCheck, "echo": geofailover.EchoCheck,
}

// check builds the lag check.
func (l *LagCheckFile) check(apis map[string]string) (*lagcheck.Check, error) {
	o := lagcheck.Options{APIs: apis, Username: l.Username, Password: l.Password,
		LagTolerance: time.Duration(l.LagTolerance), Local: l.Local, Strict: l.Strict}
	switch name := strings.ToLower(l.RedisCheck); name {
	case "none":
		o.Redis = lagcheck.NoRedisCheck
	default:
		check, ok := redisChecks[name]
		if !ok {
			return nil, &fieldError{path: "lag_check.redis_check", msg: fmt.Sprintf("lag_check.redis_check must be ping, echo or none, not %q", l.RedisCheck)}
		}
		o.Redis = check
	}
	if l.TLS != nil {
		tc, err := l.TLS.config("lag_check.tls")
		if err != nil {
			return nil, err
		}
		o.TLSConfig = tc
	}
	c, err := lagcheck.New(o)
	if err != nil {
		return nil, &fieldError{path: "lag_check", msg: strings.Replace(err.Error(), "lagcheck: ", "lag_check: ", 1)}
	}
	return c, nil
}

// redisAddr is the address the lag check knows an endpoint by.
func redisAddr(ep geofailover.Endpoint) (string, error) {
	switch {
	case ep.URL != "":
		o, err := redis.ParseURL(ep.URL)
		if err != nil {
			return "", errors.New("the endpoint's url does not parse")
		}
		return o.Addr, nil
	case ep.Options != nil: // a url with an options section
		return ep.Options.Addr, nil
	case ep.ClusterOptions != nil && len(ep.ClusterOptions.Addrs) > 0:
		return ep.ClusterOptions.Addrs[0], nil
	}
	return "", errors.New("the lag check needs a url or cluster endpoint")
}

type fieldError struct{ path, msg string }

func (e *fieldError) Error() string { return e.msg }

type keyError struct {
	line int
	msg  string
}

func (e *keyError) Error() string { return e.msg }

// checkKeys rejects keys that t (a struct) has no yaml tag for, recursively.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && t != reflect.TypeOf(Duration(0)):
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return nil
			}
			return &keyError{n.Line, fmt.Sprintf("%s must be a mapping", orRoot(path))}
		}
		fields := map[string]reflect.Type{}
		var known []string
		for i := range t.NumField() {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			fields[tag] = t.Field(i).Type
			known = append(known, tag)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				return &keyError{k.Line, fmt.Sprintf("unknown field %q in %s (known: %s)", k.Value, orRoot(path), strings.Join(known, ", "))}
			}
			if err := checkKeys(v, ft, join(path, k.Value)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			if err := checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

var yamlLineRE = regexp.MustCompile(`line (\d+): (.*)`)

var envRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${NAME} in every scalar with the environment variable
// NAME; an unset variable is an error naming it (never its value).
func expandEnv(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var missing string
		n.Value = envRE.ReplaceAllStringFunc(n.Value, func(m string) string {
			name := envRE.FindStringSubmatch(m)[1]
			v, ok := os.LookupEnv(name)
			if !ok && missing == "" {
				missing = name
			}
			return v
		})
		if missing != "" {
			return &keyError{n.Line, fmt.Sprintf("environment variable %s is not set (used as ${%s})", missing, missing)}
		}
		return nil
	}
	for _, c := range n.Content {
		if err := expandEnv(c); err != nil {
			return err
		}
	}
	return nil
}

var (
	endpointRE = regexp.MustCompile(`Endpoints\[(\d+)\]`)
	optionRE   = regexp.MustCompile(`Options\.([A-Za-z]+)`)
)

// lineOf finds the line of the field an error names: an endpoint
// ("Options.Endpoints[1]", "endpoints[1]"), an option ("Options.GracePeriod")
// or a key path; 0 if none.
func lineOf(root *yaml.Node, err error) int {
	var fe *fieldError
	msg := err.Error()
	if errors.As(err, &fe) {
		msg = fe.path
	}
	if m := endpointRE.FindStringSubmatch(strings.Replace(msg, "endpoints[", "Endpoints[", 1)); m != nil {
		if eps := value(root, "endpoints"); eps != nil && eps.Kind == yaml.SequenceNode {
			var i int
			fmt.Sscan(m[1], &i)
			if i < len(eps.Content) {
				return eps.Content[i].Line
			}
		}
	}
	if m := optionRE.FindStringSubmatch(msg); m != nil {
		if k := key(root, yamlKey(m[1])); k != nil {
			return k.Line
		}
	}
	if k := key(root, msg); k != nil {
		return k.Line
	}
	return 0
}

// yamlKey maps an Options field name to its YAML key.
func yamlKey(field string) string {
	if f, ok := reflect.TypeOf(File{}).FieldByName(field); ok {
		return strings.Split(f.Tag.Get("yaml"), ",")[0]
	}
	return ""
}

func key(m *yaml.Node, k string) *yaml.Node {
	for i := 0; m.Kind == yaml.MappingNode && i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == k {
			return m.Content[i]
		}
	}
	return nil
}

func value(m *yaml.Node, k string) *yaml.Node {
	for i := 0; m.Kind == yaml.MappingNode && i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == k {
			return m.Content[i+1]
		}
	}
	return nil
}
