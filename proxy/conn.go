package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/internal/cmdtable"
	"github.com/geofailover/geofailover/internal/rawcmd"
	"github.com/geofailover/geofailover/internal/resp"
)

const (
	// maxBatch bounds the pipelined requests read before they are run.
	maxBatch = 512
	// directWrite: a reply this large is written straight to the
	// connection rather than copied into the output buffer.
	directWrite = 64 << 10
	// writeTimeout bounds one write to a client that stopped reading.
	writeTimeout = 30 * time.Second
)

// conn is one client connection. serve runs it on one goroutine; a
// subscribed connection has a second one delivering messages (pubsub.go),
// a blocking command one that notices the client leaving (watchGone), and
// writes are serialized by wmu.
type conn struct {
	s      *Server
	nc     net.Conn
	id     int64
	rd     requestReader
	ctx    context.Context // canceled when the connection closes
	cancel context.CancelFunc

	wmu sync.Mutex
	out []byte
	wer error // the first write error; the connection is done

	// state, owned by serve's goroutine
	proto           int          // 2 or 3
	protoShared     atomic.Int32 // proto, for the Pub/Sub goroutine
	db              int
	name            string
	libName, libVer string
	authed          bool
	replyMode       replyMode
	quit            bool
	multi           *multiState
	watch           *watchSession
	sub             *subscriber
	created         time.Time
	lastActive      atomic.Int64 // UnixNano of the last request
	lastCmd         atomic.Pointer[string]
	info            atomic.Pointer[connInfo]
	job             batchJob     // the run this connection has queued (see batch.go)
	drainBy         atomic.Int64 // UnixNano the drain ends reading at; 0 while not draining
	closeOnce       sync.Once
}

type replyMode uint8

const (
	replyOn replyMode = iota
	replyOff
	replySkip // skip the next command's reply
)

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{
		s: s, nc: nc, id: s.nextID.Add(1), ctx: ctx, cancel: cancel,
		rd:      newRequestReader(countingReader{nc, &s.stats.bytesIn}, s.opts.MaxRequestBytes),
		proto:   2,
		db:      s.opts.DB,
		authed:  s.opts.Password == "",
		created: time.Now(),
	}
	c.lastActive.Store(c.created.UnixNano())
	c.protoShared.Store(2)
	c.job.done = make(chan struct{}, 1)
	return c
}

type countingReader struct {
	r io.Reader
	n *atomic.Uint64
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n.Add(uint64(n))
	return n, err
}

// drainLinger is how long a draining connection still reads: commands the
// client sent before Shutdown may still be on their way, or unread in the
// socket, and are answered; then the connection closes. A client that keeps
// sending meets the closed connection at the end of it.
const drainLinger = 100 * time.Millisecond

// drain asks the connection to close once the requests it has received
// within drainLinger are answered (Server.Shutdown).
func (c *conn) drain() {
	by := time.Now().Add(drainLinger)
	c.drainBy.Store(by.UnixNano())
	_ = c.nc.SetReadDeadline(by) // a command under way goes on
}

func (c *conn) draining() bool { return c.drainBy.Load() != 0 }

// close closes the connection at once; commands in flight are canceled.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		_ = c.nc.Close()
	})
}

// serve reads requests and answers them until the client leaves, QUIT, an
// error, or the server stops.
func (c *conn) serve() {
	defer func() {
		c.endWatch()
		c.endSubscription()
		c.close()
	}()
	for !c.quit {
		c.setIdleDeadline()
		if c.draining() {
			c.setIdleDeadline() // drain's deadline may have been overwritten just now
		}
		req, err := c.rd.next()
		if err != nil {
			c.readFailed(err)
			return
		}
		batch := []request{req}
		for c.rd.buffered() && len(batch) < maxBatch && err == nil {
			if req, err = c.rd.next(); err == nil {
				batch = append(batch, req)
			}
		}
		c.execute(batch)
		if ferr := c.flush(); ferr != nil {
			return
		}
		if err != nil {
			c.readFailed(err)
			return
		}
	}
}

