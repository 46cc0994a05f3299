package geofailover

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/internal/resp"
)

// Pub/Sub that follows failover.
//
// The *redis.PubSub that Subscribe returns belongs to an internal go-redis
// client whose connection leads to an in-process bridge instead of a
// server. The bridge is a relay, not a fake server: every command the app's
// PubSub sends ((P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, CLIENT SETNAME) is
// sent on a real subscription connection to the active endpoint (a
// *redis.PubSub of that endpoint's client), and what the server answers —
// confirmations with the server's own counts, messages, pongs, in the
// server's order — is passed back. A command written by the app's PubSub
// returns only once the bridge has written it to the real connection, so a
// PUBLISH made after Subscribe returns finds the subscription in place, as
// with a plain client.
//
// What the bridge adds: it keeps the set of channels, patterns and shard
// channels (in the order they were subscribed), and when traffic moves
// (failover, failback, SwitchTo) or the real connection breaks, it
// subscribes the whole set on the active endpoint, hides that
// re-subscription's confirmations from the app, and reports the gap with
// EventPubSubInterrupted and EventPubSubRestored. The app's PubSub never
// sees a disconnect: Channel() and ReceiveMessage go on delivering. While
// no real connection is in place, the bridge answers the app itself
// (UNSUBSCRIBE, PING) as the server would, and subscriptions are confirmed
// when a server has confirmed them.
//
// Redis Pub/Sub is at-most-once: messages published while no subscription
// was in place (the gap) are not delivered. Use Streams (XADD/XREAD) where
// that matters.

// newPubSubFront is the go-redis client behind Subscribe; its dialer opens
// a bridge. It has no routing hook: everything it sends, its connections'
// setup included, goes to the bridge.
func (c *Client) newPubSubFront() *redis.Client {
	return newFront(nil, func(context.Context, string, string) (net.Conn, error) {
		return c.openBridge()
	})
}

// Subscribe subscribes to channels. The returned PubSub follows the active
// endpoint: after a failover, failback or SwitchTo, every channel, pattern
// and shard channel it holds is subscribed again on the new endpoint, and
// Channel() and ReceiveMessage go on delivering. Messages published during
// the gap (reported by EventPubSubInterrupted and EventPubSubRestored) are
// not delivered: Redis Pub/Sub is at-most-once. On a healthy endpoint it
// behaves as go-redis's: the server's confirmations, counts and order, and
// the SUBSCRIBE is sent before Subscribe returns. Close the PubSub when
// done, as with go-redis.
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

// kindOf returns the kind of a (un)subscribe confirmation, and whether it
// confirms a subscription.
func kindOf(verb string) (k subKind, subscribe, ok bool) {
	for i := range subscribeVerb {
		switch verb {
		case subscribeVerb[i]:
			return subKind(i), true, true
		case unsubscribeVerb[i]:
			return subKind(i), false, true
		}
	}
	return 0, false, false
}

type subKey struct {
	kind subKind
	name string
}

// nameSet is a set of names that remembers the order they were added in.
type nameSet struct {
	order []string
	index map[string]struct{}
}

func (s *nameSet) has(n string) bool { _, ok := s.index[n]; return ok }
func (s *nameSet) len() int          { return len(s.order) }

func (s *nameSet) add(n string) {
	if s.index == nil {
		s.index = map[string]struct{}{}
	}
	if !s.has(n) {
		s.index[n] = struct{}{}
		s.order = append(s.order, n)
	}
}

func (s *nameSet) remove(n string) {
	if !s.has(n) {
		return
	}
	delete(s.index, n)
	for i, o := range s.order {
		if o == n {
			s.order = append(s.order[:i:i], s.order[i+1:]...)
			return
		}
	}
}

func (s *nameSet) list() []string { return append([]string(nil), s.order...) }

// replyKind is what the app's PubSub awaits for a relayed PING or CLIENT
// command: both come back from go-redis as a *redis.Pong.
type replyKind uint8

const (
	replyPing   replyKind = iota // PING while subscribed: ["pong", payload]
	replyPlain                   // PING with no subscription: +PONG or the payload
	replyStatus                  // CLIENT SETNAME: +OK
)

// frontCommand is one command the app's PubSub wrote; done is closed once
// it has been written to the real connection (or answered by the bridge),
// or, with err set first, once it could not be (see failWaiting).
type frontCommand struct {
	args []string
	done chan struct{}
	err  *error
}

