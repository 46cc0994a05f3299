package geofailover

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pub/Sub that follows failover.
//
// The *redis.PubSub that Subscribe returns belongs to an internal go-redis
// client whose only "server" is an in-process bridge: its connection is one
// end of a net.Pipe, and the bridge at the other end speaks just enough RESP2
// to serve (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE and PING. The bridge keeps the
// set of channels, patterns and shard channels, and holds the real
// subscription, a *redis.PubSub on the active endpoint's client. When traffic
// moves (failover, failback, SwitchTo) or that subscription breaks, the
// bridge subscribes the whole set on the active endpoint and reports the gap
// with EventPubSubInterrupted and EventPubSubRestored. The app's PubSub never
// sees a disconnect: Channel() and ReceiveMessage go on delivering.
//
// Redis Pub/Sub is at-most-once: messages published while no subscription
// was in place (the gap) are not delivered. Use Streams (XADD/XREAD) where
// that matters.

// pubsubFront is the go-redis client behind Subscribe; its dialer opens a
// bridge.
func (c *Client) newPubSubFront() *redis.Client {
	return newFront(routingHook{c: c}, func(context.Context, string, string) (net.Conn, error) {
		return c.openBridge()
	})
}

// Subscribe subscribes to channels. The returned PubSub follows the active
// endpoint: after a failover, failback or SwitchTo, every channel, pattern
// and shard channel it holds is subscribed again on the new endpoint, and
// Channel() and ReceiveMessage go on delivering. Messages published during
// the gap (reported by EventPubSubInterrupted and EventPubSubRestored) are
// not delivered: Redis Pub/Sub is at-most-once. A subscription's
// confirmation comes when a real server has confirmed it. Close the PubSub
// when done, as with go-redis.
func (c *Client) Subscribe(ctx context.Context, channels ...string) *redis.PubSub {
	return c.psFront.Subscribe(ctx, channels...)
}

// PSubscribe subscribes to patterns; the subscription follows the active
// endpoint.
func (c *Client) PSubscribe(ctx context.Context, patterns ...string) *redis.PubSub {
	return c.psFront.PSubscribe(ctx, patterns...)
}

// SSubscribe subscribes to shard channels; the subscription follows the
// active endpoint. On a Cluster endpoint, all shard channels of one PubSub
// must hash to the same slot.
func (c *Client) SSubscribe(ctx context.Context, channels ...string) *redis.PubSub {
	return c.psFront.SSubscribe(ctx, channels...)
}

// subKind is the kind of a subscription.
type subKind uint8

const (
	kindChannel subKind = iota
	kindPattern
	kindShard
)

var (
	subscribeVerb   = [3]string{"subscribe", "psubscribe", "ssubscribe"}
	unsubscribeVerb = [3]string{"unsubscribe", "punsubscribe", "sunsubscribe"}
)

type subKey struct {
	kind subKind
	name string
}

// bridge serves one front PubSub connection.
type bridge struct {
	c    *Client
	conn net.Conn // our end of the pipe
	ctx  context.Context
	stop context.CancelFunc

	in     chan []string     // commands from the front (readFront)
	events chan memberEvent  // from member subscriptions
	out    outbox            // to the front (writeFront)
	subs   [3]map[string]int // the subscription set, by kind (value unused)
	// pending counts the front's subscribe requests not yet confirmed by a
	// real server: the confirmation is forwarded when it arrives.
	pending map[subKey]int

	mem      *member // the current real subscription, or nil
	retry    *time.Timer
	backoff  time.Duration
	gapStart time.Time // zero when no gap is open
	gapFrom  string
}

// member is a real subscription on one endpoint, served by one goroutine
// (runMember).
type member struct {
	e        *endpoint
	ps       *redis.PubSub
	snapshot [3][]string         // what runMember subscribes first
	awaiting map[subKey]struct{} // snapshot items not yet confirmed
	ready    bool                // the snapshot has been sent
}

