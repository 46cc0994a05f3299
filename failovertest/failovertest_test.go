package failovertest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

func TestMain(m *testing.M) {
	failovertest.VerifyTestMain(m)
}

func TestServerLifecycle(t *testing.T) {
	s := failovertest.StartServer(t, failovertest.WithPersistence(), failovertest.WithMinVersion("6.0"))
	if s.Version == "" || s.PID() == 0 || !strings.HasPrefix(s.Addr, "127.0.0.1:") {
		t.Fatalf("server %+v pid %d", s, s.PID())
	}
	ctx := context.Background()
	c := failovertest.Connect(t, s.Addr)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := c.Get(cctx, "k").Err()
	cancel()
	var nerr net.Error
	if !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Fatalf("GET on a paused server = %v, want a timeout", err)
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}

	pid := s.PID()
	s.Kill()
	if err := s.WaitDown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(); err == nil {
		t.Fatal("Pause of a killed server succeeded")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.PID() == pid {
		t.Fatal("Restart kept the PID")
	}
	// With persistence, the acknowledged write survived SIGKILL.
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after SIGKILL and Restart with persistence: %q, %v", got, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitDown(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Log(100), "Ready to accept connections") {
		t.Errorf("log lacks the start line:\n%s", s.Log(100))
	}
}

func TestServerErrors(t *testing.T) {
	if _, err := failovertest.LaunchServer(t.TempDir(), failovertest.WithMinVersion("99.0")); err == nil || !strings.Contains(err.Error(), "99.0 or newer is needed") {
		t.Errorf("min version 99.0: %v", err)
	}
	if _, err := failovertest.LaunchServer(t.TempDir(), failovertest.WithBinary("/nonexistent/redis-server")); err == nil {
		t.Error("a missing binary started")
	}
	t.Setenv("REDIS_SERVER", "")
	t.Setenv("PATH", t.TempDir())
	if _, err := failovertest.Binary(); !errors.Is(err, failovertest.ErrNoRedisServer) || !strings.Contains(err.Error(), "apt-get install") {
		t.Errorf("Binary without redis-server: %v", err)
	}
}

func TestStartServersCleanUp(t *testing.T) {
	var pids []int
	t.Run("inner", func(t *testing.T) {
		for _, s := range failovertest.StartServers(t, 3) {
			pids = append(pids, s.PID())
		}
	})
	for _, pid := range pids {
		p, err := os.FindProcess(pid)
		if err != nil {
			continue
		}
		if err := p.Signal(nil); err == nil {
			t.Errorf("server pid %d still running after its test ended", pid)
		}
	}
	if len(pids) != 3 {
		t.Fatalf("started %d servers", len(pids))
	}
}

