package proxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/internal/rawcmd"
	"github.com/geofailover/geofailover/internal/resp"
)

// Transactions. MULTI queues a client's commands in the proxy; EXEC sends
// them to the engine as one MULTI/EXEC on one region (the engine's
// transaction rules: a transaction that never reached a region may go to
// the next one; none is ever split or half applied). WATCH pins the
// connection to one connection of the active region until EXEC, DISCARD or
// UNWATCH (the engine's Watch, in a session goroutine); if traffic moves to
// another region before EXEC, EXEC is not sent and the client gets the
// null reply of a transaction whose watched keys changed, so it retries on
// the new region as it would after a conflict.

// txControl are the commands run, not queued, inside MULTI.
var txControl = map[string]bool{"exec": true, "discard": true, "multi": true, "watch": true, "quit": true, "reset": true}

type multiState struct {
	queued []request
	// local marks the queued CLIENT commands, which the proxy answers at
	// EXEC, in order with the region's replies.
	local []bool
	// selects: a SELECT is queued; it goes to the region inside the
	// transaction, and the connection's database follows it after EXEC.
	selects bool
	dirty   bool // a command was refused while queueing: EXEC aborts
}

func (c *conn) multiCmd(req request) {
	c.s.stats.local.Add(1)
	switch {
	case len(req) != 1:
		c.writeError("ERR wrong number of arguments for 'multi' command")
	case c.multi != nil:
		c.writeError("ERR MULTI calls can not be nested")
	default:
		c.multi = &multiState{}
		c.writeOK()
	}
}

// queueInMulti queues req, or refuses it (and EXEC will abort, as on Redis
// after a command is rejected while queueing).
func (c *conn) queueInMulti(name string, req request) {
	if reason, ok := refusals[name]; ok {
		c.multi.dirty = true
		c.refuse(name, reason)
		return
	}
	switch name {
	case "client":
		c.s.stats.local.Add(1)
		c.multi.queued = append(c.multi.queued, req)
		c.multi.local = append(c.multi.local, true)
		c.reply([]byte("+QUEUED\r\n"))
		return
	case "select":
		if _, err := strconv.Atoi(safeArg(req, 1)); err != nil || len(req) != 2 {
			break // refused below, as the region would
		}
		c.multi.selects = true
		c.s.stats.local.Add(1)
		c.multi.queued = append(c.multi.queued, req)
		c.multi.local = append(c.multi.local, false)
		c.reply([]byte("+QUEUED\r\n"))
		return
	}
	if _, ok := handlers[name]; ok {
		c.multi.dirty = true
		c.s.stats.refused.Add(1)
		c.writeError("ERR geofailover proxy: " + name + " is not allowed inside MULTI here")
		return
	}
	if msg := c.s.checkCommand(c.ctx, name, req); msg != "" {
		c.multi.dirty = true
		c.s.stats.local.Add(1)
		c.writeError(msg)
		return
	}
	c.s.stats.local.Add(1)
	c.multi.queued = append(c.multi.queued, req)
	c.multi.local = append(c.multi.local, false)
	c.reply([]byte("+QUEUED\r\n"))
}

func safeArg(req request, i int) string {
	if i < len(req) {
		return req[i]
	}
	return ""
}

// checkCommand returns the error Redis gives, while queueing a
// transaction, for an unknown command or a wrong number of arguments
// (their arity from the regions' COMMAND table, read once), or "".
func (s *Server) checkCommand(ctx context.Context, name string, req request) string {
	table := s.commands.Load()
	if table == nil {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		infos, err := s.client.Command(cctx).Result()
		if err != nil {
			return "" // the region will say, at EXEC
		}
		t := make(map[string]int, len(infos))
		for n, info := range infos {
			t[strings.ToLower(n)] = int(info.Arity)
		}
		s.commands.Store(&t)
		table = &t
	}
	arity, ok := (*table)[name]
	switch {
	case !ok:
		var args strings.Builder
		for _, a := range req[1:] {
			if args.Len() >= 128 {
				break
			}
			fmt.Fprintf(&args, "'%.*s' ", 128-args.Len(), a)
		}
		return fmt.Sprintf("ERR unknown command '%.128s', with args beginning with: %s", req[0], args.String())
	case arity > 0 && len(req) != arity, arity < 0 && len(req) < -arity:
		return fmt.Sprintf("ERR wrong number of arguments for '%s' command", name)
	}
	return ""
}

func (c *conn) discard(req request) {
	c.s.stats.local.Add(1)
	if c.multi == nil {
		c.writeError("ERR DISCARD without MULTI")
		return
	}
	c.multi = nil
	c.endWatch()
	c.writeOK()
}

func (c *conn) execCmd(req request) {
	if c.multi == nil {
		c.s.stats.local.Add(1)
		c.writeError("ERR EXEC without MULTI")
		return
	}
	m := c.multi
	c.multi = nil
	if m.dirty {
		c.s.stats.local.Add(1)
		c.endWatch()
		c.writeError("EXECABORT Transaction discarded because of previous errors.")
		return
	}
	var cmds []*rawcmd.Cmd // the commands for the region
	for i, q := range m.queued {
		if !m.local[i] {
			cmds = append(cmds, newCmd(c.ctx, q))
		}
	}
	var err error
	if w := c.watch; w != nil {
		if derr := w.do(func(tx *redis.Tx) {
			_, err = tx.TxPipelined(c.ctx, func(p redis.Pipeliner) error {
				c.queueSelecting(p, cmds, m.selects)
				return nil
			})
		}); derr != nil {
			err = derr
		}
		c.endWatch()
	} else if len(cmds) > 0 {
		p := c.s.client.TxPipeline()
		c.queueSelecting(p, cmds, m.selects)
		_, err = p.Exec(c.ctx)
	}
	c.writeExec(m, cmds, err)
}

