package chaos_test

import (
	"context"
	"errors"
	"flag"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/faultproxy"
)

var soak = flag.Bool("chaos.soak", false, "run the long soak variants (flapping for 10 minutes, more rounds)")

func TestMain(m *testing.M) {
	failovertest.WaitTimeout = wait
	failovertest.VerifyTestMain(m)
}

// wait bounds every wait in the suite, so a hang fails instead of stalling.
const wait = 60 * time.Second

// region is one endpoint of a scenario: a real server, optionally behind
// a fault proxy.
type region struct {
	name   string
	weight float64
	srv    *failovertest.Server
	proxy  *faultproxy.Proxy // nil when the client talks to srv directly
}

// lab starts one server per weight (named a, b, c... unless names are
// given) and a client over them; withProxy puts each behind a fault proxy.
func lab(t *testing.T, weights []float64, withProxy bool, tune func(*geofailover.Options)) ([]*region, *geofailover.Client) {
	t.Helper()
	names := []string{"east", "west", "south"}
	var regions []*region
	var eps []geofailover.Endpoint
	for i, w := range weights {
		r := &region{name: names[i], weight: w, srv: failovertest.StartServer(t)}
		addr := r.srv.Addr
		if withProxy {
			r.proxy = faultproxy.Start(t, addr)
			addr = r.proxy.Addr
		}
		regions = append(regions, r)
		eps = append(eps, geofailover.Endpoint{Name: r.name, Weight: w, Options: &redis.Options{Addr: addr}})
	}
	opts := &geofailover.Options{Endpoints: eps}
	if tune != nil {
		tune(opts)
	}
	c, err := geofailover.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	failovertest.LogEventsOnFailure(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	failovertest.WaitActive(t, c, regions[0].name)
	for _, r := range regions[1:] {
		failovertest.WaitHealth(t, c, r.name, geofailover.Healthy)
	}
	return regions, c
}

// quick shortens checks, grace and failback so scenarios finish in seconds;
// detection under load does not depend on them.
func quick(o *geofailover.Options) {
	o.HealthCheckInterval = 200 * time.Millisecond
	o.HealthCheckTimeout = 200 * time.Millisecond
	o.GracePeriod = time.Second
	o.FailbackDelay = 500 * time.Millisecond
}

// checks are what every scenario asserts of its timeline.
type checks struct {
	timeout     time.Duration // the workload's per-command timeout
	moved       bool          // traffic must reach the new endpoint
	failback    bool          // and come back
	maxSwitches int           // 0: no bound
	// readsFrom limits the check on reads that never reached a server to
	// commands started after it (while all endpoints are down, such reads
	// have nowhere to go).
	readsFrom time.Time
}

// verify asserts the scenario's promises on tl and logs the report.
func verify(t *testing.T, tl *failovertest.Timeline, o failovertest.Outage, want checks) failovertest.Report {
	t.Helper()
	rep := tl.Analyze(o)
	t.Logf("%s: %v (%d commands)", t.Name(), rep, len(tl.Records))
	// No command hangs beyond its timeout (plus scheduling slack under -race).
	limit := want.timeout + 250*time.Millisecond
	for _, r := range tl.Records {
		if r.Duration() > limit {
			t.Errorf("%s took %v (timeout %v): %v", r.Step, r.Duration(), want.timeout, r.Err)
			break
		}
	}
	if want.moved && !rep.Moved {
		t.Errorf("traffic never reached %s", o.To)
	}
	if want.failback && !rep.FailedBack {
		t.Errorf("no failback to %s", o.From)
	}
	if want.maxSwitches > 0 && rep.Switches > want.maxSwitches {
		t.Errorf("%d switches, want at most %d", rep.Switches, want.maxSwitches)
	}
	// Reads that never reached a server are retried, so none surfaces.
	for _, r := range tl.Records {
		if !r.Write && r.Err != nil && r.NotApplied && r.Start.After(want.readsFrom) {
			t.Errorf("a read that never reached a server failed: %v", r.Err)
			break
		}
	}
	return rep
}

// outage runs the reference workload around fault and heal, and verifies.
func outage(t *testing.T, c *geofailover.Client, from, to *region, fault, heal func(), want checks, w failovertest.Workload) failovertest.Report {
	t.Helper()
	if want.timeout == 0 {
		want.timeout = 100 * time.Millisecond
	}
	w.Timeout = want.timeout
	run := w.Start(c)
	time.Sleep(200 * time.Millisecond)
	at := time.Now()
	fault()
	if want.moved {
		failovertest.WaitActive(t, c, to.name)
	}
	time.Sleep(300 * time.Millisecond)
	var recovered time.Time
	if heal != nil {
		recovered = time.Now()
		heal()
		if want.failback {
			failovertest.WaitActive(t, c, from.name)
			time.Sleep(200 * time.Millisecond)
		}
	}
	tl := run.Stop()
	return verify(t, tl, failovertest.Outage{From: from.name, To: to.name, At: at, Recovered: recovered}, want)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestHardKill(t *testing.T) {
	for _, name := range []string{"defaults", "quick"} {
		t.Run(name, func(t *testing.T) {
			var tune func(*geofailover.Options)
			if name == "quick" {
				tune = quick
			}
			rs, c := lab(t, []float64{1, 0.5}, false, tune)
			rep := outage(t, c, rs[0], rs[1], func() { must(t, rs[0].srv.Kill()) }, func() { must(t, rs[0].srv.Restart()) },
				checks{moved: true, failback: true, maxSwitches: 2}, failovertest.Workload{})
			if rep.Errors.Reads > 0 {
				t.Errorf("%d read errors on a hard kill; reads are replayed", rep.Errors.Reads)
			}
			if rep.Errors.Writes > 8 {
				t.Errorf("%d write errors; at most the 8 in flight", rep.Errors.Writes)
			}
		})
	}
}

func TestHang(t *testing.T) {
	rs, c := lab(t, []float64{1, 0.5}, false, quick)
	outage(t, c, rs[0], rs[1], func() { must(t, rs[0].srv.Pause()) }, func() { must(t, rs[0].srv.Resume()) },
		checks{moved: true, failback: true, maxSwitches: 2}, failovertest.Workload{})
}

func TestBlackHole(t *testing.T) {
	rs, c := lab(t, []float64{1, 0.5}, true, quick)
	var hole *faultproxy.Fault
	outage(t, c, rs[0], rs[1], func() { hole = rs[0].proxy.BlackHole(faultproxy.Both) }, func() { hole.Remove() },
		checks{moved: true, failback: true, maxSwitches: 2}, failovertest.Workload{})
}

func TestLatency(t *testing.T) {
	slow := func(o *geofailover.Options) {
		quick(o)
		o.SlowCallThreshold = 50 * time.Millisecond
	}
	t.Run("above threshold", func(t *testing.T) {
		rs, c := lab(t, []float64{1, 0.5}, true, slow)
		var lat *faultproxy.Fault
		outage(t, c, rs[0], rs[1], func() { lat = rs[0].proxy.Latency(80*time.Millisecond, 10*time.Millisecond, faultproxy.Downstream) },
			func() { lat.Remove() }, checks{timeout: 500 * time.Millisecond, moved: true, failback: true, maxSwitches: 2}, failovertest.Workload{})
	})
	t.Run("below threshold", func(t *testing.T) {
		rs, c := lab(t, []float64{1, 0.5}, true, slow)
		lat := rs[0].proxy.Latency(10*time.Millisecond, 5*time.Millisecond, faultproxy.Downstream)
		defer lat.Remove()
		run := failovertest.Workload{Timeout: 500 * time.Millisecond}.Start(c)
		time.Sleep(2 * time.Second)
		tl := run.Stop()
		rep := verify(t, tl, failovertest.Outage{From: "east", To: "east", At: tl.Start}, checks{timeout: 500 * time.Millisecond})
		if rep.Switches != 0 || rep.Errors.Total() != 0 {
			t.Errorf("latency under the threshold caused %d switches and %d errors", rep.Switches, rep.Errors.Total())
		}
	})
}

func TestResetStorm(t *testing.T) {
	rs, c := lab(t, []float64{1, 0.5}, true, quick)
	var rst *faultproxy.Fault
	outage(t, c, rs[0], rs[1], func() { rst = rs[0].proxy.ResetPeer(faultproxy.Upstream) }, func() { rst.Remove() },
		checks{moved: true, failback: true, maxSwitches: 2}, failovertest.Workload{})
}

// TestFlapping: the preferred endpoint goes down and up every 2 s for a
// minute (10 in soak mode); switches stay bounded (at most 6 a
// minute), with default options.
func TestFlapping(t *testing.T) {
	d := time.Minute
	if *soak {
		d = 10 * time.Minute
	}
	rs, c := lab(t, []float64{1, 0.5}, true, nil)
	run := failovertest.Workload{}.Start(c)
	start := time.Now()
	for time.Since(start) < d {
		rs[0].proxy.Disable()
		time.Sleep(2 * time.Second)
		must(t, rs[0].proxy.Enable())
		time.Sleep(2 * time.Second)
	}
	// Once it stays up, traffic fails back (grace period and failback delay).
	settled := time.Now()
	failovertest.WaitActive(t, c, "east")
	time.Sleep(200 * time.Millisecond)
	tl := run.Stop()
	limit := 6 * int(d/time.Minute)
	rep := verify(t, tl, failovertest.Outage{From: "east", To: "west", At: start, Recovered: settled},
		checks{timeout: 100 * time.Millisecond, moved: true, failback: true, maxSwitches: limit + 1})
	t.Logf("flapping for %v: %d switches; failback %v after it stopped", d, rep.Switches, rep.Failback)
}

// TestAllDown: both endpoints die; commands fail fast (no hang) while none
// is up; service comes back with the first one restarted, in either order,
// and ends on the preferred one.
func TestAllDown(t *testing.T) {
	for _, order := range []string{"east first", "west first"} {
		t.Run(order, func(t *testing.T) {
			rs, c := lab(t, []float64{1, 0.5}, false, quick)
			run := failovertest.Workload{}.Start(c)
			time.Sleep(200 * time.Millisecond)
			at := time.Now()
			rs[0].srv.Kill()
			rs[1].srv.Kill()
			time.Sleep(time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := c.Ping(ctx).Err()
			cancel()
			if !errors.Is(err, geofailover.ErrNoHealthyEndpoint) {
				t.Errorf("PING with all down = %v, want ErrNoHealthyEndpoint", err)
			}
			first, second := rs[0], rs[1]
			if order == "west first" {
				first, second = rs[1], rs[0]
			}
			back := time.Now()
			must(t, first.srv.Restart())
			failovertest.WaitActive(t, c, first.name)
			time.Sleep(300 * time.Millisecond)
			must(t, second.srv.Restart())
			failovertest.WaitActive(t, c, "east")
			time.Sleep(200 * time.Millisecond)
			tl := run.Stop()
			// Service resumes within 2 s of the first restart, and from the
			// first success on, no read that never reached a server fails.
			d, ok := tl.FirstSuccess(first.name, back)
			verify(t, tl, failovertest.Outage{From: "east", To: first.name, At: at},
				checks{timeout: 100 * time.Millisecond, moved: true, readsFrom: back.Add(d)})
			if !ok || d > 2*time.Second {
				t.Errorf("first success %v (ok %v) after %s came back; want <= 2 s", d, ok, first.name)
			}
		})
	}
}

// TestPreferredDownAtStart: the client starts on the standby and fails
// back once the preferred endpoint comes up.
func TestPreferredDownAtStart(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	east.Kill()
	c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, Options: &redis.Options{Addr: east.Addr}},
		{Name: "west", Weight: 0.5, Options: &redis.Options{Addr: west.Addr}},
	}, HealthCheckInterval: 200 * time.Millisecond, HealthCheckTimeout: 200 * time.Millisecond, GracePeriod: time.Second, FailbackDelay: 500 * time.Millisecond})
	must(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	must(t, c.WaitReady(ctx))
	if got := c.Active(); got != "west" {
		t.Fatalf("started on %q with east down, want west", got)
	}
	run := failovertest.Workload{}.Start(c)
	time.Sleep(200 * time.Millisecond)
	recovered := time.Now()
	must(t, east.Restart())
	failovertest.WaitActive(t, c, "east")
	time.Sleep(200 * time.Millisecond)
	tl := run.Stop()
	rep := verify(t, tl, failovertest.Outage{From: "east", To: "west", At: tl.Start, Recovered: recovered},
		checks{timeout: 100 * time.Millisecond, moved: true, failback: true, maxSwitches: 1})
	if rep.Errors.Total() != 0 {
		t.Errorf("%d errors while starting on the standby and failing back", rep.Errors.Total())
	}
}