// bridge serves one front PubSub connection.
type bridge struct {
	c    *Client
	conn net.Conn // our end of the pipe: replies to the front
	ctx  context.Context
	stop context.CancelFunc

	in     chan frontCommand // from frontConn.Write
	events chan memberEvent  // from member subscriptions
	out    outbox            // to the front (writeFront)
	subs   [3]nameSet        // the subscription set, by kind, in order
	// pending counts the front's (un)subscribe requests a server has not
	// yet confirmed: its confirmation is passed on when it arrives; other
	// confirmations (a re-subscription's) are the bridge's own.
	pending   map[subKey]int
	unpending map[subKey]int
	replies   []replyKind    // relayed PING/CLIENT commands awaiting replies, in order
	waiting   []frontCommand // front commands to release once the member is ready

	mem *member // the current real subscription, or nil
	// serving is the address of the endpoint of the latest member, for
	// the front's error messages (read by the app's goroutine).
	serving  atomic.Value // serverAddr
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
	msg   any   // *redis.Message, *redis.Subscription or *redis.Pong
	ready bool  // the snapshot was sent
	err   error // the subscription broke; runMember has returned
}

// openBridge starts a bridge and returns the front's end of it.
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
		in:        make(chan frontCommand),
		events:    make(chan memberEvent),
		pending:   map[subKey]int{},
		unpending: map[subKey]int{},
	}
	b.out.init()
	c.bridges.Add(2)
	go func() { defer c.bridges.Done(); b.out.run(back, stop) }()
	go func() { defer c.bridges.Done(); b.run() }()
	return &frontConn{Conn: front, b: b}, nil
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
		case cmd := <-b.in:
			b.command(cmd)
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
		b.release() // nothing to subscribe, or nowhere to: wait for a change
		return
	}
	b.startMember(r.active)
}

func (b *bridge) total() int { return b.subs[0].len() + b.subs[1].len() + b.subs[2].len() }

func (b *bridge) startMember(e *endpoint) {
	m := &member{e: e, ps: e.client().Subscribe(b.ctx), awaiting: map[subKey]struct{}{}}
	for k := range b.subs {
		m.snapshot[k] = b.subs[k].list()
		for _, name := range m.snapshot[k] {
			m.awaiting[subKey{subKind(k), name}] = struct{}{}
		}
	}
	b.mem = m
	b.serving.Store(serverAddr(e.addr))
	b.c.bridges.Add(1)
	go func() { defer b.c.bridges.Done(); b.runMember(m) }()
}

// dropMember closes the current real subscription. It does not wait: a
// member still dialling a black-holed endpoint must not hold up the bridge.
// Its goroutine ends on its own; events it still sends are ignored. The
// replies the front awaits from it are answered by the bridge.
func (b *bridge) dropMember() {
	m := b.mem
	if m == nil {
		return
	}
	b.mem = nil
	for _, kind := range b.replies {
		b.out.push(localReply(kind, "", b.total() > 0))
	}
	b.replies = nil
	// Unsubscriptions it did not confirm are done anyway: the bridge
	// confirms them.
	for key, n := range b.unpending {
		for range n {
			b.out.push(resp.Subscription(unsubscribeVerb[key.kind], key.name, b.count(key.kind)))
		}
	}
	clear(b.unpending)
	b.release()
	b.c.bridges.Add(1)
	go func() { defer b.c.bridges.Done(); _ = m.ps.Close() }()
}

// release lets the front's waiting writes return.
func (b *bridge) release() {
	for _, cmd := range b.waiting {
		close(cmd.done)
	}
	b.waiting = nil
}

// failWaiting fails the front's writes that wait for m with err, the error
// that ended m before it could send them, when there is no other endpoint
// to send them to: then a plain client's Subscribe would have failed with
// it too. (With somewhere to go, they wait for the next member: the
// subscription follows the traffic.)
func (b *bridge) failWaiting(m *member, err error) {
	if r := b.c.route.Load(); m.ready || r.active != m.e || r.fallback != nil {
		return
	}
	for _, cmd := range b.waiting {
		*cmd.err = err
	}
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
		b.failWaiting(m, ev.err)
		b.dropMember()
		b.openGap(m.e.name)
		b.scheduleRetry()
	case ev.ready:
		m.ready = true
		b.reconcile(m)
		b.release()
		b.maybeCloseGap()
	default:
		b.deliver(m, ev.msg)
	}
}

