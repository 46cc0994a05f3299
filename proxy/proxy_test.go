package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/proxy"
)

// TestRepliesAsDirect: through the proxy, in RESP2 and RESP3, go-redis's
// typed commands get what they get from the server directly, including
// the replies whose shape depends on the protocol (maps, scores, pairs,
// XREAD, nulls).
func TestRepliesAsDirect(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			via := r.connect(t, proto)
			direct := redis.NewClient(&redis.Options{Addr: r.east.Addr, Protocol: proto})
			defer direct.Close()
			prefix := fmt.Sprintf("p%d:", proto)
			ops := []func(c *redis.Client) any{
				func(c *redis.Client) any { return c.Set(ctx, prefix+"s", "v", 0).Val() },
				func(c *redis.Client) any { return c.Get(ctx, prefix+"s").Val() },
				func(c *redis.Client) any { return c.Get(ctx, prefix+"missing").Err() },
				func(c *redis.Client) any { return c.HSet(ctx, prefix+"h", "a", "1", "b", "2").Err() },
				func(c *redis.Client) any { return c.HGetAll(ctx, prefix+"h").Val() },
				func(c *redis.Client) any {
					return c.ZAdd(ctx, prefix+"z", redis.Z{Score: 1.5, Member: "a"}, redis.Z{Score: 2, Member: "b"}).Err()
				},
				func(c *redis.Client) any { return c.ZRangeWithScores(ctx, prefix+"z", 0, -1).Val() },
				func(c *redis.Client) any { return c.ZScore(ctx, prefix+"z", "a").Val() },
				func(c *redis.Client) any { return c.ZRandMemberWithScores(ctx, prefix+"z", 5).Val() != nil },
				func(c *redis.Client) any { return c.HRandFieldWithValues(ctx, prefix+"h", 5).Val() != nil },
				func(c *redis.Client) any {
					return c.XAdd(ctx, &redis.XAddArgs{Stream: prefix + "x", ID: "1-1", Values: []string{"f", "v"}}).Err()
				},
				func(c *redis.Client) any {
					return c.XRead(ctx, &redis.XReadArgs{Streams: []string{prefix + "x", "0"}}).Val()
				},
				func(c *redis.Client) any { return c.XInfoStream(ctx, prefix+"x").Val().Length },
				func(c *redis.Client) any { return c.SAdd(ctx, prefix+"set", "m").Err() },
				func(c *redis.Client) any { return c.SMembers(ctx, prefix+"set").Val() },
				func(c *redis.Client) any { return c.SetNX(ctx, prefix+"s", "w", 0).Val() },
				func(c *redis.Client) any { return c.IncrByFloat(ctx, prefix+"f", 1.25).Val() },
				func(c *redis.Client) any { return c.LPop(ctx, prefix+"nolist").Err() },
				func(c *redis.Client) any { return c.LPopCount(ctx, prefix+"nolist", 2).Err() },
				func(c *redis.Client) any { return c.Incr(ctx, prefix+"s").Err().Error() },
				func(c *redis.Client) any { return c.ZPopMin(ctx, prefix+"z", 2).Val() },
				func(c *redis.Client) any {
					return c.GeoAdd(ctx, prefix+"g", &redis.GeoLocation{Name: "p", Longitude: 1, Latitude: 2}).Err()
				},
				func(c *redis.Client) any { return len(c.GeoPos(ctx, prefix+"g", "p", "none").Val()) },
				func(c *redis.Client) any { return c.ConfigGet(ctx, "maxmemory-policy").Val() },
				func(c *redis.Client) any { return c.Do(ctx, "ECHO", "hi").Val() },
				func(c *redis.Client) any { return c.Ping(ctx).Val() },
				func(c *redis.Client) any { return c.Exists(ctx, prefix+"s", prefix+"h").Val() },
			}
			// Each op runs directly on keys under q, then through the
			// proxy on the same keys under r.
			prefix = fmt.Sprintf("q%d:", proto)
			for i, op := range ops {
				want := op(direct)
				prefix = fmt.Sprintf("r%d:", proto)
				got := op(via)
				prefix = fmt.Sprintf("q%d:", proto)
				// Replies that name a key name it under its own prefix.
				w := strings.ReplaceAll(fmt.Sprintf("%#v", want), fmt.Sprintf("q%d:", proto), fmt.Sprintf("r%d:", proto))
				if g := fmt.Sprintf("%#v", got); g != w {
					t.Errorf("op %d: through the proxy %#v, directly %#v", i, got, want)
				}
			}
		})
	}
}