// TestCascade: three endpoints; the first fails, then the second; they come
// back in reverse order and traffic climbs back up.
func TestCascade(t *testing.T) {
	rs, c := lab(t, []float64{1, 0.6, 0.3}, false, quick)
	run := failovertest.Workload{}.Start(c)
	time.Sleep(200 * time.Millisecond)
	at := time.Now()
	rs[0].srv.Kill()
	failovertest.WaitActive(t, c, "west")
	time.Sleep(300 * time.Millisecond)
	at2 := time.Now()
	rs[1].srv.Kill()
	failovertest.WaitActive(t, c, "south")
	time.Sleep(300 * time.Millisecond)
	back := time.Now()
	must(t, rs[1].srv.Restart())
	failovertest.WaitActive(t, c, "west")
	time.Sleep(300 * time.Millisecond)
	must(t, rs[0].srv.Restart())
	failovertest.WaitActive(t, c, "east")
	time.Sleep(200 * time.Millisecond)
	tl := run.Stop()
	verify(t, tl, failovertest.Outage{From: "east", To: "west", At: at, Recovered: back}, checks{timeout: 100 * time.Millisecond, moved: true, failback: true, maxSwitches: 4})
	if _, ok := tl.FirstSuccess("south", at2); !ok {
		t.Error("traffic never reached south")
	}
	if n := len(tl.Switches()); n != 4 {
		t.Errorf("%d switches, want 4 (east->west->south->west->east)", n)
	}
	if errs := tl.Errors(at, time.Time{}); errs.Reads > 0 {
		t.Errorf("%d read errors over the cascade", errs.Reads)
	}
}

