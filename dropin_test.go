package geofailover_test

// Tests that the Client is never worse than the plain *redis.Client it
// replaces, on a healthy or merely paused server (issue 19). Each compares
// against plain go-redis where a control applies.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// A subscription must not re-handshake a traffic connection: the Pub/Sub
// front's own connection setup (HELLO 2) once went through the routing hook
// to the active endpoint's pool, turning that connection to RESP2.
func TestSubscribeKeepsTrafficProtocol(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	c := newClient(t, &geofailover.Options{Endpoints: []geofailover.Endpoint{
		// One traffic connection: any re-handshake shows on every reply.
		{Name: "east", Weight: 1, Options: &redis.Options{Addr: east.Addr, PoolSize: 1}},
		{Name: "west", Weight: 0.5, Options: &redis.Options{Addr: west.Addr, PoolSize: 1}},
	}})
	plain := redis.NewClient(&redis.Options{Addr: east.Addr, PoolSize: 1})
	defer plain.Close()
	ctx := ctxFor(t, testTimeout)
	if err := c.HSet(ctx, "h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []redis.UniversalClient{plain, c} {
		ps := cl.Subscribe(ctx, "news")
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		defer ps.Close()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := map[string]int{}
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				for name, cl := range map[string]redis.UniversalClient{"plain": plain, "geofailover": c} {
					v, err := cl.Do(ctx, "HGETALL", "h").Result()
					if _, ok := v.(map[any]any); err != nil || !ok {
						mu.Lock()
						bad[name]++
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("HGETALL replies that are not maps after a Subscribe (of 500 each): %v", bad)
	}
	if n := resp2Conns(t, east); n != 0 {
		t.Fatalf("%d of east's connections were switched to RESP2", n)
	}
}

// resp2Conns counts s's connections that speak RESP2. Every client in
// these tests asks for RESP3 (go-redis's default).
func resp2Conns(t *testing.T, s *failovertest.Server) int {
	t.Helper()
	list, err := direct(t, s).ClientList(ctxFor(t, testTimeout)).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		if slices.Contains(strings.Fields(line), "resp=2") {
			n++
		}
	}
	return n
}

// cachingPair starts east (weight 1) and west (0.5) and a client over them
// with go-redis's client-side caching (RESP3) on both endpoints.
func cachingPair(t *testing.T, tune func(*geofailover.Options)) (east, west *failovertest.Server, c *geofailover.Client) {
	t.Helper()
	east, west = failovertest.StartServer(t, failovertest.WithMinVersion("7.0")), failovertest.StartServer(t, failovertest.WithMinVersion("7.0"))
	csc := func(addr string) *redis.Options {
		return &redis.Options{Addr: addr, Protocol: 3, ClientSideCacheConfig: &redis.ClientSideCacheConfig{}}
	}
	opts := &geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, Options: csc(east.Addr)},
		{Name: "west", Weight: 0.5, Options: csc(west.Addr)},
	}}
	tune(opts)
	return east, west, newClient(t, opts)
}

// With go-redis's client-side caching on the endpoints, the refused HELLO
// (a client-side error) once counted against each endpoint in turn: a
// failover storm caused by one Subscribe.
func TestSubscribeWithClientSideCaching(t *testing.T) {
	_, _, c := cachingPair(t, func(o *geofailover.Options) { o.HealthCheckInterval = 100 * time.Millisecond })
	events, stop := c.Events(100)
	defer stop()
	ctx := ctxFor(t, testTimeout)
	for i := range 20 {
		ps := c.Subscribe(ctx, fmt.Sprint("news", i))
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		defer ps.Close()
		if err := c.Set(ctx, "k", i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Kind == geofailover.EventSwitch || ev.Kind == geofailover.EventBreakerOpened {
				t.Fatalf("a subscription with client-side caching caused %v", ev)
			}
		case <-deadline:
			for _, st := range c.Status() {
				if st.Calls.Failed != 0 {
					t.Fatalf("%s counted %d failures: %v", st.Name, st.Calls.Failed, st.LastError)
				}
			}
			return
		}
	}
}

