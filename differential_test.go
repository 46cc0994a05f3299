package geofailover_test

// The standing guard of "never worse than plain go-redis" (issue 19): the
// same seeded random sequences of operations go through a plain
// *redis.Client and through a Client, each against a fresh server, and
// their replies are compared one by one: value, Go type and error text.
// The commands the app's hooks see are compared too. It runs in RESP2 and
// RESP3, and with a db, a client name and an ACL user; and with a plain
// client of geofailover proxy in place of the Client (issue 20).
// A difference prints its seed, the operation, and a reduced sequence that
// still shows it; rerun one seed with GEOFAILOVER_DIFF_SEED=n.

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/proxy"
)

var diffSeeds = flag.Int("diff.seeds", 12, "random operation sequences TestDifferential runs per setup")

// diffSetup is one way of connecting: protocol, db, client name, ACL user.
type diffSetup struct {
	name     string
	protocol int
	db       int
	client   string
	user     bool
	// proxy: the Client serves a geofailover proxy (its members on db 0,
	// with the ACL user), and the side compared with plain go-redis is a
	// plain *redis.Client of the proxy with the setup's protocol, db,
	// name and (for user) the proxy's password.
	proxy bool
}

var diffSetups = []diffSetup{
	{name: "resp3"},
	{name: "resp2", protocol: 2},
	{name: "resp3-db-name-acl", db: 3, client: "diffapp", user: true},
	{name: "resp2-db-name-acl", protocol: 2, db: 3, client: "diffapp", user: true},
	{name: "proxy-resp3", proxy: true},
	{name: "proxy-resp2", protocol: 2, proxy: true},
	{name: "proxy-resp2-db-name-auth", protocol: 2, db: 3, client: "diffapp", user: true, proxy: true},
}

func TestDifferential(t *testing.T) {
	seeds := make([]uint64, 0, *diffSeeds)
	if s := os.Getenv("GEOFAILOVER_DIFF_SEED"); s != "" {
		var n uint64
		if _, err := fmt.Sscan(s, &n); err != nil {
			t.Fatalf("GEOFAILOVER_DIFF_SEED=%q: %v", s, err)
		}
		seeds = append(seeds, n)
	} else {
		for i := range *diffSeeds {
			seeds = append(seeds, uint64(i))
		}
	}
	for _, setup := range diffSetups {
		t.Run(setup.name, func(t *testing.T) {
			h := newDiffHarness(t, setup)
			for _, seed := range seeds {
				ops := diffOps(seed, 60)
				if i, msg := h.run(t, ops); i >= 0 {
					reduced := h.reduce(t, ops[:i+1])
					var lines []string
					for _, op := range reduced {
						lines = append(lines, "  "+op.String())
					}
					t.Fatalf("seed %d (GEOFAILOVER_DIFF_SEED=%d), %s, operation %d %s:\n%s\nreduced sequence that still differs:\n%s",
						seed, seed, setup.name, i, ops[i], msg, strings.Join(lines, "\n"))
				}
			}
		})
	}
}

// diffHarness holds the servers of the two sides: one for a plain client,
// one preferred by a Client (a standby second). Each run starts both
// clients afresh, so a reduced sequence reproduces from nothing.
type diffHarness struct {
	setup                  diffSetup
	plainSrv, srv, standby *failovertest.Server
	plainFlush, flush      *redis.Client
}

func newDiffHarness(t *testing.T, setup diffSetup) *diffHarness {
	t.Helper()
	h := &diffHarness{setup: setup}
	h.plainSrv, h.srv, h.standby = failovertest.StartServer(t, failovertest.WithMinVersion("7.0")), failovertest.StartServer(t), failovertest.StartServer(t)
	ctx := ctxFor(t, testTimeout)
	if setup.user {
		for _, s := range []*failovertest.Server{h.plainSrv, h.srv, h.standby} {
			must(t, failovertest.Connect(t, s.Addr).Do(ctx, "ACL", "SETUSER", "diff", "on", ">diffpass", "~*", "&*", "+@all").Err())
		}
	}
	h.plainFlush, h.flush = failovertest.Connect(t, h.plainSrv.Addr), failovertest.Connect(t, h.srv.Addr)
	return h
}

func (h *diffHarness) options(addr string) *redis.Options {
	o := &redis.Options{Addr: addr, Protocol: h.setup.protocol, DB: h.setup.db, ClientName: h.setup.client}
	if h.setup.user {
		o.Username, o.Password = "diff", "diffpass"
	}
	return o
}

