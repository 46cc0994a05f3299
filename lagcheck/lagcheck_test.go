package lagcheck_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/lagcheck"
)

func TestMain(m *testing.M) { failovertest.VerifyTestMain(m) }

const (
	user     = "monitor@example.com"
	password = "s3cret-Pa55"
)

// fixture: a real redis-server, a fake REST API that serves it as
// database 7, and a probe client as geofailover's checker has one.
type fixture struct {
	srv   *failovertest.Server
	api   *failovertest.RESTAPI
	probe *redis.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{srv: failovertest.StartServer(t), api: failovertest.StartRESTAPI(t, user, password)}
	f.api.AddDatabase(7, f.srv.Addr)
	f.probe = redis.NewClient(&redis.Options{Addr: f.srv.Addr})
	t.Cleanup(func() { f.probe.Close() })
	return f
}

func (f *fixture) check(t *testing.T, tune func(*lagcheck.Options)) *lagcheck.Check {
	t.Helper()
	o := lagcheck.Options{
		APIs:     map[string]string{f.srv.Addr: f.api.URL},
		Username: user, Password: password, TLSConfig: f.api.TLSConfig(),
	}
	if tune != nil {
		tune(&o)
	}
	c, err := lagcheck.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// run runs the check once with the given timeout, as the checker would.
func (f *fixture) run(c *lagcheck.Check, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := c.Func()(ctx, f.probe)
	return time.Since(start), err
}

func heldBack(err error) bool {
	var hb *geofailover.HoldBackError
	return errors.As(err, &hb)
}

// TestVerdicts: each of the API's answers, and what the check makes of it.
func TestVerdicts(t *testing.T) {
	f := newFixture(t)
	lag := f.check(t, func(o *lagcheck.Options) { o.LagTolerance = 250 * time.Millisecond })
	plain := f.check(t, nil)
	strict := f.check(t, func(o *lagcheck.Options) { o.Strict = true })
	local := f.check(t, func(o *lagcheck.Options) { o.Local = true; o.LagTolerance = time.Second })
	wrongPw := f.check(t, func(o *lagcheck.Options) { o.Password = "wrong" })

	type want int
	const (
		pass want = iota
		hold
		fail
	)
	steps := []struct {
		name   string
		setup  func()
		check  *lagcheck.Check
		want   want
		substr string
	}{
		{"available", nil, lag, pass, ""},
		{"lag under the tolerance", func() { f.api.SetLag(7, 200*time.Millisecond) }, lag, pass, ""},
		{"lag over the tolerance", func() { f.api.SetLag(7, 300*time.Millisecond) }, lag, hold, "lagging more than 250ms"},
		{"lag not asked for", nil, plain, pass, ""},
		{"local endpoint, lag under its tolerance", nil, local, pass, ""},
		{"unavailable", func() { f.api.SetLag(7, 0); f.api.SetAvailable(7, false) }, plain, hold, "bdb_unavailable"},
		{"unavailable, local", nil, local, hold, "bdb_endpoint_unavailable"},
		{"unavailable, strict", nil, strict, fail, "is unavailable"},
		{"wrong password", func() { f.api.SetAvailable(7, true) }, wrongPw, hold, "401"},
		{"forbidden", func() { f.api.Forbid(true) }, plain, hold, "403"},
		{"server error", func() { f.api.Forbid(false); f.api.FailWith(http.StatusInternalServerError) }, plain, hold, "HTTP 500"},
		{"server error, strict", nil, strict, hold, "HTTP 500"},
		{"recovered", func() { f.api.FailWith(0) }, plain, pass, ""},
		{"database removed", func() { f.api.RemoveDatabase(7); f.api.AddDatabase(9, "127.0.0.1:1") }, plain, hold, "knows no database served at " + f.srv.Addr},
	}
	for _, s := range steps {
		if s.setup != nil {
			s.setup()
		}
		_, err := f.run(s.check, 2*time.Second)
		switch {
		case s.want == pass && err != nil:
			t.Errorf("%s: %v, want a pass", s.name, err)
		case s.want == hold && !heldBack(err):
			t.Errorf("%s: %v, want a HoldBackError", s.name, err)
		case s.want == fail && (err == nil || heldBack(err)):
			t.Errorf("%s: %v, want a failure that is not a HoldBackError", s.name, err)
		case err != nil && !strings.Contains(err.Error(), s.substr):
			t.Errorf("%s: %q does not say %q", s.name, err, s.substr)
		}
		if err != nil && strings.Contains(err.Error(), password) {
			t.Errorf("%s: the error shows the password: %v", s.name, err)
		}
	}

	reqs := f.api.Requests()
	for _, want := range []string{
		"GET /v1/bdbs?fields=uid,endpoints",
		"GET /v1/bdbs/7/availability?extend_check=lag&availability_lag_tolerance_ms=250",
		"GET /v1/bdbs/7/availability",
		"GET /v1/local/bdbs/7/endpoint/availability?extend_check=lag&availability_lag_tolerance_ms=1000",
	} {
		if !slices.Contains(reqs, want) {
			t.Errorf("no request %q among %q", want, reqs)
		}
	}
}

// TestDatabaseMoves: the uid is cached (the list is asked once), and when
// the database is recreated under another uid the same check finds it.
func TestDatabaseMoves(t *testing.T) {
	f := newFixture(t)
	c := f.check(t, nil)
	for range 3 {
		if _, err := f.run(c, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	lists := func() int {
		n := 0
		for _, r := range f.api.Requests() {
			if strings.HasPrefix(r, "GET /v1/bdbs?") {
				n++
			}
		}
		return n
	}
	if n := lists(); n != 1 {
		t.Fatalf("3 checks listed the databases %d times, want once (the uid is cached)", n)
	}
	f.api.MoveDatabase(7, 12)
	if _, err := f.run(c, 2*time.Second); err != nil {
		t.Fatalf("the check after the database moved to uid 12: %v, want a pass (found again at once)", err)
	}
	if n := lists(); n != 2 {
		t.Fatalf("%d lists after the move, want 2", n)
	}
	if r := f.api.Requests(); r[len(r)-1] != "GET /v1/bdbs/12/availability" {
		t.Fatalf("last request %q, want database 12's availability", r[len(r)-1])
	}
}

// TestSlowAndHungAPI: every request is bounded by the check's context: a
// slow or hung API holds the endpoint back within the timeout, and the
// next check after it recovers passes.
func TestSlowAndHungAPI(t *testing.T) {
	f := newFixture(t)
	c := f.check(t, nil)
	for _, mode := range []string{"slow", "hung"} {
		if mode == "slow" {
			f.api.SetDelay(2 * time.Second)
		} else {
			f.api.Hang(true)
		}
		took, err := f.run(c, 300*time.Millisecond)
		if !heldBack(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s API: %v, want a HoldBackError for the deadline", mode, err)
		}
		if took > 1500*time.Millisecond {
			t.Errorf("%s API: the check took %v with a 300ms timeout", mode, took)
		}
		f.api.SetDelay(0)
		f.api.Hang(false)
		if _, err := f.run(c, 2*time.Second); err != nil {
			t.Errorf("after the %s API recovered: %v", mode, err)
		}
	}
}

// TestRedisCheckFirst: a Redis check that fails fails the check (the API
// is not asked); NoRedisCheck asks only the API.
func TestRedisCheckFirst(t *testing.T) {
	f := newFixture(t)
	c := f.check(t, nil)
	apiOnly := f.check(t, func(o *lagcheck.Options) { o.Redis = lagcheck.NoRedisCheck })
	f.srv.Kill()
	before := len(f.api.Requests())
	if _, err := f.run(c, time.Second); err == nil || heldBack(err) {
		t.Fatalf("a dead server: %v, want a failure", err)
	}
	if n := len(f.api.Requests()); n != before {
		t.Fatalf("the API was asked although PING failed")
	}
	if _, err := f.run(apiOnly, time.Second); err != nil {
		t.Fatalf("NoRedisCheck with the API confirming: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	for _, o := range []lagcheck.Options{
		{Password: "p"},
		{Username: "u"},
		{Username: "u", Password: "p", LagTolerance: -time.Second},
		{Username: "u", Password: "p", LagTolerance: time.Microsecond},
		{Username: "u", Password: "p", APIs: map[string]string{"127.0.0.1:6379": "http://127.0.0.1:9443"}},
		{Username: "u", Password: "p", APIs: map[string]string{"nohostport": "https://127.0.0.1:9443"}},
	} {
		if _, err := lagcheck.New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// TestUntrustedCertificate: without the cluster's CA the API is not
// trusted, and the endpoint is held back, not failed.
func TestUntrustedCertificate(t *testing.T) {
	f := newFixture(t)
	c := f.check(t, func(o *lagcheck.Options) { o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12} })
	if _, err := f.run(c, 2*time.Second); !heldBack(err) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an untrusted certificate: %v, want a HoldBackError about the certificate", err)
	}
}

// TestLaggingRegion: a geofailover.Client over two real servers, each
// behind its own fake cluster API, with a lag tolerance of 1 s. The API's
// verdict steers traffic and never causes an outage:
//   - the preferred region lagging at startup is passed over for the
//     standby that is not;
//   - once its lag is back within the tolerance, traffic fails back to it;
//   - when it lags again, traffic stays on it (the active endpoint is not
//     left for lag);
//   - when it dies while the standby lags, traffic goes to the standby all
//     the same.
func TestLaggingRegion(t *testing.T) {
	ctx := context.Background()
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	eastAPI, westAPI := failovertest.StartRESTAPI(t, user, password), failovertest.StartRESTAPI(t, user, password)
	eastAPI.AddDatabase(1, east.Addr)
	westAPI.AddDatabase(2, west.Addr)
	eastAPI.SetLag(1, 5*time.Second)

	chk, err := lagcheck.New(lagcheck.Options{
		APIs:     map[string]string{east.Addr: eastAPI.URL, west.Addr: westAPI.URL},
		Username: user, Password: password, TLSConfig: trustBoth(eastAPI, westAPI),
		LagTolerance: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer chk.Close()
	c, err := geofailover.New(&geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
			{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
		},
		HealthCheck:         chk.Func(),
		HealthCheckInterval: 100 * time.Millisecond,
		FailbackDelay:       200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	events, stop := c.Events(100)
	defer stop()

	failovertest.WaitActive(t, c, "west")
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	st := status(c, "east")
	if st.HeldBack == nil || st.Health != geofailover.Healthy || !strings.Contains(st.HeldBack.Error(), "lagging") {
		t.Fatalf("east at startup: %+v, want healthy and held back for lag", st)
	}

	eastAPI.SetLag(1, 10*time.Millisecond)
	failovertest.NextEvent(t, events, geofailover.EventHeldBack, func(ev geofailover.Event) bool { return ev.Endpoint == "east" && ev.Err == nil })
	failovertest.WaitActive(t, c, "east")

	eastAPI.SetLag(1, 3*time.Second)
	failovertest.NextEvent(t, events, geofailover.EventHeldBack, func(ev geofailover.Event) bool { return ev.Endpoint == "east" && ev.Err != nil })
	time.Sleep(500 * time.Millisecond) // five more checks
	if a := c.Active(); a != "east" {
		t.Fatalf("active %q after east began to lag, want east (not left for lag); status %+v", a, c.Status())
	}

	westAPI.SetLag(2, 3*time.Second)
	failovertest.NextEvent(t, events, geofailover.EventHeldBack, func(ev geofailover.Event) bool { return ev.Endpoint == "west" && ev.Err != nil })
	east.Kill()
	failovertest.WaitActive(t, c, "west")
	if err := c.Get(ctx, "k").Err(); err != nil {
		t.Fatalf("a read on the lagging standby: %v", err)
	}
}

func status(c *geofailover.Client, name string) geofailover.EndpointStatus {
	for _, st := range c.Status() {
		if st.Name == name {
			return st
		}
	}
	return geofailover.EndpointStatus{}
}

// trustBoth trusts both fakes' certificates.
func trustBoth(a, b *failovertest.RESTAPI) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(a.Certificate())
	pool.AddCert(b.Certificate())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
