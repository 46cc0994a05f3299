package geofailover_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// readOnly is a read-only round: GET of a key set beforehand.
var readOnly = []failovertest.Step{{Name: "GET", Do: func(ctx context.Context, c redis.UniversalClient, w, n int) error {
	return c.Get(ctx, fmt.Sprintf("hk:%d", w)).Err()
}}}

// freezeCycles runs the reference read-only load (8 workers, 100 ms
// deadlines) through cycles of SIGSTOP (1 s) and SIGCONT of the preferred
// endpoint, each ending with traffic back on it, and returns the failed
// reads, the slowest read and the client's final status.
func freezeCycles(t *testing.T, cycles int, hedge bool) (failed int, slowest time.Duration, status []geofailover.EndpointStatus) {
	t.Helper()
	east, west, c := pair(t, func(o *geofailover.Options) {
		o.HedgeReads = hedge
		o.GracePeriod = 300 * time.Millisecond
		o.FailbackDelay = 300 * time.Millisecond
		o.HealthCheckInterval = 100 * time.Millisecond
	})
	failovertest.WaitActive(t, c, "east")
	for _, srv := range []*failovertest.Server{east, west} {
		rc := failovertest.Connect(t, srv.Addr)
		for w := range 8 {
			if err := rc.Set(context.Background(), fmt.Sprintf("hk:%d", w), "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := failovertest.Workload{Steps: readOnly}.Start(c)
	for range cycles {
		time.Sleep(300 * time.Millisecond)
		if err := east.Pause(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if err := east.Resume(); err != nil {
			t.Fatal(err)
		}
		failovertest.WaitActive(t, c, "east")
	}
	time.Sleep(300 * time.Millisecond)
	tl := run.Stop()
	errs := tl.Errors(time.Time{}, time.Time{})
	return errs.Total(), tl.Slowest(time.Time{}, time.Time{}), c.Status()
}

// TestHedgedReadsThroughFreezes: with HedgeReads, reads in flight on a
// frozen endpoint are answered by the fallback: three freezes of the
// preferred endpoint under a read-only load with 100 ms deadlines cost no
// failed read (without hedging, the reads in flight run out their
// deadlines, which the same run without hedging shows).
func TestHedgedReadsThroughFreezes(t *testing.T) {
	baseline, baseSlowest, _ := freezeCycles(t, 3, false)
	t.Logf("without hedging, 3 SIGSTOP/SIGCONT cycles: %d failed reads, slowest %v", baseline, baseSlowest)
	if baseline == 0 {
		t.Errorf("without hedging no read failed: the freezes did not meet the load, so this test shows nothing")
	}
	failed, slowest, status := freezeCycles(t, 3, true)
	var hedged, wins uint64
	for _, st := range status {
		hedged += st.Calls.Hedged
		wins += st.Calls.HedgeWins
	}
	t.Logf("hedged reads, 3 SIGSTOP/SIGCONT cycles: %d failed reads, slowest %v, %d hedges, %d won", failed, slowest, hedged, wins)
	if failed != 0 {
		t.Errorf("%d reads failed with HedgeReads through 3 freezes, want 0", failed)
	}
	if hedged == 0 || wins == 0 {
		t.Errorf("no hedge sent (%d) or won (%d) through 3 freezes", hedged, wins)
	}
}

// TestHedgesStayWithinBudget: on a healthy endpoint, reads slower than the
// hedge delay are hedged, within the budget: a hedge delay far below the
// round trip would hedge every read, and the budget allows hedgeBurst plus
// hedgeShare per read.
func TestHedgesStayWithinBudget(t *testing.T) {
	_, _, c := pair(t, func(o *geofailover.Options) {
		o.HedgeReads = true
		o.HedgeDelay = time.Nanosecond // every read is late
	})
	failovertest.WaitActive(t, c, "east")
	ctx := context.Background()
	const reads = 4000
	for i := range reads {
		if err := c.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
			t.Fatalf("read %d: %v, want redis.Nil (an answer)", i, err)
		}
	}
	var hedged uint64
	for _, st := range c.Status() {
		hedged += st.Calls.Hedged
	}
	limit := uint64(geofailover.HedgeBurst + geofailover.HedgeShare*reads + 1)
	t.Logf("%d reads with a 1 ns hedge delay: %d hedges (budget %d)", reads, hedged, limit)
	if hedged > limit {
		t.Errorf("%d hedges for %d reads, want at most %d", hedged, reads, limit)
	}
	if hedged < geofailover.HedgeBurst {
		t.Errorf("%d hedges with a 1 ns delay, want at least the burst (%d)", hedged, geofailover.HedgeBurst)
	}
}

// TestNeverHedged: writes, blocking commands, transactions and pipelines
// are never hedged, whatever the delay.
func TestNeverHedged(t *testing.T) {
	_, _, c := pair(t, func(o *geofailover.Options) {
		o.HedgeReads = true
		o.HedgeDelay = time.Nanosecond
	})
	failovertest.WaitActive(t, c, "east")
	ctx := context.Background()
	for i := range 100 {
		must(t, c.Set(ctx, "k", i, 0).Err())
		must(t, c.Incr(ctx, "n").Err())
		must(t, c.LPush(ctx, "list", i).Err())
		must(t, c.BLPop(ctx, time.Second, "list").Err()) // answered at once: an element waits
		_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, "k"); return nil })
		must(t, err)
		_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, "k"); return nil })
		must(t, err)
		must(t, c.Scan(ctx, 0, "*", 10).Err())
	}
	for _, st := range c.Status() {
		if st.Calls.Hedged != 0 {
			t.Errorf("%s got %d hedges from writes, blocking commands, transactions, pipelines and SCAN", st.Name, st.Calls.Hedged)
		}
	}
}

