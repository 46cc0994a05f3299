// Package proxy serves a geofailover.Client to applications in any language:
// a local RESP server (a sidecar) that clients such as redis-py, ioredis,
// Jedis, redis-cli and go-redis connect to as if it were Redis, and that
// sends their commands through the engine, with its failover, failback,
// replay rules and Pub/Sub.
//
// What a client sees, and what it cannot do, is listed in proxy/README.md's
// "geofailover proxy" section; each rule's home is named there.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/geofailover/geofailover"
)

// Options configures a Server. The zero value serves without a password,
// with the defaults below.
type Options struct {
	// Password, when set, is required of every client before its first
	// command: AUTH password, AUTH default password, or HELLO with AUTH
	// default password. A wrong one gets -WRONGPASS. Region credentials
	// are the Client's business, never the application's.
	Password string
	// MaxClients bounds the client connections open at once; one more is
	// answered "-ERR max number of clients reached" and closed, as Redis
	// does. Default DefaultMaxClients.
	MaxClients int
	// MaxRequestBytes bounds one request's arguments, in bytes; a larger
	// one gets a protocol error and its connection is closed. Default
	// DefaultMaxRequestBytes (512 MB, Redis's proto-max-bulk-len).
	MaxRequestBytes int64
	// IdleTimeout closes a client connection that sent nothing for this
	// long (as Redis's timeout setting; subscribed connections and those
	// waiting on a blocking command excepted). Zero: never.
	IdleTimeout time.Duration
	// Protocol is the RESP version of the Client's member connections:
	// 3 (go-redis's default, and the default here) or 2. With 3, clients
	// may speak RESP2 or RESP3 (RESP2 replies are converted); with 2, HELLO
	// 3 is answered -NOPROTO and clients stay on RESP2.
	Protocol int
	// DB is the database the Client's member connections use (the
	// endpoints' db, 0 unless their URL or options say otherwise). A client
	// starts there; SELECT moves it for its own commands only.
	DB int
	// Logger receives connection errors and refusals at Debug, protocol
	// errors at Info. Nil: slog.Default().
	Logger *slog.Logger
}

// DefaultMaxClients is Options.MaxClients's default (Redis's maxclients).
const DefaultMaxClients = 10000

// StallTimeout is the geofailover.Options.StallTimeout that a client built
// for the proxy should have (the geofailover proxy command gives its regions
// this one unless the config sets stall_timeout): 100 ms, not the library's
// 500 ms. An application that links the library reports a hung server
// through its own deadlines (five timed-out commands in a row trip the
// breaker); the proxy cannot see its clients' deadlines, only that they
// hang up, so the stall rule is its detector of a frozen region. A live
// region is never taken for a hung one for a long reply (a health check
// sent after half of it passes) nor for its distance (the rule waits at
// least four times the region's check latency); it is for a pause of the
// whole server longer than this, such as the fork of a large dataset or a
// long script: raise it where your servers pause that long.
const StallTimeout = 100 * time.Millisecond

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("proxy: server closed")

// Server is a RESP server in front of a geofailover.Client. It does not
// own the Client: close the Client after the Server.
type Server struct {
	client *geofailover.Client
	opts   Options
	log    *slog.Logger

	ctx    context.Context // canceled by Close: commands in flight end
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	draining  bool
	wg        sync.WaitGroup // connection goroutines

	batch    *batcher // sends ordinary commands of all connections together
	nextID   atomic.Int64
	stats    counters
	version  atomic.Pointer[string]         // the regions' Redis version, for HELLO
	commands atomic.Pointer[map[string]int] // command arities, for MULTI (see checkCommand)
}

