package geofailover

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geofailover/geofailover/internal/resp"
)

// The connection a *redis.PubSub is given (frontConn): in-process, it hands
// the commands go-redis writes to the relay (pubsub.go) and returns the
// relay's replies and pushes, which an outbox writes on a goroutine of its
// own so the relay never waits for a slow reader.

// frontConn is the front PubSub's connection. Reads come from the bridge
// through a pipe. Writes are parsed into commands and handed to the bridge
// synchronously: Write returns once each command has been written to the
// real connection (or answered by the bridge), within the write deadline.
// A closed bridge is reported as a closed network connection
// (net.ErrClosed), as the TCP connection of a plain go-redis PubSub would.
type frontConn struct {
	net.Conn // the front's end of the pipe
	b        *bridge
	closed   atomic.Bool // Close was called

	mu       sync.Mutex // serializes Write; guards buf and deadline
	buf      []byte     // a partial command
	deadline time.Time
}

func (f *frontConn) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	if errors.Is(err, io.EOF) && (f.closed.Load() || f.b.c.ctx.Err() != nil) {
		// This connection or the Client was closed, not the server: the
		// bridge's end may close before ours does.
		err = io.ErrClosedPipe
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// A receive timeout, told as a plain PubSub's TCP connection tells
		// it: the address of the server it waits on, not "pipe".
		return n, &net.OpError{Op: "read", Net: "tcp", Addr: f.b.servingAddr(), Err: os.ErrDeadlineExceeded}
	}
	return n, pipeErr("read", err)
}

// servingAddr is the address of the endpoint of the bridge's latest
// member, or "" before it had one.
func (b *bridge) servingAddr() serverAddr {
	a, _ := b.serving.Load().(serverAddr)
	return a
}

// serverAddr is the address a front PubSub's errors name: that of the
// endpoint serving its subscriptions (or "geofailover" before any does).
type serverAddr string

func (a serverAddr) Network() string { return "tcp" }
func (a serverAddr) String() string {
	if a == "" {
		return "geofailover"
	}
	return string(a)
}

func (f *frontConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buf = append(f.buf, p...)
	var expired <-chan time.Time
	if !f.deadline.IsZero() {
		t := time.NewTimer(time.Until(f.deadline))
		defer t.Stop()
		expired = t.C
	}
	for len(f.buf) > 0 {
		args, n, err := resp.ParseCommand(f.buf)
		if errors.Is(err, resp.ErrIncomplete) {
			break
		}
		if err != nil {
			return 0, err
		}
		f.buf = f.buf[n:]
		cmd := frontCommand{args: args, done: make(chan struct{}), err: new(error)}
		for _, wait := range []func() bool{
			func() bool {
				select {
				case f.b.in <- cmd:
					return true
				case <-f.b.ctx.Done():
				case <-expired:
				}
				return false
			},
			func() bool {
				select {
				case <-cmd.done:
					return true
				case <-f.b.ctx.Done():
				case <-expired:
				}
				return false
			},
		} {
			if !wait() {
				if f.b.ctx.Err() != nil {
					return 0, &net.OpError{Op: "write", Net: "pipe", Err: net.ErrClosed}
				}
				return 0, &net.OpError{Op: "write", Net: "pipe", Err: os.ErrDeadlineExceeded}
			}
		}
		if err := *cmd.err; err != nil {
			return 0, err // it could not be sent, and had nowhere else to go
		}
	}
	if len(f.buf) == 0 {
		f.buf = nil
	}
	return len(p), nil
}

func (f *frontConn) SetDeadline(t time.Time) error {
	_ = f.SetWriteDeadline(t)
	return f.SetReadDeadline(t)
}

func (f *frontConn) SetReadDeadline(t time.Time) error {
	return pipeErr("set deadline", f.Conn.SetReadDeadline(t))
}

func (f *frontConn) SetWriteDeadline(t time.Time) error {
	f.mu.Lock()
	f.deadline = t
	f.mu.Unlock()
	return nil
}

// Close ends the bridge too.
func (f *frontConn) Close() error {
	f.closed.Store(true)
	f.b.stop()
	return f.Conn.Close()
}

func pipeErr(op string, err error) error {
	if errors.Is(err, io.ErrClosedPipe) {
		return &net.OpError{Op: op, Net: "pipe", Err: net.ErrClosed}
	}
	return err
}

// outbox queues bytes for the front and writes them on its own goroutine,
// so the bridge never waits for a slow reader. Past outboxLimit bytes the
// front is cut off (as Redis's client-output-buffer-limit would): its
// PubSub reconnects to a fresh bridge and re-subscribes.
type outbox struct {
	mu     sync.Mutex
	queue  [][]byte
	size   int
	closed bool
	signal chan struct{}
}

const outboxLimit = 32 << 20

func (o *outbox) init() { o.signal = make(chan struct{}, 1) }

func (o *outbox) push(p []byte) {
	o.mu.Lock()
	if !o.closed {
		o.queue = append(o.queue, p)
		o.size += len(p)
	}
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// run writes queued bytes to w until the outbox is closed or a write
// fails; then it calls stop.
func (o *outbox) run(w io.Writer, stop func()) {
	defer stop()
	for range o.signal {
		o.mu.Lock()
		batch, closed, size := o.queue, o.closed, o.size
		o.queue, o.size = nil, 0
		o.mu.Unlock()
		if closed || size > outboxLimit {
			return
		}
		for _, p := range batch {
			if _, err := w.Write(p); err != nil {
				return
			}
		}
	}
}
