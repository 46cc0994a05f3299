package geofailover_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// announcedHook counts the commands a client processed.
type announcedHook struct {
	mu   *sync.Mutex
	seen map[string]int
	name string
}

func (h announcedHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h announcedHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.seen[h.name]++
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (h announcedHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		h.seen[h.name] += len(cmds)
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// TestOnNewClient: every client the library builds to carry commands
// (traffic, blocking, their replacements after a failover and a failback)
// is handed to OnNewClient before it serves one: a hook added there sees
// every command each endpoint served.
func TestOnNewClient(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}    // commands the hooks saw, by endpoint
	clients := map[string]int{} // clients announced, by endpoint
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	c := newClient(t, &geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, URL: east.URL()},
		{Name: "west", Weight: 0.5, URL: west.URL()},
	}, HealthCheckInterval: 100 * time.Millisecond, GracePeriod: 300 * time.Millisecond, FailbackDelay: 200 * time.Millisecond,
		OnNewClient: func(endpoint string, client redis.UniversalClient) {
			mu.Lock()
			clients[endpoint]++
			mu.Unlock()
			client.AddHook(announcedHook{mu: &mu, seen: seen, name: endpoint})
		}})
	ctx := ctxFor(t, testTimeout)
	served := map[string]int{} // commands that succeeded, by the endpoint that served them
	work := func(n int) {
		for range n {
			var tr geofailover.Trace
			tctx := geofailover.WithTrace(ctx, &tr)
			if err := c.Set(tctx, "k", "v", 0).Err(); err == nil {
				served[tr.Endpoint]++
			}
			tr = geofailover.Trace{}
			if err := c.RPush(tctx, "q", "x").Err(); err == nil {
				served[tr.Endpoint]++
			}
			tr = geofailover.Trace{}
			if err := c.BLPop(tctx, time.Second, "q").Err(); err == nil {
				served[tr.Endpoint]++
			}
		}
	}
	work(20)
	must(t, east.Kill())
	failovertest.WaitActive(t, c, "west")
	work(20)
	must(t, east.Restart())
	failovertest.WaitActive(t, c, "east")
	work(20)

	mu.Lock()
	defer mu.Unlock()
	t.Logf("clients announced %v; commands served %v; seen by the hooks %v", clients, served, seen)
	for name, n := range served {
		if seen[name] < n {
			t.Errorf("%s served %d commands but its announced clients' hooks saw %d: a client served before it was announced", name, n, seen[name])
		}
	}
	// east: traffic and blocking at New, a new traffic client when traffic
	// left it and when it came back, new blocking clients at each switch.
	if clients["east"] < 4 || clients["west"] < 2 {
		t.Errorf("clients announced %v, want the replacements too", clients)
	}
	if served["east"] == 0 || served["west"] == 0 {
		t.Fatalf("served %v: the test did not cross a failover and a failback", served)
	}
}

// TestOnNewClientPanics: a panicking hook costs neither the client nor its
// supervisor.
func TestOnNewClientPanics(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	c := newClient(t, &geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, URL: east.URL()},
		{Name: "west", Weight: 0.5, URL: west.URL()},
	}, HealthCheckInterval: 100 * time.Millisecond,
		OnNewClient: func(string, redis.UniversalClient) { panic("instrumentation bug") }})
	ctx := ctxFor(t, testTimeout)
	must(t, c.Set(ctx, "k", "v", 0).Err())
	must(t, east.Kill())
	failovertest.WaitActive(t, c, "west")
	must(t, c.Set(ctx, "k", "v", 0).Err())
}

// TestLogRedisTo: go-redis's process-wide log lines (a failed dial here)
// go to the slog.Logger given, at the level given.
func TestLogRedisTo(t *testing.T) {
	var buf syncBuffer
	geofailover.LogRedisTo(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), slog.LevelDebug)
	defer failovertest.SilenceRedisLog()
	s := failovertest.StartServer(t)
	addr := s.Addr
	must(t, s.Kill())
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	defer rc.Close()
	if err := rc.Ping(ctxFor(t, testTimeout)).Err(); err == nil {
		t.Fatal("PING to a killed server succeeded")
	}
	out := buf.String()
	if !strings.Contains(out, `"level":"DEBUG"`) || !strings.Contains(out, `"source":"go-redis"`) || !strings.Contains(out, "dial") {
		t.Fatalf("go-redis's line about the failed dial is not in the slog output: %q", out)
	}
}

// TestCallCounts: Status counts each endpoint's calls by outcome; a kill
// under load shows failures on the endpoint lost, and the calls it sent on
// to the next one.
func TestCallCounts(t *testing.T) {
	east, _, c := pair(t, fast)
	failovertest.WaitActive(t, c, "east")
	run := failovertest.Workload{}.Start(c)
	time.Sleep(200 * time.Millisecond)
	must(t, east.Kill())
	failovertest.WaitActive(t, c, "west")
	time.Sleep(200 * time.Millisecond)
	tl := run.Stop()
	calls := map[string]geofailover.CallCounts{}
	for _, st := range c.Status() {
		calls[st.Name] = st.Calls
	}
	t.Logf("calls: %+v", calls)
	e, w := calls["east"], calls["west"]
	if e.Served == 0 || e.Failed == 0 || e.RetriedUnsent+e.Replayed == 0 || w.Served == 0 {
		t.Errorf("calls %+v: want east served, failed and sent some on, west served", calls)
	}
	ok := uint64(0)
	for _, r := range tl.Records {
		if r.Err == nil {
			ok++
		}
	}
	if got := e.Served + w.Served; got < ok {
		t.Errorf("the endpoints served %d calls, fewer than the %d that succeeded", got, ok)
	}
}