// TestFailoverAndFailback: a plain client of the proxy keeps working while
// the preferred region is killed and comes back; the only errors are for
// commands in flight at the kill.
func TestFailoverAndFailback(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	c := r.connect(t, 2)
	var errs []error
	deadline := time.Now().Add(3 * time.Second)
	killed, restarted := false, false
	for i := 0; time.Now().Before(deadline); i++ {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		key := fmt.Sprintf("k%d", i%8)
		if err := c.Set(cctx, key, i, 0).Err(); err != nil {
			errs = append(errs, err)
		} else if v, err := c.Get(cctx, key).Int(); err != nil || v != i {
			errs = append(errs, fmt.Errorf("GET %s = %d, %v; want %d", key, v, err, i))
		}
		cancel()
		switch {
		case !killed && time.Until(deadline) < 2500*time.Millisecond:
			killed = true
			if err := r.east.Kill(); err != nil {
				t.Fatal(err)
			}
		case killed && !restarted && time.Until(deadline) < 1500*time.Millisecond:
			restarted = true
			if err := r.east.Restart(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(errs) > 4 {
		t.Fatalf("%d errors through the proxy, more than the commands in flight at the kill: %v", len(errs), errs)
	}
	failovertest.WaitActive(t, r.client, "east")
	if err := c.Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Fatalf("SET after failback: %v", err)
	}
	if v := failovertest.Connect(t, r.east.Addr).Get(ctx, "after").Val(); v != "1" {
		t.Fatalf("after failback, east has %q for the key the proxy set, want 1", v)
	}
}

// TestAllRegionsDown: with every region down, a command gets a fast
// -LOADING error, which go-redis retries, and the connection stays open.
func TestAllRegionsDown(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	c := r.connect(t, 2)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	_ = r.east.Kill()
	_ = r.west.Kill()
	failovertest.WaitHealth(t, r.client, "west", geofailover.Unhealthy)
	start := time.Now()
	err := c.Get(ctx, "k").Err()
	if took := time.Since(start); err == nil || !strings.HasPrefix(err.Error(), "LOADING ") || took > 500*time.Millisecond {
		t.Fatalf("GET with all regions down = %v after %v; want a fast LOADING error", err, took)
	}
	if err := c.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "LOADING ") {
		t.Fatalf("second GET = %v; want LOADING again on the same connection", err)
	}
}

// rawConn is a client connection that speaks RESP by hand.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	rd *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, nc: nc, rd: bufio.NewReader(nc)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// line reads one reply line (without CRLF).
func (c *rawConn) line() string {
	c.t.Helper()
	l, err := c.rd.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a reply: %v (read %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// closed checks that the proxy closed the connection.
func (c *rawConn) closed() {
	c.t.Helper()
	if b, err := c.rd.ReadByte(); err == nil {
		c.t.Fatalf("connection still open: read %q", b)
	}
}

// TestBadInput: malformed RESP, a 1 GB bulk length, a 10,000-deep nested
// array and an oversized inline request each get an error reply and a
// closed connection; a half-written command followed by a disconnect
// leaves nothing behind; the proxy goes on serving.
func TestBadInput(t *testing.T) {
	r := startRig(t, nil)
	for name, tc := range map[string]struct{ send, reply string }{
		"malformed":   {"*2\r\n$3\r\nGET\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'"},
		"1 GB bulk":   {"*2\r\n$3\r\nSET\r\n$1073741824\r\n", "-ERR Protocol error: invalid bulk length"},
		"deep nested": {strings.Repeat("*1\r\n", 10000), "-ERR Protocol error: expected '$', got '*'"},
		"big inline":  {strings.Repeat("x", 100<<10) + "\r\n", "-ERR Protocol error: too big inline request"},
		"quotes":      {"SET k \"v\r\n", "-ERR Protocol error: unbalanced quotes in request"},
	} {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, r.addr)
			c.send(tc.send)
			if got := c.line(); got != tc.reply {
				t.Fatalf("reply %q, want %q", got, tc.reply)
			}
			c.closed()
		})
	}
	half := dialRaw(t, r.addr)
	half.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc")
	_ = half.nc.Close()
	c := dialRaw(t, r.addr)
	c.send("PING\r\n")
	if got := c.line(); got != "+PONG" {
		t.Fatalf("PING after bad clients: %q", got)
	}
	waitFor(t, func() bool { return r.srv.Stats().Connections == 1 }, "the bad clients' connections to close")
	if st := r.srv.Stats(); st.ProtocolErrors != 5 {
		t.Fatalf("Stats().ProtocolErrors = %d, want 5", st.ProtocolErrors)
	}
}

