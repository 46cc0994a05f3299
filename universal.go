package geofailover

import (
	"context"
	"io"
	"time"

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

// The methods below are *redis.Client's that its Cmdable interface lacks.
// They are go-redis's own, run through the front client, so their commands
// (with their own read timeouts: WAIT's, WAITAOF's) route as any other.

// Wait runs WAIT on the active endpoint, as (*redis.Client).Wait does.
func (c *Client) Wait(ctx context.Context, numSlaves int, timeout time.Duration) *redis.IntCmd {
	return c.front.Wait(ctx, numSlaves, timeout)
}

// WaitAOF runs WAITAOF on the active endpoint, as (*redis.Client).WaitAOF
// does.
func (c *Client) WaitAOF(ctx context.Context, numLocal, numSlaves int, timeout time.Duration) *redis.IntSliceCmd {
	return c.front.WaitAOF(ctx, numLocal, numSlaves, timeout)
}

// HotKeysStart runs HOTKEYS START on the active endpoint.
func (c *Client) HotKeysStart(ctx context.Context, args *redis.HotKeysStartArgs) *redis.StatusCmd {
	return c.front.HotKeysStart(ctx, args)
}

// HotKeysStop runs HOTKEYS STOP on the active endpoint.
func (c *Client) HotKeysStop(ctx context.Context) *redis.StatusCmd { return c.front.HotKeysStop(ctx) }

// HotKeysReset runs HOTKEYS RESET on the active endpoint.
func (c *Client) HotKeysReset(ctx context.Context) *redis.StatusCmd { return c.front.HotKeysReset(ctx) }

// HotKeysGet runs HOTKEYS GET on the active endpoint.
func (c *Client) HotKeysGet(ctx context.Context) *redis.HotKeysCmd { return c.front.HotKeysGet(ctx) }

// NewSearchBuilder returns go-redis's FT.SEARCH builder; it runs on the
// active endpoint.
func (c *Client) NewSearchBuilder(ctx context.Context, index, query string) *redis.SearchBuilder {
	return c.front.NewSearchBuilder(ctx, index, query)
}

// NewAggregateBuilder returns go-redis's FT.AGGREGATE builder.
func (c *Client) NewAggregateBuilder(ctx context.Context, index, query string) *redis.AggregateBuilder {
	return c.front.NewAggregateBuilder(ctx, index, query)
}

// NewCreateIndexBuilder returns go-redis's FT.CREATE builder.
func (c *Client) NewCreateIndexBuilder(ctx context.Context, index string) *redis.CreateIndexBuilder {
	return c.front.NewCreateIndexBuilder(ctx, index)
}

// NewDropIndexBuilder returns go-redis's FT.DROPINDEX builder.
func (c *Client) NewDropIndexBuilder(ctx context.Context, index string) *redis.DropIndexBuilder {
	return c.front.NewDropIndexBuilder(ctx, index)
}

// NewAliasBuilder returns go-redis's FT.ALIAS* builder.
func (c *Client) NewAliasBuilder(ctx context.Context, alias string) *redis.AliasBuilder {
	return c.front.NewAliasBuilder(ctx, alias)
}

// NewExplainBuilder returns go-redis's FT.EXPLAIN builder.
func (c *Client) NewExplainBuilder(ctx context.Context, index, query string) *redis.ExplainBuilder {
	return c.front.NewExplainBuilder(ctx, index, query)
}

// NewSearchInfoBuilder returns go-redis's FT.INFO builder.
func (c *Client) NewSearchInfoBuilder(ctx context.Context, index string) *redis.FTInfoBuilder {
	return c.front.NewSearchInfoBuilder(ctx, index)
}

// NewSpellCheckBuilder returns go-redis's FT.SPELLCHECK builder.
func (c *Client) NewSpellCheckBuilder(ctx context.Context, index, query string) *redis.SpellCheckBuilder {
	return c.front.NewSpellCheckBuilder(ctx, index, query)
}

// NewDictBuilder returns go-redis's FT.DICT* builder.
func (c *Client) NewDictBuilder(ctx context.Context, dict string) *redis.DictBuilder {
	return c.front.NewDictBuilder(ctx, dict)
}

// NewTagValsBuilder returns go-redis's FT.TAGVALS builder.
func (c *Client) NewTagValsBuilder(ctx context.Context, index, field string) *redis.TagValsBuilder {
	return c.front.NewTagValsBuilder(ctx, index, field)
}

// NewCursorBuilder returns go-redis's FT.CURSOR builder.
func (c *Client) NewCursorBuilder(ctx context.Context, index string, cursorID int64) *redis.CursorBuilder {
	return c.front.NewCursorBuilder(ctx, index, cursorID)
}

// NewSynUpdateBuilder returns go-redis's FT.SYNUPDATE builder.
func (c *Client) NewSynUpdateBuilder(ctx context.Context, index string, groupID any) *redis.SynUpdateBuilder {
	return c.front.NewSynUpdateBuilder(ctx, index, groupID)
}
