package proxy

import (
	"context"

	"github.com/geofailover/geofailover/internal/rawcmd"
	"github.com/geofailover/geofailover/internal/resp"
	"strconv"
	"strings"
	"time"
)

// handlers are the commands the proxy answers or handles itself; every
// other command goes to the engine.
var handlers map[string]func(*conn, request)

func init() {
	handlers = map[string]func(*conn, request){
		"auth": (*conn).auth, "hello": (*conn).hello, "select": (*conn).selectDB,
		"client": (*conn).clientCmd, "quit": (*conn).quitCmd, "reset": (*conn).reset,
		"multi": (*conn).multiCmd, "exec": (*conn).execCmd, "discard": (*conn).discard,
		"watch": (*conn).watchCmd, "unwatch": (*conn).unwatch,
		"subscribe": (*conn).subscribeCmd, "psubscribe": (*conn).subscribeCmd, "ssubscribe": (*conn).subscribeCmd,
		"unsubscribe": (*conn).unsubscribeCmd, "punsubscribe": (*conn).unsubscribeCmd, "sunsubscribe": (*conn).unsubscribeCmd,
	}
}

// refusals are the commands that cannot be proxied honestly, with why. Each
// is answered "-ERR geofailover proxy: NAME is refused: reason".
var refusals = map[string]string{
	"monitor":   "it would show one region's traffic from all its clients, not yours; run MONITOR on a region directly",
	"sync":      "replication is between regions' servers, not through the proxy",
	"psync":     "replication is between regions' servers, not through the proxy",
	"replicaof": "the proxy cannot change a region's replication; do it on the region",
	"slaveof":   "the proxy cannot change a region's replication; do it on the region",
	"failover":  "the proxy fails over between regions itself; run FAILOVER on a region directly",
	"shutdown":  "the proxy will not shut a region down; run SHUTDOWN on the region directly",
	"debug":     "DEBUG acts on one region's server; run it on the region directly",
	"cluster":   "a region is shown as one standalone server (a Cluster region's keys are routed by the proxy)",
	"readonly":  "a region is shown as one standalone server, not a cluster node",
	"readwrite": "a region is shown as one standalone server, not a cluster node",
	"asking":    "a region is shown as one standalone server, not a cluster node",
}

// clientRefusals are the CLIENT subcommands refused, with why.
var clientRefusals = map[string]string{
	"tracking":     "client-side caching invalidations are not carried across a switch of region",
	"caching":      "client-side caching invalidations are not carried across a switch of region",
	"trackinginfo": "client-side caching invalidations are not carried across a switch of region",
	"getredir":     "client-side caching invalidations are not carried across a switch of region",
	"kill":         "the proxy's clients share its connections to the regions; close your connection instead",
	"pause":        "CLIENT PAUSE acts on one region's server; run it on the region directly",
	"unpause":      "CLIENT UNPAUSE acts on one region's server; run it on the region directly",
	"unblock":      "the proxy's clients share its connections to the regions; CLIENT UNBLOCK cannot name yours",
	"no-evict":     "it would apply to the proxy's connection to a region, shared with other clients",
	"no-touch":     "it would apply to the proxy's connection to a region, shared with other clients",
}

func (c *conn) refuse(name, reason string) {
	c.s.stats.refused.Add(1)
	c.writeError("ERR geofailover proxy: " + strings.ToUpper(name) + " is refused: " + reason)
}

