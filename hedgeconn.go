package geofailover

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/internal/cmdtable"
)

// Cutting late reads (hedged reads on endpoints we build from URL or
// Options). A hedged read runs its first attempt on the caller's own
// goroutine, as an unhedged one does; when its hedge answers first, the
// first attempt is cut: the endpoint's connections that carry a single
// read-only command sent long enough ago (see cutLate) have their read
// deadline moved to the past, so the caller returns at once. go-redis
// then discards the connection. To know what a connection carries, the
// connections of such an endpoint are wrapped (connWatch's DialHook), and
// each write is scanned: only a write that is exactly one read-only,
// non-blocking command, other than SCAN, can be cut.

// errCut is the error of a read cut because a hedge answered first. It is
// deliberately not a timeout (no Timeout method): go-redis retries
// timeouts on the same server (a cluster client does), and a cut read must
// return at once. Its own read's cut is counted as errCutTimeout.
var errCut = errors.New("geofailover: read cut: its hedge answered first")

// errCutTimeout is how the cut of a read's own first attempt is counted
// against its endpoint: as a timeout (it did not answer in time while the
// fallback did).
var errCutTimeout error = cutTimeout{}

type cutTimeout struct{}

func (cutTimeout) Error() string   { return "geofailover: no answer before the hedge's" }
func (cutTimeout) Timeout() bool   { return true }
func (cutTimeout) Temporary() bool { return true }

// connWatch is the set of one endpoint's traffic connections. It is a
// go-redis hook that only wraps dials.
type connWatch struct {
	mu    sync.Mutex
	conns map[*watchedConn]struct{}
}

func newConnWatch() *connWatch { return &connWatch{conns: map[*watchedConn]struct{}{}} }

func (w *connWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		wc := &watchedConn{Conn: conn, w: w}
		w.mu.Lock()
		w.conns[wc] = struct{}{}
		w.mu.Unlock()
		if sc, ok := conn.(syscall.Conn); ok {
			// go-redis checks a pooled connection's socket through
			// syscall.Conn; keep that working, without an allocation per
			// check.
			if raw, err := sc.SyscallConn(); err == nil {
				return &watchedSysConn{watchedConn: wc, raw: raw}, nil
			}
		}
		return wc, nil
	}
}

// attach watches the connections of member, a *redis.Client we built (see
// capabilities.inlineHedging for why only those).
func (w *connWatch) attach(member redis.UniversalClient) {
	member.(*redis.Client).AddHook(w)
}

func (w *connWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (w *connWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// cutLate cuts the connection of the first attempt of the read whose hedge
// answered: of the connections still waiting for the answer to a single
// read sent between the monotonic times from (when that read began) and to
// (see monoNow), the one that sent first. Reads of other callers are left
// alone: each has its own timer and hedge.
func (w *connWatch) cutLate(from, to int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first *watchedConn
	var firstAt int64
	for c := range w.conns {
		if s := c.sentAt.Load(); s >= from && s <= to && (first == nil || s < firstAt) {
			first, firstAt = c, s
		}
	}
	if first != nil && first.cut.CompareAndSwap(false, true) {
		_ = first.Conn.SetReadDeadline(pastDeadline)
	}
}

var pastDeadline = time.Unix(1, 0)

// watchedConn is a traffic connection of an endpoint with a connWatch.
type watchedConn struct {
	net.Conn
	w *connWatch
	// sentAt is when a single read was written and no byte of its answer
	// has been read yet (monoNow), or 0.
	sentAt atomic.Int64
	cut    atomic.Bool
	// answered: a byte has been read. Until then the connection is being
	// set up (HELLO, AUTH) for the command that dialled it, and any write
	// may be cut: on a frozen server a new connection's setup hangs too.
	answered atomic.Bool
}

func (c *watchedConn) Write(p []byte) (int, error) {
	if !c.answered.Load() || singleRead(p) {
		c.sentAt.Store(monoNow())
	} else {
		c.sentAt.Store(0)
	}
	return c.Conn.Write(p)
}

func (c *watchedConn) Read(p []byte) (int, error) {
	if c.cut.Load() {
		return 0, errCut
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.sentAt.Store(0)
		if !c.answered.Load() {
			c.answered.Store(true)
		}
	}
	if err != nil && c.cut.Load() {
		err = errCut
	}
	return n, err
}

func (c *watchedConn) SetReadDeadline(t time.Time) error {
	if c.cut.Load() {
		t = pastDeadline
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *watchedConn) SetDeadline(t time.Time) error {
	_ = c.Conn.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}

func (c *watchedConn) Close() error {
	c.w.mu.Lock()
	delete(c.w.conns, c)
	c.w.mu.Unlock()
	return c.Conn.Close()
}

// watchedSysConn is a watchedConn over a connection with a socket.
type watchedSysConn struct {
	*watchedConn
	raw syscall.RawConn
}

func (c *watchedSysConn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

var monoStart = time.Now()

// monoNow is a monotonic clock in nanoseconds, never 0.
func monoNow() int64 { return int64(time.Since(monoStart)) + 1 }

// singleRead reports whether p is exactly one RESP command that Redis
// flags read-only and that cannot block, other than SCAN (whose cursor
// belongs to one endpoint) and container commands. It does not allocate.
func singleRead(p []byte) bool {
	n, i, ok := respInt(p, 0, '*')
	if !ok || n < 1 {
		return false
	}
	var name [24]byte
	nameLen := 0
	for k := 0; k < n; k++ {
		l, j, ok := respInt(p, i, '$')
		if !ok || l < 0 || j+l+2 > len(p) || p[j+l] != '\r' || p[j+l+1] != '\n' {
			return false
		}
		if k == 0 {
			if l > len(name) {
				return false
			}
			for x := range l {
				b := p[j+x]
				if 'A' <= b && b <= 'Z' {
					b += 'a' - 'A'
				}
				name[x] = b
			}
			nameLen = l
		}
		i = j + l + 2
	}
	if i != len(p) {
		return false // more than one command: a pipeline
	}
	s := name[:nameLen]
	if string(s) == "scan" {
		return false
	}
	f := cmdtable.Lookup(string(s))
	return f&cmdtable.ReadOnly != 0 && f&(cmdtable.Blocking|cmdtable.Container) == 0
}

// respInt reads "<kind><digits>\r\n" at p[i:], returning the number and
// the index after it.
func respInt(p []byte, i int, kind byte) (int, int, bool) {
	if i >= len(p) || p[i] != kind {
		return 0, 0, false
	}
	i++
	n, digits := 0, 0
	for ; i < len(p) && p[i] >= '0' && p[i] <= '9'; i++ {
		n = n*10 + int(p[i]-'0')
		if digits++; digits > 9 {
			return 0, 0, false
		}
	}
	if digits == 0 || i+1 >= len(p) || p[i] != '\r' || p[i+1] != '\n' {
		return 0, 0, false
	}
	return n, i + 2, true
}
