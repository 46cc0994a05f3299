package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unsafe"
)

// A request is one command a client sent: its arguments, the first being
// the command's name as the client spelled it.
type request []string

// protocolError is malformed input. The connection gets "-ERR Protocol
// error: ..." and is closed, as a Redis server does.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "Protocol error: " + e.msg }

// Limits on one request. Redis's own are the same where it has one
// (proto-max-bulk-len 512 MB, inline requests 64 KB).
const (
	// DefaultMaxRequestBytes bounds one request's arguments, in bytes.
	DefaultMaxRequestBytes = 512 << 20
	// maxInline bounds an inline request (a line of text, as redis-cli or
	// telnet may send), in bytes.
	maxInline = 64 << 10
	// maxArgs bounds one request's argument count.
	maxArgs = 1 << 20
	// readBuffer is each connection's read buffer: a pipeline of small
	// commands fits; larger ones are read through it.
	readBuffer = 4 << 10
	// readChunk is how much of a large argument is allocated at a time, so
	// that memory follows the bytes that have arrived, not the length a
	// client announced.
	readChunk = 1 << 20
)

// requestReader reads requests from a client connection: RESP arrays of
// bulk strings, as every client library sends them, or inline commands.
type requestReader struct {
	rd       *bufio.Reader
	src      io.Reader // what rd reads
	maxBytes int64     // bound on one request's argument bytes
}

func newRequestReader(src io.Reader, maxBytes int64) requestReader {
	return requestReader{rd: bufio.NewReaderSize(src, readBuffer), src: src, maxBytes: maxBytes}
}

// next reads one request. It returns io.EOF when the client closed the
// connection between requests, a *protocolError for malformed input, or
// another error from the connection. An empty inline line is skipped.
func (r *requestReader) next() (request, error) {
	for {
		b, err := r.rd.Peek(1)
		if err != nil {
			return nil, err
		}
		if b[0] == '*' {
			return r.readArray()
		}
		req, err := r.readInline()
		if err != nil || len(req) > 0 {
			return req, err
		}
	}
}

// unread puts back bytes read from the connection behind the reader's
// back (see conn.watchGone); the reader holds nothing buffered then.
func (r *requestReader) unread(b []byte) {
	r.src = io.MultiReader(bytes.NewReader(b), r.src)
	r.rd.Reset(r.src)
}

// buffered reports whether part of another request has already arrived.
func (r *requestReader) buffered() bool { return r.rd.Buffered() > 0 }

func (r *requestReader) readArray() (request, error) {
	line, err := r.line(maxInline)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(string(line[1:]), 10, 64)
	if err != nil || n > maxArgs {
		return nil, &protocolError{"invalid multibulk length"}
	}
	if n <= 0 {
		return nil, nil // *0 and *-1 are no command; Redis skips them too
	}
	req := make(request, 0, min(n, 1024))
	var total int64
	for range n {
		line, err := r.line(maxInline)
		if err != nil {
			return nil, unexpectedEOF(err)
		}
		if len(line) == 0 || line[0] != '$' {
			got := byte(' ')
			if len(line) > 0 {
				got = line[0]
			}
			return nil, &protocolError{fmt.Sprintf("expected '$', got '%c'", got)}
		}
		size, err := strconv.ParseInt(string(line[1:]), 10, 64)
		if err != nil || size < 0 || size > r.maxBytes {
			return nil, &protocolError{"invalid bulk length"}
		}
		if total += size; total > r.maxBytes {
			return nil, &protocolError{fmt.Sprintf("request larger than %d bytes", r.maxBytes)}
		}
		arg, err := r.bulk(int(size))
		if err != nil {
			return nil, unexpectedEOF(err)
		}
		req = append(req, arg)
	}
	return req, nil
}