// TestLimits: MaxClients refuses the connection over it with Redis's
// error; IdleTimeout closes an idle connection.
func TestLimits(t *testing.T) {
	r := startRig(t, nil)
	srv, addr := serve(t, r.client, &proxy.Options{MaxClients: 20, IdleTimeout: 300 * time.Millisecond})
	var conns []*rawConn
	for range 20 {
		c := dialRaw(t, addr)
		c.send("PING\r\n")
		if got := c.line(); got != "+PONG" {
			t.Fatalf("PING: %q", got)
		}
		conns = append(conns, c)
	}
	over := dialRaw(t, addr)
	if got := over.line(); got != "-ERR max number of clients reached" {
		t.Fatalf("client 21 got %q", got)
	}
	over.closed()
	for _, c := range conns {
		c.closed() // idle for 300 ms
	}
	if st := srv.Stats(); st.Rejected != 1 || st.Accepted != 20 {
		t.Fatalf("Stats = %+v, want 20 accepted and 1 rejected", st)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPubSubFollowsFailover: a subscriber of the proxy, in RESP2 and
// RESP3, keeps receiving after the preferred region is killed: the engine
// subscribes again on the standby.
func TestPubSubFollowsFailover(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		sub := r.connect(t, proto)
		ps := sub.Subscribe(ctx, "news")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatalf("RESP%d subscribe: %v", proto, err)
		}
		if err := ps.Ping(ctx, "hi"); err != nil {
			t.Fatalf("RESP%d PING while subscribed: %v", proto, err)
		}
		if m, err := ps.Receive(ctx); err != nil || fmt.Sprint(m) != "Pong<hi>" {
			t.Fatalf("RESP%d PING reply %v, %v", proto, m, err)
		}
		pub := r.connect(t, proto)
		if n, err := pub.Publish(ctx, "news", "before").Result(); err != nil || n != 1 {
			t.Fatalf("RESP%d PUBLISH = %d, %v", proto, n, err)
		}
		if m, err := ps.ReceiveMessage(ctx); err != nil || m.Payload != "before" {
			t.Fatalf("RESP%d message %v, %v", proto, m, err)
		}
		_ = ps.Close()
	}
	sub := r.connect(t, 2)
	ps := sub.PSubscribe(ctx, "n*")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	pub := r.connect(t, 2)
	if err := r.east.Kill(); err != nil {
		t.Fatal(err)
	}
	failovertest.WaitActive(t, r.client, "west")
	// Publish until the subscription is in place on west (the gap loses
	// messages, as Redis Pub/Sub does).
	deadline := time.Now().Add(5 * time.Second)
	for {
		if n, _ := pub.Publish(ctx, "news", "after").Result(); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no subscriber on west 5 s after the failover")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := ps.ReceiveMessage(rctx)
	if err != nil || m.Payload != "after" || m.Pattern != "n*" || m.Channel != "news" {
		t.Fatalf("after failover: %+v, %v", m, err)
	}
}

// TestBlockingDoesNotHoldOthers: a BLPOP waiting on one connection holds
// up nobody else; a BLPOP longer than the regions' read timeout waits its
// full time; one whose client leaves is canceled.
func TestBlockingDoesNotHoldOthers(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	waiter, other := r.connect(t, 2), r.connect(t, 3)
	got := make(chan []string, 1)
	go func() { got <- waiter.BLPop(ctx, 0, "q").Val() }()
	time.Sleep(100 * time.Millisecond)
	for i := range 50 {
		if err := other.Set(ctx, "k", i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.RPush(ctx, "q", "job").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if fmt.Sprint(v) != "[q job]" {
			t.Fatalf("BLPOP = %v", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("BLPOP not woken by RPUSH")
	}
	// The engine's members read with a 200 ms timeout here: a 700 ms
	// BLPOP must still wait for the server's answer.
	start := time.Now()
	v, err := other.BLPop(ctx, 700*time.Millisecond, "empty").Result()
	if took := time.Since(start); err != redis.Nil || took < 650*time.Millisecond {
		t.Fatalf("BLPOP 0.7 = %v, %v after %v; want redis.Nil after 0.7 s", v, err, took)
	}
	// A client that leaves while its BLPOP 0 waits: its connection to the
	// region is released.
	gone := dialRaw(t, r.addr)
	gone.send("*3\r\n$5\r\nBLPOP\r\n$5\r\nnever\r\n$1\r\n0\r\n")
	time.Sleep(100 * time.Millisecond)
	_ = gone.nc.Close()
	east := failovertest.Connect(t, r.east.Addr)
	waitFor(t, func() bool {
		list, _ := east.ClientList(ctx).Result()
		return !strings.Contains(list, "flags=b ") // no connection blocked
	}, "the left client's BLPOP to end on the region")
}

// TestWatchAcrossSwitch: a WATCH transaction whose region lost the
// traffic before EXEC is not applied anywhere; the client gets the null
// reply of a failed WATCH (go-redis: TxFailedErr) and retries on the new
// region.
func TestWatchAcrossSwitch(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	c := r.connect(t, 2)
	err := c.Watch(ctx, func(tx *redis.Tx) error {
		if err := tx.Get(ctx, "w").Err(); err != redis.Nil {
			return err
		}
		if err := r.client.SwitchTo(ctx, "west"); err != nil {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "w", "1", 0)
			return nil
		})
		return err
	}, "w")
	if err != redis.TxFailedErr {
		t.Fatalf("Watch across a switch = %v, want redis.TxFailedErr", err)
	}
	for _, s := range []*failovertest.Server{r.east, r.west} {
		if n := failovertest.Connect(t, s.Addr).Exists(ctx, "w").Val(); n != 0 {
			t.Fatalf("the transaction was applied on %s", s.Addr)
		}
	}
	// A conflicting write also fails the WATCH, as on Redis.
	err = c.Watch(ctx, func(tx *redis.Tx) error {
		_ = tx.Get(ctx, "w").Err()
		if err := r.connect(t, 2).Set(ctx, "w", "other", 0).Err(); err != nil {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "w", "mine", 0)
			return nil
		})
		return err
	}, "w")
	if err != redis.TxFailedErr || c.Get(ctx, "w").Val() != "other" {
		t.Fatalf("Watch with a conflict = %v, value %q", err, c.Get(ctx, "w").Val())
	}
}