// TestThousandGoroutines: 1,000 goroutines issue commands through one
// client while the preferred endpoint is killed; all of them move.
func TestThousandGoroutines(t *testing.T) {
	rs, c := lab(t, []float64{1, 0.5}, false, func(o *geofailover.Options) {
		quick(o)
		for i := range o.Endpoints {
			o.Endpoints[i].Options.PoolSize = 100
			// The default dial timeout (quick's 200 ms check timeout would
			// be it): a burst of 100 dials from 1,000 goroutines under
			// -race on two shared cores can take longer than 200 ms.
			o.Endpoints[i].Options.DialTimeout = geofailover.DefaultHealthCheckTimeout
		}
	})
	rep := outage(t, c, rs[0], rs[1], func() { must(t, rs[0].srv.Kill()) }, func() { must(t, rs[0].srv.Restart()) },
		checks{timeout: 2 * time.Second, moved: true, failback: true, maxSwitches: 2},
		failovertest.Workload{Workers: 1000, Pause: 5 * time.Millisecond})
	if !rep.AllWorkersMoved {
		t.Error("not every one of the 1,000 workers succeeded on west")
	}
	if rep.Errors.Reads > 0 {
		t.Errorf("%d read errors", rep.Errors.Reads)
	}
}

// TestCloseDuringFailover: Close while a failover is under way returns
// promptly; every later command fails with ErrClosed; nothing is left
// running (goleak, for the package).
func TestCloseDuringFailover(t *testing.T) {
	rs, c := lab(t, []float64{1, 0.5}, false, quick)
	run := failovertest.Workload{}.Start(c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var subWG sync.WaitGroup
	ps := c.Subscribe(ctx, "news")
	subWG.Add(1)
	go func() {
		defer subWG.Done()
		for range ps.Channel() {
		}
	}()
	time.Sleep(200 * time.Millisecond)
	rs[0].srv.Kill()
	time.Sleep(2 * time.Millisecond) // mid-switch
	start := time.Now()
	must(t, c.Close())
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v during a failover", d)
	}
	tl := run.Stop()
	for _, r := range tl.Records {
		if r.Start.After(start.Add(time.Since(start))) && !errors.Is(r.Err, geofailover.ErrClosed) {
			t.Errorf("command after Close: %v", r.Err)
			break
		}
	}
	if err := c.Ping(context.Background()).Err(); !errors.Is(err, geofailover.ErrClosed) {
		t.Errorf("PING after Close = %v", err)
	}
	ps.Close()
	subWG.Wait()
	t.Logf("Close during failover: %v", time.Since(start))
}

