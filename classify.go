package geofailover

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// DefaultIsEndpointFailure is the one rule for what counts against an
// endpoint's breaker (SPEC §4). Errors that say nothing about the endpoint's
// health do not count: redis.Nil, ordinary server replies such as WRONGTYPE,
// syntax errors or NOSCRIPT, and the caller's own cancellation. Transport
// errors (dial, EOF, reset, timeouts), a closed or exhausted pool, and the
// server replies LOADING, MASTERDOWN, READONLY, CLUSTERDOWN, TRYAGAIN,
// NOAUTH, WRONGPASS and "max number of clients reached" do count.
//
// Replace it with Options.IsEndpointFailure; a replacement may call this one.
func DefaultIsEndpointFailure(err error) bool {
	switch {
	case err == nil, errors.Is(err, redis.Nil), errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrNoHealthyEndpoint), errors.Is(err, ErrClosed):
		return false // our own verdicts, not an endpoint's answer
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !isTransportError(err) {
		msg := rerr.Error()
		for _, prefix := range endpointFailureReplies {
			if strings.HasPrefix(msg, prefix) {
				return true
			}
		}
		return false
	}
	return true
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
// closed pool, or no connection available in the pool.
func isUnsent(err error) bool {
	if errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// isTimeout reports a deadline error, from the socket or from a context.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout()
}

// isBlocking reports commands that may legitimately wait a long time for a
// reply: they are exempt from slow-call and stall detection. It runs on the
// hot path, so it looks at the first byte before comparing names.
func isBlocking(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) == 0 {
		return false
	}
	first, _ := args[0].(string)
	if first == "" {
		return false
	}
	switch first[0] | 0x20 { // ASCII lower case
	case 'b', 'w', 'x':
	default:
		return false // most commands stop here, before Name() may allocate
	}
	name := cmd.Name()
	switch name[0] {
	case 'b':
		switch name {
		case "blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop":
			return true
		}
	case 'w':
		return name == "wait" || name == "waitaof"
	case 'x':
		if name == "xread" || name == "xreadgroup" {
			for _, a := range cmd.Args()[1:] {
				if s, ok := a.(string); ok && (s == "block" || s == "BLOCK") {
					return true
				}
			}
		}
	}
	return false
}
