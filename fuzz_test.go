package geofailover

import (
	"strings"
	"testing"
	"time"
)

// FuzzValidate: option validation never panics, and every error is a clear
// "geofailover: ..." sentence that names what is wrong and never contains
// the password of an endpoint URL.
func FuzzValidate(f *testing.F) {
	f.Add("east", "redis://user:s3cret@127.0.0.1:6379/0", 1.0, int64(time.Second), int64(time.Second), 2, 3, 0.2, int64(0))
	f.Add("", "", 0.0, int64(-1), int64(0), -1, 0, 1.5, int64(-5))
	f.Add("a", "rediss://:pw@[::1]:6380/15?dial_timeout=3s&pool_size=-1", 0.5, int64(0), int64(0), 0, 0, 0.0, int64(time.Millisecond))
	f.Add("b", "http://x", 1e308, int64(1), int64(1), 1, 1, 1.0, int64(1))
	f.Add("c", "redis://:secret%zz@host:99999/x", 1.0, int64(0), int64(0), 0, 0, 0.0, int64(0))
	f.Fuzz(func(t *testing.T, name, url string, weight float64, interval, timeout int64, unhealthy, healthy int, ratio float64, grace int64) {
		opts := &Options{
			Endpoints:           []Endpoint{{Name: name, Weight: weight, URL: url}},
			HealthCheckInterval: time.Duration(interval),
			HealthCheckTimeout:  time.Duration(timeout),
			UnhealthyAfter:      unhealthy,
			HealthyAfter:        healthy,
			BreakerFailureRatio: ratio,
			GracePeriod:         time.Duration(grace),
		}
		cfg, err := validate(opts)
		if err == nil {
			if cfg == nil || cfg.HealthCheckInterval <= 0 || cfg.IsEndpointFailure == nil {
				t.Fatalf("valid options gave an incomplete config: %+v", cfg)
			}
			return
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "geofailover: ") || len(msg) < len("geofailover: ")+10 {
			t.Fatalf("unclear error %q", msg)
		}
		if pw := urlPassword(url); len(pw) >= 4 && strings.Contains(msg, pw) {
			t.Fatalf("error %q leaks the URL's password %q", msg, pw)
		}
	})
}