func (c *conn) setIdleDeadline() {
	switch by := c.drainBy.Load(); {
	case by != 0:
		_ = c.nc.SetReadDeadline(time.Unix(0, by))
	case c.s.opts.IdleTimeout > 0 && c.sub == nil:
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.opts.IdleTimeout))
	default:
		_ = c.nc.SetReadDeadline(time.Time{})
	}
}

// readFailed ends the connection after a read error: malformed input is
// answered with a protocol error first, as Redis does.
func (c *conn) readFailed(err error) {
	var pe *protocolError
	if errors.As(err, &pe) {
		c.s.stats.protocolErrors.Add(1)
		c.s.log.Info("proxy: closing a connection after a protocol error", "client", c.nc.RemoteAddr().String(), "err", pe.msg)
		c.writeError("ERR " + pe.Error())
		_ = c.flush()
		return
	}
	if !errors.Is(err, io.EOF) && !c.draining() {
		c.s.log.Debug("proxy: connection ended", "client", c.nc.RemoteAddr().String(), "err", err)
	}
}

// execute answers a batch of requests in order. Runs of ordinary commands
// go to the engine as one pipeline.
func (c *conn) execute(batch []request) {
	var run []request
	for _, req := range batch {
		if len(req) == 0 {
			continue
		}
		c.lastActive.Store(time.Now().UnixNano())
		if c.ordinary(req) {
			run = append(run, req)
			continue
		}
		c.forward(run)
		run = run[:0]
		c.dispatch(req)
		if c.quit {
			return
		}
	}
	c.forward(run)
}

// ordinary reports whether req can go to the engine in a pipeline with its
// neighbours: an authenticated connection's command that is not one the
// proxy answers or handles itself (local, transactions, Pub/Sub), not
// blocking and not a SCAN.
func (c *conn) ordinary(req request) bool {
	if !c.authed || c.multi != nil || c.watch != nil || c.sub != nil || c.replyMode != replyOn {
		return false
	}
	name := lower(req[0])
	if _, ok := handlers[name]; ok {
		return false
	}
	_, refused := refusals[name]
	return !refused && !blocking(name, req) && !isScan(name)
}

// forward sends a run of ordinary requests through the engine, as one
// pipeline if there are several, and writes their replies.
func (c *conn) forward(run []request) {
	if len(run) == 0 {
		return
	}
	cmds := make([]*rawcmd.Cmd, len(run))
	for i, req := range run {
		cmds[i] = newCmd(c.ctx, req)
	}
	if !c.run(cmds) {
		return
	}
	for i, cmd := range cmds {
		c.writeResult(run[i], cmd)
	}
}

// run sends cmds through the engine on the connection's database: with
// other connections' commands (batch.go) on the members' database, else
// alone or as a pipeline between SELECTs. It reports false when the
// connection closed first: cmds may still be in flight, not to be read.
func (c *conn) run(cmds []*rawcmd.Cmd) bool {
	if c.db == c.s.opts.DB && !blockingCmds(cmds) {
		c.job.cmds = cmds
		if !c.s.batch.submit(c.ctx, &c.job) {
			// The connection is closing; a sender may still send the
			// run (nobody reads its answer, and the job is not reused).
			return false
		}
		c.job.cmds = nil
		return true
	}
	if len(cmds) == 1 && c.db == c.s.opts.DB {
		_ = c.s.client.Process(c.ctx, cmds[0])
		return true
	}
	pipe := c.s.client.Pipeline()
	c.queue(pipe, cmds)
	_, _ = pipe.Exec(c.ctx)
	return true
}

// queue adds cmds to p, between SELECTs when the client selected a
// database other than the members' (the connection goes back to it).
func (c *conn) queue(p redis.Pipeliner, cmds []*rawcmd.Cmd) { c.queueSelecting(p, cmds, false) }

// queueSelecting is queue; selects says cmds hold a SELECT of their own
// (inside MULTI), so the connection is always sent back to the members'
// database.
func (c *conn) queueSelecting(p redis.Pipeliner, cmds []*rawcmd.Cmd, selects bool) {
	if c.db != c.s.opts.DB {
		p.Select(c.ctx, c.db)
	}
	for _, cmd := range cmds {
		_ = p.Process(c.ctx, cmd)
	}
	if c.db != c.s.opts.DB || selects {
		p.Select(c.ctx, c.s.opts.DB)
	}
}

