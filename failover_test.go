package geofailover_test

import (
	"testing"
	"time"
)

// TestKillUnderLoad: SIGKILL the preferred endpoint under the reference
// workload; traffic must move to the standby at once, with no read errors
// and write errors only for commands in flight.
func TestKillUnderLoad(t *testing.T) {
	east, _, c := pair(t, nil)
	waitActive(t, c, "east")
	w := startWorkload(c, 8)
	time.Sleep(200 * time.Millisecond)
	east.Kill() // returns once the process is gone: later successes are west's
	killedAt := time.Now()
	time.Sleep(300 * time.Millisecond)
	w.halt()

	first, ok := w.firstSuccessAfter(killedAt)
	if !ok {
		t.Fatal("no command succeeded after the kill")
	}
	if got := c.Active(); got != "west" {
		t.Fatalf("active = %q after kill, want west", got)
	}
	reads, writes, sample := w.errorsAfter(killedAt)
	t.Logf("kill under load: first success on west %v after SIGKILL; errors: %d reads, %d writes %v; slowest command %v; %d ops",
		first, reads, writes, sample, w.maxDur, w.ops.Load())
	if writes > 8 || reads > 8 {
		t.Errorf("workload saw %d read and %d write errors, want at most one per worker in flight", reads, writes)
	}
}