// reconcile brings a member whose snapshot was sent up to date with what
// the front asked for meanwhile, in the order it asked.
func (b *bridge) reconcile(m *member) {
	for k := range b.subs {
		var had nameSet
		for _, n := range m.snapshot[k] {
			had.add(n)
		}
		var add, remove []string
		for _, n := range b.subs[k].order {
			if !had.has(n) {
				add = append(add, n)
				m.awaiting[subKey{subKind(k), n}] = struct{}{}
			}
		}
		for _, n := range had.order {
			if !b.subs[k].has(n) {
				remove = append(remove, n)
			}
		}
		b.memberCall(subKind(k), true, add)
		b.memberCall(subKind(k), false, remove)
	}
	// Subscriptions the front repeated for names already in the snapshot
	// are confirmed by the snapshot's own confirmations (pending).
}

// memberCall sends a (un)subscribe to the current member. A failure shows
// up on its Receive, which ends the member.
func (b *bridge) memberCall(k subKind, subscribe bool, names []string) {
	if len(names) == 0 || b.mem == nil || !b.mem.ready {
		return
	}
	_ = b.memberVerb(k, subscribe)(b.ctx, names...)
}

// memberVerb is the current member's (P|S)(UN)SUBSCRIBE method for k.
func (b *bridge) memberVerb(k subKind, subscribe bool) func(context.Context, ...string) error {
	ps := b.mem.ps
	if subscribe {
		return [3]func(context.Context, ...string) error{ps.Subscribe, ps.PSubscribe, ps.SSubscribe}[k]
	}
	return [3]func(context.Context, ...string) error{ps.Unsubscribe, ps.PUnsubscribe, ps.SUnsubscribe}[k]
}

// deliver passes a real server's message, confirmation or pong to the
// front, as the server sent it, unless it answers the bridge's own
// re-subscription.
func (b *bridge) deliver(m *member, msg any) {
	switch msg := msg.(type) {
	case *redis.Subscription:
		k, sub, ok := kindOf(msg.Kind)
		if !ok {
			return
		}
		key := subKey{k, msg.Channel}
		counts := b.unpending
		if sub {
			delete(m.awaiting, key)
			counts = b.pending
		}
		if counts[key] > 0 {
			if counts[key]--; counts[key] == 0 {
				delete(counts, key)
			}
			b.out.push(resp.Subscription(msg.Kind, msg.Channel, msg.Count))
		}
		b.maybeCloseGap()
	case *redis.Message:
		if b.wants(msg) {
			b.out.push(resp.Message(msg))
		}
	case *redis.Pong:
		kind := replyPing
		if len(b.replies) > 0 {
			kind, b.replies = b.replies[0], b.replies[1:]
		}
		b.out.push(localReply(kind, msg.Payload, true))
	}
}

// wants reports whether the front is subscribed to what msg was sent for,
// or has an unsubscription of it in flight (the server may still send it
// messages, as it would to a plain client). Messages for what the bridge
// alone still had subscribed are not the front's.
func (b *bridge) wants(msg *redis.Message) bool {
	if msg.Pattern != "" {
		return b.subs[kindPattern].has(msg.Pattern) || b.unpending[subKey{kindPattern, msg.Pattern}] > 0
	}
	return b.subs[kindChannel].has(msg.Channel) || b.subs[kindShard].has(msg.Channel) ||
		b.unpending[subKey{kindChannel, msg.Channel}] > 0 || b.unpending[subKey{kindShard, msg.Channel}] > 0
}

// localReply encodes the reply to a PING or CLIENT command: kind says
// which; subscribed, for a PING, whether the connection holds subscriptions
// (the server then answers with an array).
func localReply(kind replyKind, payload string, subscribed bool) []byte {
	switch kind {
	case replyStatus:
		if payload == "" {
			payload = "OK"
		}
		return []byte("+" + payload + "\r\n")
	case replyPlain:
		if payload == "" || payload == "PONG" {
			return []byte("+PONG\r\n")
		}
		return resp.AppendBulk(nil, payload)
	}
	if !subscribed {
		return localReply(replyPlain, payload, false)
	}
	return resp.Pong(payload)
}