// TestBigValueIsNotAStall: a healthy server taking a long value over a
// slow route, or delivering one, is not hung (its health checks keep
// passing): the stall rule must not trip, the write must not be lost and
// the read must not be replayed elsewhere. (With the proxy's 100 ms
// StallTimeout this holds only while the check sent after 50 ms can answer
// within the other 50: in CI, on a machine starved of CPU, it once could
// not, and the SET was lost; proxy/README.md says when to raise it.)
func TestBigValueIsNotAStall(t *testing.T) {
	rs, c := lab(t, []float64{1, 0.5}, true, nil)
	events, stop := c.Events(64)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	value := strings.Repeat("x", 8<<20)
	rs[0].proxy.Bandwidth(4<<20, faultproxy.Both) // about 2 s each way
	start := time.Now()
	if err := c.Set(ctx, "big", value, 0).Err(); err != nil {
		t.Fatalf("SET of the 8 MB value: %v, after %v", err, time.Since(start))
	}
	set := time.Since(start)
	start = time.Now()
	got, err := c.Get(ctx, "big").Result()
	get := time.Since(start)
	if err != nil || len(got) != len(value) {
		t.Fatalf("GET of the 8 MB value: %d bytes, %v, after %v", len(got), err, get)
	}
	t.Logf("8 MB over 4 MB/s: SET %v, GET %v", set, get)
	if set < time.Second || get < time.Second {
		t.Fatalf("SET took %v, GET %v: the bandwidth limit did not hold, the test proves nothing", set, get)
	}
	time.Sleep(100 * time.Millisecond) // for events on their way
	stop()
	for ev := range events {
		if ev.Kind == geofailover.EventBreakerOpened || ev.Kind == geofailover.EventSwitch {
			t.Errorf("while a healthy server moved a long value: %v", ev)
		}
	}
	if a := c.Active(); a != "east" {
		t.Fatalf("active %q, want east", a)
	}
}

