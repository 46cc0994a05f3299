package geofailover

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoHealthyEndpoint is returned (wrapped in a *NoHealthyEndpointError)
// when no endpoint can take a command. Test for it with errors.Is.
var ErrNoHealthyEndpoint = errors.New("geofailover: no healthy endpoint")

// ErrClosed is returned by every operation on a closed Client. It is
// go-redis's own redis.ErrClosed ("redis: client is closed"), so code that
// checks for it keeps working unchanged.
var ErrClosed = redis.ErrClosed

// ErrUnknownEndpoint is returned by calls naming an endpoint the client does
// not have.
var ErrUnknownEndpoint = errors.New("geofailover: unknown endpoint")

// ErrEndpointUnhealthy is returned by SwitchTo when the target is not usable
// and Force was not given.
var ErrEndpointUnhealthy = errors.New("geofailover: endpoint is not healthy")

// ErrNotSupported is returned by the few go-redis entry points that cannot
// follow failover (AutoPipeline and its variants).
var ErrNotSupported = errors.New("geofailover: not supported")

// errAutoPipeline is what AutoPipeline and its variants return.
var errAutoPipeline = fmt.Errorf("%w: AutoPipeline would bypass failover; use Pipeline", ErrNotSupported)

// ErrEndpointChanged is returned when work bound to one endpoint cannot go
// on because the active endpoint changed: a Watch transaction whose EXEC
// would now go elsewhere, a SCAN cursor from another endpoint, or a blocking
// command interrupted by a switch. Nothing was sent to the new endpoint;
// starting the work again runs it there. Errors from Watch also satisfy
// errors.Is(err, redis.TxFailedErr), so optimistic-locking retry loops
// retry on the new endpoint without change.
var ErrEndpointChanged = errors.New("geofailover: active endpoint changed")

// NoHealthyEndpointError is the error commands get while every endpoint is
// down. It satisfies errors.Is(err, ErrNoHealthyEndpoint) and carries the
// last error seen on each endpoint, by endpoint name, to read; it does not
// unwrap to them (nothing was sent, so it is neither a timeout nor a
// network error itself).
type NoHealthyEndpointError struct {
	LastErrors map[string]error
}

