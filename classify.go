package geofailover

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/internal/cmdtable"
)

// DefaultIsEndpointFailure is the one rule for what counts against an
// endpoint's breaker (docs/rules.md: "What counts as a failure"). Errors that say
// nothing about the endpoint's health do not count: redis.Nil, ordinary
// server replies such as WRONGTYPE, syntax errors or NOSCRIPT, errors
// go-redis raises on the client side without asking the server (a bad
// argument, a command refused because client-side caching is on, a client
// that was closed), and the caller's own cancellation (a context that ended
// before the command was sent never counts, whatever IsEndpointFailure
// says). Transport errors (dial, EOF, reset, timeouts), an exhausted pool,
// and the server replies LOADING, MASTERDOWN, READONLY, CLUSTERDOWN,
// TRYAGAIN, NOAUTH, WRONGPASS and "max number of clients reached" do count.
//
// Replace it with Options.IsEndpointFailure; a replacement may call this one.
func DefaultIsEndpointFailure(err error) bool {
	switch {
	case err == nil, errors.Is(err, redis.Nil), errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrNoHealthyEndpoint), errors.Is(err, ErrEndpointChanged),
		errors.As(err, new(*memberReplacedError)):
		return false // our own verdicts and doings, not an endpoint's answer
	}
	if isReply(err) {
		return isRefusingReply(err)
	}
	return !isClientSide(err)
}

// isClientSide reports an error that go-redis raised without the server's
// part: a closed client (ours, replaced at a switch, or the app's), or one
// of its "redis: ..." refusals of a command or an argument. Such an error
// says nothing about the endpoint, and sending the command elsewhere would
// meet it again. go-redis's few messages that do report an endpoint it
// cannot reach or understand (clientSideEndpointErrors) are not this.
func isClientSide(err error) bool {
	if errors.Is(err, redis.ErrClosed) {
		return true
	}
	if isTransportError(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return false
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return false
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "redis: ") {
		return false
	}
	for _, prefix := range clientSideEndpointErrors {
		if strings.HasPrefix(msg, prefix) {
			return false
		}
	}
	return true
}

// clientSideEndpointErrors are go-redis errors (not server replies) that
// do say the endpoint cannot serve: no node or sentinel could be reached,
// or what it sent could not be read.
var clientSideEndpointErrors = []string{
	"redis: cluster has no nodes", "redis: all sentinels", "redis: all ring shards are down",
	"redis: can't parse", "redis: connection unusable", "redis: invalid reply",
}

// isReply reports an error that is a server's reply (not the connection's).
func isReply(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && !isTransportError(err)
}

// isRefusingReply reports a server reply that refuses to run the command
// because the endpoint cannot serve (endpointFailureReplies). It is the one
// place that reads the list: such a reply both counts against the endpoint
// and proves the command was not run.
func isRefusingReply(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, prefix := range endpointFailureReplies {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// endpointFailureReplies are the server replies that mean the endpoint
// itself cannot serve, rather than that the command was wrong.
var endpointFailureReplies = []string{
	"LOADING", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN",
	"NOAUTH", "WRONGPASS", "ERR max number of clients reached",
}

// isTransportError reports errors that come from the connection rather than
// from a server reply. (go-redis marks some pool errors as redis.Error.)
func isTransportError(err error) bool {
	var nerr net.Error
	return errors.As(err, &nerr) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted)
}

// isUnsent reports whether err proves that the command never reached the
// server, so sending it elsewhere cannot apply it twice: a failed dial, a
// closed pool, no connection available in the pool, or a blocking command
// whose endpoint traffic had left (errInterrupted).
func isUnsent(err error) bool {
	if errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) ||
		errors.Is(err, errInterrupted) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// callerGaveUp reports an error that is the caller's own context ending
// (cancelled, or its deadline passed) rather than anything the endpoint did.
// go-redis returns ctx.Err() itself when the context is done before a
// connection is taken, so such a command never reached the server: with a
// spent deadline, a service under overload would otherwise trip the
// breakers of healthy endpoints. A socket timeout (the server did not
// answer within the deadline) is not this. It runs on the error path only.
func callerGaveUp(ctx context.Context, err error) bool {
	cerr := ctx.Err()
	return cerr != nil && errors.Is(err, cerr)
}

// provenDown reports a failure that proves the endpoint cannot serve now
// (refused, reset, closed, a refusing reply such as LOADING), as opposed
// to a timeout, which may only mean it is slow or paused. An endpoint
// whose failures are timeouts keeps traffic when no other can take it.
func provenDown(err error) bool {
	return err != nil && !isTimeout(err)
}

// isTimeout reports a deadline error, from the socket or from a context.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout()
}

// failure says what a failed attempt proves about where its command went.
type failure int