// TestWorkloadTimeline: the runner attributes each command to the endpoint
// that served it and measures a failover.
func TestWorkloadTimeline(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
		{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	run := failovertest.Workload{Workers: 4}.Start(c)
	time.Sleep(200 * time.Millisecond)
	at := time.Now()
	east.Kill()
	time.Sleep(500 * time.Millisecond)
	tl := run.Stop()
	rep := tl.Analyze(failovertest.Outage{From: "east", To: "west", At: at})
	t.Logf("kill under a 4-worker workload: %v", rep)
	if !rep.Moved || !rep.AllWorkersMoved || rep.Switches != 1 || rep.Errors.Reads != 0 || rep.Errors.Writes > 4 {
		t.Errorf("report %v", rep)
	}
	var before, after int
	for _, r := range tl.Records {
		switch {
		case r.Err == nil && r.End.Before(at) && r.Endpoint == "east":
			before++
		case r.Err == nil && r.Start.After(at.Add(100*time.Millisecond)) && r.Endpoint == "west":
			after++
		case r.Err == nil && r.Start.After(at.Add(100*time.Millisecond)):
			t.Errorf("record %+v after the switch served by %q", r, r.Endpoint)
		}
	}
	if before == 0 || after == 0 {
		t.Errorf("%d successes on east before, %d on west after", before, after)
	}
}

// TestWorkloadThroughAService: steps that reach the client through an HTTP
// service (not with the step's ctx) are attributed to the endpoint that
// served them, reported with Served or inferred from the client, so the
// kit can assert failover and failback of a service.
func TestWorkloadThroughAService(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
		{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
	}, HealthCheckInterval: 50 * time.Millisecond, GracePeriod: 200 * time.Millisecond, FailbackDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// The service: one handler writes through the client and says which
	// endpoint served it.
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var tr geofailover.Trace
		if err := c.Set(geofailover.WithTrace(r.Context(), &tr), "svc", "v", 0).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Endpoint", tr.Endpoint)
	}))
	defer svc.Close()
	hc := svc.Client()
	call := func(ctx context.Context) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, svc.URL, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, errors.New(resp.Status)
		}
		return resp, nil
	}
	run := failovertest.Workload{Workers: 4, Timeout: time.Second, Steps: []failovertest.Step{
		{Name: "POST reported", Write: true, Do: func(ctx context.Context, _ redis.UniversalClient, _, _ int) error {
			resp, err := call(ctx)
			if err == nil {
				failovertest.Served(ctx, resp.Header.Get("X-Endpoint"))
			}
			return err
		}},
		{Name: "POST inferred", Write: true, Do: func(ctx context.Context, _ redis.UniversalClient, _, _ int) error {
			_, err := call(ctx)
			return err
		}},
	}}.Start(c)
	time.Sleep(200 * time.Millisecond)
	at := time.Now()
	if err := east.Kill(); err != nil {
		t.Fatal(err)
	}
	failovertest.WaitActive(t, c, "west")
	time.Sleep(200 * time.Millisecond)
	healed := time.Now()
	if err := east.Restart(); err != nil {
		t.Fatal(err)
	}
	failovertest.WaitActive(t, c, "east")
	time.Sleep(200 * time.Millisecond)
	tl := run.Stop()
	rep := tl.Analyze(failovertest.Outage{From: "east", To: "west", At: at, Recovered: healed})
	t.Log(rep)
	if !rep.Moved || !rep.FailedBack {
		t.Fatalf("the kit did not see the service fail over and back: %v", rep)
	}
	reported, inferred := 0, 0
	for _, r := range tl.Records {
		switch {
		case r.Err != nil:
		case r.Step == "POST reported" && r.Endpoint != "" && !r.Inferred:
			reported++
		case r.Step == "POST inferred" && r.Endpoint != "" && r.Inferred:
			inferred++
		default:
			t.Fatalf("record %+v: attribution wrong", r)
		}
	}
	if reported == 0 || inferred == 0 {
		t.Fatalf("%d reported and %d inferred attributions", reported, inferred)
	}
}

// TestClusterLifecycle: a 3-master cluster forms, serves keys on every
// master, and a killed master comes back with its slots.
func TestClusterLifecycle(t *testing.T) {
	cl := failovertest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc := redis.NewClusterClient(cl.Options())
	defer rc.Close()
	seen := map[string]bool{}
	for i := range 30 {
		key := fmt.Sprint("k", i)
		if err := rc.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		m, err := cl.MasterFor(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := failovertest.Connect(t, m.Addr).Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Fatalf("%s is not on %s, the master MasterFor names: %v, %v", key, m.Addr, n, err)
		}
		seen[m.Addr] = true
	}
	if len(seen) != 3 {
		t.Fatalf("30 keys landed on %d masters, want 3", len(seen))
	}
	if err := cl.Masters[1].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Masters[1].Restart(); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitOK(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rc.Set(ctx, "after", 1, 0).Err(); err != nil {
		t.Fatalf("SET after a master's restart: %v", err)
	}
}

// TestSentinelGroup: a Sentinel-managed primary with a replica and an ACL
// user serves through go-redis's failover client, and Promote moves the
// primary to the replica.
func TestSentinelGroup(t *testing.T) {
	g := failovertest.StartSentinelGroup(t, 1, failovertest.WithUser("app", "sentinel-pw-1"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc := redis.NewFailoverClient(g.Options())
	defer rc.Close()
	if err := rc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the Sentinel: %v", err)
	}
	if addr, err := g.PrimaryAddr(ctx); err != nil || addr != g.Primary.Addr {
		t.Fatalf("primary %q (%v), want %s", addr, err, g.Primary.Addr)
	}
	now, err := g.Promote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if now != g.Replicas[0].Addr {
		t.Fatalf("promoted %s, want the replica %s", now, g.Replicas[0].Addr)
	}
	for {
		err := rc.Set(ctx, "k", "after", 0).Err()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("SET after the promotion: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLaunchRESTAPI: the fake REST API runs outside a test too, and Close
// stops it (twice is fine).
func TestLaunchRESTAPI(t *testing.T) {
	a := failovertest.LaunchRESTAPI("u", "p")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: a.TLSConfig()}}
	req, _ := http.NewRequest("GET", a.URL+"/v1/bdbs", nil)
	req.SetBasicAuth("u", "p")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/bdbs: %s", resp.Status)
	}
	a.Close()
	a.Close()
	if _, err := client.Do(req); err == nil {
		t.Fatal("the API still answers after Close")
	}
}
