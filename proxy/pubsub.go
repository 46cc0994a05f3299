package proxy

import (
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/internal/resp"
)

// Pub/Sub. A connection's first SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE opens
// a subscription of the engine (Client.Subscribe), which follows failover
// with the library's rules (every channel subscribed again on the new
// region; messages published in the gap are lost, as Redis Pub/Sub is
// at-most-once). A goroutine passes on what it receives: the servers'
// confirmations with their counts, messages, and pongs, as RESP2 arrays or
// RESP3 pushes. With RESP2 the connection is in subscribed mode while the
// server's count is above zero, and only the subscribe commands, PING,
// QUIT and RESET are allowed, as on Redis.

type subscriber struct {
	ps   *redis.PubSub
	done chan struct{} // closed when the delivering goroutine ends

	mu     sync.Mutex
	shards map[string]bool // shard channels, whose messages are smessage
	count  int             // the server's latest count of subscriptions
	// pending: a subscribe was sent and not yet confirmed (the connection
	// is in subscribed mode from the command on, as on Redis).
	pending bool
}

// subscribed reports whether the connection is in subscribed mode.
func (c *conn) subscribed() bool {
	if c.sub == nil {
		return false
	}
	c.sub.mu.Lock()
	defer c.sub.mu.Unlock()
	return c.sub.count > 0 || c.sub.pending
}

func (c *conn) subscribeCmd(req request) {
	name := lower(req[0])
	if len(req) < 2 {
		c.writeError("ERR wrong number of arguments for '" + name + "' command")
		return
	}
	c.s.stats.forwarded.Add(1)
	if c.sub == nil {
		c.sub = &subscriber{ps: c.s.client.Subscribe(c.ctx), done: make(chan struct{}), shards: map[string]bool{}}
		go c.deliver(c.sub)
	}
	chans := req[1:]
	c.sub.mu.Lock()
	c.sub.pending = true
	c.sub.mu.Unlock()
	var err error
	switch name {
	case "subscribe":
		err = c.sub.ps.Subscribe(c.ctx, chans...)
	case "psubscribe":
		err = c.sub.ps.PSubscribe(c.ctx, chans...)
	default:
		c.sub.mu.Lock()
		for _, ch := range chans {
			c.sub.shards[ch] = true
		}
		c.sub.mu.Unlock()
		err = c.sub.ps.SSubscribe(c.ctx, chans...)
	}
	if err != nil {
		c.writeEngineOrReplyError(name, err)
	}
}

func (c *conn) unsubscribeCmd(req request) {
	name := lower(req[0])
	if c.sub == nil {
		// Not subscribed: answer as Redis does, one confirmation per
		// channel (or one with a null channel), each with count 0.
		c.s.stats.local.Add(1)
		chans := req[1:]
		if len(chans) == 0 {
			c.reply(c.appendPush(nil, name, nil, 0))
			return
		}
		for _, ch := range chans {
			c.reply(c.appendPush(nil, name, &ch, 0))
		}
		return
	}
	c.s.stats.forwarded.Add(1)
	chans := req[1:]
	var err error
	switch name {
	case "unsubscribe":
		err = c.sub.ps.Unsubscribe(c.ctx, chans...)
	case "punsubscribe":
		err = c.sub.ps.PUnsubscribe(c.ctx, chans...)
	default:
		err = c.sub.ps.SUnsubscribe(c.ctx, chans...)
	}
	if err != nil {
		c.writeEngineOrReplyError(name, err)
	}
}

// subscribedPing answers PING in RESP2 subscribed mode through the
// subscription, so that its reply comes in order with the messages.
func (c *conn) subscribedPing(req request) {
	c.s.stats.forwarded.Add(1)
	var err error
	if len(req) > 1 {
		err = c.sub.ps.Ping(c.ctx, req[1])
	} else {
		err = c.sub.ps.Ping(c.ctx)
	}
	if err != nil {
		c.writeEngineOrReplyError("ping", err)
	}
}

// deliver writes what the subscription receives until it is closed.
func (c *conn) deliver(s *subscriber) {
	defer close(s.done)
	for {
		msg, err := s.ps.Receive(c.ctx)
		if err != nil {
			if errors.Is(err, redis.ErrClosed) || c.ctx.Err() != nil {
				return
			}
			// The engine's subscription does not break on a failover;
			// anything else is passed over after a pause.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		var b []byte
		switch m := msg.(type) {
		case *redis.Subscription:
			s.mu.Lock()
			s.count = m.Count
			s.pending = false
			s.mu.Unlock()
			var ch *string
			if m.Channel != "" || m.Kind == "subscribe" || m.Kind == "psubscribe" || m.Kind == "ssubscribe" {
				ch = &m.Channel
			}
			b = c.appendPush(nil, m.Kind, ch, int64(m.Count))
		case *redis.Message:
			s.mu.Lock()
			shard := m.Pattern == "" && s.shards[m.Channel]
			s.mu.Unlock()
			switch {
			case m.Pattern != "":
				b = c.appendHeader(nil, 4)
				b = resp.AppendBulk(resp.AppendBulk(resp.AppendBulk(b, "pmessage"), m.Pattern), m.Channel)
			case shard:
				b = c.appendHeader(nil, 3)
				b = resp.AppendBulk(resp.AppendBulk(b, "smessage"), m.Channel)
			default:
				b = c.appendHeader(nil, 3)
				b = resp.AppendBulk(resp.AppendBulk(b, "message"), m.Channel)
			}
			b = resp.AppendBulk(b, m.Payload)
		case *redis.Pong:
			if c.protoShared.Load() == 3 {
				b = resp.AppendSimple(nil, '+', "PONG")
				if m.Payload != "" {
					b = resp.AppendBulk(nil, m.Payload)
				}
			} else {
				b = resp.AppendBulk(resp.AppendBulk(resp.AppendLen(nil, '*', 2), "pong"), m.Payload)
			}
		default:
			continue
		}
		c.wmu.Lock()
		c.out = append(c.out, b...)
		c.flushLocked()
		c.wmu.Unlock()
	}
}

// appendHeader appends the header of a Pub/Sub message of n elements: a
// push in RESP3, an array in RESP2.
func (c *conn) appendHeader(b []byte, n int) []byte {
	if c.protoShared.Load() == 3 {
		return resp.AppendLen(b, '>', n)
	}
	return resp.AppendLen(b, '*', n)
}

// appendPush appends a (un)subscribe confirmation; a nil channel is null.
func (c *conn) appendPush(b []byte, kind string, ch *string, count int64) []byte {
	b = resp.AppendBulk(c.appendHeader(b, 3), kind)
	switch {
	case ch != nil:
		b = resp.AppendBulk(b, *ch)
	case c.protoShared.Load() == 3:
		b = append(b, "_\r\n"...)
	default:
		b = append(b, "$-1\r\n"...)
	}
	return resp.AppendInt(b, count)
}

// endSubscription closes the connection's subscription, if any.
func (c *conn) endSubscription() {
	s := c.sub
	if s == nil {
		return
	}
	c.sub = nil
	_ = s.ps.Close()
	<-s.done
}