// TestAuth: with a password, a command before AUTH gets -NOAUTH, a wrong
// password -WRONGPASS, and AUTH or HELLO AUTH opens the connection.
func TestAuth(t *testing.T) {
	r := startRig(t, nil)
	_, addr := serve(t, r.client, &proxy.Options{Password: "s3cret"})
	c := dialRaw(t, addr)
	for _, step := range []struct{ send, want string }{
		{"GET k\r\n", "-NOAUTH Authentication required."},
		{"AUTH wrong\r\n", "-WRONGPASS invalid username-password pair or user is disabled."},
		{"AUTH someone s3cret\r\n", "-WRONGPASS invalid username-password pair or user is disabled."},
		{"AUTH s3cret\r\n", "+OK"},
		{"PING\r\n", "+PONG"},
	} {
		c.send(step.send)
		if got := c.line(); got != step.want {
			t.Fatalf("%q: got %q, want %q", step.send, got, step.want)
		}
	}
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		ok := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto, Password: "s3cret"})
		if err := ok.Set(ctx, "a", "1", 0).Err(); err != nil {
			t.Fatalf("RESP%d with the password: %v", proto, err)
		}
		_ = ok.Close()
		bad := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto, Password: "nope", MaxRetries: -1})
		if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Fatalf("RESP%d with a wrong password: %v", proto, err)
		}
		_ = bad.Close()
	}
}

