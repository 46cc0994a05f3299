package geofailover

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds the work that is pinned to one endpoint: Watch
// transactions and dedicated connections (Conn).

// Watch runs fn in a WATCH transaction on the active endpoint, all on one
// connection of that endpoint. If the active endpoint changes before fn's
// MULTI/EXEC is sent, EXEC is not sent anywhere and Watch returns an error
// satisfying errors.Is(err, ErrEndpointChanged) and errors.Is(err,
// redis.TxFailedErr): calling Watch again runs it on the new endpoint. If the
// WATCH itself never reached the server, Watch is tried once on the next
// endpoint before fn runs. Commands inside fn count toward the endpoint's
// breaker and pass through the hooks added with AddHook.
func (c *Client) Watch(ctx context.Context, fn func(*redis.Tx) error, keys ...string) error {
	r, err := c.awaitRoute(ctx, c.route.Load())
	if err != nil {
		return err
	}
	ran := false
	err = c.watchOn(ctx, r.active, fn, &ran, keys)
	if err != nil && !ran {
		// No command listed: only a WATCH that never reached the server
		// is sent again.
		if next := c.resendTo(ctx, r, err); next != nil {
			err = c.watchOn(ctx, next, fn, &ran, keys)
		}
	}
	return err
}

// watchOn runs a Watch transaction on e. The WATCH itself is sent from
// inside go-redis's callback, once our hooks are on the transaction, so the
// user's hooks see it, it counts toward e's breaker, and its error is
// returned as go-redis returns it; ran is set once fn starts.
func (c *Client) watchOn(ctx context.Context, e *endpoint, fn func(*redis.Tx) error, ran *bool, keys []string) error {
	return e.client().Watch(ctx, func(tx *redis.Tx) error {
		for _, h := range c.hooks.Load().user {
			tx.AddHook(h)
		}
		tx.AddHook(pinnedHook{c: c, e: e, guardExec: true})
		if len(keys) > 0 {
			if err := tx.Watch(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		*ran = true
		return fn(tx)
	})
}

// Conn returns a dedicated connection to the endpoint active now. It stays
// on that endpoint: it does not follow failover, and after that endpoint
// fails its commands return errors. Use it for connection state (CLIENT
// commands, SELECT, MULTI by hand); close it when done. Its commands count
// toward the endpoint's breaker and pass through the hooks added with
// AddHook. Conn waits for an active endpoint as commands do, and returns
// ErrNotSupported when that endpoint's client is not a *redis.Client (a
// Cluster or Ring member).
func (c *Client) Conn(ctx context.Context) (*redis.Conn, error) {
	r, err := c.awaitRoute(ctx, c.route.Load())
	if err != nil {
		return nil, err
	}
	if !r.active.caps.conn {
		return nil, fmt.Errorf("%w: Conn on endpoint %q, whose client is a %T", ErrNotSupported, r.active.name, r.active.client())
	}
	cn := r.active.client().(*redis.Client).Conn()
	for _, h := range c.hooks.Load().user {
		cn.AddHook(h)
	}
	cn.AddHook(pinnedHook{c: c, e: r.active})
	return cn, nil
}

// pinnedHook is installed on a Watch transaction or a Conn pinned to e. It
// records outcomes against e and, with guardExec, refuses to send EXEC once
// traffic has moved away from e.
type pinnedHook struct {
	c         *Client
	e         *endpoint
	guardExec bool
}

func (h pinnedHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h pinnedHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.guardExec && cmd.Name() == "exec" {
			if err := h.moved(); err != nil {
				cmd.SetErr(err)
				return err
			}
		}
		blocking := isBlocking(cmd)
		start := h.c.begin(h.e, blocking)
		err := next(ctx, cmd)
		h.c.end(ctx, h.e, blocking, start, err, false)
		return err
	}
}

func (h pinnedHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.guardExec && len(cmds) > 0 && cmds[len(cmds)-1].Name() == "exec" {
			if err := h.moved(); err != nil {
				setCmdsErr(cmds, err)
				return err
			}
		}
		blocking := false
		for _, cmd := range cmds {
			blocking = blocking || isBlocking(cmd)
		}
		start := h.c.begin(h.e, blocking)
		err := next(ctx, cmds)
		h.c.end(ctx, h.e, blocking, start, err, false)
		return err
	}
}

// moved returns an *EndpointChangedError if traffic no longer goes to e.
func (h pinnedHook) moved() error {
	r := h.c.route.Load()
	if r.active == h.e {
		return nil
	}
	to := ""
	if r.active != nil {
		to = r.active.name
	}
	return &EndpointChangedError{Op: "EXEC", From: h.e.name, To: to, At: time.Now(), tx: true}
}