// TestHedgedReadResults: a hedged read returns its own typed result (the
// winner's answer is in the caller's command) from the endpoint the Trace
// names, whether it came from the first attempt or the hedge, and an error
// reply is an answer, not a failure; for endpoints we build (the first
// attempt is cut when the hedge wins) and for endpoints given as a Client
// (both attempts on goroutines).
func TestHedgedReadResults(t *testing.T) {
	for _, given := range []bool{false, true} {
		t.Run(map[bool]string{false: "built", true: "client"}[given], func(t *testing.T) {
			east, west := failovertest.StartServer(t), failovertest.StartServer(t)
			opts := &geofailover.Options{HedgeReads: true, HedgeDelay: time.Nanosecond, Endpoints: []geofailover.Endpoint{
				{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
				{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
			}}
			if given {
				for i, srv := range []*failovertest.Server{east, west} {
					rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
					defer rc.Close()
					opts.Endpoints[i].URL, opts.Endpoints[i].Client = "", rc
				}
			}
			c := newClient(t, opts)
			failovertest.WaitActive(t, c, "east")
			ctx := context.Background()
			for _, srv := range []*failovertest.Server{east, west} {
				rc := failovertest.Connect(t, srv.Addr)
				must(t, rc.HSet(ctx, "h", "a", "1", "from", srv.Addr).Err())
				must(t, rc.Set(ctx, "s", "str", 0).Err())
			}
			served := map[string]int{}
			read := func() {
				t.Helper()
				var tr geofailover.Trace
				rctx, cancel := context.WithTimeout(geofailover.WithTrace(ctx, &tr), 2*time.Second)
				defer cancel()
				m, err := c.HGetAll(rctx, "h").Result()
				if err != nil || len(m) != 2 || m["a"] != "1" {
					t.Fatalf("HGETALL: %v %v", m, err)
				}
				want := map[string]string{"east": east.Addr, "west": west.Addr}[tr.Endpoint]
				if m["from"] != want {
					t.Fatalf("HGETALL answered from %s, but the trace says %+v", m["from"], tr)
				}
				served[tr.Endpoint]++
			}
			for range 25 { // 50 reads, within hedgeBurst: the frozen phase below still has hedges
				read()
				if err := c.HGet(ctx, "s", "a").Err(); err == nil || errors.Is(err, redis.Nil) {
					t.Fatalf("HGET on a string: %v, want WRONGTYPE", err)
				}
			}
			for _, st := range c.Status() {
				if st.Breaker != geofailover.BreakerClosed || st.Calls.Failed != 0 {
					t.Errorf("%s: breaker %v, %d failed: WRONGTYPE replies or hedges counted as failures", st.Name, st.Breaker, st.Calls.Failed)
				}
			}
			// East frozen: the hedges answer.
			must(t, east.Pause())
			for range 20 {
				read()
			}
			must(t, east.Resume())
			t.Logf("45 HGETALLs and 25 HGETs with a 1 ns hedge delay, the last 20 HGETALLs with east frozen, served by %v", served)
			if served["west"] == 0 {
				t.Errorf("no read served by west, although east was frozen for 20 of them")
			}
		})
	}
}
