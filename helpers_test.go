package geofailover_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// testTimeout bounds every wait in these tests, so a hang fails instead of
// stalling the suite.
const testTimeout = 30 * time.Second

// pair starts east (weight 1) and west (weight 0.5) and a client over them.
func pair(t *testing.T, tune func(*geofailover.Options)) (east, west *failovertest.Server, c *geofailover.Client) {
	t.Helper()
	east, west = failovertest.StartServer(t, failovertest.WithMinVersion("7.0")), failovertest.StartServer(t, failovertest.WithMinVersion("7.0"))
	return east, west, clientFor(t, east, west, tune)
}

// clientFor returns a ready client over east (weight 1) and west (0.5).
func clientFor(t *testing.T, east, west *failovertest.Server, tune func(*geofailover.Options)) *geofailover.Client {
	t.Helper()
	opts := &geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, Options: &redis.Options{Addr: east.Addr}},
		{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr + "/0"},
	}}
	if tune != nil {
		tune(opts)
	}
	return newClient(t, opts)
}

func newClient(t *testing.T, opts *geofailover.Options) *geofailover.Client {
	t.Helper()
	c, err := geofailover.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	return c
}

// fast tunes a client for quick tests: 100 ms checks, short grace and
// failback delay.
func fast(o *geofailover.Options) {
	o.HealthCheckInterval = 100 * time.Millisecond
	o.HealthCheckTimeout = 100 * time.Millisecond
	o.GracePeriod = 300 * time.Millisecond
	o.FailbackDelay = 200 * time.Millisecond
}

// waitActive waits until c's active endpoint is name and returns how long
// that took.
func waitActive(t *testing.T, c *geofailover.Client, name string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(testTimeout)
	for c.Active() != name {
		if time.Now().After(deadline) {
			t.Fatalf("active endpoint is %q after %v, want %q; status %+v", c.Active(), testTimeout, name, c.Status())
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// waitHealthy waits until the named endpoint's health checks say healthy.
func waitHealthy(t *testing.T, c *geofailover.Client, name string) {
	t.Helper()
	waitHealth(t, c, name, geofailover.Healthy)
}

// waitHealth waits until the named endpoint's health is h.
func waitHealth(t *testing.T, c *geofailover.Client, name string, h geofailover.Health) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		for _, st := range c.Status() {
			if st.Name == name && st.Health == h {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not %v after %v: %+v", name, h, testTimeout, c.Status())
		}
		time.Sleep(time.Millisecond)
	}
}

// workload is the README's reference workload: workers doing SET+GET with
// a per-command timeout and a pause between rounds.
type workload struct {
	c       *geofailover.Client
	timeout time.Duration

	mu        sync.Mutex
	errs      []opErr
	successes []time.Time // completion time of every successful command
	maxDur    time.Duration

	stop chan struct{}
	wg   sync.WaitGroup
	ops  atomic.Int64
}

type opErr struct {
	at    time.Time
	write bool
	err   error
}

func startWorkload(c *geofailover.Client, workers int) *workload {
	w := &workload{c: c, timeout: 100 * time.Millisecond, stop: make(chan struct{})}
	for i := range workers {
		w.wg.Add(1)
		go w.run(i)
	}
	return w
}

func (w *workload) run(id int) {
	defer w.wg.Done()
	key := "wl:" + string(rune('a'+id))
	for n := 0; ; n++ {
		select {
		case <-w.stop:
			return
		default:
		}
		w.do(true, func(ctx context.Context) error { return w.c.Set(ctx, key, n, 0).Err() })
		w.do(false, func(ctx context.Context) error {
			err := w.c.Get(ctx, key).Err()
			if err == redis.Nil {
				err = nil
			}
			return err
		})
		time.Sleep(time.Millisecond)
	}
}

func (w *workload) do(write bool, op func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	start := time.Now()
	err := op(ctx)
	end := time.Now()
	cancel()
	w.ops.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := end.Sub(start); d > w.maxDur {
		w.maxDur = d
	}
	if err != nil {
		w.errs = append(w.errs, opErr{at: end, write: write, err: err})
		return
	}
	w.successes = append(w.successes, end)
}

// firstSuccessAfter returns the time from t0 to the first success after it.
func (w *workload) firstSuccessAfter(t0 time.Time) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.successes {
		if s.After(t0) {
			return s.Sub(t0), true
		}
	}
	return 0, false
}

// errorsAfter counts the errors after t0, split into reads and writes.
func (w *workload) errorsAfter(t0 time.Time) (reads, writes int, sample []error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.errs {
		if e.at.After(t0) {
			if e.write {
				writes++
			} else {
				reads++
			}
			if len(sample) < 5 {
				sample = append(sample, e.err)
			}
		}
	}
	return reads, writes, sample
}

func (w *workload) halt() {
	close(w.stop)
	w.wg.Wait()
}
