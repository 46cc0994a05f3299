package config_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/config"
	"github.com/geofailover/geofailover/failovertest"
)

func TestMain(m *testing.M) { failovertest.VerifyTestMain(m) }

func TestParseGood(t *testing.T) {
	t.Setenv("EU_PASSWORD", "s3cret")
	opts, err := config.Parse("good.yaml", []byte(`
endpoints:
  - name: eu-west
    weight: 1
    url: redis://:${EU_PASSWORD}@127.0.0.1:6379/0
  - name: us-east
    weight: 0.5
    sentinel:
      master_name: mymaster
      sentinel_addrs: [127.0.0.1:26379]
  - name: ap-south
    weight: 0.25
    cluster:
      addrs: [127.0.0.1:7000, 127.0.0.1:7001]
health_check: echo
health_check_interval: 500ms
grace_period: 20s
failback_delay: 1m
replay_writes: true
hedge_reads: true
hedge_delay: 7ms
latency_switch_after: 1m30s
disable_latency_ties: true
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Endpoints) != 3 || opts.Endpoints[0].URL != "redis://:s3cret@127.0.0.1:6379/0" ||
		opts.Endpoints[1].FailoverOptions.MasterName != "mymaster" || len(opts.Endpoints[2].ClusterOptions.Addrs) != 2 {
		t.Errorf("endpoints %+v", opts.Endpoints)
	}
	if opts.HealthCheckInterval != 500*time.Millisecond || opts.GracePeriod != 20*time.Second ||
		opts.FailbackDelay != time.Minute || !opts.ReplayWrites || opts.HealthCheck == nil ||
		!opts.HedgeReads || opts.HedgeDelay != 7*time.Millisecond || opts.LatencySwitchAfter != 90*time.Second || !opts.DisableLatencyTies {
		t.Errorf("options %+v", opts)
	}
}

func TestParseErrors(t *testing.T) {
	t.Setenv("SECRET", "hunter2hunter2")
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"not yaml", "endpoints: [", "bad.yaml"},
		{"empty", "", "must be a mapping"},
		{"unknown top-level field", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1}\nhealth_chek_interval: 1s\n", `bad.yaml:3: unknown field "health_chek_interval" in the top level`},
		{"unknown endpoint field", "endpoints:\n  - name: a\n    weigth: 1\n", `bad.yaml:3: unknown field "weigth" in endpoints[0] (known: name, weight, url, cluster, sentinel, tls, rest_api, options)`},
		{"unknown client option", "endpoints:\n  - name: a\n    weight: 1\n    url: redis://h:1\n    options: {poolsize: 3}\n", `bad.yaml:5: unknown field "poolsize" in endpoints[0].options`},
		{"bad protocol", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1, options: {protocol: 4}}\n", "endpoints[0].options.protocol must be 2 or 3, not 4"},
		{"negative pool", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1, options: {pool_size: -1}}\n", "endpoints[0].options.pool_size must not be negative"},
		{"cache on a cluster", "endpoints:\n  - {name: a, weight: 1, cluster: {addrs: ['h:1']}, options: {client_side_cache: true}}\n", "client_side_cache is for url endpoints only"},
		{"cache over resp2", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1, options: {client_side_cache: true, protocol: 2}}\n", "client_side_cache needs protocol 3"},
		{"bad duration", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1}\ngrace_period: ten seconds\n", `bad.yaml:3: "ten seconds" is not a duration`},
		{"bad number", "endpoints:\n  - name: a\n    weight: heavy\n    url: redis://h:1\n", "bad.yaml:3: cannot unmarshal !!str `heavy` into float64"},
		{"zero weight", "endpoints:\n  - name: a\n    url: redis://h:1\n  - name: b\n    weight: 0\n    url: redis://h:2\n", `bad.yaml:2: Options.Endpoints[0]: endpoint "a": Weight must be a finite number > 0`},
		{"no target", "endpoints:\n  - name: a\n    weight: 1\n", `bad.yaml:2: endpoints[0] ("a") needs one of url, cluster, sentinel`},
		{"negative option", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1}\nunhealthy_after: -1\n", "bad.yaml:3: Options.UnhealthyAfter is negative"},
		{"bad health check", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1}\nhealth_check: curl\n", `bad.yaml:3: health_check must be ping, echo or lag, not "curl"`},
		{"unset env", "endpoints:\n  - name: a\n    weight: 1\n    url: redis://:${NOPE_NOT_SET}@h:1\n", "bad.yaml:4: environment variable NOPE_NOT_SET is not set"},
		{"bad url keeps secret", "endpoints:\n  - name: a\n    weight: 1\n    url: redis://:${SECRET}@h:99999999/x\n", "bad.yaml:2: Options.Endpoints[0]"},
		{"no endpoints", "grace_period: 1s\n", "Endpoints is empty"},
		{"tls on a plain url", "endpoints:\n  - name: a\n    weight: 1\n    url: redis://h:1\n    tls: {server_name: h}\n", `bad.yaml:2: Options.Endpoints[0]: endpoint "a": TLSConfig is set but the URL is not rediss://`},
		{"missing ca file", "endpoints:\n  - name: a\n    weight: 1\n    url: rediss://h:1\n    tls: {ca_file: /nonexistent/ca.crt}\n", "bad.yaml:2: endpoints[0].tls.ca_file: open /nonexistent/ca.crt"},
		{"lag without its section", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1}\nhealth_check: lag\n", "health_check: lag and a lag_check section go together"},
		{"lag section without lag", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1}\nlag_check: {username: u, password: p}\n", "health_check: lag and a lag_check section go together"},
		{"lag without password", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1}\nhealth_check: lag\nlag_check: {username: u}\n", "lag_check: Username and Password are required"},
		{"lag tolerance too fine", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1}\nhealth_check: lag\nlag_check: {username: u, password: '${SECRET}', lag_tolerance: 10us}\n", "lag_check: LagTolerance 10µs"},
		{"lag redis check", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1}\nhealth_check: lag\nlag_check: {username: u, password: p, redis_check: curl}\n", `lag_check.redis_check must be ping, echo or none, not "curl"`},
		{"rest api over http", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1, rest_api: 'http://h:9443'}\nhealth_check: lag\nlag_check: {username: u, password: p}\n", `is not an https:// URL`},
		{"rest api without lag", "endpoints:\n  - {name: a, weight: 1, url: redis://h:1, rest_api: 'https://h:9443'}\n", "bad.yaml:2: endpoints[0].rest_api: needs health_check: lag"},
		{"rest api on sentinel", "endpoints:\n  - {name: a, weight: 1, sentinel: {master_name: m, sentinel_addrs: [h:1]}, rest_api: 'https://h:9443'}\nhealth_check: lag\nlag_check: {username: u, password: p}\n", "endpoints[0].rest_api: the lag check needs a url or cluster endpoint"},
		{"cert without key", "endpoints:\n  - name: a\n    weight: 1\n    url: rediss://h:1\n    tls: {cert_file: c.crt}\n", "bad.yaml:2: endpoints[0].tls: cert_file and key_file go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("bad.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := config.Load(t.TempDir() + "/nope.yaml"); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// FuzzParse: any input gives options or a "config: ..." error, never a
// panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte("endpoints:\n  - {name: a, weight: 1, url: redis://h:1}\n"))
	f.Add([]byte("endpoints:\n  - name: a\n    cluster: {addrs: [x]}\n    weight: 2\ngrace_period: 1s\n"))
	f.Add([]byte("endpoints: [{name: ${X}}]\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("endpoints:\n  - &a {name: a}\n  - *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts, err := config.Parse("fuzz.yaml", data)
		if err == nil && opts == nil {
			t.Fatal("nil options without an error")
		}
		if err != nil && !strings.HasPrefix(err.Error(), "config: fuzz.yaml") {
			t.Fatalf("unclear error %q", err)
		}
	})
}

// TestEveryScalarOptionHasAKey: the package doc promises a key for every
// scalar field of geofailover.Options; a new option without one fails here.
func TestEveryScalarOptionHasAKey(t *testing.T) {
	file := reflect.TypeOf(config.File{})
	opts := reflect.TypeOf(geofailover.Options{})
	for i := range opts.NumField() {
		f := opts.Field(i)
		switch f.Type.Kind() {
		case reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64, reflect.String:
		default:
			continue // endpoints, functions, loggers: set by code
		}
		if _, ok := file.FieldByName(f.Name); !ok {
			t.Errorf("Options.%s has no key in config.File", f.Name)
		}
	}
}

// TestClientOptionsFromFile: an endpoint's go-redis options come from its
// options section, for each kind of endpoint, and a url endpoint keeps
// what its URL says (db, credentials) with them.
func TestClientOptionsFromFile(t *testing.T) {
	opts, err := config.Parse("opts.yaml", []byte(`
endpoints:
  - name: eu
    weight: 1
    url: redis://app:pw@127.0.0.1:6379/2
    options:
      protocol: 3
      client_name: shop
      pool_size: 50
      min_idle_conns: 5
      max_idle_conns: 10
      pool_timeout: 2s
      dial_timeout: 1s
      read_timeout: 500ms
      write_timeout: 400ms
      conn_max_idle_time: 5m
      conn_max_lifetime: 1h
      client_side_cache: true
  - name: us
    weight: 0.5
    cluster: {addrs: ['127.0.0.1:7000']}
    options: {pool_size: 7, read_timeout: 300ms, protocol: 2}
  - name: ap
    weight: 0.25
    sentinel: {master_name: m, sentinel_addrs: ['127.0.0.1:26379']}
    options: {client_name: shop-ap, dial_timeout: 2s}
`))
	if err != nil {
		t.Fatal(err)
	}
	eu := opts.Endpoints[0].Options
	if eu == nil || opts.Endpoints[0].URL != "" {
		t.Fatalf("url endpoint with options: %+v", opts.Endpoints[0])
	}
	if eu.Addr != "127.0.0.1:6379" || eu.DB != 2 || eu.Username != "app" || eu.Password != "pw" || eu.Protocol != 3 ||
		eu.ClientName != "shop" || eu.PoolSize != 50 || eu.MinIdleConns != 5 || eu.MaxIdleConns != 10 ||
		eu.PoolTimeout != 2*time.Second || eu.DialTimeout != time.Second || eu.ReadTimeout != 500*time.Millisecond ||
		eu.WriteTimeout != 400*time.Millisecond || eu.ConnMaxIdleTime != 5*time.Minute || eu.ConnMaxLifetime != time.Hour ||
		eu.ClientSideCacheConfig == nil {
		t.Errorf("eu options %+v", eu)
	}
	if us := opts.Endpoints[1].ClusterOptions; us.PoolSize != 7 || us.ReadTimeout != 300*time.Millisecond || us.Protocol != 2 {
		t.Errorf("us options %+v", us)
	}
	if ap := opts.Endpoints[2].FailoverOptions; ap.ClientName != "shop-ap" || ap.DialTimeout != 2*time.Second {
		t.Errorf("ap options %+v", ap)
	}
}

// TestOptionsWithRESTAPI: an endpoint with an options section keeps its
// rest_api for the lag check.
func TestOptionsWithRESTAPI(t *testing.T) {
	_, err := config.Parse("lag.yaml", []byte(`
endpoints:
  - {name: a, weight: 1, url: 'redis://h:1', rest_api: 'https://h:9443', options: {pool_size: 3}}
health_check: lag
lag_check: {username: u, password: p}
`))
	if err != nil {
		t.Fatal(err)
	}
}
