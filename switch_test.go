package geofailover_test

// Tests for "what happens to each kind of command during a switch" (the
// README table): each test names the row it checks.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// shortReads is a pair whose member clients time out reads after 200 ms, so
// a command on a paused server fails ambiguously long before the caller's
// deadline, leaving time for a replay.
func shortReads(t *testing.T, tune func(*geofailover.Options), eastOpts ...failovertest.ServerOption) (east, west *failovertest.Server, c *geofailover.Client) {
	t.Helper()
	east, west = failovertest.StartServer(t, eastOpts...), failovertest.StartServer(t)
	opts := &geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "east", Weight: 1, Options: &redis.Options{Addr: east.Addr, ReadTimeout: 200 * time.Millisecond}},
			{Name: "west", Weight: 0.5, Options: &redis.Options{Addr: west.Addr, ReadTimeout: 200 * time.Millisecond}},
		},
		HealthCheckInterval: 100 * time.Millisecond,
		HealthCheckTimeout:  100 * time.Millisecond,
		GracePeriod:         300 * time.Millisecond,
		FailbackDelay:       200 * time.Millisecond,
	}
	if tune != nil {
		tune(opts)
	}
	c = newClient(t, opts)
	failovertest.WaitActive(t, c, "east")
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	warm(t, c, 4)
	return east, west, c
}

// warm opens n initialized connections on the active endpoint, so that a
// command sent to it after a SIGSTOP is written before it times out (on a
// new connection the handshake would time out first, before the command is
// sent). It holds n commands in flight at once: each runs a 30 ms script.
func warm(t *testing.T, c *geofailover.Client, n int) {
	t.Helper()
	const busy = `local t = redis.call('TIME'); local s = t[1]*1e6 + t[2]
while true do t = redis.call('TIME'); if t[1]*1e6 + t[2] - s > 30000 then return 1 end end`
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := c.Eval(context.Background(), busy, nil).Err(); err != nil {
				t.Errorf("warm: %v", err)
			}
		})
	}
	wg.Wait()
}

func direct(t *testing.T, s *failovertest.Server) *redis.Client {
	t.Helper()
	return publisher(t, s)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func pause(t *testing.T, s *failovertest.Server) {
	t.Helper()
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Resume() })
}

// slowDetection keeps traffic on a hung east for seconds, so that the
// commands of a test meet it rather than a switch.
func slowDetection(o *geofailover.Options) {
	o.HealthCheckInterval = 10 * time.Second
	o.HealthCheckTimeout = time.Second
	o.DisableStallDetection = true
}

// inject applies a fault to east: "switch" (SwitchTo west, east stays up),
// "stop" (SIGSTOP) or "kill" (SIGKILL), and waits until traffic is on west.
// A stopped east is resumed when the test ends.
func inject(t *testing.T, fault string, east *failovertest.Server, c *geofailover.Client) {
	t.Helper()
	switch fault {
	case "switch":
		if err := c.SwitchTo(ctxFor(t, testTimeout), "west"); err != nil {
			t.Fatal(err)
		}
	case "stop":
		pause(t, east)
	case "kill":
		east.Kill()
	default:
		t.Fatalf("unknown fault %q", fault)
	}
	failovertest.WaitActive(t, c, "west")
}

