package geofailover

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestErrorsUnwrapHonestly: an error says only what happened to the command
// that got it. A fail-fast error carries the endpoints' last errors for
// reading, but is not itself a timeout or a refused dial; a blocking command
// interrupted by a switch is not "client closed" although the interruption
// closed the connection it waited on.
func TestErrorsUnwrapHonestly(t *testing.T) {
	allDown := error(&NoHealthyEndpointError{LastErrors: map[string]error{
		"east": context.DeadlineExceeded,
		"west": &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("refused")},
	}})
	if !errors.Is(allDown, ErrNoHealthyEndpoint) {
		t.Error("a NoHealthyEndpointError is not ErrNoHealthyEndpoint")
	}
	if errors.Is(allDown, context.DeadlineExceeded) {
		t.Error("a fail-fast error, where nothing was sent, claims a deadline was exceeded")
	}
	var nerr net.Error
	if errors.As(allDown, &nerr) {
		t.Error("a fail-fast error claims to be a network error")
	}

	interrupted := error(&EndpointChangedError{Op: "blpop", From: "east", To: "west", sent: true})
	if !errors.Is(interrupted, ErrEndpointChanged) {
		t.Error("an interrupted blocking command is not ErrEndpointChanged")
	}
	if errors.Is(interrupted, ErrClosed) || errors.Is(interrupted, net.ErrClosed) {
		t.Error("an interrupted blocking command claims a closed client or connection")
	}
	if NotApplied(interrupted) {
		t.Error("an interrupted blocking command, which was sent, is reported not applied")
	}
	if !NotApplied(&EndpointChangedError{Op: "EXEC", tx: true}) || !errors.Is(&EndpointChangedError{Op: "EXEC", tx: true}, redis.TxFailedErr) {
		t.Error("a Watch transaction not sent is not reported as such")
	}

	// A blocking command that traffic left before it was sent is unsent:
	// retried elsewhere, and not dressed up as a network error.
	if failureOf(errInterrupted) != failUnsent {
		t.Errorf("failureOf(errInterrupted) = %v, want unsent", failureOf(errInterrupted))
	}
	if errors.As(errInterrupted, &nerr) {
		t.Error("errInterrupted claims to be a network error")
	}
}

// A command whose endpoint's client we closed under it (a cluster client
// then says redis.ErrClosed) may have reached the server: not NotApplied,
// replayed only as a lost answer, counted against no endpoint.
func TestMemberReplacedError(t *testing.T) {
	err := error(&memberReplacedError{op: "get", cause: redis.ErrClosed})
	if NotApplied(err) || failureOf(err) != failAmbiguous || DefaultIsEndpointFailure(err) || errors.Is(err, ErrClosed) {
		t.Errorf("memberReplacedError: NotApplied %v, failureOf %v, counts %v, is ErrClosed %v",
			NotApplied(err), failureOf(err), DefaultIsEndpointFailure(err), errors.Is(err, ErrClosed))
	}
}
