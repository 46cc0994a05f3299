package geofailover_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
)

func TestNewRejectsBadOptions(t *testing.T) {
	ok := geofailover.Endpoint{Name: "a", Weight: 1, URL: "redis://127.0.0.1:1"}
	with := func(mod func(*geofailover.Options)) *geofailover.Options {
		o := &geofailover.Options{Endpoints: []geofailover.Endpoint{ok}}
		mod(o)
		return o
	}
	ep := func(mod func(*geofailover.Endpoint)) *geofailover.Options {
		e := ok
		mod(&e)
		return &geofailover.Options{Endpoints: []geofailover.Endpoint{e}}
	}
	cases := []struct {
		name string
		opts *geofailover.Options
		want string // text the error must contain
	}{
		{"nil options", nil, "Options is nil"},
		{"no endpoints", &geofailover.Options{}, "Endpoints is empty"},
		{"empty name", ep(func(e *geofailover.Endpoint) { e.Name = "" }), "Endpoints[0]: name is empty"},
		{"too many endpoints", with(func(o *geofailover.Options) {
			for i := range geofailover.MaxEndpoints {
				e := ok
				e.Name = fmt.Sprint("e", i)
				o.Endpoints = append(o.Endpoints, e)
			}
		}), fmt.Sprintf(`Endpoints[%d]: endpoint "e%d" would be one more than the %d a client can have`, geofailover.MaxEndpoints, geofailover.MaxEndpoints-1, geofailover.MaxEndpoints)},
		{"duplicate name", with(func(o *geofailover.Options) { o.Endpoints = append(o.Endpoints, ok) }), `Endpoints[1]: duplicate Name "a"`},
		{"zero weight", ep(func(e *geofailover.Endpoint) { e.Weight = 0 }), "Weight must be a finite number > 0"},
		{"negative weight", ep(func(e *geofailover.Endpoint) { e.Weight = -1 }), "Weight"},
		{"NaN weight", ep(func(e *geofailover.Endpoint) { e.Weight = math.NaN() }), "Weight"},
		{"Inf weight", ep(func(e *geofailover.Endpoint) { e.Weight = math.Inf(1) }), "Weight"},
		{"no target", ep(func(e *geofailover.Endpoint) { e.URL = "" }), "has no target"},
		{"two targets", ep(func(e *geofailover.Endpoint) { e.Options = &redis.Options{} }), "has 2 targets"},
		{"bad URL", ep(func(e *geofailover.Endpoint) { e.URL = "http://x" }), `endpoint "a": URL:`},
		{"URL password not echoed", ep(func(e *geofailover.Endpoint) { e.URL = "redis://u:s3cret@h:1/zz" }), "URL"},
		{"sentinel without master", ep(func(e *geofailover.Endpoint) { e.URL = ""; e.FailoverOptions = &redis.FailoverOptions{} }), "MasterName"},
		{"cluster without addrs", ep(func(e *geofailover.Endpoint) { e.URL = ""; e.ClusterOptions = &redis.ClusterOptions{} }), "ClusterOptions.Addrs"},
		{"negative interval", with(func(o *geofailover.Options) { o.HealthCheckInterval = -time.Second }), "HealthCheckInterval is negative"},
		{"negative grace", with(func(o *geofailover.Options) { o.GracePeriod = -1 }), "GracePeriod is negative"},
		{"grace max below grace", with(func(o *geofailover.Options) { o.GracePeriod = time.Minute; o.GracePeriodMax = time.Second }), "GracePeriodMax"},
		{"bucket over window", with(func(o *geofailover.Options) { o.BreakerBucket = 10 * time.Second }), "BreakerBucket"},
		{"too many buckets", with(func(o *geofailover.Options) { o.BreakerBucket = time.Microsecond }), "buckets"},
		{"ratio above 1", with(func(o *geofailover.Options) { o.BreakerFailureRatio = 1.5 }), "BreakerFailureRatio"},
		{"NaN ratio", with(func(o *geofailover.Options) { o.SlowCallRatio = math.NaN() }), "SlowCallRatio"},
		{"negative count", with(func(o *geofailover.Options) { o.HealthyAfter = -3 }), "HealthyAfter is negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := geofailover.New(tc.opts)
			if err == nil {
				c.Close()
				t.Fatalf("New accepted %s", tc.name)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}