func (e *NoHealthyEndpointError) Error() string {
	names := make([]string, 0, len(e.LastErrors))
	for n := range e.LastErrors {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(ErrNoHealthyEndpoint.Error())
	for i, n := range names {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %v", n, e.LastErrors[n])
	}
	return b.String()
}

// Is reports a match with ErrNoHealthyEndpoint.
func (e *NoHealthyEndpointError) Is(target error) bool { return target == ErrNoHealthyEndpoint }

// EndpointChangedError says which work could not go on because the active
// endpoint changed. It satisfies errors.Is(err, ErrEndpointChanged); for a
// Watch transaction also errors.Is(err, redis.TxFailedErr). It does not
// unwrap to the error the interrupted connection gave (a closed socket is
// how a switch interrupts a blocking command, not what happened to it).
type EndpointChangedError struct {
	Op       string // what was not sent: "EXEC", "SCAN", or a blocking command's name
	From, To string // the endpoint the work was bound to, and the active one ("" for none)
	At       time.Time
	tx       bool // a Watch transaction (also redis.TxFailedErr)
	sent     bool // a blocking command that was waiting: it may have been applied
}

func (e *EndpointChangedError) Error() string {
	to := e.To
	if to == "" {
		to = "none"
	}
	return fmt.Sprintf("%v: %s was bound to %q, active is now %q; not sent elsewhere", ErrEndpointChanged, e.Op, e.From, to)
}

// Is reports a match with ErrEndpointChanged, and for transactions with
// redis.TxFailedErr.
func (e *EndpointChangedError) Is(target error) bool {
	return target == ErrEndpointChanged || (e.tx && target == redis.TxFailedErr)
}

// HoldBackError is a health check's verdict that an endpoint answers but
// should not be given traffic now (for example, its replication lags, or a
// management API does not confirm it is available). A check returns one,
// made by HoldBack, instead of failing. For the choice of endpoint it is a
// passed check with a proviso (docs/rules.md: "Held-back endpoints"):
//
//   - traffic is not moved to a held-back endpoint, by failover or
//     failback, while an endpoint that is not held back can take it;
//   - the active endpoint is never left because it is held back;
//   - when every candidate is held back, the best of them is chosen all the
//     same: holding back never leaves the client without an endpoint.
type HoldBackError struct {
	Err error // why; never nil
}

// HoldBack returns a *HoldBackError for err, the reason an endpoint is held
// back, for a health check to return; it returns nil for nil.
func HoldBack(err error) error {
	if err == nil {
		return nil
	}
	return &HoldBackError{Err: err}
}

func (e *HoldBackError) Error() string { return "geofailover: endpoint held back: " + e.Err.Error() }

// Unwrap returns the reason.
func (e *HoldBackError) Unwrap() error { return e.Err }

// closedInFlightError is what a command gets that was on its way, or
// waiting for its reply, when the Client was closed: it satisfies
// errors.Is(err, ErrClosed), so a consumer loop can tell shutdown from an
// outage, but not NotApplied (the server may have run it).
type closedInFlightError struct {
	op    string
	cause error // what the closed connection gave
}

func (e *closedInFlightError) Error() string {
	return fmt.Sprintf("%v: Close interrupted %s (%v)", ErrClosed, e.op, e.cause)
}

// Is reports a match with ErrClosed.
func (e *closedInFlightError) Is(target error) bool { return target == ErrClosed }

// memberReplacedError is what a command gets whose endpoint's client we
// closed while it was in flight (traffic left the endpoint because it
// failed, or its client was renewed): it may have reached the server, so
// it is replayed only as a lost answer is (read-only commands), and it is
// not NotApplied. It counts against no endpoint (we closed the client).
type memberReplacedError struct {
	op    string
	cause error
}

func (e *memberReplacedError) Error() string {
	return fmt.Sprintf("geofailover: %s was in flight when the endpoint's client was closed at a switch (%v)", e.op, e.cause)
}

// errInterrupted is what a blocking command gets when traffic left its
// endpoint before it was sent: unsent (see isUnsent), so it is retried on
// the new endpoint.
var errInterrupted = errors.New("geofailover: endpoint switched away before the blocking command was sent")

// errFrontDial is what the front clients' dialer returns; it is never seen
// (every command is routed before a front client would dial).
var errFrontDial = errors.New("geofailover: internal front client does not dial")

// errorString is an error that is just a text (why an endpoint is not
// usable, in a NoHealthyEndpointError).
type errorString string

func (e errorString) Error() string { return string(e) }

// redactURLError returns err with the password of rawURL hidden, wherever
// and however it appears: the whole URL (raw or quoted), the password, or a
// quoted fragment of it (url.Parse quotes a bad escape such as "%zz").
func redactURLError(err error, rawURL string) error {
	pw := urlPassword(rawURL)
	if pw == "" {
		return err
	}
	msg := err.Error()
	redacted := strings.Replace(rawURL, ":"+pw+"@", ":xxxxx@", 1)
	for _, from := range []string{strconv.Quote(rawURL), rawURL} {
		to := redacted
		if strings.HasPrefix(from, `"`) {
			to = strconv.Quote(redacted)
		}
		msg = strings.ReplaceAll(msg, from, to)
	}
	for _, p := range []string{pw, strings.Trim(strconv.Quote(pw), `"`)} {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	msg = quotedRE.ReplaceAllStringFunc(msg, func(q string) string {
		if u, err := strconv.Unquote(q); err == nil && u != "" && strings.Contains(pw, u) {
			return `"xxxxx"`
		}
		return q
	})
	return errors.New(msg)
}

var quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// urlPassword returns the password in rawURL's userinfo, found textually so
// that it works on URLs that do not parse.
func urlPassword(rawURL string) string {
	i := strings.Index(rawURL, "://")
	if i < 0 {
		return ""
	}
	rest := rawURL[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	if c := strings.Index(rest[:at], ":"); c >= 0 {
		return rest[c+1 : at]
	}
	return ""
}