// count is the subscription count Redis would report: channels and
// patterns together, shard channels on their own.
func (b *bridge) count(k subKind) int {
	if k == kindShard {
		return b.subs[kindShard].len()
	}
	return b.subs[kindChannel].len() + b.subs[kindPattern].len()
}

// ready reports whether commands can be relayed now.
func (b *bridge) ready() bool { return b.mem != nil && b.mem.ready }

// command serves one command from the front PubSub.
func (b *bridge) command(cmd frontCommand) {
	if b.handle(cmd.args) && b.mem != nil && !b.mem.ready {
		b.waiting = append(b.waiting, cmd) // written once the member is ready
		return
	}
	close(cmd.done)
}

// handle applies one command; it reports whether the command waits for the
// member to be ready before it counts as sent.
func (b *bridge) handle(args []string) (waits bool) {
	if len(args) == 0 {
		return false
	}
	verb := strings.ToLower(args[0])
	if k, sub, ok := kindOf(verb); ok {
		if sub {
			return b.subscribe(k, args[1:])
		}
		b.unsubscribe(k, args[1:])
		return false
	}
	switch verb {
	case "ping":
		payload := ""
		if len(args) > 1 {
			payload = args[1]
		}
		if !b.ready() {
			b.out.push(localReply(replyPing, payload, b.total() > 0))
			return false
		}
		kind := replyPing
		if b.total() == 0 {
			kind = replyPlain
		}
		b.replies = append(b.replies, kind)
		_ = b.mem.ps.Ping(b.ctx, args[1:]...)
	case "client":
		if len(args) == 3 && strings.EqualFold(args[1], "setname") && b.ready() {
			b.replies = append(b.replies, replyStatus)
			_ = b.mem.ps.ClientSetName(b.ctx, args[2])
			return false
		}
		b.out.push([]byte("+OK\r\n"))
	case "hello":
		// go-redis then falls back to RESP2 without AUTH.
		b.out.push([]byte("-ERR unknown command 'hello'\r\n"))
	case "quit", "reset":
		b.out.push([]byte("+OK\r\n"))
	default:
		b.out.push([]byte(fmt.Sprintf("-ERR geofailover: %q is not allowed on a Pub/Sub connection\r\n", verb)))
	}
	return false
}

// subscribe adds names and relays the SUBSCRIBE; the server's
// confirmations answer it. It reports whether the command must wait for the
// member to be ready.
func (b *bridge) subscribe(k subKind, names []string) (waits bool) {
	for _, n := range names {
		b.subs[k].add(n)
		b.pending[subKey{k, n}]++
	}
	switch {
	case b.ready():
		for _, n := range names {
			b.mem.awaiting[subKey{k, n}] = struct{}{}
		}
		b.memberCall(k, true, names)
		return false
	case b.mem == nil && b.retry == nil:
		b.follow(b.c.route.Load())
	}
	return b.mem != nil
}

// unsubscribe removes names (all of the kind when none are given) and
// relays the UNSUBSCRIBE, whose confirmations come from the server; with no
// real connection in place, the bridge confirms them itself.
func (b *bridge) unsubscribe(k subKind, names []string) {
	all := len(names) == 0
	if all {
		names = b.subs[k].list()
	}
	for _, n := range names {
		b.subs[k].remove(n)
		delete(b.pending, subKey{k, n})
		if b.mem != nil {
			delete(b.mem.awaiting, subKey{k, n})
		}
	}
	if !b.ready() {
		if len(names) == 0 {
			b.out.push(resp.Subscription(unsubscribeVerb[k], "", b.count(k)))
		}
		for i, n := range names {
			// Counts as the server would give them, one name at a time.
			b.out.push(resp.Subscription(unsubscribeVerb[k], n, b.count(k)+len(names)-1-i))
		}
		b.maybeCloseGap()
		return
	}
	if len(names) == 0 {
		b.unpending[subKey{k, ""}]++      // the server answers with a nil channel
		_ = b.memberVerb(k, false)(b.ctx) // no names: the server answers for all
		return
	}
	for _, n := range names {
		b.unpending[subKey{k, n}]++
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
	b.c.emit(Event{Kind: EventPubSubInterrupted, At: b.gapStart, From: from, Subscriptions: b.total()})
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
	b.c.emit(Event{Kind: EventPubSubRestored, At: now, GapStart: b.gapStart,
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