// heal undoes inject's "stop" (SIGCONT) or "kill" (restart on the same
// port); a "switch" needs nothing.
func heal(t *testing.T, fault string, east *failovertest.Server) {
	t.Helper()
	var err error
	switch fault {
	case "stop":
		err = east.Resume()
	case "kill":
		err = east.Restart()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Row "read-only command, answer lost": replayed on the next endpoint.
// Row "write, answer lost": not replayed; the caller gets the error.
// Row "write with AllowReplay or ReplayWrites, answer lost": replayed.
func TestAmbiguousFailureReplayRules(t *testing.T) {
	east, west, c := shortReads(t, slowDetection)
	ctx := ctxFor(t, testTimeout)
	direct(t, east).Set(ctx, "where", "east", 0)
	direct(t, west).Set(ctx, "where", "west", 0)

	pause(t, east)
	got, err := c.Get(ctxFor(t, 2*time.Second), "where").Result()
	if err != nil || got != "west" {
		t.Fatalf("GET on a hung east = %q, %v; want the replay on west", got, err)
	}
	err = c.Incr(ctxFor(t, 2*time.Second), "counter").Err()
	if err == nil {
		t.Fatal("INCR on a hung east succeeded; want its timeout (not replayed)")
	}
	t.Logf("INCR on a hung east: %v", err)
	err = c.Incr(geofailover.AllowReplay(ctxFor(t, 2*time.Second)), "opted-in").Err()
	// The breaker may have moved traffic by now; either way it must
	// succeed somewhere other than the hung east.
	if err != nil {
		t.Fatalf("INCR with AllowReplay = %v, want a replay on west", err)
	}
	if c.Active() != "east" {
		t.Fatalf("active = %s: the test needs traffic to stay on the hung east", c.Active())
	}
	if err := east.Resume(); err != nil {
		t.Fatal(err)
	}
	// East ran the INCR late, once; west never saw it.
	waitValue(t, direct(t, east), "counter", "1")
	if n, err := direct(t, west).Exists(ctx, "counter").Result(); err != nil || n != 0 {
		t.Fatalf("west has counter (exists=%d, %v): the INCR was replayed", n, err)
	}
	waitValue(t, direct(t, west), "opted-in", "1")
}

func waitValue(t *testing.T, r *redis.Client, key, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := r.Get(context.Background(), key).Result()
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q, %v; want %q", key, got, err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Rows "pipeline, all read-only, answer lost": replayed whole; "pipeline
// with a write, answer lost": each command returns its own error, nothing
// replayed; same for a MULTI/EXEC transaction.
func TestPipelineReplayRules(t *testing.T) {
	east, west, c := shortReads(t, slowDetection)
	ctx := ctxFor(t, testTimeout)
	direct(t, west).MSet(ctx, "a", "wa", "b", "wb")
	pause(t, east)

	cmds, err := c.Pipelined(ctxFor(t, 2*time.Second), func(p redis.Pipeliner) error {
		p.Get(ctx, "a")
		p.Get(ctx, "b")
		return nil
	})
	if err != nil || cmds[0].(*redis.StringCmd).Val() != "wa" || cmds[1].(*redis.StringCmd).Val() != "wb" {
		t.Fatalf("read-only pipeline on a hung east: %v %v; want the replay on west", cmds, err)
	}

	for _, tx := range []bool{false, true} {
		key := fmt.Sprintf("pipe-counter-%v", tx)
		run := c.Pipelined
		if tx {
			run = c.TxPipelined
		}
		cmds, err := run(ctxFor(t, 2*time.Second), func(p redis.Pipeliner) error {
			p.Get(ctx, "a")
			p.Incr(ctx, key)
			return nil
		})
		if err == nil {
			t.Fatalf("tx=%v: pipeline with INCR on a hung east succeeded: %v", tx, cmds)
		}
		for _, cmd := range cmds {
			if cmd.Err() == nil {
				t.Errorf("tx=%v: %v has no error", tx, cmd)
			}
		}
		if n, _ := direct(t, west).Exists(ctx, key).Result(); n != 0 {
			t.Errorf("tx=%v: west has %s: the pipeline was replayed", tx, key)
		}
	}
	if err := east.Resume(); err != nil {
		t.Fatal(err)
	}
	waitValue(t, direct(t, east), "pipe-counter-false", "1")
	waitValue(t, direct(t, east), "pipe-counter-true", "1")
}

// busyScript runs on the server for ms milliseconds; EVAL_RO marks it
// read-only.
func busyScript(ms int) string {
	return fmt.Sprintf(`local t = redis.call('TIME'); local s = t[1]*1e6 + t[2]
while true do t = redis.call('TIME'); if t[1]*1e6 + t[2] - s > %d then return 1 end end`, ms*1000)
}

// The same rows as TestPipelineReplayRules, with the batch in flight when
// east is SIGKILLed (its answer is lost to EOF).
func TestPipelineInFlightAtKill(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tx     bool
		write  bool
		replay bool
	}{
		{"read-only pipeline", false, false, true},
		{"pipeline with a write", false, true, false},
		{"transaction with a write", true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			east, west, c := shortReads(t, nil)
			ctx := ctxFor(t, testTimeout)
			direct(t, west).Set(ctx, "a", "wa", 0)
			run := c.Pipelined
			if tc.tx {
				run = c.TxPipelined
			}
			type result struct {
				cmds []redis.Cmder
				err  error
			}
			done := make(chan result, 1)
			go func() {
				cmds, err := run(ctxFor(t, 5*time.Second), func(p redis.Pipeliner) error {
					p.EvalRO(ctx, busyScript(150), nil) // under the 200 ms ReadTimeout
					if tc.write {
						p.Incr(ctx, "counter")
					} else {
						p.Get(ctx, "a")
					}
					return nil
				})
				done <- result{cmds, err}
			}()
			time.Sleep(50 * time.Millisecond) // the script is running on east
			east.Kill()
			r := <-done
			if tc.replay {
				if r.err != nil || r.cmds[1].(*redis.StringCmd).Val() != "wa" {
					t.Fatalf("read-only pipeline in flight at the kill: %v %v; want its replay on west", r.cmds, r.err)
				}
				return
			}
			if r.err == nil {
				t.Fatalf("pipeline with INCR in flight at the kill succeeded: %v", r.cmds)
			}
			for _, cmd := range r.cmds {
				if cmd.Err() == nil {
					t.Errorf("%v has no error", cmd)
				}
			}
			if n, _ := direct(t, west).Exists(ctx, "counter").Result(); n != 0 {
				t.Error("west has counter: the batch was replayed")
			}
		})
	}
}

// Row "write that never reached the server": retried on the new endpoint.
// Row "write, answer lost": never applied twice. A sound check: every
// attempt increments a key of its own; afterwards each acknowledged attempt
// is on exactly one endpoint once, and no attempt is applied twice anywhere.
func TestNoDoubleWrites(t *testing.T) {
	for _, fault := range []string{"kill", "stop"} {
		t.Run(fault, func(t *testing.T) {
			// The killed east keeps every write it acknowledged on disk.
			east, west, c := shortReads(t, nil, failovertest.WithPersistence())
			type attempt struct {
				key   string
				acked bool
			}
			var (
				mu       sync.Mutex
				attempts []attempt
				wg       sync.WaitGroup
				stop     = make(chan struct{})
			)
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						key := fmt.Sprintf("dw:%d:%d", w, i)
						ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
						err := c.Incr(ctx, key).Err()
						cancel()
						mu.Lock()
						attempts = append(attempts, attempt{key, err == nil})
						mu.Unlock()
						time.Sleep(time.Millisecond)
					}
				}()
			}
			time.Sleep(200 * time.Millisecond)
			inject(t, fault, east, c)
			time.Sleep(300 * time.Millisecond)
			close(stop)
			wg.Wait()
			heal(t, fault, east)
			// Let east finish what it had received while stopped.
			time.Sleep(200 * time.Millisecond)

			ctx := ctxFor(t, testTimeout)
			keys := make([]string, len(attempts))
			for i, a := range attempts {
				keys[i] = a.key
			}
			onEast := countAll(t, ctx, direct(t, east), keys)
			onWest := countAll(t, ctx, direct(t, west), keys)
			var acked, failed, failedApplied int
			for i, a := range attempts {
				total := onEast[i] + onWest[i]
				switch {
				case total > 1:
					t.Errorf("%s applied %d times (east %d, west %d)", a.key, total, onEast[i], onWest[i])
				case a.acked && total == 0:
					t.Errorf("%s was acknowledged but is on neither endpoint", a.key)
				}
				if a.acked {
					acked++
				} else {
					failed++
					if total == 1 {
						failedApplied++
					}
				}
			}
			t.Logf("%s: %d writes acknowledged, %d failed (%d of those applied anyway: their answer was lost)",
				fault, acked, failed, failedApplied)
			if acked == 0 || failed > 16 {
				t.Errorf("acked %d, failed %d: want traffic on both sides of the fault, failures only for writes in flight", acked, failed)
			}
		})
	}
}

