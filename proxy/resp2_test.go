package proxy

import "testing"

// TestToRESP2: each RESP3 type, and the commands whose shape changes,
// converted as Redis writes them in RESP2.
func TestToRESP2(t *testing.T) {
	for _, tc := range []struct {
		req      request
		in, want string
	}{
		{request{"get", "k"}, "$3\r\nabc\r\n", "$3\r\nabc\r\n"},
		{request{"get", "k"}, "_\r\n", "$-1\r\n"},
		{request{"blpop", "k", "1"}, "_\r\n", "*-1\r\n"},
		{request{"lpop", "k", "2"}, "_\r\n", "*-1\r\n"},
		{request{"lpop", "k"}, "_\r\n", "$-1\r\n"},
		{request{"geopos", "g", "a", "b"}, "*2\r\n*2\r\n$1\r\n1\r\n$1\r\n2\r\n_\r\n", "*2\r\n*2\r\n$1\r\n1\r\n$1\r\n2\r\n*-1\r\n"},
		{request{"zscore", "z", "m"}, ",1.5\r\n", "$3\r\n1.5\r\n"},
		{request{"x"}, "#t\r\n", ":1\r\n"},
		{request{"x"}, "#f\r\n", ":0\r\n"},
		{request{"x"}, "(12345678901234567890\r\n", "$20\r\n12345678901234567890\r\n"},
		{request{"x"}, "=8\r\ntxt:info\r\n", "$4\r\ninfo\r\n"},
		{request{"x"}, "!10\r\nERR a\r\nb c\r\n", "-ERR a  b c\r\n"},
		{request{"x"}, "~2\r\n:1\r\n:2\r\n", "*2\r\n:1\r\n:2\r\n"},
		{request{"hgetall", "h"}, "%1\r\n$1\r\nf\r\n$1\r\nv\r\n", "*2\r\n$1\r\nf\r\n$1\r\nv\r\n"},
		{request{"x"}, "|1\r\n+key\r\n+val\r\n:7\r\n", ":7\r\n"},
		{request{"zrange", "z", "0", "-1", "withscores"}, "*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,2\r\n", "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"},
		{request{"zrange", "z", "0", "-1"}, "*2\r\n$1\r\na\r\n$1\r\nb\r\n", "*2\r\n$1\r\na\r\n$1\r\nb\r\n"},
		{request{"xread", "streams", "s", "0"}, "%1\r\n$1\r\ns\r\n*0\r\n", "*1\r\n*2\r\n$1\r\ns\r\n*0\r\n"},
		{request{"xread", "block", "1", "streams", "s", "$"}, "_\r\n", "*-1\r\n"},
	} {
		out, n, err := toRESP2(nil, []byte(tc.in), conversionOf(tc.req))
		if err != nil || string(out) != tc.want || n != len(tc.in) {
			t.Errorf("%q %q: %q (took %d of %d), %v; want %q", tc.req, tc.in, out, n, len(tc.in), err, tc.want)
		}
	}
	for _, bad := range []string{"", "$5\r\nab\r\n", "*2\r\n:1\r\n", "?\r\n", "*x\r\n"} {
		if _, _, err := toRESP2(nil, []byte(bad), convert{}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