// newCmd returns the engine's command for req.
func newCmd(ctx context.Context, req request) *rawcmd.Cmd {
	args := make([]any, len(req))
	for i, a := range req {
		args[i] = a
	}
	cmd := rawcmd.New(ctx, args...)
	if d, ok := blockingTimeout(lower(req[0]), req); ok {
		cmd.SetReadTimeout(d)
	}
	return cmd
}

// writeResult writes cmd's outcome as req's reply.
func (c *conn) writeResult(req request, cmd *rawcmd.Cmd) {
	err := cmd.Err()
	raw := cmd.Val()
	var re redis.Error
	switch {
	case err == nil || errors.As(err, new(*rawcmd.ReplyError)) && len(raw) > 0:
		c.s.stats.forwarded.Add(1)
		c.writeRaw(req, raw)
	case errors.As(err, &re) && !isEngineError(err):
		// The server's refusal read by go-redis itself (EXECABORT).
		c.s.stats.forwarded.Add(1)
		c.writeError(err.Error())
	default:
		c.s.stats.failed.Add(1)
		c.writeError(engineErrorReply(req[0], err))
	}
}

func isEngineError(err error) bool {
	return errors.Is(err, geofailover.ErrNoHealthyEndpoint) || errors.Is(err, geofailover.ErrEndpointChanged) ||
		errors.Is(err, geofailover.ErrClosed)
}

// engineErrorReply is the error a client gets when the engine could not get
// a server's answer to its command. A command that certainly did not run
// gets -LOADING, which go-redis, redis-py and others retry (see proxy/README.md, "When
// no region can answer"); one that may have run gets -ERR (the application
// decides, as with a lost reply from Redis), and a blocking command
// interrupted by a switch -UNBLOCKED (as CLIENT UNBLOCK does).
func engineErrorReply(name string, err error) string {
	var ece *geofailover.EndpointChangedError
	switch {
	case errors.As(err, &ece) && !geofailover.NotApplied(err):
		return fmt.Sprintf("UNBLOCKED geofailover: traffic moved from %s to %s while %s waited; it may have taken an element: send it again if your logic allows", ece.From, orNone(ece.To), strings.ToUpper(name))
	case geofailover.NotApplied(err):
		return "LOADING geofailover: " + strings.ToUpper(name) + " was not run, no region could take it now (" + oneLine(err) + "); send it again"
	}
	return "ERR geofailover: the reply to " + strings.ToUpper(name) + " was lost (" + oneLine(err) + "); it may have been applied"
}

func orNone(s string) string {
	if s == "" {
		return "no region"
	}
	return s
}

func oneLine(err error) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(err.Error())
}

// writeRaw writes a server's reply to req, converted to the client's
// protocol.
func (c *conn) writeRaw(req request, raw []byte) {
	if c.suppressed() {
		return
	}
	c.appendRaw(req, raw)
}

// appendRaw is writeRaw without CLIENT REPLY's say.
func (c *conn) appendRaw(req request, raw []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.proto == 2 && c.s.opts.Protocol == 3 {
		out, _, err := toRESP2(c.out, raw, conversionOf(req))
		if err != nil {
			c.out = resp.AppendSimple(c.out, '-', "ERR geofailover: could not convert the reply to RESP2: "+err.Error())
			return
		}
		c.out = out
		return
	}
	if len(raw) >= directWrite {
		c.flushLocked()
		c.writeLocked(raw)
		return
	}
	c.out = append(c.out, raw...)
}

// suppressed reports whether the reply now due is not written (CLIENT
// REPLY OFF or SKIP), and moves SKIP on.
func (c *conn) suppressed() bool {
	switch c.replyMode {
	case replyOff:
		return true
	case replySkip:
		c.replyMode = replyOn
		return true
	}
	return false
}