// countAll returns the value (0 if missing) of each key on r.
func countAll(t *testing.T, ctx context.Context, r *redis.Client, keys []string) []int {
	t.Helper()
	out := make([]int, len(keys))
	for start := 0; start < len(keys); start += 1000 {
		end := min(start+1000, len(keys))
		vals, err := r.MGet(ctx, keys[start:end]...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if s, ok := v.(string); ok {
				fmt.Sscan(s, &out[start+i])
			}
		}
	}
	return out
}

// Row "WATCH ... EXEC across a switch": EXEC is not sent anywhere; the
// caller gets ErrEndpointChanged (also redis.TxFailedErr), and running
// Watch again works on the new endpoint.
func TestWatchAcrossSwitch(t *testing.T) {
	for _, fault := range []string{"switch", "stop", "kill"} {
		t.Run(fault, func(t *testing.T) {
			east, west, c := shortReads(t, nil)
			ctx := ctxFor(t, testTimeout)
			direct(t, east).Set(ctx, "balance", "10", 0)
			direct(t, west).Set(ctx, "balance", "10", 0)
			attempts := 0
			txf := func(tx *redis.Tx) error {
				attempts++
				n, err := tx.Get(ctx, "balance").Int()
				if err != nil {
					return err
				}
				if attempts == 1 {
					inject(t, fault, east, c) // between WATCH/GET and EXEC
				}
				_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, "balance", n-1, 0)
					return nil
				})
				return err
			}
			err := c.Watch(ctx, txf, "balance")
			if !errors.Is(err, geofailover.ErrEndpointChanged) || !errors.Is(err, redis.TxFailedErr) {
				t.Fatalf("Watch across a switch = %v; want ErrEndpointChanged and TxFailedErr", err)
			}
			var ece *geofailover.EndpointChangedError
			if !errors.As(err, &ece) || ece.From != "east" || ece.To != "west" || ece.Op != "EXEC" {
				t.Errorf("error details %+v", ece)
			}
			if err := c.Watch(ctx, txf, "balance"); err != nil {
				t.Fatalf("Watch again on west: %v", err)
			}
			waitValue(t, direct(t, west), "balance", "9")
			switch fault {
			case "stop":
				if err := east.Resume(); err != nil {
					t.Fatal(err)
				}
				fallthrough
			case "switch":
				waitValue(t, direct(t, east), "balance", "10") // EXEC never reached east
			}
		})
	}
}