// A blocking command that never reached a server is retried once, on the
// endpoint traffic moves to, as the README promises; it once failed with
// an unexported "switched away before the blocking command was sent" when
// it was steered to the standby before the supervisor had switched, and
// its Trace claimed an attempt on the dead endpoint or none at all.
func TestBlockingRetriedAcrossKills(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	c := clientFor(t, east, west, fast)
	ctx := ctxFor(t, 2*testTimeout)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	var popped int
	wg.Add(2)
	go func() { // producer
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			_ = c.RPush(ctx, "jobs", i).Err()
		}
	}()
	go func() { // consumer
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var tr geofailover.Trace
			_, err := c.BLPop(geofailover.WithTrace(ctx, &tr), time.Second, "jobs").Result()
			mu.Lock()
			switch {
			case err == nil:
				popped++
				if tr.Endpoint == "" || tr.Attempts < 1 || tr.Attempts > 2 {
					failures = append(failures, fmt.Sprintf("a served BLPOP's trace: %+v", tr))
				}
			case err == redis.Nil:
			case geofailover.NotApplied(err) && c.Active() != "":
				// It never reached a server while one was up: it should
				// have been retried there.
				failures = append(failures, fmt.Sprintf("%v (trace: %+v)", err, tr))
			}
			mu.Unlock()
		}
	}()
	for range 4 {
		time.Sleep(200 * time.Millisecond)
		if err := east.Kill(); err != nil {
			t.Fatal(err)
		}
		failovertest.WaitActive(t, c, "west")
		time.Sleep(200 * time.Millisecond)
		if err := east.Restart(); err != nil {
			t.Fatal(err)
		}
		failovertest.WaitActive(t, c, "east")
	}
	close(stop)
	wg.Wait()
	t.Logf("%d popped", popped)
	if len(failures) > 0 {
		t.Fatalf("%d blocking commands failed unsent while a standby was up; the first: %v", len(failures), failures[:min(5, len(failures))])
	}
}

// A paused server with nowhere else to go must keep its traffic: commands
// wait for their own deadlines, as with plain go-redis. CLIENT PAUSE is
// what a planned server failover or upgrade does; the stall rule once
// opened the breaker and every command then failed fast as all-down.
func TestPausedServerKeepsTraffic(t *testing.T) {
	for _, setup := range []string{"one endpoint", "standby down"} {
		t.Run(setup, func(t *testing.T) {
			east := failovertest.StartServer(t)
			eps := []geofailover.Endpoint{{Name: "east", Weight: 1, Options: &redis.Options{Addr: east.Addr}}}
			if setup == "standby down" {
				west := failovertest.StartServer(t)
				eps = append(eps, geofailover.Endpoint{Name: "west", Weight: 0.5, Options: &redis.Options{Addr: west.Addr}})
				if err := west.Kill(); err != nil {
					t.Fatal(err)
				}
			}
			c := newClient(t, &geofailover.Options{Endpoints: eps})
			plain := redis.NewClient(&redis.Options{Addr: east.Addr})
			defer plain.Close()
			failed := map[string]int{}
			var firstErr error
			var mu sync.Mutex
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for name, cl := range map[string]redis.UniversalClient{"plain": plain, "geofailover": c} {
				for range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							select {
							case <-stop:
								return
							default:
							}
							ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
							err := cl.Get(ctx, "k").Err()
							cancel()
							if err != nil && err != redis.Nil {
								mu.Lock()
								failed[name]++
								if name == "geofailover" && firstErr == nil {
									firstErr = err
								}
								mu.Unlock()
							}
						}
					}()
				}
			}
			time.Sleep(200 * time.Millisecond)
			ctx := ctxFor(t, testTimeout)
			if err := direct(t, east).Do(ctx, "CLIENT", "PAUSE", 1500, "ALL").Err(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2500 * time.Millisecond)
			close(stop)
			wg.Wait()
			if failed["plain"] != 0 {
				t.Fatalf("the control failed %d GETs", failed["plain"])
			}
			if failed["geofailover"] != 0 {
				t.Fatalf("%d GETs failed during a 1.5 s pause with nowhere else to go (plain go-redis: 0); the first: %v", failed["geofailover"], firstErr)
			}
		})
	}
}

