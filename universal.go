package geofailover

import (
	"context"
	"io"

	"github.com/redis/go-redis/v9"
)

// This file holds the redis.UniversalClient methods that the embedded
// Cmdable does not provide.

// Do runs an arbitrary command on the active endpoint.
func (c *Client) Do(ctx context.Context, args ...any) *redis.Cmd { return c.front.Do(ctx, args...) }

// DoRaw runs an arbitrary command on the active endpoint and returns its
// reply as raw RESP bytes, as (*redis.Client).DoRaw does.
func (c *Client) DoRaw(ctx context.Context, args ...any) *redis.RawCmd {
	return c.front.DoRaw(ctx, args...)
}

// DoRawWriteTo runs an arbitrary command on the active endpoint and writes
// its raw RESP reply to w, as (*redis.Client).DoRawWriteTo does.
func (c *Client) DoRawWriteTo(ctx context.Context, w io.Writer, args ...any) *redis.RawWriteToCmd {
	return c.front.DoRawWriteTo(ctx, w, args...)
}

// Process runs cmd on the active endpoint.
func (c *Client) Process(ctx context.Context, cmd redis.Cmder) error {
	return c.front.Process(ctx, cmd)
}

// TxPipeline returns a pipeline whose commands run as one MULTI/EXEC
// transaction on one endpoint.
func (c *Client) TxPipeline() redis.Pipeliner { return c.txFront.Pipeline() }

// TxPipelined runs fn's commands as one MULTI/EXEC transaction on one
// endpoint.
func (c *Client) TxPipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	return c.TxPipeline().Pipelined(ctx, fn)
}

// AddHook adds a go-redis hook around every command and pipeline the Client
// runs (once per call, not per attempt). Its DialHook is not used: members
// dial with their own hooks.
func (c *Client) AddHook(h redis.Hook) {
	c.hooksMu.Lock()
	defer c.hooksMu.Unlock()
	hooks := append(append([]redis.Hook(nil), c.hooks.Load().user...), h)
	c.hooks.Store(c.newHookChain(hooks))
}

// PoolStats returns the pool statistics of the active endpoint (empty when
// none is active): its traffic pool and, added in, the pool that runs its
// blocking commands, so every connection held for the application's
// commands is counted. Health-check connections are not.
func (c *Client) PoolStats() *redis.PoolStats {
	e := c.route.Load().active
	if e == nil {
		return &redis.PoolStats{}
	}
	st := e.client().PoolStats()
	if e.blocking != nil {
		b := e.blocking.client.Load().PoolStats()
		st.Hits += b.Hits
		st.Misses += b.Misses
		st.Timeouts += b.Timeouts
		st.WaitCount += b.WaitCount
		st.Unusable += b.Unusable
		st.WaitDurationNs += b.WaitDurationNs
		st.TotalConns += b.TotalConns
		st.IdleConns += b.IdleConns
		st.StaleConns += b.StaleConns
		st.PendingRequests += b.PendingRequests
	}
	return st
}

// AutoPipeline is not supported: an AutoPipeliner would bypass failover. It
// returns ErrNotSupported.
func (c *Client) AutoPipeline() (*redis.AutoPipeliner, error) { return nil, errAutoPipeline }

// AutoPipelineWithOptions returns ErrNotSupported; see AutoPipeline.
func (c *Client) AutoPipelineWithOptions(*redis.AutoPipelineOptions) (*redis.AutoPipeliner, error) {
	return nil, errAutoPipeline
}

// AsyncAutoPipeline returns ErrNotSupported; see AutoPipeline.
func (c *Client) AsyncAutoPipeline() (*redis.AutoPipeliner, error) { return nil, errAutoPipeline }

// AsyncAutoPipelineWithOptions returns ErrNotSupported; see AutoPipeline.
func (c *Client) AsyncAutoPipelineWithOptions(*redis.AutoPipelineOptions) (*redis.AutoPipeliner, error) {
	return nil, errAutoPipeline
}