type memberEvent struct {
	m     *member
	msg   any   // *redis.Message or *redis.Subscription
	ready bool  // the snapshot was sent
	err   error // the subscription broke; runMember has returned
}

// openBridge starts a bridge and returns the front's end of its pipe.
func (c *Client) openBridge() (net.Conn, error) {
	c.bridgeMu.Lock()
	defer c.bridgeMu.Unlock()
	if c.bridgesClosed {
		return nil, ErrClosed
	}
	front, back := net.Pipe()
	ctx, stop := context.WithCancel(c.ctx)
	b := &bridge{
		c: c, conn: back, ctx: ctx, stop: stop,
		in:      make(chan []string),
		events:  make(chan memberEvent),
		pending: map[subKey]int{},
	}
	for i := range b.subs {
		b.subs[i] = map[string]int{}
	}
	b.out.init()
	c.bridges.Add(3)
	go func() { defer c.bridges.Done(); b.readFront() }()
	go func() { defer c.bridges.Done(); b.out.run(back, stop) }()
	go func() { defer c.bridges.Done(); b.run() }()
	return frontConn{front}, nil
}

// frontConn is the front PubSub's end of the bridge's pipe. It reports a
// closed pipe as a closed network connection (net.ErrClosed), as the TCP
// connection of a plain go-redis PubSub would.
type frontConn struct{ net.Conn }

func (f frontConn) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	return n, pipeErr("read", err)
}

func (f frontConn) Write(p []byte) (int, error) {
	n, err := f.Conn.Write(p)
	return n, pipeErr("write", err)
}

func pipeErr(op string, err error) error {
	if errors.Is(err, io.ErrClosedPipe) {
		return &net.OpError{Op: op, Net: "pipe", Err: net.ErrClosed}
	}
	return err
}

// readFront parses the commands the front PubSub writes.
func (b *bridge) readFront() {
	defer b.stop()
	rd := bufio.NewReader(b.conn)
	for {
		args, err := readCommand(rd)
		if err != nil {
			return
		}
		select {
		case b.in <- args:
		case <-b.ctx.Done():
			return
		}
	}
}

// run is the bridge's owner goroutine: all its state is touched here only.
func (b *bridge) run() {
	r := b.c.route.Load()
	b.follow(r)
	defer b.shutdown()
	for {
		var retry <-chan time.Time
		if b.retry != nil {
			retry = b.retry.C
		}
		select {
		case <-b.ctx.Done():
			return
		case args := <-b.in:
			b.command(args)
		case ev := <-b.events:
			b.memberEvent(ev)
		case <-r.changed:
			r = b.c.route.Load()
			b.follow(r)
		case <-retry:
			b.retry = nil
			b.follow(b.c.route.Load())
		}
	}
}

func (b *bridge) shutdown() {
	b.stop()
	if b.retry != nil {
		b.retry.Stop()
	}
	b.dropMember()
	b.out.close()
	_ = b.conn.Close()
}

// follow moves the real subscription to r's active endpoint if it is
// elsewhere (or broken).
func (b *bridge) follow(r *route) {
	if b.mem != nil && b.mem.e == r.active {
		return
	}
	if b.mem != nil {
		b.openGap(b.mem.e.name)
		b.dropMember()
	}
	if r.active == nil || b.total() == 0 && len(b.pending) == 0 {
		return // nothing to subscribe, or nowhere to: wait for a change
	}
	b.startMember(r.active)
}

func (b *bridge) total() int { return len(b.subs[0]) + len(b.subs[1]) + len(b.subs[2]) }

func (b *bridge) startMember(e *endpoint) {
	m := &member{e: e, ps: e.client().Subscribe(b.ctx), awaiting: map[subKey]struct{}{}}
	for k := range b.subs {
		for name := range b.subs[k] {
			m.snapshot[k] = append(m.snapshot[k], name)
			m.awaiting[subKey{subKind(k), name}] = struct{}{}
		}
	}
	b.mem = m
	b.c.bridges.Add(1)
	go func() { defer b.c.bridges.Done(); b.runMember(m) }()
}

