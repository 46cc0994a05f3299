package rawcmd

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSetReadTimeout: the timeout lands where go-redis's typed blocking
// commands keep theirs (compared through a go-redis command that sets it).
func TestSetReadTimeout(t *testing.T) {
	c := New(context.Background(), "blpop", "k", "5")
	if !c.SetReadTimeout(5 * time.Second) {
		t.Fatal("SetReadTimeout found no read timeout field in this go-redis")
	}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	typed := client.Pipeline()
	want := typed.BLPop(context.Background(), 5*time.Second, "k")
	if got, w := readTimeoutOf(c), readTimeoutOf(want); got == nil || w == nil || *got != *w {
		t.Fatalf("read timeout = %v, go-redis's BLPop has %v", got, w)
	}
}

// TestReplyError: error replies, simple and blob, become errors that
// go-redis treats as the server's answer; other replies do not.
func TestReplyError(t *testing.T) {
	for raw, want := range map[string]string{
		"-LOADING Redis is loading\r\n":    "LOADING Redis is loading",
		"!21\r\nSYNTAX invalid syntax\r\n": "SYNTAX invalid syntax",
		"+OK\r\n":                          "",
		"$2\r\n-x\r\n":                     "",
		"":                                 "",
	} {
		err := replyError([]byte(raw))
		switch {
		case want == "" && err != nil:
			t.Errorf("replyError(%q) = %v, want nil", raw, err)
		case want != "" && (err == nil || err.Error() != want):
			t.Errorf("replyError(%q) = %v, want %q", raw, err, want)
		case want != "":
			var re redis.Error
			if !errors.As(err, &re) {
				t.Errorf("replyError(%q) is not a redis.Error", raw)
			}
		}
	}
}

// readTimeoutOf reads a command's go-redis read timeout by reflection.
func readTimeoutOf(cmd redis.Cmder) *time.Duration {
	v := reflect.ValueOf(cmd).Elem().FieldByName("_readTimeout")
	if !v.IsValid() || v.IsNil() {
		return nil
	}
	return (*time.Duration)(v.UnsafePointer())
}
