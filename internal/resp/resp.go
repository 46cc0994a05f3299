// Package resp reads the commands go-redis writes (RESP arrays of bulk
// strings) and encodes the replies and pushes a subscribed connection
// receives, for the Pub/Sub relay that sits between a *redis.PubSub and the
// endpoints; the proxy encodes its own replies with the same Append
// functions. It holds no state.
package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrIncomplete says the buffer holds only part of a command.
var ErrIncomplete = errors.New("resp: incomplete command")

// ParseCommand parses the first command in buf and returns it with the
// number of bytes it took, or ErrIncomplete.
func ParseCommand(buf []byte) ([]string, int, error) {
	r := bytes.NewReader(buf)
	rd := bufio.NewReaderSize(r, max(16, len(buf)))
	args, err := ReadCommand(rd)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, 0, ErrIncomplete
	}
	if err != nil {
		return nil, 0, err
	}
	return args, len(buf) - r.Len() - rd.Buffered(), nil
}

// ReadCommand reads one RESP array of bulk strings, as go-redis writes
// commands.
func ReadCommand(rd *bufio.Reader) ([]string, error) {
	line, err := readLine(rd)
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[0] != '*' {
		return nil, fmt.Errorf("resp: unexpected %q", line)
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("resp: bad array header %q", line)
	}
	args := make([]string, n)
	for i := range args {
		line, err := readLine(rd)
		if err != nil {
			return nil, err
		}
		if len(line) < 2 || line[0] != '$' {
			return nil, fmt.Errorf("resp: unexpected %q", line)
		}
		size, err := strconv.Atoi(line[1:])
		if err != nil || size < 0 || size > 512<<20 {
			return nil, fmt.Errorf("resp: bad bulk header %q", line)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}

// readLine reads one CRLF-terminated line, without the CRLF.
func readLine(rd *bufio.Reader) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(line, "\r\n") {
		return "", errors.New("resp: line without CRLF")
	}
	return line[:len(line)-2], nil
}

// AppendBulk appends s as a bulk string.
func AppendBulk[T string | []byte](b []byte, s T) []byte {
	b = AppendLen(b, '$', len(s))
	b = append(b, s...)
	return append(b, "\r\n"...)
}

// AppendArray appends the header of an array of n elements.
func AppendArray(b []byte, n int) []byte { return AppendLen(b, '*', n) }

// AppendLen appends a header of type kind ('*' array, '$' bulk string,
// '%' map, '>' push, '=' verbatim string, ...) and length n.
func AppendLen(b []byte, kind byte, n int) []byte {
	b = append(b, kind)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, "\r\n"...)
}

// AppendInt appends n as an integer reply.
func AppendInt(b []byte, n int64) []byte {
	b = append(b, ':')
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

// AppendSimple appends s as a simple string ('+') or error ('-'); s must
// hold no CR or LF.
func AppendSimple(b []byte, kind byte, s string) []byte {
	b = append(b, kind)
	b = append(b, s...)
	return append(b, "\r\n"...)
}

// Subscription encodes a (un)subscribe confirmation (RESP2, as a PubSub
// connection reads it); name "" is the
// nil channel of an UNSUBSCRIBE with nothing subscribed.
func Subscription(verb, name string, count int) []byte {
	b := AppendArray(nil, 3)
	b = AppendBulk(b, verb)
	if name == "" {
		b = append(b, "$-1\r\n"...)
	} else {
		b = AppendBulk(b, name)
	}
	return AppendInt(b, int64(count))
}

// Message encodes a message or pmessage push as the server sends it.
func Message(m *redis.Message) []byte {
	var b []byte
	if m.Pattern != "" {
		b = AppendArray(b, 4)
		b = AppendBulk(b, "pmessage")
		b = AppendBulk(b, m.Pattern)
	} else {
		b = AppendArray(b, 3)
		b = AppendBulk(b, "message")
	}
	b = AppendBulk(b, m.Channel)
	if m.PayloadSlice != nil {
		b = AppendArray(b, len(m.PayloadSlice))
		for _, p := range m.PayloadSlice {
			b = AppendBulk(b, p)
		}
		return b
	}
	return AppendBulk(b, m.Payload)
}

// Pong encodes the reply to PING on a subscribed connection.
func Pong(payload string) []byte {
	b := AppendArray(nil, 2)
	b = AppendBulk(b, "pong")
	return AppendBulk(b, payload)
}
