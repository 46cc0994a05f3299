package proxy

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"github.com/geofailover/geofailover/internal/resp"
)

// The engine's member clients speak RESP3 (go-redis's default). A client
// that has not said HELLO 3 speaks RESP2, so its replies are converted as a
// Redis server converts its own (networking.c): a map becomes an array of
// its keys and values, a set an array, a double and a big number a bulk
// string, a boolean the integer 1 or 0, a verbatim string a bulk string
// without its format, a blob error a simple error, an attribute is dropped,
// and null becomes the null bulk string ($-1), or the null array (*-1)
// where Redis sends that. A few commands also change the shape of their
// reply with the protocol; those are listed in shapeOf.

// replyShape says how one command's RESP3 reply differs in shape from its
// RESP2 reply, beyond the type mapping above.
type replyShape uint8

const (
	_ replyShape = iota // the reply's shape is the same in both protocols
	// shapePairs: RESP3 nests [member, score] (or [field, value]) pairs in
	// the top-level array; RESP2 flattens them (ZRANGE ... WITHSCORES,
	// ZRANDMEMBER/HRANDFIELD with scores or values, ZPOPMIN/ZPOPMAX).
	shapePairs
	// shapeMapOfPairs: RESP3 answers a map; RESP2 an array of [key, value]
	// arrays (XREAD, XREADGROUP).
	shapeMapOfPairs
)

// convert is how one reply is converted.
type convert struct {
	shape replyShape
	// nullArray: a top-level null is the null array (*-1), as Redis sends
	// for a timed-out blocking pop, an aborted EXEC, LPOP with a count.
	nullArray bool
	// elemNullArray: nulls inside the top-level array are null arrays
	// (GEOPOS).
	elemNullArray bool
}

// conversionOf returns how req's reply is converted to RESP2.
func conversionOf(req request) convert {
	name := strings.ToLower(req[0])
	switch name {
	case "zrange", "zrevrange", "zrangebyscore", "zrevrangebyscore", "zunion", "zinter", "zdiff",
		"zrandmember", "hrandfield", "zpopmin", "zpopmax":
		return convert{shape: shapePairs}
	case "xread", "xreadgroup":
		return convert{shape: shapeMapOfPairs, nullArray: true}
	case "blpop", "brpop", "blmove", "brpoplpush", "blmpop", "bzpopmin", "bzpopmax", "bzmpop",
		"lmpop", "zmpop", "exec":
		return convert{nullArray: true}
	case "lpop", "rpop":
		return convert{nullArray: len(req) > 2}
	case "geopos":
		return convert{elemNullArray: true}
	}
	return convert{}
}

var errBadReply = errors.New("proxy: malformed reply from the server")

// toRESP2 appends to dst the RESP2 form of the one RESP3 value at the start
// of raw, converted as cv says, and returns dst and the bytes of raw it
// took.
func toRESP2(dst, raw []byte, cv convert) ([]byte, int, error) {
	return conv(dst, raw, cv, 0)
}

const maxReplyDepth = 1000

func conv(dst, raw []byte, cv convert, depth int) ([]byte, int, error) {
	if depth > maxReplyDepth {
		return dst, 0, errBadReply
	}
	i := bytes.Index(raw, crlf)
	if i < 1 {
		return dst, 0, errBadReply
	}
	head, body := raw[:i], raw[i+2:]
	used := i + 2
	switch head[0] {
	case '+', '-', ':':
		return append(dst, raw[:used]...), used, nil
	case '_':
		if (depth == 0 && cv.nullArray) || (depth == 1 && cv.elemNullArray) {
			return append(dst, "*-1\r\n"...), used, nil
		}
		return append(dst, "$-1\r\n"...), used, nil
	case '#':
		if len(head) == 2 && head[1] == 't' {
			return append(dst, ":1\r\n"...), used, nil
		}
		return append(dst, ":0\r\n"...), used, nil
	case ',', '(':
		return resp.AppendBulk(dst, head[1:]), used, nil
	case '$', '=', '!':
		n, err := strconv.Atoi(string(head[1:]))
		if err != nil {
			return dst, 0, errBadReply
		}
		if n < 0 {
			return append(dst, "$-1\r\n"...), used, nil
		}
		if len(body) < n+2 {
			return dst, 0, errBadReply
		}
		s := body[:n]
		used += n + 2
		switch head[0] {
		case '$':
			return append(dst, raw[:used]...), used, nil
		case '=': // "txt:..." or "mkd:...": the format goes
			if len(s) >= 4 && s[3] == ':' {
				s = s[4:]
			}
			return resp.AppendBulk(dst, s), used, nil
		default: // a blob error becomes a simple error, on one line
			dst = append(dst, '-')
			for _, c := range s {
				if c == '\r' || c == '\n' {
					c = ' '
				}
				dst = append(dst, c)
			}
			return append(dst, crlf...), used, nil
		}
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(string(head[1:]))
		if err != nil {
			return dst, 0, errBadReply
		}
		if n < 0 {
			return append(dst, "*-1\r\n"...), used, nil
		}
		if head[0] == '|' { // an attribute: skip it, convert what follows
			for range 2 * n {
				_, k, err := conv(nil, raw[used:], cv, depth+1)
				if err != nil {
					return dst, 0, err
				}
				used += k
			}
			dst, k, err := conv(dst, raw[used:], cv, depth)
			return dst, used + k, err
		}
		elems := n
		if head[0] == '%' {
			elems = 2 * n
		}
		switch {
		case depth == 0 && head[0] == '%' && cv.shape == shapeMapOfPairs:
			dst = resp.AppendLen(dst, '*', n)
			for range n {
				dst = append(dst, "*2\r\n"...)
				for range 2 {
					var k int
					if dst, k, err = conv(dst, raw[used:], cv, depth+1); err != nil {
						return dst, 0, err
					}
					used += k
				}
			}
			return dst, used, nil
		case depth == 0 && head[0] == '*' && cv.shape == shapePairs && n > 0 && bytes.HasPrefix(raw[used:], []byte("*2\r\n")):
			// [[m1, s1], [m2, s2]] becomes [m1, s1, m2, s2].
			dst = resp.AppendLen(dst, '*', 2*n)
			for range n {
				if !bytes.HasPrefix(raw[used:], []byte("*2\r\n")) {
					return dst, 0, errBadReply
				}
				used += 4
				for range 2 {
					var k int
					if dst, k, err = conv(dst, raw[used:], cv, depth+2); err != nil {
						return dst, 0, err
					}
					used += k
				}
			}
			return dst, used, nil
		}
		dst = resp.AppendLen(dst, '*', elems)
		for range elems {
			var k int
			if dst, k, err = conv(dst, raw[used:], cv, depth+1); err != nil {
				return dst, 0, err
			}
			used += k
		}
		return dst, used, nil
	}
	return dst, 0, errBadReply
}

var crlf = []byte("\r\n")
