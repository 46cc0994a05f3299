package geofailover

import (
	"context"
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
		{redis.ErrClosed, true},
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