// A command waiting at Close (a consumer's BLPOP, a GET on a paused
// server) returns an error that errors.Is(err, ErrClosed) recognises, so a
// consumer loop can tell shutdown from an outage; NotApplied is false for
// it (the server may have run it).
func TestInFlightAtClose(t *testing.T) {
	for _, kind := range []string{"blpop", "get on a paused server"} {
		t.Run(kind, func(t *testing.T) {
			east, west := failovertest.StartServer(t), failovertest.StartServer(t)
			c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
				{Name: "east", Weight: 1, Options: &redis.Options{Addr: east.Addr}},
				{Name: "west", Weight: 0.5, Options: &redis.Options{Addr: west.Addr}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := ctxFor(t, testTimeout)
			if err := c.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			if kind == "blpop" {
				go func() { done <- c.BLPop(ctx, 0, "jobs").Err() }()
				waitBlocked(t, east, 1)
			} else {
				if err := c.Ping(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				pause(t, east)
				go func() { done <- c.Get(ctx, "k").Err() }()
				time.Sleep(100 * time.Millisecond)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, geofailover.ErrClosed) || geofailover.NotApplied(err) {
					t.Fatalf("in flight at Close: %v (errors.Is ErrClosed %v, NotApplied %v), want ErrClosed, maybe applied",
						err, errors.Is(err, geofailover.ErrClosed), geofailover.NotApplied(err))
				}
			case <-time.After(10 * time.Second):
				t.Fatal("still waiting 10 s after Close")
			}
		})
	}
}

// Close waits for every goroutine the client started, the attempts of
// hedged reads and the hedge timer's callback included: after Close
// returns, none is left (the README's promise; goleak would only see them
// at the end of the package).
func TestCloseWaitsForHedges(t *testing.T) {
	for _, given := range []bool{false, true} {
		t.Run(map[bool]string{false: "built", true: "client"}[given], func(t *testing.T) {
			east, west := failovertest.StartServer(t), failovertest.StartServer(t)
			opts := &geofailover.Options{HedgeReads: true, HedgeDelay: time.Nanosecond, Endpoints: []geofailover.Endpoint{
				{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
				{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
			}}
			frozen := west // the hedge's goes to west and waits there
			if given {
				for i, srv := range []*failovertest.Server{east, west} {
					rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
					defer rc.Close()
					opts.Endpoints[i].URL, opts.Endpoints[i].Client = "", rc
				}
				frozen = east // the first attempt waits on east; the hedge answers
			}
			c, err := geofailover.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := ctxFor(t, testTimeout)
			must(t, c.WaitReady(ctx))
			failovertest.WaitActive(t, c, "east")
			for range 5 {
				must(t, c.Ping(ctx).Err()) // connections in place before the freeze
			}
			pause(t, frozen)
			for range 5 {
				if err := c.Get(ctx, "k").Err(); err != redis.Nil {
					t.Fatalf("GET: %v", err)
				}
			}
			must(t, c.Close())
			// A goroutine that signalled its end is still on its way out
			// for an instant, so look again for 100 ms, as goleak would
			// (before the fix, an attempt waited out the caller's 30 s).
			for deadline := time.Now().Add(100 * time.Millisecond); ; time.Sleep(5 * time.Millisecond) {
				buf := make([]byte, 1<<20)
				stacks := string(buf[:runtime.Stack(buf, true)])
				left := ""
				for _, fn := range []string{"(*Client).runAttempt", "(*inlineCall).fire"} {
					if strings.Contains(stacks, fn) {
						left = fn
					}
				}
				if left == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("100 ms after Close, a goroutine is still in %s", left)
				}
			}
		})
	}
}

// Hooks added with AddHook see a transaction as a plain client's do:
// [multi ... exec] (they once saw only the commands inside).
func TestHooksSeeMultiExec(t *testing.T) {
	srv := failovertest.StartServer(t)
	ctx := ctxFor(t, testTimeout)
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer plain.Close()
	c := oneEndpoint(t, &redis.Options{Addr: srv.Addr}, nil)
	seen := map[string][]string{}
	for name, cl := range map[string]redis.UniversalClient{"plain": plain, "geofailover": c} {
		h := &namesHook{}
		cl.AddHook(h)
		cmds, err := cl.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "k", 1, 0)
			p.Get(ctx, "k")
			return nil
		})
		if err != nil || len(cmds) != 2 || cmds[1].(*redis.StringCmd).Val() != "1" {
			t.Fatalf("%s: TxPipelined = %v, %v", name, cmds, err)
		}
		// Not the setup of a connection go-redis opened for the call (the
		// README says why the client's hooks do not see it).
		seen[name] = slices.DeleteFunc(h.names, func(n string) bool { return n == "hello" || n == "client" })
	}
	if !slices.Equal(seen["plain"], seen["geofailover"]) {
		t.Fatalf("hooks saw %v through the client, %v through plain go-redis", seen["geofailover"], seen["plain"])
	}
}