// writeExec writes EXEC's reply: each command's reply (the region's, or
// for CLIENT commands the proxy's, in order), or the null reply when the
// transaction was not run because watched keys changed (or traffic moved),
// or the error that kept it from running.
func (c *conn) writeExec(m *multiState, cmds []*rawcmd.Cmd, err error) {
	answered := true
	for _, cmd := range cmds {
		e := cmd.Err()
		answered = answered && (e == nil || errors.As(e, new(*rawcmd.ReplyError)) && len(cmd.Val()) > 0)
	}
	switch {
	case answered:
		c.s.stats.forwarded.Add(1)
		if c.suppressed() {
			return
		}
		c.wmu.Lock()
		c.out = resp.AppendLen(c.out, '*', len(m.queued))
		c.wmu.Unlock()
		next := 0
		for i, q := range m.queued {
			if m.local[i] {
				c.clientCmd(q)
				continue
			}
			cmd := cmds[next]
			next++
			c.appendRaw(q, cmd.Val())
			if lower(q[0]) == "select" && cmd.Err() == nil {
				c.db, _ = strconv.Atoi(q[1])
			}
		}
	case errors.Is(err, redis.TxFailedErr):
		c.s.stats.forwarded.Add(1)
		c.writeNull(true)
	case isReplyErr(err):
		c.s.stats.forwarded.Add(1)
		c.writeError(err.Error())
	default:
		c.s.stats.failed.Add(1)
		c.writeError(engineErrorReply("exec", err))
	}
}

// watchSession holds a WATCH transaction of the engine open between a
// client's requests: a goroutine runs Client.Watch, and its callback runs
// the connection's commands on the transaction's connection until the
// session ends.
type watchSession struct {
	work chan func(*redis.Tx)
	done chan error // Watch's result, when the session has ended
	err  error      // set once done has been received
}

func (c *conn) watchCmd(req request) {
	c.s.stats.local.Add(1)
	switch {
	case len(req) < 2:
		c.writeError("ERR wrong number of arguments for 'watch' command")
		return
	case c.multi != nil:
		c.writeError("ERR WATCH inside MULTI is not allowed")
		return
	}
	keys := req[1:]
	if c.watch == nil {
		if err := c.startWatch(); err != nil {
			c.writeEngineOrReplyError("watch", err)
			return
		}
	}
	var err error
	if derr := c.watch.do(func(tx *redis.Tx) { err = tx.Watch(c.ctx, keys...).Err() }); derr != nil {
		err = derr
	}
	if err != nil {
		c.endWatch()
		c.writeEngineOrReplyError("watch", err)
		return
	}
	c.writeOK()
}

// startWatch opens a session on the active region, on the connection's
// database.
func (c *conn) startWatch() error {
	w := &watchSession{work: make(chan func(*redis.Tx)), done: make(chan error, 1)}
	ready := make(chan error, 1)
	db, base := c.db, c.s.opts.DB
	ctx := c.ctx
	go func() {
		w.done <- c.s.client.Watch(ctx, func(tx *redis.Tx) error {
			if db != base {
				if err := tx.Select(ctx, db).Err(); err != nil {
					ready <- err
					return err
				}
				defer func() {
					// Back to the members' database before the
					// connection returns to the pool, even if the
					// client has gone (a failure here is the
					// connection's, and go-redis drops it).
					rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
					defer cancel()
					tx.Select(rctx, base)
				}()
			}
			ready <- nil
			for f := range w.work {
				f(tx)
			}
			return nil
		})
	}()
	select {
	case err := <-ready:
		if err != nil {
			<-w.done
			return err
		}
		c.watch = w
		return nil
	case err := <-w.done:
		return err
	}
}

// do runs f on the session's transaction, or returns why the session has
// ended.
func (w *watchSession) do(f func(*redis.Tx)) error {
	ran := make(chan struct{})
	select {
	case w.work <- func(tx *redis.Tx) { f(tx); close(ran) }:
		<-ran
		return nil
	case err := <-w.done:
		w.err = err
		if err == nil {
			err = errors.New("geofailover proxy: the WATCH session ended")
		}
		close(w.work)
		w.work = nil
		return err
	}
}

// forward runs an ordinary request on the session's connection.
func (w *watchSession) forward(c *conn, req request) {
	cmd := newCmd(c.ctx, req)
	name := lower(req[0])
	err := w.do(func(tx *redis.Tx) {
		if blocking(name, req) {
			stop := c.watchGone()
			defer stop()
		}
		_ = tx.Process(c.ctx, cmd)
	})
	if err != nil {
		cmd.SetErr(err)
	}
	c.writeResult(req, cmd)
}

// unwatch: UNWATCH ends the session.
func (c *conn) unwatch(req request) {
	c.s.stats.local.Add(1)
	c.endWatch()
	c.writeOK()
}

// endWatch ends the WATCH session, if any: its connection unwatches and
// goes back to the region's pool.
func (c *conn) endWatch() {
	w := c.watch
	if w == nil {
		return
	}
	c.watch = nil
	if w.work != nil {
		close(w.work)
		<-w.done
	}
}

// writeEngineOrReplyError writes err as a server's error reply, or as the
// engine's failure to get one.
func (c *conn) writeEngineOrReplyError(name string, err error) {
	if isReplyErr(err) {
		c.writeError(err.Error())
		return
	}
	c.s.stats.failed.Add(1)
	c.writeError(engineErrorReply(name, err))
}