// TestFailbackUnderPressure: failing back costs no error, even on a busy
// machine and to a preferred endpoint 50 ms away (a round trip fits the
// workload's 100 ms deadline, setting up a connection does not: failback
// waits until the endpoint's new pool is warm). The preferred endpoint
// hangs (SIGSTOP) and resumes under load while busy processes, one per
// CPU, compete for the machine (busy goroutines inside the test would
// make the workload miss its deadlines with no fault at all).
func TestFailbackUnderPressure(t *testing.T) {
	for range runtime.NumCPU() {
		spin := exec.Command("sh", "-c", "while :; do :; done")
		must(t, spin.Start())
		defer func() { _ = spin.Process.Kill(); _ = spin.Wait() }()
	}
	rounds := 3
	if *soak {
		rounds = 10
	}
	// A round is conclusive only if west, which nothing faults, served
	// without error while it was active: otherwise the machine was too busy
	// to meet the deadlines at all, and the round says nothing of failback.
	conclusive := 0
	for i := 0; conclusive < rounds; i++ {
		if i == 3*rounds {
			t.Fatalf("only %d of %d rounds were conclusive: the machine is too busy for this test", conclusive, i)
		}
		rs, c := lab(t, []float64{1, 0.5}, true, quick)
		rs[0].proxy.Latency(25*time.Millisecond, 0, faultproxy.Both)
		run := failovertest.Workload{}.Start(c)
		time.Sleep(300 * time.Millisecond)
		must(t, rs[0].srv.Pause())
		failovertest.WaitActive(t, c, "west")
		time.Sleep(300 * time.Millisecond)
		resumed := time.Now()
		must(t, rs[0].srv.Resume())
		failovertest.WaitActive(t, c, "east")
		time.Sleep(time.Second)
		tl := run.Stop()
		var left, back time.Time
		for _, ev := range tl.Switches() {
			if ev.To == "west" && left.IsZero() {
				left = ev.At
			}
			if ev.To == "east" && ev.At.After(resumed) {
				back = ev.At
			}
		}
		standby := 0
		for _, r := range tl.Records {
			if r.Err != nil && r.Endpoint == "west" && r.Start.After(left) && r.End.Before(back) {
				standby++
			}
		}
		if standby > 0 {
			t.Logf("round %d inconclusive: %d errors on the standby", i, standby)
			continue
		}
		conclusive++
		errs := tl.Errors(back, time.Time{})
		t.Logf("round %d: failback %v after resume; errors after it: %d reads, %d writes %v", i, back.Sub(resumed), errs.Reads, errs.Writes, errs.Sample)
		if errs.Total() > 0 {
			t.Errorf("round %d: failing back cost %d errors: %v", i, errs.Total(), errs.Sample)
		}
	}
}