// dropMember closes the current real subscription. It does not wait: a
// member still dialling a black-holed endpoint must not hold up the bridge.
// Its goroutine ends on its own; events it still sends are ignored.
func (b *bridge) dropMember() {
	m := b.mem
	if m == nil {
		return
	}
	b.mem = nil
	b.c.bridges.Add(1)
	go func() { defer b.c.bridges.Done(); _ = m.ps.Close() }()
}

// runMember subscribes m's snapshot on its endpoint, then relays what the
// endpoint sends until the subscription breaks or is closed.
func (b *bridge) runMember(m *member) {
	send := func(ev memberEvent) bool {
		select {
		case b.events <- ev:
			return true
		case <-b.ctx.Done():
			return false
		}
	}
	subscribe := [3]func(context.Context, ...string) error{m.ps.Subscribe, m.ps.PSubscribe, m.ps.SSubscribe}
	for k, names := range m.snapshot {
		if len(names) == 0 {
			continue
		}
		if err := subscribe[k](b.ctx, names...); err != nil {
			send(memberEvent{m: m, err: err})
			return
		}
	}
	if !send(memberEvent{m: m, ready: true}) {
		return
	}
	for {
		msg, err := m.ps.Receive(b.ctx)
		if err != nil {
			send(memberEvent{m: m, err: err})
			return
		}
		if !send(memberEvent{m: m, msg: msg}) {
			return
		}
	}
}

func (b *bridge) memberEvent(ev memberEvent) {
	m := ev.m
	if m != b.mem {
		return // from a subscription already dropped
	}
	switch {
	case ev.err != nil:
		if failureOf(ev.err) != failNone {
			m.e.suspect() // the endpoint may be down: check it now
		}
		b.dropMember()
		b.openGap(m.e.name)
		b.scheduleRetry()
	case ev.ready:
		m.ready = true
		b.reconcile(m)
		b.maybeCloseGap()
	default:
		b.deliver(m, ev.msg)
	}
}

// reconcile brings a member whose snapshot was sent up to date with what
// the front asked for meanwhile.
func (b *bridge) reconcile(m *member) {
	for k := range b.subs {
		had := make(map[string]bool, len(m.snapshot[k]))
		for _, n := range m.snapshot[k] {
			had[n] = true
		}
		var add, remove []string
		for n := range b.subs[k] {
			if !had[n] {
				add = append(add, n)
			}
		}
		for n := range had {
			if _, ok := b.subs[k][n]; !ok {
				remove = append(remove, n)
			}
		}
		b.memberCall(subKind(k), true, add)
		b.memberCall(subKind(k), false, remove)
	}
}

// memberCall sends a (un)subscribe to the current member. A failure shows
// up on its Receive, which ends the member.
func (b *bridge) memberCall(k subKind, subscribe bool, names []string) {
	if len(names) == 0 || b.mem == nil || !b.mem.ready {
		return
	}
	ps := b.mem.ps
	f := [3]func(context.Context, ...string) error{ps.Subscribe, ps.PSubscribe, ps.SSubscribe}
	if !subscribe {
		f = [3]func(context.Context, ...string) error{ps.Unsubscribe, ps.PUnsubscribe, ps.SUnsubscribe}
	}
	_ = f[k](b.ctx, names...)
}

// deliver forwards a real server's message or confirmation to the front.
func (b *bridge) deliver(m *member, msg any) {
	switch msg := msg.(type) {
	case *redis.Subscription:
		var k subKind
		switch msg.Kind {
		case "subscribe":
			k = kindChannel
		case "psubscribe":
			k = kindPattern
		case "ssubscribe":
			k = kindShard
		default:
			return // unsubscribe confirmations: the front had its own
		}
		key := subKey{k, msg.Channel}
		delete(m.awaiting, key)
		// Confirm every request for it the front made (Redis confirms each).
		for range b.pending[key] {
			b.out.push(encodeSubscription(subscribeVerb[k], msg.Channel, b.count(k)))
		}
		delete(b.pending, key)
		b.maybeCloseGap()
	case *redis.Message:
		if msg.Pattern != "" {
			if _, ok := b.subs[kindPattern][msg.Pattern]; ok {
				b.out.push(encodeMessage(msg))
			}
			return
		}
		_, ch := b.subs[kindChannel][msg.Channel]
		_, sh := b.subs[kindShard][msg.Channel]
		if ch || sh {
			b.out.push(encodeMessage(msg))
		}
	}
}