// TestConnectionState: SELECT, CLIENT SETNAME and the protocol are the
// connection's own and survive a switch of region.
func TestConnectionState(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: r.addr, DB: 5, ClientName: "app1", Protocol: 3})
	defer c.Close()
	if err := c.Set(ctx, "k", "db5", 0).Err(); err != nil {
		t.Fatal(err)
	}
	other := r.connect(t, 2)
	if v := other.Get(ctx, "k").Err(); v != redis.Nil {
		t.Fatalf("db 0 sees the db 5 key: %v", v)
	}
	if err := r.client.SwitchTo(ctx, "west"); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k2", "db5-west", 0).Err(); err != nil {
		t.Fatal(err)
	}
	direct := redis.NewClient(&redis.Options{Addr: r.west.Addr, DB: 5})
	defer direct.Close()
	if v := direct.Get(ctx, "k2").Val(); v != "db5-west" {
		t.Fatalf("west db 5 has %q, want db5-west", v)
	}
	if n := failovertest.Connect(t, r.west.Addr).Exists(ctx, "k2").Val(); n != 0 {
		t.Fatal("the key landed in west's db 0")
	}
	if name := c.ClientGetName(ctx).Val(); name != "app1" {
		t.Fatalf("CLIENT GETNAME after the switch = %q", name)
	}
	if m := c.HGetAll(ctx, "nohash").Val(); m == nil {
		t.Fatal("RESP3 HGETALL after the switch")
	}
	list := c.ClientList(ctx).Val()
	if !strings.Contains(list, "name=app1") || !strings.Contains(list, "db=5") || !strings.Contains(list, "resp=3") {
		t.Fatalf("CLIENT LIST = %q", list)
	}
	if err := c.Do(ctx, "SELECT", "x").Err(); err == nil || err.Error() != "ERR value is not an integer or out of range" {
		t.Fatalf("SELECT x = %v", err)
	}
}

// TestRefusals: commands that cannot be proxied honestly get an -ERR
// saying why, and the connection goes on.
func TestRefusals(t *testing.T) {
	r := startRig(t, nil)
	c := dialRaw(t, r.addr)
	for _, cmd := range []string{"MONITOR", "SYNC", "PSYNC ? -1", "REPLICAOF no one", "FAILOVER", "SHUTDOWN", "DEBUG sleep 0", "CLUSTER info", "CLIENT TRACKING on", "CLIENT KILL id 1", "READONLY"} {
		c.send(cmd + "\r\n")
		name := strings.ToUpper(strings.Fields(cmd)[0])
		if name == "CLIENT" {
			name = "CLIENT " + strings.ToUpper(strings.Fields(cmd)[1])
		}
		if got := c.line(); !strings.HasPrefix(got, "-ERR geofailover proxy: "+name+" is refused: ") {
			t.Fatalf("%s: %q", cmd, got)
		}
	}
	c.send("PING\r\n")
	if got := c.line(); got != "+PONG" {
		t.Fatalf("PING after refusals: %q", got)
	}
	if st := r.srv.Stats(); st.Refused != 11 {
		t.Fatalf("Stats().Refused = %d, want 11", st.Refused)
	}
}