// reply appends an encoded reply that the proxy made.
func (c *conn) reply(b []byte) {
	if c.suppressed() {
		return
	}
	c.wmu.Lock()
	c.out = append(c.out, b...)
	c.wmu.Unlock()
}

func (c *conn) writeError(msg string) { c.reply(resp.AppendSimple(nil, '-', msg)) }
func (c *conn) writeOK()              { c.reply([]byte("+OK\r\n")) }

// writeNull writes the null reply (RESP2: the null bulk string; nullArray:
// the null array).
func (c *conn) writeNull(nullArray bool) {
	switch {
	case c.proto == 3:
		c.reply([]byte("_\r\n"))
	case nullArray:
		c.reply([]byte("*-1\r\n"))
	default:
		c.reply([]byte("$-1\r\n"))
	}
}

// flush writes what is buffered.
func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.flushLocked()
	return c.wer
}

func (c *conn) flushLocked() {
	if len(c.out) == 0 {
		return
	}
	c.writeLocked(c.out)
	if cap(c.out) > 64<<10 {
		c.out = nil // do not keep a large buffer for an idle connection
	} else {
		c.out = c.out[:0]
	}
}

func (c *conn) writeLocked(b []byte) {
	if c.wer != nil {
		return
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	n, err := c.nc.Write(b)
	c.s.stats.bytesOut.Add(uint64(n))
	if err != nil {
		c.wer = err
		c.close()
	}
}

// appendInfo appends the connection's CLIENT LIST line.
func (c *conn) appendInfo(b []byte) []byte {
	now := time.Now()
	cmd := "NULL"
	if p := c.lastCmd.Load(); p != nil {
		cmd = *p
	}
	in := c.info.Load()
	if in == nil {
		in = &connInfo{db: c.s.opts.DB, proto: 2, multi: -1}
	}
	flags := "N"
	if in.sub {
		flags = "P"
	}
	b = fmt.Appendf(b, "id=%d addr=%s laddr=%s fd=-1 name=%s age=%d idle=%d flags=%s db=%d sub=0 psub=0 ssub=0 multi=%d watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=%s user=default redir=-1 resp=%d lib-name=%s lib-ver=%s\n",
		c.id, c.nc.RemoteAddr(), c.nc.LocalAddr(), in.name,
		int(now.Sub(c.created).Seconds()), int(now.Sub(time.Unix(0, c.lastActive.Load())).Seconds()),
		flags, in.db, in.multi, cmd, in.proto, in.libName, in.libVer)
	return b
}

func sortByID(conns []*conn) []*conn {
	slices.SortFunc(conns, func(a, b *conn) int { return int(a.id - b.id) })
	return conns
}

// lower is a command's name in lower case, without allocating for the
// commands Redis knows (cmdtable.Lower).
func lower(s string) string { return cmdtable.Lower(s) }

// connInfo is what CLIENT LIST shows of a connection, published by its own
// goroutine after each command that may change it.
type connInfo struct {
	name, libName, libVer string
	db, proto, multi      int
	sub                   bool
}

// publishInfo publishes the connection's state for CLIENT LIST.
func (c *conn) publishInfo() {
	multi := -1
	if c.multi != nil {
		multi = len(c.multi.queued)
	}
	c.info.Store(&connInfo{name: c.name, libName: c.libName, libVer: c.libVer,
		db: c.db, proto: c.proto, multi: multi, sub: c.sub != nil})
}

// setProto sets the connection's protocol version.
func (c *conn) setProto(v int) {
	c.proto = v
	c.protoShared.Store(int32(v))
}

// blockingCmds reports whether cmds is one blocking command (run on its
// own, never batched; runs of ordinary commands hold none).
func blockingCmds(cmds []*rawcmd.Cmd) bool {
	if len(cmds) != 1 {
		return false
	}
	args := cmds[0].Args()
	name, _ := args[0].(string)
	if name == "" || !cmdtable.MayBlock(name[0]) {
		return false
	}
	req := make(request, len(args))
	for i, a := range args {
		req[i], _ = a.(string)
	}
	return blocking(lower(name), req)
}
