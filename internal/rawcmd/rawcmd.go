// Package rawcmd is the command the proxy sends through the engine: a
// go-redis RawCmd (the reply's RESP bytes, unparsed) whose error reply is
// also its error. A plain RawCmd keeps an error reply ("-LOADING ...",
// "-MOVED ...") as bytes with a nil error, so neither the engine (which
// counts LOADING against the endpoint) nor a cluster client (which follows
// MOVED) would see it. Every member client the engine builds carries Hook,
// which sets the error of a *Cmd from its reply; the reply bytes are kept,
// for the proxy to pass on as they came.
package rawcmd

import (
	"bytes"
	"context"
	"reflect"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// Cmd is a raw command whose error reply is its error (see Hook).
type Cmd struct {
	redis.RawCmd
}

// New returns a Cmd for args.
func New(ctx context.Context, args ...any) *Cmd {
	return &Cmd{RawCmd: *redis.NewRawCmd(ctx, args...)}
}

// ReplyError is the error of a Cmd whose reply was an error ('-' or '!').
type ReplyError struct {
	msg string
}

// Error returns the server's message, as go-redis's own reply errors do.
func (e *ReplyError) Error() string { return e.msg }

// RedisError marks e as an error reply (redis.Error), so that go-redis and
// the engine treat it as the server's answer, not a network failure.
func (e *ReplyError) RedisError() {}

var _ redis.Error = (*ReplyError)(nil)

// replyError returns the error a raw reply carries, or nil.
func replyError(raw []byte) error {
	if len(raw) == 0 {
		return nil
	}
	switch raw[0] {
	case '-':
		line, _, _ := bytes.Cut(raw[1:], []byte("\r\n"))
		return &ReplyError{msg: string(line)}
	case '!': // RESP3 blob error: !<len>\r\n<message>\r\n
		_, body, ok := bytes.Cut(raw, []byte("\r\n"))
		if !ok {
			return nil
		}
		return &ReplyError{msg: string(bytes.TrimSuffix(body, []byte("\r\n")))}
	}
	return nil
}

// settle sets cmd's error from its reply when the reply is an error and
// nothing else went wrong.
func settle(cmd redis.Cmder, err error) error {
	rc, ok := cmd.(*Cmd)
	if !ok || err != nil {
		return err
	}
	if e := replyError(rc.Val()); e != nil {
		rc.SetErr(e)
		return e
	}
	return nil
}

// Hook is installed on every member client the engine builds (and on each
// node client of a cluster member, so that a cluster client sees MOVED and
// ASK). It acts on *Cmd only.
type Hook struct{}

// DialHook passes dials through.
func (Hook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook sets a *Cmd's error from its reply.
func (Hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		return settle(cmd, next(ctx, cmd))
	}
}

// ProcessPipelineHook sets each *Cmd's error from its reply.
func (Hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if e := settle(cmd, cmd.Err()); e != nil && err == nil {
				err = e
			}
		}
		return err
	}
}

// Install puts Hook on c: on a cluster client, on every node client it
// makes; on any other client, on c itself.
func Install(c redis.UniversalClient) {
	switch c := c.(type) {
	case *redis.ClusterClient:
		c.OnNewNode(func(n *redis.Client) { n.AddHook(Hook{}) })
	case interface{ AddHook(redis.Hook) }:
		c.AddHook(Hook{})
	}
}

// readTimeoutOffset is where go-redis keeps a command's own read timeout
// (baseCmd._readTimeout, a *time.Duration) inside a Cmd, or -1 if this
// go-redis has no such field. go-redis sets it only from its typed blocking
// commands (BLPop(ctx, timeout, ...)); without it a raw BLPOP would be read
// with the client's ReadTimeout and fail before the server answers.
var readTimeoutOffset = func() uintptr {
	t := reflect.TypeFor[Cmd]()
	f, ok := t.FieldByName("_readTimeout")
	if !ok || f.Type != reflect.TypeFor[*time.Duration]() {
		return ^uintptr(0)
	}
	// f.Offset is within the embedded struct that holds the field: add
	// the offsets along the path from Cmd.
	var off uintptr
	for _, i := range f.Index {
		sf := t.Field(i)
		off += sf.Offset
		t = sf.Type
	}
	return off
}()

// SetReadTimeout gives cmd the read timeout go-redis gives its typed
// blocking commands: the server may take d to answer (0: as long as it
// wants). It reports false if this go-redis keeps no such setting.
func (c *Cmd) SetReadTimeout(d time.Duration) bool {
	if readTimeoutOffset == ^uintptr(0) {
		return false
	}
	p := (**time.Duration)(unsafe.Add(unsafe.Pointer(c), readTimeoutOffset))
	*p = &d
	return true
}