// count is the subscription count Redis would report: channels and
// patterns together, shard channels on their own.
func (b *bridge) count(k subKind) int {
	if k == kindShard {
		return len(b.subs[kindShard])
	}
	return len(b.subs[kindChannel]) + len(b.subs[kindPattern])
}

// command serves one command from the front PubSub.
func (b *bridge) command(args []string) {
	if len(args) == 0 {
		return
	}
	verb := strings.ToLower(args[0])
	for k := range subscribeVerb {
		switch verb {
		case subscribeVerb[k]:
			b.subscribe(subKind(k), args[1:])
			return
		case unsubscribeVerb[k]:
			b.unsubscribe(subKind(k), args[1:])
			return
		}
	}
	switch verb {
	case "ping":
		payload := ""
		if len(args) > 1 {
			payload = args[1]
		}
		b.out.push(encodePong(payload))
	case "hello":
		// go-redis then falls back to RESP2 without AUTH.
		b.out.push([]byte("-ERR unknown command 'hello'\r\n"))
	case "client", "quit", "reset":
		b.out.push([]byte("+OK\r\n"))
	default:
		b.out.push([]byte(fmt.Sprintf("-ERR geofailover: %q is not allowed on a Pub/Sub connection\r\n", verb)))
	}
}

func (b *bridge) subscribe(k subKind, names []string) {
	for _, n := range names {
		b.subs[k][n] = 0
		b.pending[subKey{k, n}]++
	}
	if b.mem == nil {
		if b.retry == nil {
			b.follow(b.c.route.Load())
		}
		return
	}
	b.memberCall(k, true, names)
}

func (b *bridge) unsubscribe(k subKind, names []string) {
	if len(names) == 0 {
		for n := range b.subs[k] {
			names = append(names, n)
		}
		if len(names) == 0 {
			b.out.push(encodeSubscription(unsubscribeVerb[k], "", b.count(k)))
			return
		}
	}
	for _, n := range names {
		key := subKey{k, n}
		delete(b.subs[k], n)
		delete(b.pending, key)
		if b.mem != nil {
			delete(b.mem.awaiting, key)
		}
		b.out.push(encodeSubscription(unsubscribeVerb[k], n, b.count(k)))
	}
	b.memberCall(k, false, names)
	b.maybeCloseGap()
}

// openGap marks the start of a gap in delivery, if none is open.
func (b *bridge) openGap(from string) {
	if !b.gapStart.IsZero() || b.total() == 0 {
		return
	}
	b.gapStart, b.gapFrom = time.Now(), from
	b.c.events.publish(Event{Kind: EventPubSubInterrupted, At: b.gapStart, From: from, Subscriptions: b.total()})
}

// maybeCloseGap ends an open gap once the current member has confirmed
// its whole snapshot.
func (b *bridge) maybeCloseGap() {
	m := b.mem
	if m == nil || !m.ready || len(m.awaiting) > 0 {
		return
	}
	b.backoff = 0
	if b.gapStart.IsZero() {
		return
	}
	now := time.Now()
	b.c.events.publish(Event{Kind: EventPubSubRestored, At: now, GapStart: b.gapStart,
		From: b.gapFrom, To: m.e.name, Subscriptions: b.total()})
	b.gapStart, b.gapFrom = time.Time{}, ""
}

