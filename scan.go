package geofailover

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// SCAN cursors are only meaningful on the server that returned them. The
// Client marks each cursor it hands out with the endpoint that produced it,
// in the cursor's top byte (a Redis cursor indexes a hash table and never
// uses those bits), and refuses to send a marked cursor to another endpoint.
const (
	scanTagShift = 56
	scanTagMask  = uint64(0xff) << scanTagShift
)

// cursorIndex returns the index of the cursor argument of a SCAN-family
// command: SCAN cursor ..., or SSCAN/HSCAN/ZSCAN key cursor ....
func cursorIndex(cmd *redis.ScanCmd) int {
	if cmd.Name() == "scan" {
		return 1
	}
	return 2
}

// cursorOf reads a cursor argument: a number, as go-redis's typed Scan
// passes it, or its decimal text, as a raw command (the proxy's) does.
func cursorOf(arg any) (uint64, bool) {
	switch v := arg.(type) {
	case uint64:
		return v, true
	case string:
		n, err := strconv.ParseUint(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// processScan runs a SCAN-family command. A scan that starts (cursor 0)
// follows the ordinary rules; a scan that continues (cursor from an earlier
// page) goes to the endpoint that returned the cursor only if that is still
// the active one, is never retried elsewhere, and otherwise fails with an
// *EndpointChangedError: the caller restarts the scan from 0 on the new
// endpoint.
func (c *Client) processScan(ctx context.Context, r *route, cmd *redis.ScanCmd) error {
	args := cmd.Args()
	i := cursorIndex(cmd)
	if i >= len(args) {
		_, err := c.processOne(ctx, r, cmd)
		return err
	}
	cursor, ok := cursorOf(args[i])
	if !ok {
		_, err := c.processOne(ctx, r, cmd) // the server says what is wrong with it
		return err
	}
	tag := uint8(cursor >> scanTagShift)
	if cursor == 0 {
		e, err := c.processOne(ctx, r, cmd)
		if err == nil {
			tagCursor(cmd, e)
		}
		return err
	}
	e := r.active
	if tag != 0 && tag != e.scanTag {
		err := &EndpointChangedError{Op: "SCAN", From: c.endpointByTag(tag), To: e.name, At: time.Now()}
		cmd.SetErr(err)
		return err
	}
	orig := args[i]
	args[i] = cursor &^ scanTagMask
	err := c.attempt(ctx, e, cmd, false)
	args[i] = orig
	if err == nil {
		tagCursor(cmd, e)
	}
	return err
}

// tagCursor marks the cursor cmd returned with e, the endpoint that served
// it. (A cursor with its top byte set would be left unmarked; Redis never
// returns one.)
func tagCursor(cmd *redis.ScanCmd, e *endpoint) {
	keys, next := cmd.Val()
	if next != 0 && next&scanTagMask == 0 {
		cmd.SetVal(keys, next|uint64(e.scanTag)<<scanTagShift)
	}
}

// endpointByTag names the endpoint whose scan tag is tag ("" if it is gone).
func (c *Client) endpointByTag(tag uint8) string {
	name, _ := c.scanTags.Load(tag)
	s, _ := name.(string)
	return s
}