// New returns a Server for c. It checks opts (nil: the defaults).
func New(c *geofailover.Client, opts *Options) (*Server, error) {
	if c == nil {
		return nil, errors.New("proxy: nil Client")
	}
	o := Options{}
	if opts != nil {
		o = *opts
	}
	switch {
	case o.MaxClients < 0:
		return nil, fmt.Errorf("proxy: MaxClients %d is negative", o.MaxClients)
	case o.MaxRequestBytes < 0:
		return nil, fmt.Errorf("proxy: MaxRequestBytes %d is negative", o.MaxRequestBytes)
	case o.IdleTimeout < 0:
		return nil, fmt.Errorf("proxy: IdleTimeout %v is negative", o.IdleTimeout)
	case o.Protocol != 0 && o.Protocol != 2 && o.Protocol != 3:
		return nil, fmt.Errorf("proxy: Protocol %d: want 2 or 3", o.Protocol)
	case o.DB < 0:
		return nil, fmt.Errorf("proxy: DB %d is negative", o.DB)
	}
	if o.MaxClients == 0 {
		o.MaxClients = DefaultMaxClients
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.Protocol == 0 {
		o.Protocol = 3
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		client: c, opts: o, log: log, ctx: ctx, cancel: cancel,
		listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{},
		batch: newBatcher(ctx, c),
	}, nil
}

// Serve accepts connections on ln until Shutdown or Close, and returns
// ErrServerClosed then (or the listener's error). It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining || s.ctx.Err() != nil {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		_ = ln.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.stopped() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("proxy: accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.accept(nc)
	}
}

func (s *Server) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining || s.ctx.Err() != nil
}

// errTooManyFiles is accept's error when the process is out of file
// descriptors: Serve waits and goes on, as net/http does.
var errTooManyFiles error = syscall.EMFILE

// accept starts serving nc, or refuses it over MaxClients.
func (s *Server) accept(nc net.Conn) {
	s.mu.Lock()
	if len(s.conns) >= s.opts.MaxClients || s.draining {
		s.mu.Unlock()
		s.stats.rejected.Add(1)
		_ = nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = nc.Write([]byte("-ERR max number of clients reached\r\n"))
		_ = nc.Close()
		return
	}
	c := newConn(s, nc)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.stats.accepted.Add(1)
	go func() {
		defer s.wg.Done()
		c.serve()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
}

// Shutdown stops accepting, lets each connection finish the commands it
// has under way and those that arrive within 100 ms (commands a client
// sent just before may still be on their way), writes their replies,
// closes it, and returns when all are closed, or when ctx ends: then the
// rest are closed at once and their commands canceled (Close), and ctx's
// error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.conns {
		c.drain()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		s.batch.wg.Wait()
		return nil
	case <-ctx.Done():
		_ = s.Close()
		<-done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once; commands in
// flight are canceled. It returns when every connection's goroutines have
// ended.
func (s *Server) Close() error {
	s.mu.Lock()
	s.draining = true
	s.cancel()
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.batch.wg.Wait()
	return nil
}

// Stats are a Server's counters since it started.
type Stats struct {
	Connections        int    // open now
	Accepted, Rejected uint64 // connections accepted; refused over MaxClients or while shutting down
	// Commands by outcome: answered by a server (its reply passed on,
	// error replies included), answered by the proxy itself, refused by the
	// proxy, or failed (the engine could not get an answer: -LOADING or
	// -ERR from the proxy).
	Forwarded, Local, Refused, Failed uint64
	ProtocolErrors                    uint64 // connections closed for malformed input
	BytesIn, BytesOut                 uint64
}

type counters struct {
	accepted, rejected                atomic.Uint64
	forwarded, local, refused, failed atomic.Uint64
	protocolErrors                    atomic.Uint64
	bytesIn, bytesOut                 atomic.Uint64
}

// Stats returns the Server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	st := &s.stats
	return Stats{
		Connections: n, Accepted: st.accepted.Load(), Rejected: st.rejected.Load(),
		Forwarded: st.forwarded.Load(), Local: st.local.Load(), Refused: st.refused.Load(), Failed: st.failed.Load(),
		ProtocolErrors: st.protocolErrors.Load(), BytesIn: st.bytesIn.Load(), BytesOut: st.bytesOut.Load(),
	}
}

// clientList returns CLIENT LIST's lines for every connection.
func (s *Server) clientList() []byte {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var b []byte
	for _, c := range sortByID(conns) {
		b = c.appendInfo(b)
	}
	return b
}