// TestShutdownDrains: Shutdown lets a command under way finish and be
// answered, refuses new connections, and returns once clients are gone.
func TestShutdownDrains(t *testing.T) {
	r := startRig(t, nil)
	srv, addr := serve(t, r.client, nil)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	got := make(chan error, 1)
	go func() { got <- c.BLPop(ctx, 500*time.Millisecond, "none").Err() }()
	time.Sleep(100 * time.Millisecond)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-got; err != redis.Nil {
		t.Fatalf("the BLPOP in flight at Shutdown got %v, want its answer (redis.Nil)", err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("Shutdown returned after %v, before the BLPOP under way ended", took)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("a connection was accepted after Shutdown")
	}
}

// TestShutdownUnderLoad: 32 clients send pipelines of 8 SETs back to back
// and Shutdown comes mid-way: every command whose write had returned before
// Shutdown was called gets its reply (a drain loses no command in flight;
// commands written after it may meet a closed connection).
func TestShutdownUnderLoad(t *testing.T) {
	r := startRig(t, nil)
	srv, addr := serve(t, r.client, nil)
	var shutdown atomic.Bool
	type result struct {
		lost, answered int
		err            error
	}
	const clients, pipe = 32, 8
	req := []byte(strings.Repeat("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", pipe))
	results := make(chan result, clients)
	for range clients {
		go func() {
			var res result
			defer func() { results <- res }()
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				res.err = err
				return
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
			rd := bufio.NewReader(nc)
			for {
				if _, err := nc.Write(req); err != nil {
					return // closed by the drain
				}
				inFlight := !shutdown.Load()
				for i := range pipe {
					line, err := rd.ReadString('\n')
					if err != nil {
						if inFlight {
							res.lost += pipe - i
						}
						return
					}
					if line != "+OK\r\n" {
						res.err = fmt.Errorf("reply %q", line)
						return
					}
					res.answered++
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	shutdown.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	var lost, answered int
	for range clients {
		res := <-results
		if res.err != nil {
			t.Error(res.err)
		}
		lost += res.lost
		answered += res.answered
	}
	t.Logf("%d commands answered, %d sent before Shutdown and not answered", answered, lost)
	if answered == 0 || lost != 0 {
		t.Fatalf("%d commands sent before Shutdown were not answered (%d answered)", lost, answered)
	}
}

// TestLargeValues: a 20 MB value goes through in both directions, in
// RESP2 and RESP3, pipelined with small commands. The client is tuned for
// a loaded machine: under the race detector the proxy takes seconds over
// 20 MB, and in CI once a switch during it lost the SET (the connection
// was closed under it: a stall or two slow checks, on a starved machine).
// That a long transfer is not taken for a stall when the checks answer is
// chaos's TestLargeValueOnASlowLinkIsNotStalled.
func TestLargeValues(t *testing.T) {
	r := startRig(t, nil, func(o *geofailover.Options) {
		o.DisableStallDetection = true
		o.HealthCheckTimeout = time.Second
	})
	ctx := context.Background()
	big := strings.Repeat("0123456789abcdef", 20<<20/16)
	for _, proto := range []int{2, 3} {
		c := r.connect(t, proto)
		key := fmt.Sprint("big", proto)
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, big, 0)
			p.Get(ctx, key)
			p.StrLen(ctx, key)
			return nil
		})
		if err != nil {
			t.Fatalf("RESP%d: %v", proto, err)
		}
		if got := cmds[1].(*redis.StringCmd).Val(); got != big {
			t.Fatalf("RESP%d: GET returned %d bytes, want the %d set", proto, len(got), len(big))
		}
		if n := cmds[2].(*redis.IntCmd).Val(); n != int64(len(big)) {
			t.Fatalf("RESP%d: STRLEN = %d", proto, n)
		}
	}
}

// TestSessionCommands: PING, ECHO, QUIT and RESET answer as Redis does.
func TestSessionCommands(t *testing.T) {
	r := startRig(t, nil)
	c := dialRaw(t, r.addr)
	for _, step := range []struct{ send, want string }{
		{"PING\r\n", "+PONG"},
		{"ECHO hello\r\n", "$5"},
		{"", "hello"},
		{"HELLO 3\r\n", "%7"},
	} {
		if step.send != "" {
			c.send(step.send)
		}
		if got := c.line(); got != step.want {
			t.Fatalf("%q: %q, want %q", step.send, got, step.want)
		}
	}
	c.send("PING\r\n")
	for c.line() != "+PONG" { // the rest of HELLO's map
	}
	c.send("CLIENT SETNAME before-reset\r\nSELECT 4\r\nMULTI\r\nRESET\r\nCLIENT GETNAME\r\nCLIENT INFO\r\n")
	for _, want := range []string{"+OK", "+OK", "+OK", "+RESET", "$-1"} {
		if got := c.line(); got != want {
			t.Fatalf("after RESET: %q, want %q", got, want)
		}
	}
	c.line() // CLIENT INFO's length
	if info := c.line(); !strings.Contains(info, " db=0 ") || !strings.Contains(info, " resp=2 ") || !strings.Contains(info, " multi=-1 ") {
		t.Fatalf("CLIENT INFO after RESET: %q", info)
	}
	c.line() // the CRLF after the info line's own newline
	c.send("QUIT\r\n")
	if got := c.line(); got != "+OK" {
		t.Fatalf("QUIT: %q", got)
	}
	c.closed()
}

// TestShardedPubSub: SSUBSCRIBE gets smessage, in RESP2 and RESP3.
func TestShardedPubSub(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		c := r.connect(t, proto)
		ps := c.SSubscribe(ctx, "shard")
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatalf("RESP%d SSUBSCRIBE: %v", proto, err)
		}
		if err := r.connect(t, proto).SPublish(ctx, "shard", "hi").Err(); err != nil {
			t.Fatal(err)
		}
		m, err := ps.ReceiveMessage(ctx)
		if err != nil || m.Payload != "hi" || m.Channel != "shard" {
			t.Fatalf("RESP%d smessage: %+v, %v", proto, m, err)
		}
		if err := ps.SUnsubscribe(ctx, "shard"); err != nil {
			t.Fatal(err)
		}
		_ = ps.Close()
	}
}