// scheduleRetry re-subscribes after a broken subscription: at once if
// traffic has moved elsewhere, else after a backoff (10 ms doubling to 1 s)
// so that a dead endpoint is not dialled in a loop.
func (b *bridge) scheduleRetry() {
	if b.backoff == 0 {
		b.backoff = 10 * time.Millisecond
	} else if b.backoff *= 2; b.backoff > time.Second {
		b.backoff = time.Second
	}
	b.retry = time.NewTimer(b.backoff)
}

// outbox queues bytes for the front and writes them on its own goroutine,
// so the bridge never waits for a slow reader. Past outboxLimit bytes the
// front is cut off (as Redis's client-output-buffer-limit would): its
// PubSub reconnects to a fresh bridge and re-subscribes.
type outbox struct {
	mu     sync.Mutex
	queue  [][]byte
	size   int
	closed bool
	signal chan struct{}
}

const outboxLimit = 32 << 20

func (o *outbox) init() { o.signal = make(chan struct{}, 1) }

func (o *outbox) push(p []byte) {
	o.mu.Lock()
	if !o.closed {
		o.queue = append(o.queue, p)
		o.size += len(p)
	}
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// run writes queued bytes to w until the outbox is closed or a write
// fails; then it calls stop.
func (o *outbox) run(w io.Writer, stop func()) {
	defer stop()
	for range o.signal {
		o.mu.Lock()
		batch, closed, size := o.queue, o.closed, o.size
		o.queue, o.size = nil, 0
		o.mu.Unlock()
		if closed || size > outboxLimit {
			return
		}
		for _, p := range batch {
			if _, err := w.Write(p); err != nil {
				return
			}
		}
	}
}

// readCommand reads one RESP array of bulk strings, as go-redis writes
// commands.
func readCommand(rd *bufio.Reader) ([]string, error) {
	line, err := readLine(rd)
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[0] != '*' {
		return nil, fmt.Errorf("geofailover: pubsub bridge: unexpected %q", line)
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("geofailover: pubsub bridge: bad array header %q", line)
	}
	args := make([]string, n)
	for i := range args {
		line, err := readLine(rd)
		if err != nil {
			return nil, err
		}
		if len(line) < 2 || line[0] != '$' {
			return nil, fmt.Errorf("geofailover: pubsub bridge: unexpected %q", line)
		}
		size, err := strconv.Atoi(line[1:])
		if err != nil || size < 0 || size > 512<<20 {
			return nil, fmt.Errorf("geofailover: pubsub bridge: bad bulk header %q", line)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}

func readLine(rd *bufio.Reader) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(line, "\r\n") {
		return "", errors.New("geofailover: pubsub bridge: line without CRLF")
	}
	return line[:len(line)-2], nil
}

func appendBulk(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, "\r\n"...)
	b = append(b, s...)
	return append(b, "\r\n"...)
}

func appendArray(b []byte, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, "\r\n"...)
}

// encodeSubscription encodes a (un)subscribe confirmation; name "" is the
// nil channel of an UNSUBSCRIBE with nothing subscribed.
func encodeSubscription(verb, name string, count int) []byte {
	b := appendArray(nil, 3)
	b = appendBulk(b, verb)
	if name == "" {
		b = append(b, "$-1\r\n"...)
	} else {
		b = appendBulk(b, name)
	}
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(count), 10)
	return append(b, "\r\n"...)
}

func encodeMessage(m *redis.Message) []byte {
	var b []byte
	if m.Pattern != "" {
		b = appendArray(b, 4)
		b = appendBulk(b, "pmessage")
		b = appendBulk(b, m.Pattern)
	} else {
		b = appendArray(b, 3)
		b = appendBulk(b, "message")
	}
	b = appendBulk(b, m.Channel)
	if m.PayloadSlice != nil {
		b = appendArray(b, len(m.PayloadSlice))
		for _, p := range m.PayloadSlice {
			b = appendBulk(b, p)
		}
		return b
	}
	return appendBulk(b, m.Payload)
}

func encodePong(payload string) []byte {
	b := appendArray(nil, 2)
	b = appendBulk(b, "pong")
	return appendBulk(b, payload)
}
