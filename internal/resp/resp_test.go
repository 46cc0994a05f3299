package resp

import (
	"bufio"
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func encode(args ...string) []byte {
	b := AppendArray(nil, len(args))
	for _, a := range args {
		b = AppendBulk(b, a)
	}
	return b
}

// TestParseCommand: a command is parsed with the number of bytes it took; a
// partial one is ErrIncomplete, however it is cut.
func TestParseCommand(t *testing.T) {
	cmd := encode("subscribe", "news", "")
	buf := append(append([]byte(nil), cmd...), encode("ping")...)
	args, n, err := ParseCommand(buf)
	if err != nil || n != len(cmd) || !slices.Equal(args, []string{"subscribe", "news", ""}) {
		t.Fatalf("ParseCommand = %q, %d, %v; want [subscribe news \"\"], %d, nil", args, n, err, len(cmd))
	}
	for cut := range len(cmd) {
		if _, _, err := ParseCommand(cmd[:cut]); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("ParseCommand of the first %d bytes = %v, want ErrIncomplete", cut, err)
		}
	}
	if _, _, err := ParseCommand([]byte("+OK\r\n")); err == nil || errors.Is(err, ErrIncomplete) {
		t.Fatalf("ParseCommand of a status reply = %v, want a parse error", err)
	}
}

// TestEncodings: the pushes a subscribed connection receives, byte for byte
// as the server sends them.
func TestEncodings(t *testing.T) {
	for _, tc := range []struct {
		got  []byte
		want string
	}{
		{Subscription("subscribe", "news", 2), "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:2\r\n"},
		{Subscription("unsubscribe", "", 0), "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"},
		{Message(&redis.Message{Channel: "news", Payload: "hi"}), "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"},
		{Message(&redis.Message{Pattern: "n*", Channel: "news", Payload: "hi"}), "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"},
		{Pong(""), "*2\r\n$4\r\npong\r\n$0\r\n\r\n"},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("encoded %q, want %q", tc.got, tc.want)
		}
	}
}

// FuzzReadCommand: the parser never panics or over-allocates on any input,
// and a command it accepts, encoded as go-redis writes commands, parses
// back to the same arguments.
func FuzzReadCommand(f *testing.F) {
	f.Add([]byte("*2\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n"))
	f.Add([]byte("*1\r\n$4\r\nping\r\n"))
	f.Add([]byte("*-1\r\n"))
	f.Add([]byte("*3\r\n$3\r\nset\r\n$-5\r\n"))
	f.Add([]byte("*99999999999\r\n"))
	f.Add([]byte("$5\r\nhello\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rd := bufio.NewReader(bytes.NewReader(in))
		args, err := ReadCommand(rd)
		if err != nil {
			return
		}
		back := encode(args...)
		again, n, err := ParseCommand(back)
		if err != nil || n != len(back) || !slices.Equal(again, args) {
			t.Fatalf("read %q from %q; encoded as %q it parses as %q, %d, %v", args, in, back, again, n, err)
		}
	})
}
