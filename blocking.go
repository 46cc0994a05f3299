package geofailover

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Blocking commands (BLPOP, XREAD BLOCK, WAIT, ...) wait on the endpoint
// they were sent to. When traffic moves away from that endpoint, for any
// reason, the wait is interrupted and the command returns an
// *EndpointChangedError (never replayed, unless the caller opted in with
// AllowReplay or Options.ReplayWrites): the caller issues it again and it
// waits on the new endpoint. A blocking command on a hung endpoint thus
// returns at the switch instead of at its own timeout.
//
// To interrupt them, an endpoint built from URL or Options runs its
// blocking commands on a pool of its own whose connections it tracks; a
// switch closes them all. Endpoints given as a ready Client, and blocking
// commands inside pipelines, are not interrupted.

// blockingPool is an endpoint's client for blocking commands.
type blockingPool struct {
	client *redis.Client
	epoch  atomic.Uint64 // counts interruptions

	mu    sync.Mutex // protects conns
	conns map[*trackedConn]struct{}
}

type blockEpochKey struct{}

// errInterrupted makes a dial for a blocking command whose endpoint was
// switched away from fail as unsent, so it is retried on the new endpoint.
var errInterrupted = errors.New("geofailover: endpoint switched away before the blocking command was sent")

func newBlockingPool(o *redis.Options) *blockingPool {
	b := &blockingPool{conns: map[*trackedConn]struct{}{}}
	next := o.Dialer
	if next == nil {
		nd := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 5 * time.Minute}
		next = nd.DialContext
		if o.TLSConfig != nil {
			td := &tls.Dialer{NetDialer: nd, Config: o.TLSConfig}
			next = td.DialContext
		}
	}
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ep, ok := ctx.Value(blockEpochKey{}).(uint64); ok && ep != b.epoch.Load() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errInterrupted}
		}
		cn, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		t := &trackedConn{Conn: cn, pool: b}
		b.mu.Lock()
		b.conns[t] = struct{}{}
		b.mu.Unlock()
		return t, nil
	}
	o.MinIdleConns = 0
	b.client = redis.NewClient(o)
	return b
}

// interrupt ends every blocking command waiting on the pool's connections.
func (b *blockingPool) interrupt() {
	b.epoch.Add(1)
	b.mu.Lock()
	conns := make([]*trackedConn, 0, len(b.conns))
	for t := range b.conns {
		conns = append(conns, t)
	}
	b.mu.Unlock()
	for _, t := range conns {
		_ = t.Close()
	}
}

// trackedConn is a connection of a blockingPool.
type trackedConn struct {
	net.Conn
	pool *blockingPool
}

func (t *trackedConn) Close() error {
	t.pool.mu.Lock()
	delete(t.pool.conns, t)
	t.pool.mu.Unlock()
	return t.Conn.Close()
}

// interruptBlocking is called by the supervisor once traffic has left e.
func (e *endpoint) interruptBlocking() {
	if e.blocking != nil {
		e.blocking.interrupt()
	}
}

// attemptBlocking sends a blocking command to e once. If a switch away from
// e interrupts it, it returns an *EndpointChangedError and charges nothing
// to e.
func (c *Client) attemptBlocking(ctx context.Context, e *endpoint, cmd redis.Cmder) error {
	b := e.blocking
	ep := b.epoch.Load()
	if cur := c.route.Load(); cur.active != nil && cur.active != e {
		// Traffic has already left e: do not start waiting there.
		err := &net.OpError{Op: "dial", Net: "tcp", Err: errInterrupted}
		cmd.SetErr(err)
		return err
	}
	err := b.client.Process(context.WithValue(ctx, blockEpochKey{}, ep), cmd)
	if err != nil && b.epoch.Load() != ep && failureOf(err) == failAmbiguous {
		to := ""
		if cur := c.route.Load(); cur.active != nil {
			to = cur.active.name
		}
		err = &EndpointChangedError{Op: cmd.Name(), From: e.name, To: to, At: time.Now(), cause: err}
		cmd.SetErr(err)
		return err
	}
	if !errors.Is(err, errInterrupted) {
		c.record(ctx, e, err, time.Time{}, false)
	}
	return err
}