// run runs ops through both sides, on fresh clients and empty servers. It
// returns the index of the first operation whose results differ and how,
// or -1.
func (h *diffHarness) run(t *testing.T, ops []diffOp) (int, string) {
	t.Helper()
	ctx := ctxFor(t, testTimeout)
	must(t, h.plainFlush.FlushAll(ctx).Err())
	must(t, h.flush.FlushAll(ctx).Err())
	plain := redis.NewClient(h.options(h.plainSrv.Addr))
	defer plain.Close()
	members := h.options
	if h.setup.proxy {
		members = func(addr string) *redis.Options {
			o := h.options(addr)
			o.Protocol, o.DB, o.ClientName = 0, 0, ""
			return o
		}
	}
	gf, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "main", Weight: 1, Options: members(h.srv.Addr)},
		{Name: "standby", Weight: 0.5, Options: members(h.standby.Addr)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer gf.Close()
	failovertest.WaitActive(t, gf, "main")
	var ours redis.UniversalClient = gf
	if h.setup.proxy {
		c, stop := h.proxyClient(t, gf)
		defer stop()
		ours = c
	}
	plainHook, ourHook := &diffHook{}, &diffHook{}
	plain.AddHook(plainHook)
	ours.AddHook(ourHook)
	for i, op := range ops {
		want := op.run(ctx, plain)
		got := op.run(ctx, ours)
		if msg := diffResults(want, got); msg != "" {
			return i, msg
		}
		if want, got := plainHook.take(), ourHook.take(); !slices.Equal(want, got) {
			return i, fmt.Sprintf("hooks saw, through plain go-redis: %v\nthrough geofailover: %v", want, got)
		}
	}
	return -1, ""
}

// proxyClient serves gf through a proxy and returns a plain client of it
// with the setup's protocol, db, client name and (for user) the proxy's
// password, and a function that closes both.
func (h *diffHarness) proxyClient(t *testing.T, gf *geofailover.Client) (*redis.Client, func()) {
	t.Helper()
	o := &redis.Options{Protocol: h.setup.protocol, DB: h.setup.db, ClientName: h.setup.client}
	popts := &proxy.Options{}
	if h.setup.user {
		popts.Password, o.Password = "proxypass", "proxypass"
	}
	srv, err := proxy.New(gf, popts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	o.Addr = ln.Addr().String()
	c := redis.NewClient(o)
	return c, func() { _ = c.Close(); _ = srv.Close(); <-served }
}

// diffHook records the commands a client's hooks see, but the setup of a
// connection (HELLO, CLIENT SETINFO/SETNAME/MAINT_NOTIFICATIONS, SELECT),
// which the README says the Client's hooks do not see.
type diffHook struct {
	mu   sync.Mutex
	seen []string
}

func (h *diffHook) add(cmd redis.Cmder) {
	args := cmd.Args()
	name := strings.ToLower(fmt.Sprint(args[0]))
	if len(args) > 1 && name == "client" {
		name += " " + strings.ToLower(fmt.Sprint(args[1]))
	}
	switch name {
	case "hello", "client setinfo", "client setname", "client maint_notifications", "select":
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if name == "scan" && len(h.seen) > 0 && h.seen[len(h.seen)-1] == "scan" {
		return // how many calls a scan takes depends on the server's hash table, not the client
	}
	h.seen = append(h.seen, name)
}

func (h *diffHook) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := h.seen
	h.seen = nil
	return seen
}

func (h *diffHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *diffHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add(cmd)
		return next(ctx, cmd)
	}
}
func (h *diffHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.add(cmd)
		}
		return next(ctx, cmds)
	}
}

// reduce drops operations, one at a time, while the last one still
// differs: a shorter sequence to reproduce with.
func (h *diffHarness) reduce(t *testing.T, ops []diffOp) []diffOp {
	t.Helper()
	for i := len(ops) - 2; i >= 0; i-- {
		try := append(append([]diffOp(nil), ops[:i]...), ops[i+1:]...)
		if j, _ := h.run(t, try); j == len(try)-1 {
			ops = try
		}
	}
	return ops
}

// diffResult is what one operation gave: a list of replies (one per
// command it ran), each a value with its Go type, or an error's text.
type diffResult []string

func diffResults(want, got diffResult) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	return fmt.Sprintf("plain go-redis: %v\ngeofailover:    %v", want, got)
}

// reply renders a command's outcome: its value and the value's Go type, or
// its error text.
func reply(v any, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%T %s", v, canonical(v))
}

