package geofailover

import (
	"context"
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
// To interrupt them, every endpoint we build (from URL, Options,
// ClusterOptions or FailoverOptions) runs its blocking commands on a go-redis
// client of their own, of the same kind as its traffic client; a switch
// away replaces that client with a fresh one and closes the old one, which
// closes every connection it had, waiting commands included. Endpoints
// given as a ready Client, and blocking commands inside pipelines, are not
// interrupted.

// blockingPool is an endpoint's client for blocking commands.
type blockingPool struct {
	build  func() redis.UniversalClient // a fresh client for blocking commands
	onNew  func(redis.UniversalClient)  // Options.OnNewClient for this endpoint, if any
	client atomic.Pointer[blockingClient]
	epoch  atomic.Uint64 // counts interruptions
	mu     sync.Mutex    // serializes interrupt and close
	closed bool
}

type blockingClient struct{ redis.UniversalClient }

func newBlockingPool(build func() redis.UniversalClient, onNew func(redis.UniversalClient)) *blockingPool {
	b := &blockingPool{build: build, onNew: onNew}
	b.client.Store(b.newClient())
	return b
}

// newClient builds a client for blocking commands and hands it to onNew
// (outside b.mu) before it serves a command.
func (b *blockingPool) newClient() *blockingClient {
	c := b.build()
	if b.onNew != nil {
		b.onNew(c)
	}
	return &blockingClient{c}
}

// interrupt ends every blocking command waiting on the pool's connections:
// later commands get a fresh client.
func (b *blockingPool) interrupt() {
	fresh := b.newClient()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		_ = fresh.Close()
		return
	}
	b.epoch.Add(1)
	old := b.client.Swap(fresh)
	_ = old.Close()
}

func (b *blockingPool) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return b.client.Load().Close()
}

// interruptBlocking is called by the supervisor once traffic has left e.
func (e *endpoint) interruptBlocking() {
	if e.blocking != nil {
		e.blocking.interrupt()
	}
}

// attemptBlocking sends a blocking command to e once. If a switch away from
// e interrupts it, it returns an *EndpointChangedError and charges nothing
// to e; if traffic had left e before it was sent, it fails unsent
// (errInterrupted, and is retried where traffic is).
func (c *Client) attemptBlocking(ctx context.Context, e *endpoint, cmd redis.Cmder) error {
	b := e.blocking
	ep := b.epoch.Load()
	client := b.client.Load()
	if cur := c.route.Load(); cur.active != nil && cur.active != e || b.epoch.Load() != ep {
		// Traffic has already left e (the client may be replaced): do
		// not start waiting there.
		cmd.SetErr(errInterrupted)
		return errInterrupted
	}
	err := client.Process(ctx, cmd)
	if err != nil {
		err = c.interruptedCmd(e, nil, cmd)
	}
	if tracing.Load() {
		traceAttempt(ctx, e, err)
	}
	if err != nil && b.epoch.Load() != ep {
		// Interrupted by a switch. Whatever the error says (a cluster
		// client reports its closed node as redis.ErrClosed), the command
		// may have been sent: if the client was replaced in the moment
		// before it was written, this errs on the safe side.
		to := ""
		if cur := c.route.Load(); cur.active != nil {
			to = cur.active.name
		}
		err = &EndpointChangedError{Op: cmd.Name(), From: e.name, To: to, At: time.Now(), sent: true}
		cmd.SetErr(err)
		return err
	}
	c.record(ctx, e, err, time.Time{}, false, true)
	return err
}
