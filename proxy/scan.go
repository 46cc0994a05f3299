package proxy

import (
	"errors"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/internal/resp"
)

func isScan(name string) bool {
	return name == "scan" || name == "sscan" || name == "hscan" || name == "zscan"
}

// scan runs a SCAN-family command with the engine's cursor rules: a cursor
// names the region that returned it, and one from a region that no longer
// has the traffic is refused (the client starts again from 0), never sent
// to another region, where it would skip or repeat keys.
func (c *conn) scan(req request) {
	args := make([]any, len(req))
	for i, a := range req {
		args[i] = a
	}
	cmd := redis.NewScanCmd(c.ctx, nil, args...)
	var err error
	if c.db == c.s.opts.DB {
		err = c.s.client.Process(c.ctx, cmd)
	} else {
		pipe := c.s.client.Pipeline()
		pipe.Select(c.ctx, c.db)
		_ = pipe.Process(c.ctx, cmd)
		pipe.Select(c.ctx, c.s.opts.DB)
		_, _ = pipe.Exec(c.ctx)
		err = cmd.Err()
	}
	var ece *geofailover.EndpointChangedError
	switch {
	case err == nil:
		c.s.stats.forwarded.Add(1)
		keys, cursor := cmd.Val()
		b := resp.AppendLen(nil, '*', 2)
		b = resp.AppendBulk(b, strconv.FormatUint(cursor, 10))
		b = resp.AppendLen(b, '*', len(keys))
		for _, k := range keys {
			b = resp.AppendBulk(b, k)
		}
		c.reply(b)
	case errors.As(err, &ece):
		c.s.stats.failed.Add(1)
		c.writeError("ERR geofailover: this " + req[0] + " cursor came from region " + ece.From + ", and traffic has moved to " + orNone(ece.To) + "; start the scan again from cursor 0")
	default:
		c.writeEngineOrReplyError(req[0], err)
	}
}