// Blocking commands on every kind of endpoint we build are interrupted
// when traffic leaves it, by SwitchTo and by failback too (Cluster and
// Sentinel endpoints once had no pool of their own for them: a BLPOP went
// on waiting on the region traffic had left).
func TestBlockingInterruptedOnEveryTopology(t *testing.T) {
	for _, kind := range []string{"standalone", "cluster", "sentinel"} {
		t.Run(kind, func(t *testing.T) {
			var eps []geofailover.Endpoint
			for _, name := range []string{"east", "west"} {
				ep := geofailover.Endpoint{Name: name, Weight: map[string]float64{"east": 1, "west": 0.5}[name]}
				switch kind {
				case "standalone":
					ep.Options = failovertest.StartServer(t).Options()
				case "cluster":
					ep.ClusterOptions = failovertest.StartCluster(t, 3).Options()
				case "sentinel":
					ep.FailoverOptions = failovertest.StartSentinelGroup(t, 0).Options()
				}
				eps = append(eps, ep)
			}
			c := newClient(t, &geofailover.Options{Endpoints: eps, HealthCheckInterval: 100 * time.Millisecond,
				GracePeriod: 300 * time.Millisecond, FailbackDelay: 200 * time.Millisecond})
			failovertest.WaitActive(t, c, "east")
			failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
			ctx := ctxFor(t, testTimeout)
			blpop := func(move func()) {
				t.Helper()
				from := c.Active()
				done := make(chan error, 1)
				go func() { done <- c.BLPop(ctx, 0, "jobs").Err() }()
				time.Sleep(200 * time.Millisecond) // waiting on from
				move()
				select {
				case err := <-done:
					if !errors.Is(err, geofailover.ErrEndpointChanged) {
						t.Fatalf("BLPOP waiting on %s when traffic left it: %v, want ErrEndpointChanged", from, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("BLPOP still waiting on %s 10 s after traffic left it for %s", from, c.Active())
				}
			}
			blpop(func() { must(t, c.SwitchTo(ctx, "west")) }) // SwitchTo
			blpop(func() { must(t, c.SwitchTo(ctx, "")) })     // failback, from a healthy endpoint
			failovertest.WaitActive(t, c, "east")
			if v, err := c.BLPop(ctx, 50*time.Millisecond, "jobs").Result(); err != redis.Nil {
				t.Fatalf("BLPOP after the switches = %v, %v, want redis.Nil", v, err)
			}
		})
	}
}

// A connection the server closed while it sat in the pool (QUIT, its
// timeout, CLIENT KILL, a restart) costs no error, as with plain go-redis:
// the command written on it never reached the server, and is sent again on
// a fresh connection, on the same endpoint if need be.
func TestDeadPooledConnection(t *testing.T) {
	for _, how := range []string{"quit", "client kill"} {
		t.Run(how, func(t *testing.T) {
			srv := failovertest.StartServer(t)
			ctx := ctxFor(t, testTimeout)
			plain := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 1, ClientName: "victim"})
			defer plain.Close()
			c := oneEndpoint(t, &redis.Options{Addr: srv.Addr, PoolSize: 1, ClientName: "victim"}, nil)
			admin := direct(t, srv)
			failed := map[string]int{}
			var last error
			for name, cl := range map[string]redis.UniversalClient{"plain": plain, "geofailover": c} {
				for range 200 {
					must(t, cl.Ping(ctx).Err()) // the pooled connection is in place
					switch how {
					case "quit":
						if err := cl.Do(ctx, "QUIT").Err(); err != nil {
							failed[name]++
						}
					case "client kill":
						must(t, admin.Do(ctx, "CLIENT", "KILL", "SKIPME", "yes").Err())
					}
					if err := cl.Do(ctx, "PING").Err(); err != nil {
						failed[name]++
						last = err
					}
				}
			}
			if failed["geofailover"] > failed["plain"] {
				t.Fatalf("%d of 200 commands after a %s failed (plain go-redis: %d); the last: %v", failed["geofailover"], how, failed["plain"], last)
			}
		})
	}
}