// canonical prints v with map keys sorted.
func canonical(v any) string {
	switch v := v.(type) {
	case map[any]any:
		keys := make([]string, 0, len(v))
		byKey := map[string]any{}
		for k, x := range v {
			ks := fmt.Sprintf("%T:%v", k, k)
			keys = append(keys, ks)
			byKey[ks] = x
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteString("map[")
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s ", k, canonical(byKey[k]))
		}
		return b.String() + "]"
	case map[string]string:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return fmt.Sprint(keys, v)
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = fmt.Sprintf("%T %s", x, canonical(x))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprintf("%v", v)
}

// diffOp is one operation of a sequence.
type diffOp struct {
	kind string  // "do", "pipeline", "tx", "watch", "conn", "pubsub", "scan", "typed"
	cmds [][]any // the commands it sends
}

func (op diffOp) String() string {
	parts := make([]string, len(op.cmds))
	for i, c := range op.cmds {
		parts[i] = strings.TrimSuffix(fmt.Sprintln(c...), "\n")
	}
	return op.kind + " [" + strings.Join(parts, "; ") + "]"
}

func (op diffOp) run(ctx context.Context, c redis.UniversalClient) diffResult {
	var out diffResult
	collect := func(cmds []redis.Cmder) {
		for _, cmd := range cmds {
			if dc, ok := cmd.(*redis.Cmd); ok {
				out = append(out, reply(dc.Val(), dc.Err()))
			} else {
				out = append(out, reply(fmt.Sprint(cmd.Args()), cmd.Err()))
			}
		}
	}
	switch op.kind {
	case "do":
		v, err := c.Do(ctx, op.cmds[0]...).Result()
		out = append(out, reply(v, err))
	case "pipeline", "tx":
		fn := c.Pipelined
		if op.kind == "tx" {
			fn = c.TxPipelined
		}
		cmds, err := fn(ctx, func(p redis.Pipeliner) error {
			for _, args := range op.cmds {
				p.Do(ctx, args...)
			}
			return nil
		})
		out = append(out, reply(nil, err))
		collect(cmds)
	case "watch":
		key := op.cmds[0][1].(string)
		err := c.Watch(ctx, func(tx *redis.Tx) error {
			v, err := tx.Get(ctx, key).Result()
			out = append(out, reply(v, err))
			cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, args := range op.cmds {
					p.Do(ctx, args...)
				}
				return nil
			})
			collect(cmds)
			return err
		}, key)
		out = append(out, reply(nil, err))
	case "conn":
		cn := connOf(ctx, c)
		defer cn.Close()
		for _, args := range op.cmds {
			v, err := cn.Do(ctx, args...).Result()
			out = append(out, reply(v, err))
		}
	case "pubsub":
		ch := op.cmds[0][1].(string)
		ps := c.Subscribe(ctx, ch)
		defer ps.Close()
		v, err := ps.Receive(ctx)
		out = append(out, reply(fmt.Sprint(v), err))
		out = append(out, reply(c.Publish(ctx, ch, "hello").Result()))
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		m, err := ps.ReceiveMessage(rctx)
		if err == nil {
			out = append(out, reply(m.Channel+"="+m.Payload, nil))
		} else {
			out = append(out, reply(nil, err))
		}
	case "scan":
		var keys []string
		iter := c.Scan(ctx, 0, op.cmds[0][1].(string), 3).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		sort.Strings(keys)
		out = append(out, reply(keys, iter.Err()))
	case "typed":
		key := op.cmds[0][1].(string)
		switch op.cmds[0][0] {
		case "hgetall":
			out = append(out, reply(c.HGetAll(ctx, key).Result()))
		case "zrangewithscores":
			out = append(out, reply(c.ZRangeWithScores(ctx, key, 0, -1).Result()))
		case "lrange":
			out = append(out, reply(c.LRange(ctx, key, 0, -1).Result()))
		case "smembers":
			v, err := c.SMembers(ctx, key).Result()
			sort.Strings(v)
			out = append(out, reply(v, err))
		case "xrange":
			out = append(out, reply(c.XRange(ctx, key, "-", "+").Result()))
		case "clientgetname":
			out = append(out, reply(c.ClientGetName(ctx).Result()))
		}
	}
	return out
}

func connOf(ctx context.Context, c redis.UniversalClient) *redis.Conn {
	switch c := c.(type) {
	case *redis.Client:
		return c.Conn()
	case *geofailover.Client:
		cn, err := c.Conn(ctx)
		if err != nil {
			panic(err)
		}
		return cn
	}
	panic(fmt.Sprintf("no Conn for %T", c))
}

