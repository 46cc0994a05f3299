package proxy

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/internal/rawcmd"
)

// blockingTimeout returns how long the server may make req wait, for a
// blocking command (0: without end), as go-redis's typed blocking
// commands give their read timeout.
func blockingTimeout(name string, req request) (time.Duration, bool) {
	var arg string
	seconds := true
	switch name {
	case "blpop", "brpop", "bzpopmin", "bzpopmax", "brpoplpush", "blmove":
		arg = req[len(req)-1]
	case "blmpop", "bzmpop":
		if len(req) > 1 {
			arg = req[1]
		}
	case "wait":
		if len(req) > 2 {
			arg, seconds = req[2], false
		}
	case "waitaof":
		if len(req) > 3 {
			arg, seconds = req[3], false
		}
	case "xread", "xreadgroup":
		for i := 1; i+1 < len(req); i++ {
			if lower(req[i]) == "block" {
				arg, seconds = req[i+1], false
				break
			}
		}
		if arg == "" {
			return 0, false
		}
	default:
		return 0, false
	}
	v, err := strconv.ParseFloat(arg, 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false // the server will refuse it; read it as any command
	}
	if seconds {
		v *= 1000
	}
	if v > float64(math.MaxInt64/int64(time.Millisecond)) {
		return 0, true
	}
	return time.Duration(v * float64(time.Millisecond)), true
}

// blocking reports whether req may wait on the server.
func blocking(name string, req request) bool {
	_, ok := blockingTimeout(name, req)
	return ok
}

// blockSlice is the longest wait the proxy asks of a region for one
// blocking pop or XREAD BLOCK: a longer one (or one without end) is sent
// again, slice after slice, until it is answered, times out, or its client
// leaves. go-redis cannot cancel a read under way, so this bounds how long
// a connection to the region stays held for a client that has gone, and
// how long Close waits.
const blockSlice = time.Second

// runBlocking runs a blocking command and returns the command whose reply
// is req's. The connection's other requests wait behind it, as on Redis;
// other connections do not.
func (c *conn) runBlocking(req request) *rawcmd.Cmd {
	stop := c.watchGone()
	defer stop()
	name := lower(req[0])
	total, _ := blockingTimeout(name, req)
	at := timeoutArg(name, req)
	if at < 0 || total > 0 && total <= blockSlice {
		cmd := newCmd(c.ctx, req)
		c.run(singleCmd(cmd)) // blocking: never batched, so always answered
		return cmd
	}
	if name == "xread" {
		req = c.resolveLastIDs(req)
	}
	end := time.Now().Add(total)
	sliced := slices.Clone(req)
	for {
		wait := blockSlice
		if total > 0 {
			wait = min(wait, time.Until(end))
		}
		sliced[at] = formatTimeout(name, max(wait, time.Millisecond))
		cmd := newCmd(c.ctx, sliced)
		c.run(singleCmd(cmd)) // blocking: never batched
		if cmd.Err() != nil || !isNull(cmd.Val()) || c.ctx.Err() != nil || total > 0 && time.Until(end) <= 0 {
			return cmd
		}
	}
}

// timeoutArg returns the index of req's timeout argument for the blocking
// commands that may be sent again with a shorter one, else -1. WAIT and
// WAITAOF are not: a second WAIT would count acknowledgements anew.
func timeoutArg(name string, req request) int {
	switch name {
	case "blpop", "brpop", "bzpopmin", "bzpopmax", "brpoplpush", "blmove":
		return len(req) - 1
	case "blmpop", "bzmpop":
		return 1
	case "xread", "xreadgroup":
		for i := 1; i+1 < len(req); i++ {
			if lower(req[i]) == "block" {
				return i + 1
			}
		}
	}
	return -1
}

func formatTimeout(name string, d time.Duration) string {
	if name == "xread" || name == "xreadgroup" {
		return strconv.FormatInt(d.Milliseconds(), 10)
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// isNull reports whether a raw reply is null (a timed-out blocking
// command's answer).
func isNull(raw []byte) bool {
	s := string(raw)
	return s == "_\r\n" || s == "*-1\r\n" || s == "$-1\r\n"
}

// resolveLastIDs replaces XREAD's "$" IDs with each stream's last ID now,
// so that sending it again after a slice still means "entries after the
// call began". A stream that does not exist is read from 0-0 (it has no
// entries to skip).
func (c *conn) resolveLastIDs(req request) request {
	streams := -1
	for i, a := range req {
		if lower(a) == "streams" {
			streams = i + 1
			break
		}
	}
	if streams < 0 || (len(req)-streams)%2 != 0 {
		return req
	}
	n := (len(req) - streams) / 2
	out := slices.Clone(req)
	for i := range n {
		if out[streams+n+i] != "$" {
			continue
		}
		last, err := c.s.client.XRevRangeN(c.ctx, out[streams+i], "+", "-", 1).Result()
		switch {
		case err == nil && len(last) == 1:
			out[streams+n+i] = last[0].ID
		case err == nil:
			out[streams+n+i] = "0-0"
		default:
			return req // the XREAD will meet the same failure
		}
	}
	return out
}

func singleCmd(cmd *rawcmd.Cmd) []*rawcmd.Cmd { return []*rawcmd.Cmd{cmd} }

// watchGone cancels the connection's context if the client closes its
// connection while a command waits, so that a BLPOP 0 from a client that
// left does not hold a connection to the region for ever. Bytes the client
// sends meanwhile (its next requests) are kept for the reader. It returns
// a function that stops watching.
func (c *conn) watchGone() (stop func()) {
	if c.rd.buffered() {
		return func() {} // the client has sent more: it is still there
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	var got []byte
	var gone bool
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			n, err := c.nc.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				var ne interface{ Timeout() bool }
				if !(errors.As(err, &ne) && ne.Timeout()) {
					gone = true
					c.cancel()
				}
				return
			}
		}
	}()
	return func() {
		_ = c.nc.SetReadDeadline(time.Now())
		<-done
		_ = c.nc.SetReadDeadline(time.Time{})
		if len(got) > 0 && !gone {
			c.rd.unread(got)
		}
	}
}

// isReplyErr reports whether err is a server's error reply read by
// go-redis.
func isReplyErr(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !isEngineError(err)
}