// Row "SCAN cursor across a switch": continuing it on another endpoint
// fails with ErrEndpointChanged; a scan started again runs there.
func TestScanAcrossSwitch(t *testing.T) {
	for _, fault := range []string{"switch", "stop", "kill"} {
		t.Run(fault, func(t *testing.T) { testScanAcrossSwitch(t, fault) })
	}
}

func testScanAcrossSwitch(t *testing.T, fault string) {
	east, west, c := shortReads(t, nil)
	ctx := ctxFor(t, testTimeout)
	h := map[string]any{}
	for i := range 300 {
		h[fmt.Sprint(i)] = fmt.Sprintf("%0100d", i) // too long for a listpack
	}
	for _, s := range []*failovertest.Server{east, west} {
		p := direct(t, s).Pipeline()
		for i := range 200 {
			p.Set(ctx, fmt.Sprintf("k%d", i), i, 0)
		}
		p.HSet(ctx, "h", h)
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	keys, cursor, err := c.Scan(ctx, 0, "k*", 10).Result()
	if err != nil || cursor == 0 || len(keys) == 0 {
		t.Fatalf("first SCAN page: %d keys, cursor %d, %v", len(keys), cursor, err)
	}
	// On the same endpoint the cursor continues normally.
	if _, cursor, err = c.Scan(ctx, cursor, "k*", 10).Result(); err != nil || cursor == 0 {
		t.Fatalf("second SCAN page on east: cursor %d, %v", cursor, err)
	}
	it := c.Scan(ctx, 0, "k*", 10).Iterator()
	if !it.Next(ctx) {
		t.Fatalf("iterator: %v", it.Err())
	}
	_, hc, err := c.HScan(ctx, "h", 0, "", 10).Result()
	if err != nil || hc == 0 {
		t.Fatalf("HSCAN: cursor %d, %v", hc, err)
	}

	inject(t, fault, east, c)

	_, _, err = c.Scan(ctx, cursor, "k*", 10).Result()
	var ece *geofailover.EndpointChangedError
	if !errors.As(err, &ece) || ece.Op != "SCAN" || ece.From != "east" || ece.To != "west" {
		t.Fatalf("SCAN with east's cursor on west = %v; want EndpointChangedError east->west", err)
	}
	for it.Next(ctx) {
	}
	if !errors.Is(it.Err(), geofailover.ErrEndpointChanged) {
		t.Fatalf("iterator across the switch: %v; want ErrEndpointChanged", it.Err())
	}
	if err := c.HScan(ctx, "h", hc, "", 10).Err(); !errors.Is(err, geofailover.ErrEndpointChanged) {
		t.Fatalf("HSCAN with east's cursor on west = %v", err)
	}
	n := 0
	for it := c.Scan(ctx, 0, "k*", 10).Iterator(); it.Next(ctx); n++ {
	}
	if n != 200 {
		t.Fatalf("a scan restarted on west saw %d keys, want 200", n)
	}
}

// Row "blocking command waiting during a switch": it returns
// ErrEndpointChanged at the switch (nothing popped, not replayed); with
// AllowReplay it goes on waiting on the new endpoint. On a killed endpoint
// it fails at once.
func TestBlockingAcrossSwitch(t *testing.T) {
	for _, fault := range []string{"switch", "stop", "kill"} {
		t.Run(fault, func(t *testing.T) {
			east, west, c := shortReads(t, nil)
			ctx := ctxFor(t, testTimeout)
			done := make(chan error, 1)
			go func() { done <- c.BLPop(ctx, 0, "queue").Err() }()
			replayed := make(chan []string, 1)
			go func() {
				v, _ := c.BLPop(geofailover.AllowReplay(ctx), 0, "queue2").Result()
				replayed <- v
			}()
			waitBlocked(t, east, 2)
			start := time.Now()
			switch fault {
			case "switch":
				if err := c.SwitchTo(ctx, "west"); err != nil {
					t.Fatal(err)
				}
			case "stop":
				pause(t, east)
			case "kill":
				east.Kill()
			}
			select {
			case err := <-done:
				t.Logf("%s: BLPOP returned %v after %v", fault, err, time.Since(start))
				if err == nil {
					t.Fatal("BLPOP succeeded")
				}
				if fault != "kill" && !errors.Is(err, geofailover.ErrEndpointChanged) {
					t.Fatalf("BLPOP across a %s: %v, want ErrEndpointChanged", fault, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("BLPOP still waiting 10s after the %s", fault)
			}
			failovertest.WaitActive(t, c, "west")
			if fault != "kill" {
				// The opted-in BLPOP now waits on west.
				waitBlocked(t, west, 1)
				if err := direct(t, west).RPush(ctx, "queue2", "job").Err(); err != nil {
					t.Fatal(err)
				}
				select {
				case v := <-replayed:
					if len(v) != 2 || v[1] != "job" {
						t.Fatalf("replayed BLPOP got %v", v)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("replayed BLPOP did not get west's element")
				}
			} else {
				<-replayed // failed at once: the kill is not a switch it could follow
			}
			if fault == "switch" {
				// Nothing was popped on east.
				if err := direct(t, east).RPush(ctx, "queue", "x").Err(); err != nil {
					t.Fatal(err)
				}
				if n, _ := direct(t, east).LLen(ctx, "queue").Result(); n != 1 {
					t.Fatalf("east queue has %d elements, want 1", n)
				}
				// Back on east, blocking commands work normally.
				if err := c.SwitchTo(ctx, "east"); err != nil {
					t.Fatal(err)
				}
				if v, err := c.BLPop(ctx, 50*time.Millisecond, "queue").Result(); err != nil || v[1] != "x" {
					t.Fatalf("BLPOP back on east = %v, %v", v, err)
				}
				if err := c.BLPop(ctx, 50*time.Millisecond, "queue").Err(); err != redis.Nil {
					t.Fatalf("BLPOP on an empty list back on east = %v, want redis.Nil", err)
				}
			}
		})
	}
}

// waitBlocked waits until s has n clients blocked.
func waitBlocked(t *testing.T, s *failovertest.Server, n int) {
	t.Helper()
	r := direct(t, s)
	deadline := time.Now().Add(testTimeout)
	for {
		info, err := r.InfoMap(context.Background(), "clients").Result()
		if err == nil && info["Clients"]["blocked_clients"] == fmt.Sprint(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: blocked clients %v, want %d (%v)", s.Addr, info["Clients"], n, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Row "Conn()": pinned to the endpoint active when taken; it does not
// follow a switch: after one it still talks to east, or fails if east is
// down.
func TestConnIsPinned(t *testing.T) {
	for _, fault := range []string{"switch", "stop", "kill"} {
		t.Run(fault, func(t *testing.T) {
			east, west, c := shortReads(t, nil)
			ctx := ctxFor(t, testTimeout)
			direct(t, east).Set(ctx, "where", "east", 0)
			direct(t, west).Set(ctx, "where", "west", 0)
			cn, err := c.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer cn.Close()
			inject(t, fault, east, c)
			if got, _ := c.Get(ctx, "where").Result(); got != "west" {
				t.Fatalf("client GET after the %s = %q", fault, got)
			}
			got, err := cn.Get(ctxFor(t, time.Second), "where").Result()
			switch fault {
			case "switch":
				if err != nil || got != "east" {
					t.Fatalf("Conn GET after switch = %q, %v; want east (pinned)", got, err)
				}
			default:
				if err == nil {
					t.Fatalf("Conn GET after %s = %q; want east's failure, not west's answer", fault, got)
				}
			}
		})
	}
}