// diffOps draws a sequence of n operations from seed. Only commands whose
// replies are deterministic (no CLIENT ID, INFO, TIME, random members).
func diffOps(seed uint64, n int) []diffOp {
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	keys := []string{"s1", "s2", "h1", "l1", "z1", "x1", "set1", "n1"}
	key := func() string { return keys[rng.IntN(len(keys))] }
	num := func() int { return rng.IntN(20) - 5 }
	field := func() string { return fmt.Sprint("f", rng.IntN(4)) }
	member := func() string { return fmt.Sprint("m", rng.IntN(5)) }
	xid := 0 // stream IDs: explicit, increasing (an ID from the clock would differ)
	cmd := func() []any {
		k := key()
		gens := []func() []any{
			func() []any { return []any{"set", k, fmt.Sprint("v", num())} },
			func() []any { return []any{"get", k} },
			func() []any { return []any{"incrby", k, num()} },
			func() []any { return []any{"incrbyfloat", k, "1.5"} },
			func() []any { return []any{"append", k, "x"} },
			func() []any { return []any{"getrange", k, 0, num()} },
			func() []any { return []any{"mget", k, key(), "missing"} },
			func() []any { return []any{"del", k} },
			func() []any { return []any{"exists", k, key()} },
			func() []any { return []any{"type", k} },
			func() []any { return []any{"expire", k, 100} },
			func() []any { return []any{"ttl", k} },
			func() []any { return []any{"hset", k, field(), num(), field(), "x"} },
			func() []any { return []any{"hget", k, field()} },
			func() []any { return []any{"hgetall", k} },
			func() []any { return []any{"hincrby", k, field(), num()} },
			func() []any { return []any{"hkeys", k} },
			func() []any { return []any{"rpush", k, member(), member()} },
			func() []any { return []any{"lpop", k} },
			func() []any { return []any{"lrange", k, 0, -1} },
			func() []any { return []any{"lpos", k, member()} },
			func() []any { return []any{"blpop", k, "0.01"} },
			func() []any { return []any{"brpoplpush", k, key(), "0.01"} },
			func() []any { return []any{"sadd", k, member(), member()} },
			func() []any { return []any{"smembers", k} },
			func() []any { return []any{"sismember", k, member()} },
			func() []any { return []any{"smismember", k, member(), member()} },
			func() []any { return []any{"zadd", k, num(), member()} },
			func() []any { return []any{"zincrby", k, "0.5", member()} },
			func() []any { return []any{"zrange", k, 0, -1, "withscores"} },
			func() []any { return []any{"zscore", k, member()} },
			func() []any { return []any{"zpopmin", k} },
			func() []any { return []any{"bzpopmin", k, "0.01"} },
			func() []any { xid++; return []any{"xadd", k, fmt.Sprint(xid, "-1"), "f", num()} },
			func() []any { return []any{"xlen", k} },
			func() []any { return []any{"object", "encoding", k} },
			func() []any { return []any{"eval", "return redis.call('get', KEYS[1])", 1, k} },
			func() []any { return []any{"eval", "return {1, 'a', 2.5, {'x'}}", 0} },
			func() []any { return []any{"eval", "return redis.call('hgetall', KEYS[1])", 1, k} },
			func() []any { return []any{"ping"} },
			func() []any { return []any{"echo", "hi"} },
			func() []any { return []any{"client", "getname"} },
			func() []any { return []any{"dbsize"} },
			func() []any { return []any{"nosuchcommand", k} },
			func() []any { return []any{"get"} },
		}
		return gens[rng.IntN(len(gens))]()
	}
	ops := make([]diffOp, n)
	for i := range ops {
		switch r := rng.IntN(100); {
		case r < 60:
			ops[i] = diffOp{kind: "do", cmds: [][]any{cmd()}}
		case r < 70:
			ops[i] = diffOp{kind: "pipeline", cmds: [][]any{cmd(), cmd(), cmd()}}
		case r < 76:
			ops[i] = diffOp{kind: "tx", cmds: [][]any{cmd(), cmd()}}
		case r < 81:
			ops[i] = diffOp{kind: "watch", cmds: [][]any{{"set", key(), fmt.Sprint("w", num())}, cmd()}}
		case r < 86:
			ops[i] = diffOp{kind: "conn", cmds: [][]any{cmd(), {"hgetall", "h1"}, {"client", "getname"}}}
		case r < 89:
			ops[i] = diffOp{kind: "pubsub", cmds: [][]any{{"subscribe", fmt.Sprint("ch", rng.IntN(3))}}}
		case r < 92:
			ops[i] = diffOp{kind: "scan", cmds: [][]any{{"scan", []string{"*", "s*", "h*", "x*"}[rng.IntN(4)]}}}
		default:
			typed := []string{"hgetall", "zrangewithscores", "lrange", "smembers", "xrange", "clientgetname"}
			ops[i] = diffOp{kind: "typed", cmds: [][]any{{typed[rng.IntN(len(typed))], key()}}}
		}
	}
	return ops
}
