package geofailover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestDefaultIsEndpointFailure(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{context.Canceled, false},
		{fmt.Errorf("wrapped: %w", context.Canceled), false},
		{redis.ErrClosed, false}, // a client closed on our side
		{errors.New("redis: HELLO with arguments is not allowed when client-side caching is enabled"), false},
		{errors.New("redis: invalid bitcount index"), false},
		{fmt.Errorf("redis: can't parse %q", "x"), true},
		{errors.New("redis: cluster has no nodes"), true},
		{errors.New("some other library's error"), true},
		{io.EOF, true},
		{dial, true},
		{context.DeadlineExceeded, true},
		{ErrNoHealthyEndpoint, false},
	}
	for _, tc := range cases {
		if got := DefaultIsEndpointFailure(tc.err); got != tc.want {
			t.Errorf("DefaultIsEndpointFailure(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if !isUnsent(dial) || isUnsent(io.EOF) || !isUnsent(fmt.Errorf("x: %w", redis.ErrPoolTimeout)) {
		t.Error("isUnsent misclassifies")
	}
	if isTimeout(io.EOF) || !isTimeout(context.DeadlineExceeded) {
		t.Error("isTimeout misclassifies")
	}
}

func TestIsBlocking(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		cmd  redis.Cmder
		want bool
	}{
		{redis.NewStringCmd(ctx, "get", "k"), false},
		{redis.NewStringSliceCmd(ctx, "blpop", "k", 0), true},
		{redis.NewCmd(ctx, "BLPOP", "k", 0), true},
		{redis.NewCmd(ctx, "bitcount", "k"), false},
		{redis.NewCmd(ctx, "wait", 1, 0), true},
		{redis.NewCmd(ctx, "xread", "block", 0, "streams", "s", "$"), true},
		{redis.NewCmd(ctx, "xread", "count", 1, "streams", "s", "$"), false},
		{redis.NewCmd(ctx, "XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "s", ">"), true},
	}
	for _, tc := range cases {
		if got := isBlocking(tc.cmd); got != tc.want {
			t.Errorf("isBlocking(%v) = %v, want %v", tc.cmd.Args(), got, tc.want)
		}
	}
}

func TestFailureOf(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	read := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	cases := []struct {
		err  error
		want failure
	}{
		{nil, failNone},
		{redis.Nil, failNone},
		{context.Canceled, failNone},
		{context.DeadlineExceeded, failNone}, // the caller's deadline: no time left anyway
		{proto("WRONGTYPE Operation against a key holding the wrong kind of value"), failNone},
		{proto("LOADING Redis is loading the dataset in memory"), failUnsent},
		{proto("READONLY You can't write against a read only replica."), failUnsent},
		{dial, failUnsent},
		{redis.ErrPoolTimeout, failUnsent},
		{redis.ErrClosed, failUnsent},
		{io.EOF, failAmbiguous},
		{read, failAmbiguous},
		{&EndpointChangedError{Op: "blpop"}, failAmbiguous},
		{ErrNoHealthyEndpoint, failNone},
	}
	for _, tc := range cases {
		if got := failureOf(tc.err); got != tc.want {
			t.Errorf("failureOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// proto makes a server error reply (a redis.Error, as go-redis returns it).
func proto(msg string) error { return redisError(msg) }

type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

func TestReplayable(t *testing.T) {
	ctx := context.Background()
	c := &Client{cfg: &config{}}
	cases := []struct {
		cmd  redis.Cmder
		want bool
	}{
		{redis.NewStringCmd(ctx, "get", "k"), true},
		{redis.NewCmd(ctx, "GET", "k"), true},
		{redis.NewCmd(ctx, "mget", "a", "b"), true},
		{redis.NewIntCmd(ctx, "incr", "k"), false},
		{redis.NewCmd(ctx, "set", "k", "v"), false},
		{redis.NewCmd(ctx, "eval", "return 1", 0), false},
		{redis.NewCmd(ctx, "eval_ro", "return 1", 0), true},
		{redis.NewCmd(ctx, "object", "encoding", "k"), true},
		{redis.NewCmd(ctx, "OBJECT", "FREQ", "k"), true},
		{redis.NewCmd(ctx, "client", "kill", "id", 1), false},
		{redis.NewCmd(ctx, "json.get", "k"), false}, // a module's command: a write
		{redis.NewCmd(ctx, "xread", "count", 1, "streams", "s", "0"), true},
		{redis.NewCmd(ctx, "xread", "block", 0, "streams", "s", "$"), false}, // blocking
		{redis.NewCmd(ctx, "blpop", "k", 0), false},
	}
	for _, tc := range cases {
		if got := c.replayable(ctx, tc.cmd); got != tc.want {
			t.Errorf("replayable(%v) = %v, want %v", tc.cmd.Args(), got, tc.want)
		}
		if !c.replayable(AllowReplay(ctx), tc.cmd) {
			t.Errorf("replayable(%v) under AllowReplay = false", tc.cmd.Args())
		}
	}
	c.cfg.ReplayWrites = true
	if !c.replayable(ctx, redis.NewIntCmd(ctx, "incr", "k")) {
		t.Error("ReplayWrites does not allow INCR")
	}
}

func TestPipelineFailure(t *testing.T) {
	ctx := context.Background()
	get, incr := redis.NewStringCmd(ctx, "get", "a"), redis.NewIntCmd(ctx, "incr", "b")
	get.SetErr(proto("WRONGTYPE x"))
	incr.SetErr(io.EOF)
	if got := pipelineFailure([]redis.Cmder{get, incr}, get.Err()); got != failAmbiguous {
		t.Errorf("a reply error then EOF: %v, want ambiguous", got)
	}
	incr.SetErr(nil)
	if got := pipelineFailure([]redis.Cmder{get, incr}, get.Err()); got != failNone {
		t.Errorf("a reply error only: %v, want none", got)
	}
}

func TestNotApplied(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{dial, true},
		{proto("LOADING x"), true},
		{&NoHealthyEndpointError{}, true},
		{ErrClosed, true},
		{&EndpointChangedError{Op: "EXEC"}, true},
		{&EndpointChangedError{Op: "blpop", sent: true}, false},
		{io.EOF, false},
		{context.DeadlineExceeded, false},
	} {
		if got := NotApplied(tc.err); got != tc.want {
			t.Errorf("NotApplied(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestConnectionDied(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	cases := []struct {
		err  error
		want bool
	}{
		{io.EOF, true},
		{fmt.Errorf("x: %w", io.ErrUnexpectedEOF), true},
		{reset, true},
		{&net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}, true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNRESET}, false},
		{context.DeadlineExceeded, false},
		{proto("ERR unknown command"), false},
		{redis.ErrClosed, false},
	}
	for _, tc := range cases {
		if got := connectionDied(tc.err); got != tc.want {
			t.Errorf("connectionDied(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	c := &Client{cfg: &config{}}
	ctx := context.Background()
	for cmd, want := range map[redis.Cmder]bool{
		redis.NewCmd(ctx, "ping"): true, redis.NewCmd(ctx, "echo", "x"): true, redis.NewCmd(ctx, "get", "k"): true,
		redis.NewCmd(ctx, "set", "k", "v"): false, redis.NewCmd(ctx, "eval", "return 1", 0): false,
		redis.NewCmd(ctx, "publish", "c", "m"): false, redis.NewCmd(ctx, "client", "kill", "id", 1): false,
		redis.NewCmd(ctx, "blpop", "l", 0): false, redis.NewCmd(ctx, "nosuchmodulecommand"): false,
	} {
		if got := c.replayable(ctx, cmd); got != want {
			t.Errorf("replayable(%v) = %v, want %v", cmd.Args(), got, want)
		}
	}
}
