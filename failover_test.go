package geofailover_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// TestKillUnderLoad: SIGKILL the preferred endpoint under the reference
// workload; traffic must move to the standby at once, with errors only for
// commands in flight.
func TestKillUnderLoad(t *testing.T) {
	east, _, c := pair(t, nil)
	failovertest.WaitActive(t, c, "east")
	run := failovertest.Workload{}.Start(c) // the reference workload: 8 workers, SET+GET, 100 ms
	time.Sleep(200 * time.Millisecond)
	killStart := time.Now()
	east.Kill() // returns once the process is gone: later successes are west's
	killedAt := time.Now()
	time.Sleep(300 * time.Millisecond)
	tl := run.Stop()

	first, ok := tl.FirstSuccess("west", killedAt)
	if !ok {
		t.Fatal("no command succeeded on west after the kill")
	}
	if got := c.Active(); got != "west" {
		t.Fatalf("active = %q after kill, want west", got)
	}
	errs := tl.Errors(killStart, time.Time{})
	t.Logf("kill under load: first success on west <= %v after SIGKILL; errors: %d reads, %d writes %v; slowest command %v; %d ops",
		first+killedAt.Sub(killStart), errs.Reads, errs.Writes, errs.Sample, tl.Slowest(killStart, time.Time{}), len(tl.Records))
	// Reads that lost their answer are replayed on west (the README: 0 read
	// errors); writes may fail only while in flight, one per worker.
	if errs.Writes > 8 || errs.Reads > 0 {
		t.Errorf("workload saw %d read and %d write errors, want 0 reads and at most one write per worker", errs.Reads, errs.Writes)
	}
}

// TestKillNoTraffic: with no commands at all, the health checks alone must
// move traffic off a killed endpoint.
func TestKillNoTraffic(t *testing.T) {
	east, _, c := pair(t, nil)
	failovertest.WaitActive(t, c, "east")
	events, stop := c.Events(16)
	defer stop()
	east.Kill()
	took := failovertest.WaitActive(t, c, "west")
	ev := failovertest.NextEvent(t, events, geofailover.EventSwitch, nil)
	t.Logf("kill with no traffic: switched after %v (event: reason %v, detection %v)", took, ev.Reason, ev.DetectionTime)
	if ev.From != "east" || ev.To != "west" || ev.Reason != geofailover.ReasonHealth {
		t.Errorf("switch event %+v, want east->west for health", ev)
	}
	if took > 5*time.Second {
		t.Errorf("switch took %v; defaults promise about 2 s", took)
	}
}

// TestFailbackDefaults: with default options, traffic returns to the
// preferred endpoint after it is restarted, once its grace period and the
// failback delay are over.
func TestFailbackDefaults(t *testing.T) {
	east, _, c := pair(t, nil)
	failovertest.WaitActive(t, c, "east")
	east.Kill()
	failovertest.WaitActive(t, c, "west")
	if err := east.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	failovertest.WaitActive(t, c, "east")
	took := time.Since(restarted)
	t.Logf("failback with defaults: %v after restart", took)
	if took > 16*time.Second {
		t.Errorf("failback took %v, want <= 15 s", took)
	}
	if err := c.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Errorf("SET after failback: %v", err)
	}
}

// TestHangUnderLoad: SIGSTOP the preferred endpoint (a hung server) under
// load; the breaker must move every worker within a second.
func TestHangUnderLoad(t *testing.T) {
	east, _, c := pair(t, nil)
	failovertest.WaitActive(t, c, "east")
	run := failovertest.Workload{}.Start(c)
	time.Sleep(200 * time.Millisecond)
	stoppedAt := time.Now()
	if err := east.Pause(); err != nil {
		t.Fatal(err)
	}
	defer east.Resume()
	took := failovertest.WaitActive(t, c, "west")
	time.Sleep(300 * time.Millisecond)
	tl := run.Stop()
	first, ok := tl.FirstSuccess("west", stoppedAt.Add(took))
	if !ok {
		t.Fatal("no command succeeded on west after the switch")
	}
	errs := tl.Errors(stoppedAt, time.Time{})
	slowest := tl.Slowest(time.Time{}, time.Time{})
	t.Logf("hang under load: switched %v after SIGSTOP, then first success %v; errors %d reads, %d writes %v; slowest %v",
		took, first, errs.Reads, errs.Writes, errs.Sample, slowest)
	if took > time.Second {
		t.Errorf("switch took %v, want <= 1 s", took)
	}
	if slowest > 150*time.Millisecond {
		t.Errorf("a command took %v despite a 100 ms deadline", slowest)
	}
	// Errors charged to west because of east: none may open west's breaker.
	for _, st := range c.Status() {
		if st.Name == "west" && st.Breaker != geofailover.BreakerClosed {
			t.Errorf("west breaker %v after east hung", st.Breaker)
		}
	}
}

// TestAllDownThenOneBack: with every endpoint down, commands fail fast with
// ErrNoHealthyEndpoint carrying each endpoint's last error; when one comes
// back, service resumes by itself.
func TestAllDownThenOneBack(t *testing.T) {
	east, west, c := pair(t, nil)
	failovertest.WaitActive(t, c, "east")
	east.Kill()
	west.Kill()
	failovertest.WaitActive(t, c, "")

	ctx := context.Background()
	start := time.Now()
	err := c.Get(ctx, "k").Err()
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("command took %v while all down; want fail-fast", took)
	}
	var nh *geofailover.NoHealthyEndpointError
	if !errors.Is(err, geofailover.ErrNoHealthyEndpoint) || !errors.As(err, &nh) {
		t.Fatalf("error %v, want ErrNoHealthyEndpoint", err)
	}
	if len(nh.LastErrors) != 2 || nh.LastErrors["east"] == nil || nh.LastErrors["west"] == nil {
		t.Errorf("LastErrors %v, want one per endpoint", nh.LastErrors)
	}

	if err := west.Restart(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for c.Set(ctx, "k", "v", 0).Err() != nil {
		if time.Since(back) > testTimeout {
			t.Fatal("service did not resume after west came back")
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(back)
	t.Logf("all down, then west back: first success %v after restart", took)
	if took > 2500*time.Millisecond {
		t.Errorf("first success took %v, want <= 2 s", took)
	}
}

// TestPreferredDownAtStart: New must not need the preferred endpoint; the
// client starts on the standby and fails back once the preferred one is up.
func TestPreferredDownAtStart(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	east.Kill()
	c := clientFor(t, east, west, fast)
	if got := c.Active(); got != "west" {
		t.Fatalf("active = %q at start with east down, want west", got)
	}
	if err := c.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET on west: %v", err)
	}
	if err := east.Restart(); err != nil {
		t.Fatal(err)
	}
	took := failovertest.WaitActive(t, c, "east")
	t.Logf("preferred endpoint up after start: failback in %v (tuned)", took)
}
