package proxy

import (
	"errors"
	"math"
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

// runBlocking runs a blocking command. The connection's other requests wait
// behind it, as on Redis; other connections do not. If the client goes
// away meanwhile, the command is canceled (watchGone).
func (c *conn) runBlocking(cmd *rawcmd.Cmd) {
	stop := c.watchGone()
	defer stop()
	c.run(singleCmd(cmd))
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