// TestClusterRegion: a Redis Cluster region is one standalone server to
// the proxy's clients: keys in every slot, and pipelines across slots, each
// key on the master that owns its slot; CLUSTER is refused.

func TestClusterRegion(t *testing.T) {
	cl := failovertest.StartCluster(t, 3)
	standby := failovertest.StartServer(t)
	c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "cluster", Weight: 1, ClusterOptions: cl.Options()},
		{Name: "standby", Weight: 0.5, URL: "redis://" + standby.Addr},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	failovertest.WaitActive(t, c, "cluster")
	_, addr := serve(t, c, nil)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		app := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto})
		defer app.Close()
		cmds, err := app.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range 50 {
				p.Set(ctx, fmt.Sprint("key", i), i, 0)
			}
			for i := range 50 {
				p.Get(ctx, fmt.Sprint("key", i))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("RESP%d pipeline across slots: %v", proto, err)
		}
		for i := range 50 {
			if v := cmds[50+i].(*redis.StringCmd).Val(); v != fmt.Sprint(i) {
				t.Fatalf("RESP%d GET key%d = %q", proto, i, v)
			}
		}
		if err := app.Do(ctx, "CLUSTER", "INFO").Err(); err == nil || !strings.Contains(err.Error(), "is refused") {
			t.Fatalf("CLUSTER INFO: %v", err)
		}
	}
	// A slot moved to another master after the engine's cluster client
	// learnt the map: the old owner answers MOVED, which the client
	// follows (the engine's hook makes a raw reply's MOVED an error that
	// go-redis's cluster client sees; see internal/rawcmd).
	app := redis.NewClient(&redis.Options{Addr: addr})
	defer app.Close()
	const moving = "moving-key"
	from, err := cl.MasterFor(ctx, moving)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Get(ctx, moving).Err(); err != redis.Nil { // the client learns the slot's owner
		t.Fatalf("GET before the move: %v", err)
	}
	var to *failovertest.Server
	for _, m := range cl.Masters {
		if m != from {
			to = m
		}
	}
	toID := failovertest.Connect(t, to.Addr).ClusterMyID(ctx).Val()
	slot := failovertest.Connect(t, from.Addr).ClusterKeySlot(ctx, moving).Val()
	for _, m := range cl.Masters {
		if err := failovertest.Connect(t, m.Addr).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err(); err != nil {
			t.Fatalf("SETSLOT on %s: %v", m.Addr, err)
		}
	}
	if err := app.Set(ctx, moving, "here", 0).Err(); err != nil {
		t.Fatalf("SET after the slot moved: %v", err)
	}
	if v := failovertest.Connect(t, to.Addr).Get(ctx, moving).Val(); v != "here" {
		t.Fatalf("the new owner has %q", v)
	}
	// Every key landed on the master that owns its slot.
	for i := range 50 {
		key := fmt.Sprint("key", i)
		m, err := cl.MasterFor(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if v := failovertest.Connect(t, m.Addr).Get(ctx, key).Val(); v != fmt.Sprint(i) {
			t.Fatalf("%s on its master %s = %q", key, m.Addr, v)
		}
	}
}

// TestManyIdleConnections: 1,000 idle connections cost bounded memory
// each, and MaxClients refuses the one over.
func TestManyIdleConnections(t *testing.T) {
	r := startRig(t, nil)
	srv, addr := serve(t, r.client, &proxy.Options{MaxClients: 1000})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, 1000)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range 1000 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
	}
	waitFor(t, func() bool { return srv.Stats().Connections == 1000 }, "1,000 connections")
	over := dialRaw(t, addr)
	if got := over.line(); got != "-ERR max number of clients reached" {
		t.Fatalf("connection 1,001 got %q", got)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)
	perConn := used / 1000
	t.Logf("1,000 idle connections: %d KB in all (both ends, in this process), %d bytes each", used>>10, perConn)
	if perConn > 64<<10 {
		t.Fatalf("%d bytes per idle connection (both ends), more than 64 KB", perConn)
	}
}

