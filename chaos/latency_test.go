package chaos_test

import (
	"testing"
	"time"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/faultproxy"
)

// latencyOptions: checks every 100 ms, and a move among equal weights after
// 2 s of clearly faster checks (the default is 30 s).
func latencyOptions(o *geofailover.Options) {
	quick(o)
	o.HealthCheckInterval = 100 * time.Millisecond
	o.HealthCheckTimeout = time.Second
	o.LatencySwitchAfter = 2 * time.Second
}

// TestLatencyTieMoves: two endpoints of equal weight; 40 ms is added each
// way to the active one's route. Traffic moves to the other, for reason
// "latency", once its checks have been clearly faster for
// LatencySwitchAfter: within that plus the time the moving average takes
// to cross the margin (a few checks), and only once.
func TestLatencyTieMoves(t *testing.T) {
	regions, c := lab(t, []float64{1, 1}, true, latencyOptions)
	events, stop := c.Events(100)
	defer stop()
	run := failovertest.Workload{Timeout: 500 * time.Millisecond}.Start(c)
	slowed := time.Now()
	regions[0].proxy.Latency(40*time.Millisecond, 0, faultproxy.Both)
	ev := failovertest.NextEvent(t, events, geofailover.EventSwitch, nil)
	took := ev.At.Sub(slowed)
	time.Sleep(time.Second)
	tl := run.Stop()
	errs := tl.Errors(time.Time{}, time.Time{})
	t.Logf("equal weights, 80 ms added to the active endpoint's round trip: switched to %s for %v after %v; %d errors", ev.To, ev.Reason, took, errs.Total())
	if ev.From != "east" || ev.To != "west" || ev.Reason != geofailover.ReasonLatency {
		t.Fatalf("switch %+v, want east -> west for latency", ev)
	}
	if took < 2*time.Second || took > 5*time.Second {
		t.Errorf("switched %v after the latency was added, want between LatencySwitchAfter (2 s) and 5 s", took)
	}
	if errs.Total() != 0 {
		t.Errorf("%d errors: %v", errs.Total(), errs.Sample)
	}
	if n := len(tl.Switches()); n != 1 {
		t.Errorf("%d switches, want 1", n)
	}
}

// TestLatencyTieNoiseNoSwitch: two endpoints of equal weight, both 15 ms
// away each way with up to 10 ms of jitter each way, under load: no switch
// for 20 s (10 minutes with -chaos.soak), although single checks often
// differ by more than the margin.
func TestLatencyTieNoiseNoSwitch(t *testing.T) {
	regions, c := lab(t, []float64{1, 1}, true, latencyOptions)
	for _, r := range regions {
		r.proxy.Latency(15*time.Millisecond, 10*time.Millisecond, faultproxy.Both)
	}
	run := failovertest.Workload{Timeout: time.Second}.Start(c)
	d := 20 * time.Second
	if *soak {
		d = 10 * time.Minute
	}
	time.Sleep(d)
	tl := run.Stop()
	var gaps []time.Duration
	for _, st := range c.Status() {
		gaps = append(gaps, st.CheckLatency)
	}
	t.Logf("equal weights with 30±20 ms round trips for %v: %d switches, smoothed check latencies %v", d, len(tl.Switches()), gaps)
	if n := len(tl.Switches()); n != 0 {
		t.Errorf("%d switches under equal latency with jitter: %+v", n, tl.Switches())
	}
	if a := c.Active(); a != "east" {
		t.Errorf("active %q, want east", a)
	}
}

// TestFarRegionIsNotStalled: a StallTimeout shorter than the active
// region's round trip (100 ms against 160 ms) does not take it for hung,
// since the stall rule waits at least four times an endpoint's smoothed
// check latency; a frozen region is still left. One worker, so that a
// single command is outstanding at a time and none completes for 160 ms.
func TestFarRegionIsNotStalled(t *testing.T) {
	regions, c := lab(t, []float64{1, 0.5}, true, func(o *geofailover.Options) {
		latencyOptions(o)
		o.StallTimeout = 100 * time.Millisecond
	})
	regions[0].proxy.Latency(80*time.Millisecond, 0, faultproxy.Both)
	deadline := time.Now().Add(wait)
	for c.Status()[0].CheckLatency < 120*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("east's check latency is %v after %v, want about 160 ms", c.Status()[0].CheckLatency, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	run := failovertest.Workload{Workers: 1, Timeout: time.Second}.Start(c)
	time.Sleep(3 * time.Second)
	frozen := time.Now()
	regions[0].proxy.BlackHole(faultproxy.Both)
	failovertest.WaitActive(t, c, "west")
	left := time.Since(frozen)
	tl := run.Stop()
	switches := tl.Switches()
	t.Logf("160 ms round trips, StallTimeout 100 ms: %d switches before the freeze; left %v after it", len(switches)-1, left)
	if len(switches) == 0 || switches[0].At.Before(frozen) {
		t.Errorf("switched before the freeze: %+v", switches)
	}
	if errs := tl.Errors(time.Time{}, frozen); errs.Total() != 0 {
		t.Errorf("%d errors before the freeze: %v", errs.Total(), errs.Sample)
	}
}