// bulk reads a bulk string's body of size bytes and its CRLF. Large bodies
// are read a chunk at a time.
func (r *requestReader) bulk(size int) (string, error) {
	buf := make([]byte, 0, min(size, readChunk))
	for len(buf) < size {
		want := min(size-len(buf), readChunk)
		if cap(buf)-len(buf) < want {
			buf = append(buf[:cap(buf)], make([]byte, want)...)[:len(buf)]
		}
		n, err := io.ReadFull(r.rd, buf[len(buf):len(buf)+want])
		buf = buf[:len(buf)+n]
		if err != nil {
			return "", err
		}
	}
	var crlf [2]byte
	if _, err := io.ReadFull(r.rd, crlf[:]); err != nil {
		return "", err
	}
	if crlf != [2]byte{'\r', '\n'} {
		return "", &protocolError{"expected CRLF after bulk string"}
	}
	if size == 0 {
		return "", nil
	}
	// buf is never written again: share it with the string.
	return unsafe.String(&buf[0], len(buf)), nil
}

// line reads a line ending in CRLF (or LF, for inline requests) and returns
// it without the line ending, at most limit bytes long.
func (r *requestReader) line(limit int) ([]byte, error) {
	var long []byte
	for {
		frag, err := r.rd.ReadSlice('\n')
		if err == nil || errors.Is(err, bufio.ErrBufferFull) {
			if len(long)+len(frag) > limit {
				return nil, &protocolError{"too big request line"}
			}
		}
		switch {
		case err == nil:
			if long != nil {
				frag = append(long, frag...)
			}
			frag = frag[:len(frag)-1]
			if len(frag) > 0 && frag[len(frag)-1] == '\r' {
				frag = frag[:len(frag)-1]
			}
			return frag, nil
		case errors.Is(err, bufio.ErrBufferFull):
			long = append(long, frag...)
		default:
			return nil, err
		}
	}
}

func (r *requestReader) readInline() (request, error) {
	line, err := r.line(maxInline)
	if err != nil {
		var pe *protocolError
		if errors.As(err, &pe) {
			return nil, &protocolError{"too big inline request"}
		}
		return nil, err
	}
	args, ok := splitArgs(line)
	if !ok {
		return nil, &protocolError{"unbalanced quotes in request"}
	}
	return args, nil
}

// unexpectedEOF turns a clean EOF inside a request into
// io.ErrUnexpectedEOF: the client left in the middle of a command.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// splitArgs splits an inline request as Redis does (sdssplitargs):
// arguments separated by spaces, "double quotes" with \n \r \t \b \a \\ \"
// and \xHH escapes, 'single quotes' with \' only. A closing quote must be
// followed by a space or the end.
func splitArgs(line []byte) (request, bool) {
	var args request
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			return args, true
		}
		var cur []byte
		inDouble, inSingle := false, false
		for done := false; !done; {
			if inDouble {
				switch {
				case i >= len(line):
					return nil, false
				case line[i] == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					cur = append(cur, unhex(line[i+2])<<4|unhex(line[i+3]))
					i += 3
				case line[i] == '\\' && i+1 < len(line):
					i++
					switch c := line[i]; c {
					case 'n':
						cur = append(cur, '\n')
					case 'r':
						cur = append(cur, '\r')
					case 't':
						cur = append(cur, '\t')
					case 'b':
						cur = append(cur, '\b')
					case 'a':
						cur = append(cur, '\a')
					default:
						cur = append(cur, c)
					}
				case line[i] == '"':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					done = true
				default:
					cur = append(cur, line[i])
				}
			} else if inSingle {
				switch {
				case i >= len(line):
					return nil, false
				case line[i] == '\\' && i+1 < len(line) && line[i+1] == '\'':
					i++
					cur = append(cur, '\'')
				case line[i] == '\'':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					done = true
				default:
					cur = append(cur, line[i])
				}
			} else {
				switch {
				case i >= len(line) || isSpace(line[i]):
					done = true
				case line[i] == '"':
					inDouble = true
				case line[i] == '\'':
					inSingle = true
				default:
					cur = append(cur, line[i])
				}
			}
			if i < len(line) {
				i++
			}
		}
		args = append(args, string(cur))
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