const (
	// failNone: not a failure to retry: success, an answer from the server
	// (redis.Nil, a reply error), or the caller's own cancellation.
	failNone failure = iota
	// failUnsent: the command was not executed: it never reached the server
	// (failed dial, closed or exhausted pool), or the server refused it
	// without running it (LOADING, READONLY, MASTERDOWN, ...). Safe to send
	// anywhere.
	failUnsent
	// failAmbiguous: the command was sent and its answer was lost (timeout,
	// EOF or reset mid-reply): it may have been applied.
	failAmbiguous
)

// failureOf classifies err for the replay rules (docs/rules.md: "What happens to
// each kind of command during a switch"). It is the one
// place that decides whether a failed command may have been applied.
func failureOf(err error) failure {
	var cif *closedInFlightError
	switch {
	case errors.As(err, &cif):
		return failNone // the Client is closing: nowhere to go
	case errors.As(err, new(*memberReplacedError)):
		return failAmbiguous // it may have reached the server
	case err == nil, errors.Is(err, redis.Nil),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrNoHealthyEndpoint):
		return failNone
	case errors.Is(err, ErrEndpointChanged):
		return failAmbiguous // a blocking command interrupted by a switch
	case isUnsent(err):
		return failUnsent
	}
	if isReply(err) {
		if isRefusingReply(err) {
			return failUnsent // refused, not run
		}
		return failNone
	}
	if isClientSide(err) {
		return failNone // refused by go-redis, not sent; it would be refused anywhere
	}
	return failAmbiguous
}

// pipelineFailure is failureOf for a batch: unsent if the batch never
// reached the server, ambiguous if any command in it lost its answer.
func pipelineFailure(cmds []redis.Cmder, err error) failure {
	f := failureOf(err)
	if f != failNone {
		return f
	}
	for _, cmd := range cmds {
		if failureOf(cmd.Err()) == failAmbiguous {
			return failAmbiguous
		}
	}
	return failNone
}

// replayable reports whether cmd may be sent again after an attempt that
// may have applied it: Redis flags it read-only, or running it twice is
// harmless (PING, ECHO, INFO...; cmdtable.Harmless), and it is not waiting
// in a blocking call; or the caller opted in (Options.ReplayWrites,
// AllowReplay). A command the table does not know counts as a write.
func (c *Client) replayable(ctx context.Context, cmd redis.Cmder) bool {
	if c.cfg.ReplayWrites || replayAllowed(ctx) {
		return true
	}
	f := commandFlags(cmd)
	return f&(cmdtable.ReadOnly|cmdtable.Harmless) != 0 && (f&cmdtable.Blocking == 0 || !isBlocking(cmd))
}

// connectionDied reports a failure that says the connection was closed
// under the command (EOF, a reset, a broken pipe), rather than that the
// server was slow (a timeout) or unreachable (a failed dial). On a server
// that is up, it is most often a connection the server closed while it sat
// in the pool (QUIT, its timeout, CLIENT KILL) in the moment before the
// command was written on it: go-redis would send the command again on a
// fresh connection, and so do we, on the same endpoint when there is
// nowhere else to go (retryTarget).
func connectionDied(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		var op *net.OpError
		return !(errors.As(err, &op) && op.Op == "dial")
	}
	return false
}

// commandFlags looks cmd up in the generated command table, subcommand
// included ("object encoding" is "object|encoding").
func commandFlags(cmd redis.Cmder) cmdtable.Flags {
	name := cmd.Name()
	f := cmdtable.Lookup(name)
	if f&cmdtable.Container != 0 {
		if args := cmd.Args(); len(args) > 1 {
			if sub, ok := args[1].(string); ok {
				return cmdtable.Lookup(name + "|" + strings.ToLower(sub))
			}
		}
	}
	return f
}

type replayKey struct{}

// AllowReplay returns a context under which a command that may have reached
// a failed endpoint (a timeout or EOF after it was sent) may be sent again to
// another endpoint even though it is a write or a blocking command. Use it
// for writes that are idempotent (SET to a fixed value, HSET, DEL) when an
// error costs more than a second application. See also Options.ReplayWrites.
func AllowReplay(ctx context.Context) context.Context {
	return context.WithValue(ctx, replayKey{}, true)
}

func replayAllowed(ctx context.Context) bool {
	v, _ := ctx.Value(replayKey{}).(bool)
	return v
}

// isBlocking reports commands that may legitimately wait a long time for a
// reply: those the command table flags blocking, except XREAD and
// XREADGROUP without a BLOCK argument. They are exempt from slow-call and
// stall detection. It runs on the hot path, so it tests the first byte
// before anything that may allocate.
func isBlocking(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) == 0 {
		return false
	}
	first, _ := args[0].(string)
	if first == "" || !cmdtable.MayBlock(first[0]) {
		return false // most commands stop here
	}
	name := cmd.Name()
	if cmdtable.Lookup(name)&cmdtable.Blocking == 0 {
		return false
	}
	if name == "xread" || name == "xreadgroup" {
		for _, a := range args[1:] {
			if s, ok := a.(string); ok && strings.EqualFold(s, "block") {
				return true
			}
		}
		return false
	}
	return true
}