// dispatch answers one request that is not ordinary (see conn.ordinary).
func (c *conn) dispatch(req request) {
	name := lower(req[0])
	c.lastCmd.Store(&name)
	defer c.publishInfo()
	switch {
	case !c.authed && name != "auth" && name != "hello" && name != "quit" && name != "reset":
		c.writeError("NOAUTH Authentication required.")
		return
	case c.multi != nil && !txControl[name]:
		c.queueInMulti(name, req)
		return
	case c.proto == 2 && !subscribedAllowed[name] && c.subscribed():
		c.writeError("ERR Can't execute '" + name + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
		return
	}
	if reason, ok := refusals[name]; ok {
		c.refuse(name, reason)
		return
	}
	if h, ok := handlers[name]; ok {
		h(c, req)
		return
	}
	if name == "ping" && c.proto == 2 && c.subscribed() {
		c.subscribedPing(req)
		return
	}
	if c.watch != nil {
		c.watch.forward(c, req)
		return
	}
	if isScan(name) {
		c.scan(req)
		return
	}
	var cmd *rawcmd.Cmd
	if blocking(name, req) {
		cmd = c.runBlocking(req)
	} else {
		cmd = newCmd(c.ctx, req)
		if !c.run(singleCmd(cmd)) {
			return
		}
	}
	c.writeResult(req, cmd)
}

var subscribedAllowed = map[string]bool{
	"subscribe": true, "psubscribe": true, "ssubscribe": true,
	"unsubscribe": true, "punsubscribe": true, "sunsubscribe": true,
	"ping": true, "quit": true, "reset": true,
}

// auth: AUTH password, or AUTH default password.
func (c *conn) auth(req request) {
	c.s.stats.local.Add(1)
	switch len(req) {
	case 2, 3:
	default:
		c.writeError("ERR wrong number of arguments for 'auth' command")
		return
	}
	if c.s.opts.Password == "" {
		switch {
		case len(req) == 2:
			c.writeError("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		case req[1] == "default": // a user without password takes any
			c.writeOK()
		default:
			c.writeError("WRONGPASS invalid username-password pair or user is disabled.")
		}
		return
	}
	user, pass := "default", req[len(req)-1]
	if len(req) == 3 {
		user = req[1]
	}
	if !c.checkPassword(user, pass) {
		return
	}
	c.writeOK()
}

// checkPassword authenticates the connection, or writes -WRONGPASS.
func (c *conn) checkPassword(user, pass string) bool {
	if user != "default" || pass != c.s.opts.Password {
		c.writeError("WRONGPASS invalid username-password pair or user is disabled.")
		return false
	}
	c.authed = true
	return true
}

// hello: HELLO [protover [AUTH username password] [SETNAME clientname]].
func (c *conn) hello(req request) {
	c.s.stats.local.Add(1)
	proto := c.proto
	if len(req) > 1 {
		v, err := strconv.Atoi(req[1])
		if err != nil {
			c.writeError("ERR Protocol version is not an integer or out of range")
			return
		}
		if v < 2 || v > 3 || v == 3 && c.s.opts.Protocol == 2 {
			c.writeError("NOPROTO unsupported protocol version")
			return
		}
		proto = v
	}
	var user, pass, name string
	auth, setName := false, false
	for i := 2; i < len(req); i++ {
		switch opt := lower(req[i]); {
		case opt == "auth" && i+2 < len(req):
			user, pass, auth = req[i+1], req[i+2], true
			i += 2
		case opt == "setname" && i+1 < len(req):
			name, setName = req[i+1], true
			i++
		default:
			c.writeError("ERR Syntax error in HELLO option '" + req[i] + "'")
			return
		}
	}
	if auth {
		if c.s.opts.Password == "" {
			if user != "default" {
				c.writeError("WRONGPASS invalid username-password pair or user is disabled.")
				return
			}
			// Redis accepts any password for the default user when it
			// has none ("nopass").
		} else if !c.checkPassword(user, pass) {
			return
		}
	}
	if !c.authed {
		c.writeError("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if setName {
		if !validName(name) {
			c.writeError("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.name = name
	}
	c.setProto(proto)
	fields := []struct {
		k string
		v any
	}{
		{"server", "redis"}, {"version", c.s.serverVersion(c.ctx)}, {"proto", int64(proto)}, {"id", c.id},
		{"mode", "standalone"}, {"role", "master"}, {"modules", []string(nil)},
	}
	var b []byte
	if proto == 3 {
		b = resp.AppendLen(b, '%', len(fields))
	} else {
		b = resp.AppendLen(b, '*', 2*len(fields))
	}
	for _, f := range fields {
		b = resp.AppendBulk(b, f.k)
		switch v := f.v.(type) {
		case string:
			b = resp.AppendBulk(b, v)
		case int64:
			b = resp.AppendInt(b, v)
		case []string:
			b = resp.AppendLen(b, '*', len(v))
		}
	}
	c.reply(b)
}

// serverVersion is the Redis version HELLO reports: the active region's,
// asked once, or "7.0.0" while none answers.
func (s *Server) serverVersion(ctx context.Context) string {
	if v := s.version.Load(); v != nil {
		return *v
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := s.client.Info(ctx, "server").Result()
	if err != nil {
		return "7.0.0"
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			s.version.Store(&v)
			return v
		}
	}
	return "7.0.0"
}

func validName(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] < '!' || name[i] > '~' {
			return false
		}
	}
	return true
}

// selectDB: SELECT index. The database is checked on the active region
// (a Cluster region has only 0) and kept for this connection: its commands
// run there, between SELECTs, on the shared connections to the region.
func (c *conn) selectDB(req request) {
	if len(req) != 2 {
		c.writeError("ERR wrong number of arguments for 'select' command")
		return
	}
	db, err := strconv.Atoi(req[1])
	if err != nil {
		c.writeError("ERR value is not an integer or out of range")
		return
	}
	if db < 0 {
		c.writeError("ERR DB index is out of range")
		return
	}
	if db != c.s.opts.DB {
		pipe := c.s.client.Pipeline()
		sel := pipe.Select(c.ctx, db)
		pipe.Select(c.ctx, c.s.opts.DB)
		_, _ = pipe.Exec(c.ctx)
		if err := sel.Err(); err != nil {
			c.s.stats.failed.Add(1)
			if isReplyErr(err) {
				c.writeError(err.Error())
			} else {
				c.writeError(engineErrorReply("select", err))
			}
			return
		}
	}
	c.s.stats.local.Add(1)
	c.db = db
	c.writeOK()
}

func (c *conn) quitCmd(request) {
	c.s.stats.local.Add(1)
	c.replyMode = replyOn
	c.writeOK()
	c.quit = true
}

// reset: RESET, as Redis: leave MULTI, WATCH and subscribed mode, back to
// RESP2, the default database, no name, replies on, and (with a password)
// not authenticated.
func (c *conn) reset(request) {
	c.s.stats.local.Add(1)
	c.multi = nil
	c.endWatch()
	c.endSubscription()
	c.db, c.name, c.replyMode = c.s.opts.DB, "", replyOn
	c.setProto(2)
	c.authed = c.s.opts.Password == ""
	c.reply([]byte("+RESET\r\n"))
}

// clientCmd: the CLIENT subcommands a connection can use here.
func (c *conn) clientCmd(req request) {
	if len(req) < 2 {
		c.writeError("ERR wrong number of arguments for 'client' command")
		return
	}
	sub := lower(req[1])
	if reason, ok := clientRefusals[sub]; ok {
		c.refuse("client "+sub, reason)
		return
	}
	c.s.stats.local.Add(1)
	switch {
	case sub == "id" && len(req) == 2:
		c.reply(resp.AppendInt(nil, c.id))
	case sub == "getname" && len(req) == 2:
		if c.name == "" {
			c.writeNull(false)
		} else {
			c.reply(resp.AppendBulk(nil, c.name))
		}
	case sub == "setname" && len(req) == 3:
		if !validName(req[2]) {
			c.writeError("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.name = req[2]
		c.writeOK()
	case sub == "setinfo" && len(req) == 4:
		switch lower(req[2]) {
		case "lib-name":
			c.libName = req[3]
		case "lib-ver":
			c.libVer = req[3]
		default:
			c.writeError("ERR Unrecognized option '" + req[2] + "'")
			return
		}
		c.writeOK()
	case sub == "info" && len(req) == 2:
		c.publishInfo()
		c.replyVerbatim(c.appendInfo(nil))
	case sub == "list":
		c.publishInfo()
		c.replyVerbatim(c.s.clientList())
	case sub == "reply" && len(req) == 3:
		switch lower(req[2]) {
		case "on":
			c.replyMode = replyOn
			c.writeOK()
		case "off":
			c.replyMode = replyOff
		case "skip": // no reply to this command, nor to the next
			c.replyMode = replySkip
		default:
			c.writeError("ERR syntax error")
		}
	case sub == "help":
		lines := []string{
			"CLIENT <subcommand> (geofailover proxy). Subcommands:",
			"ID, GETNAME, SETNAME <name>, SETINFO <LIB-NAME|LIB-VER> <value>, INFO, LIST, REPLY <ON|OFF|SKIP>, HELP",
		}
		b := resp.AppendLen(nil, '*', len(lines))
		for _, l := range lines {
			b = resp.AppendSimple(b, '+', l)
		}
		c.reply(b)
	default:
		c.writeError("ERR unknown subcommand or wrong number of arguments for '" + req[1] + "'. Try CLIENT HELP.")
	}
}

// replyVerbatim writes text as Redis writes CLIENT INFO and LIST: a
// verbatim string in RESP3, a bulk string in RESP2.
func (c *conn) replyVerbatim(text []byte) {
	if c.proto == 3 {
		b := resp.AppendLen(nil, '=', len(text)+4)
		b = append(b, "txt:"...)
		b = append(b, text...)
		c.reply(append(b, crlf...))
		return
	}
	c.reply(resp.AppendBulk(nil, text))
}