// TestScanAcrossSwitch: a SCAN cursor from a region that lost the traffic
// is refused, never continued on another region; a scan from 0 on the new
// region sees its keys.
func TestScanAcrossSwitch(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	for _, s := range []*failovertest.Server{r.east, r.west} {
		direct := failovertest.Connect(t, s.Addr)
		for i := range 100 {
			direct.Set(ctx, fmt.Sprint("scan:", i), i, 0)
		}
	}
	c := r.connect(t, 2)
	keys, cursor, err := c.Scan(ctx, 0, "scan:*", 10).Result()
	if err != nil || cursor == 0 || len(keys) == 0 {
		t.Fatalf("first page: %d keys, cursor %d, %v", len(keys), cursor, err)
	}
	if err := r.client.SwitchTo(ctx, "west"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Scan(ctx, cursor, "scan:*", 10).Result(); err == nil || !strings.Contains(err.Error(), "start the scan again from cursor 0") {
		t.Fatalf("continuing east's cursor on west: %v", err)
	}
	var all []string
	iter := c.Scan(ctx, 0, "scan:*", 10).Iterator()
	for iter.Next(ctx) {
		all = append(all, iter.Val())
	}
	if err := iter.Err(); err != nil || len(all) != 100 {
		t.Fatalf("a scan from 0 on west: %d keys, %v", len(all), err)
	}
}

// TestRESP2Regions: with regions on RESP2 (Options.Protocol 2), replies
// pass through untouched, HELLO 3 gets -NOPROTO, and a go-redis client
// that asked for RESP3 falls back to RESP2, as with a Redis 5 server.
func TestRESP2Regions(t *testing.T) {
	srv := failovertest.StartServer(t)
	c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "only", Weight: 1, URL: "redis://" + srv.Addr + "?protocol=2"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	failovertest.WaitActive(t, c, "only")
	_, addr := serve(t, c, &proxy.Options{Protocol: 2})
	raw := dialRaw(t, addr)
	raw.send("HELLO 3\r\n")
	if got := raw.line(); got != "-NOPROTO unsupported protocol version" {
		t.Fatalf("HELLO 3: %q", got)
	}
	ctx := context.Background()
	app := redis.NewClient(&redis.Options{Addr: addr, Protocol: 3})
	defer app.Close()
	if err := app.HSet(ctx, "h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if m, err := app.HGetAll(ctx, "h").Result(); err != nil || m["f"] != "v" {
		t.Fatalf("HGETALL: %v, %v", m, err)
	}
	if err := app.ZAdd(ctx, "z", redis.Z{Score: 2.5, Member: "m"}).Err(); err != nil {
		t.Fatal(err)
	}
	if z, err := app.ZRangeWithScores(ctx, "z", 0, -1).Result(); err != nil || len(z) != 1 || z[0].Score != 2.5 {
		t.Fatalf("ZRANGE WITHSCORES: %v, %v", z, err)
	}
}

// TestBatchingKeepsOrder: with 40 connections sending at once, single
// commands and pipelines, each connection's replies are its own and in
// its order, and no run is left waiting (the commands of all connections
// are sent together: batch.go).
func TestBatchingKeepsOrder(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	const conns, rounds = 40, 300
	errs := make(chan error, conns)
	for w := range conns {
		go func() {
			c := redis.NewClient(&redis.Options{Addr: r.addr, PoolSize: 1, Protocol: 2 + w%2})
			defer c.Close()
			key := fmt.Sprint("order:", w)
			next := int64(1)
			for i := 0; i < rounds; i++ {
				if i%3 == 0 {
					cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
						p.Incr(ctx, key)
						p.Get(ctx, "order:absent")
						p.Incr(ctx, key)
						return nil
					})
					if err != nil && err != redis.Nil {
						errs <- err
						return
					}
					if a, b := cmds[0].(*redis.IntCmd).Val(), cmds[2].(*redis.IntCmd).Val(); a != next || b != next+1 {
						errs <- fmt.Errorf("%s: pipeline got %d, %d, want %d, %d", key, a, b, next, next+1)
						return
					}
					next += 2
					continue
				}
				if v, err := c.Incr(ctx, key).Result(); err != nil || v != next {
					errs <- fmt.Errorf("%s: INCR = %d, %v; want %d", key, v, err, next)
					return
				}
				next++
			}
			errs <- nil
		}()
	}
	for range conns {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("a connection's commands were never answered")
		}
	}
}