// Client-side caching (go-redis's ClientSideCacheConfig on the endpoints)
// across switches: a key changed on the preferred region while traffic was
// away is read fresh after traffic comes back, a key changed on the standby
// while it serves is invalidated there, by SwitchTo and by a freeze alike,
// and a subscription works alongside.
func TestClientSideCachingAcrossSwitches(t *testing.T) {
	for _, how := range []string{"switch", "freeze"} {
		t.Run(how, func(t *testing.T) {
			east, west, c := cachingPair(t, fast)
			failovertest.WaitActive(t, c, "east")
			failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
			ctx := ctxFor(t, testTimeout)
			ps := c.Subscribe(ctx, "news")
			defer ps.Close()
			if _, err := ps.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			// read reads k until it is want (an invalidation travels
			// asynchronously), failing after 2 s.
			read := func(where, want string) {
				t.Helper()
				deadline := time.Now().Add(2 * time.Second)
				for {
					v, err := c.Get(ctx, "k").Result()
					if err == nil && v == want {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: GET k = %q, %v; want %q", where, v, err, want)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			published := func(where string) {
				t.Helper()
				if err := c.Publish(ctx, "news", where).Err(); err != nil {
					t.Fatal(err)
				}
				m, err := ps.ReceiveMessage(ctx)
				if err != nil || m.Payload != where {
					t.Fatalf("%s: message %v, %v", where, m, err)
				}
			}
			must(t, c.Set(ctx, "k", "east-1", 0).Err())
			read("east", "east-1")
			before := getCalls(t, east)
			read("east, cached", "east-1")
			if after := getCalls(t, east); after != before {
				t.Fatalf("a second GET reached east (%d -> %d GETs): client-side caching is not in use, the test proves nothing", before, after)
			}
			must(t, direct(t, west).Set(ctx, "k", "west-1", 0).Err())
			published("east")

			switch how {
			case "switch":
				must(t, c.SwitchTo(ctx, "west"))
			case "freeze":
				pause(t, east)
				failovertest.WaitActive(t, c, "west")
			}
			read("west", "west-1")
			read("west, cached", "west-1")
			must(t, direct(t, west).Set(ctx, "k", "west-2", 0).Err()) // changed under the cache
			read("west, after a write elsewhere", "west-2")
			published("west")

			if how == "freeze" {
				must(t, east.Resume())
			}
			must(t, direct(t, east).Set(ctx, "k", "east-2", 0).Err()) // changed while traffic was away
			if how == "switch" {
				must(t, c.SwitchTo(ctx, "east"))
			}
			failovertest.WaitActive(t, c, "east")
			read("east, back", "east-2")
			must(t, direct(t, east).Set(ctx, "k", "east-3", 0).Err())
			read("east, after a write elsewhere", "east-3")
			published("east, back")
			for _, st := range c.Status() {
				if st.Name == "west" && st.Calls.Failed != 0 {
					t.Errorf("west counted %d failures: %v", st.Calls.Failed, st.LastError)
				}
			}
		})
	}
}

// getCalls is how many GETs s has run (INFO commandstats).
func getCalls(t *testing.T, s *failovertest.Server) int {
	t.Helper()
	info, err := direct(t, s).Info(ctxFor(t, testTimeout), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_get:calls="); ok {
			n := 0
			fmt.Sscan(strings.SplitN(rest, ",", 2)[0], &n)
			return n
		}
	}
	return 0
}

// A Pub/Sub receive timeout reads as a plain client's does: a timeout
// (net.Error) naming the server's address, not "read pipe".
func TestPubSubReceiveTimeoutNamesTheServer(t *testing.T) {
	srv := failovertest.StartServer(t)
	ctx := ctxFor(t, testTimeout)
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer plain.Close()
	c := oneEndpoint(t, &redis.Options{Addr: srv.Addr}, nil)
	for name, cl := range map[string]redis.UniversalClient{"plain": plain, "geofailover": c} {
		ps := cl.Subscribe(ctx, "news")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := ps.ReceiveTimeout(ctx, 50*time.Millisecond)
		var nerr net.Error
		if !errors.As(err, &nerr) || !nerr.Timeout() || !strings.Contains(err.Error(), srv.Addr) || !strings.HasPrefix(err.Error(), "read tcp ") {
			t.Errorf("%s: receive timeout %v, want a read tcp timeout naming %s", name, err, srv.Addr)
		}
	}
}

// A Subscribe whose SUBSCRIBE cannot be sent, on a client with nowhere
// else to send it, fails with the connection's error as a plain client's
// does (go-redis's spec "Client timeout / Subscribe timeouts": 1 ns socket
// timeouts on the endpoint).
func TestSubscribeFailsWithNowhereElse(t *testing.T) {
	srv := failovertest.StartServer(t)
	ctx := ctxFor(t, testTimeout)
	for _, o := range []*redis.Options{
		{Addr: srv.Addr, ReadTimeout: time.Nanosecond, WriteTimeout: -1},
		{Addr: srv.Addr, ReadTimeout: -1, WriteTimeout: time.Nanosecond},
	} {
		plain := redis.NewClient(o)
		defer plain.Close()
		c := oneEndpoint(t, o, nil)
		for name, cl := range map[string]redis.UniversalClient{"plain": plain, "geofailover": c} {
			ps := cl.Subscribe(ctx)
			err := ps.Subscribe(ctx, "_")
			ps.Close()
			var nerr net.Error
			if !errors.As(err, &nerr) || !nerr.Timeout() {
				t.Errorf("%s, read timeout %v, write timeout %v: Subscribe = %v, want a timeout", name, o.ReadTimeout, o.WriteTimeout, err)
			}
		}
	}
}

// WAIT keeps go-redis's own read timeout (its block time) through the
// client: a WAIT longer than the endpoint's ReadTimeout is not cut short.
func TestWaitKeepsItsTimeout(t *testing.T) {
	srv := failovertest.StartServer(t)
	o := &redis.Options{Addr: srv.Addr, ReadTimeout: 100 * time.Millisecond}
	plain := redis.NewClient(o)
	defer plain.Close()
	c := oneEndpoint(t, o, nil)
	for name, w := range map[string]interface {
		Wait(context.Context, int, time.Duration) *redis.IntCmd
	}{"plain": plain, "geofailover": c} {
		start := time.Now()
		n, err := w.Wait(context.Background(), 1, 300*time.Millisecond).Result()
		if err != nil || n != 0 || time.Since(start) < 250*time.Millisecond {
			t.Errorf("%s: WAIT 1 300ms = %d, %v after %v; want 0 replicas after 300 ms", name, n, err, time.Since(start))
		}
	}
}

// Every method of *redis.Client is on *geofailover.Client, but those that
// cannot mean the same thing on a client of several endpoints, each with
// its reason.
func TestMethodSetOfRedisClient(t *testing.T) {
	notOurs := map[string]string{
		"Options":                         "a client of several endpoints has no one redis.Options",
		"String":                          "names one server",
		"WithTimeout":                     "returns a *redis.Client bound to one server",
		"Monitor":                         "MONITOR streams one server's commands: not proxied across a switch",
		"Sync":                            "replication stream of one server",
		"NodeAddress":                     "one server's address",
		"EphemeralConn":                   "a connection to one server; use Conn(ctx), pinned to the active endpoint",
		"CSCStats":                        "per endpoint: set OnNewClient to reach each member's",
		"CSCRefreshStats":                 "per endpoint: set OnNewClient to reach each member's",
		"GetMaintNotificationsManager":    "per endpoint (maintenance notifications are off in our members unless configured)",
		"GetPushNotificationHandler":      "per endpoint",
		"RegisterPushNotificationHandler": "per endpoint: set OnNewClient",
		"FTExplainCli":                    "go-redis does not implement it either",
	}
	ours := map[string]bool{}
	for i := range reflect.TypeOf(&geofailover.Client{}).NumMethod() {
		ours[reflect.TypeOf(&geofailover.Client{}).Method(i).Name] = true
	}
	rt := reflect.TypeOf(&redis.Client{})
	for i := range rt.NumMethod() {
		name := rt.Method(i).Name
		if _, skip := notOurs[name]; !skip && !ours[name] {
			t.Errorf("(*redis.Client).%s has no counterpart on *geofailover.Client", name)
		}
	}
	for name := range notOurs {
		if ours[name] {
			t.Errorf("%s is listed as not ours but exists", name)
		}
	}
}
