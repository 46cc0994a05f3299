package failovertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/geofailover/geofailover"
)

// WaitTimeout bounds each of the waits below: a wait that runs out fails the
// test (t.Fatalf) with the client's Status, so a hang is reported instead
// of stalling the suite. Default 30 s; a suite whose waits are longer (long
// grace periods) may raise it in TestMain, before any test runs.
var WaitTimeout = 30 * time.Second

// WaitActive waits until name is c's active endpoint, polling every
// millisecond, and returns how long that took.
func WaitActive(t testing.TB, c *geofailover.Client, name string) time.Duration {
	t.Helper()
	start := time.Now()
	for c.Active() != name {
		if time.Since(start) > WaitTimeout {
			t.Fatalf("failovertest: active endpoint is %q after %v, want %q; status %+v", c.Active(), WaitTimeout, name, c.Status())
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// WaitHealth waits until the health checks of c's endpoint name say h.
func WaitHealth(t testing.TB, c *geofailover.Client, name string, h geofailover.Health) {
	t.Helper()
	start := time.Now()
	for {
		for _, st := range c.Status() {
			if st.Name == name && st.Health == h {
				return
			}
		}
		if time.Since(start) > WaitTimeout {
			t.Fatalf("failovertest: %s is not %v after %v; status %+v", name, h, WaitTimeout, c.Status())
		}
		time.Sleep(time.Millisecond)
	}
}

// NextEvent reads events (from c.Events) until one of kind arrives, for
// which match (if not nil) also holds, and returns it; events before it
// are skipped.
func NextEvent(t testing.TB, events <-chan geofailover.Event, kind geofailover.EventKind, match func(geofailover.Event) bool) geofailover.Event {
	t.Helper()
	timeout := time.NewTimer(WaitTimeout)
	defer timeout.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("failovertest: the event channel closed before a %v event", kind)
			}
			if ev.Kind == kind && (match == nil || match(ev)) {
				return ev
			}
		case <-timeout.C:
			t.Fatalf("failovertest: no matching %v event within %v", kind, WaitTimeout)
		}
	}
}

// Connect returns a plain go-redis client to addr (a Server's Addr, a
// proxy's, ...) for checks that bypass geofailover: one attempt per
// command, a 1 s dial timeout, deadlines from the context. It is closed
// when the test ends.
func Connect(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// VerifyTestMain runs a package's tests, after SilenceRedisLog, and then,
// as goleak.VerifyTestMain does, fails the run if a goroutine is left
// behind. It gives goroutines up to 3 s to end, since a go-redis pool that
// saw many failed dials redials from a goroutine that notices its pool was
// closed only after its one-second sleep. Call it from TestMain.
func VerifyTestMain(m *testing.M) {
	SilenceRedisLog()
	code := m.Run()
	if code == 0 {
		err := goleak.Find()
		for deadline := time.Now().Add(3 * time.Second); err != nil && time.Now().Before(deadline); err = goleak.Find() {
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// SilenceRedisLog switches off go-redis's global logger, which prints a
// line for every failed dial: many lines in a test that kills servers on
// purpose. It affects every go-redis client in the process; call it from
// TestMain.
func SilenceRedisLog() { redis.SetLogger(silent{}) }

type silent struct{}

func (silent) Printf(context.Context, string, ...any) {}

// LogEventsOnFailure records c's events from now on and, if t fails, logs
// them at t's cleanup (register it after c's Close cleanup, so that it
// runs before c is closed and sees the last events).
func LogEventsOnFailure(t testing.TB, c *geofailover.Client) {
	evs, stop := c.Events(256)
	var events []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range evs { // closed by stop, or by c's Close
			j, _ := json.Marshal(e)
			events = append(events, string(j))
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			time.Sleep(100 * time.Millisecond) // for the events still on their way
		}
		stop()
		<-done
		if t.Failed() {
			t.Logf("the client's events:\n  %s", strings.Join(events, "\n  "))
		}
	})
}
