package geofailover

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestSingleRead: only a write that is exactly one read-only, non-blocking
// command other than SCAN can be cut.
func TestSingleRead(t *testing.T) {
	for _, tc := range []struct {
		wire string
		want bool
	}{
		{"*2\r\n$3\r\nget\r\n$1\r\nk\r\n", true},
		{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", true},
		{"*2\r\n$7\r\nhgetall\r\n$1\r\nh\r\n", true},
		{"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n", false},
		{"*2\r\n$3\r\nget\r\n$1\r\nk\r\n*2\r\n$3\r\nget\r\n$1\r\nk\r\n", false}, // a pipeline
		{"*2\r\n$3\r\nget\r\n$1\r\nk\r", false},                                 // partial
		{"*2\r\n$4\r\nscan\r\n$1\r\n0\r\n", false},
		{"*3\r\n$5\r\nblpop\r\n$1\r\nl\r\n$1\r\n0\r\n", false},
		{"*3\r\n$6\r\nobject\r\n$8\r\nencoding\r\n$1\r\nk\r\n", false}, // a container
		{"*1\r\n$5\r\nmulti\r\n", false},
		{"*0\r\n", false},
		{"+OK\r\n", false},
		{"*2\r\n$99\r\nget\r\n$1\r\nk\r\n", false},
		{"*2\r\n$-1\r\n$1\r\nk\r\n", false},
		{"", false},
	} {
		if got := singleRead([]byte(tc.wire)); got != tc.want {
			t.Errorf("singleRead(%q) = %v, want %v", tc.wire, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { singleRead([]byte("*2\r\n$3\r\nget\r\n$1\r\nk\r\n")) }); n != 0 {
		t.Errorf("singleRead allocates %v times", n)
	}
}

// FuzzSingleRead: any bytes, no panic.
func FuzzSingleRead(f *testing.F) {
	f.Add([]byte("*2\r\n$3\r\nget\r\n$1\r\nk\r\n"))
	f.Add([]byte("*1\r\n$999999999\r\n"))
	f.Fuzz(func(t *testing.T, p []byte) { singleRead(p) })
}

// BenchmarkSingleRead: the scan of a GET's write.
func BenchmarkSingleRead(b *testing.B) {
	p := []byte("*2\r\n$3\r\nget\r\n$3\r\nkey\r\n")
	for b.Loop() {
		singleRead(p)
	}
}

// A read cut for another read's hedge says nothing about its endpoint,
// on every path: a Watch transaction's or a Conn's command (pinnedHook)
// once counted it as a failure.
func TestCutCountsNeitherWay(t *testing.T) {
	cfg, err := validate(&Options{Endpoints: []Endpoint{{Name: "e", Weight: 1, URL: "redis://127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{cfg: cfg, wake: make(chan struct{}, 1)}
	e := &endpoint{name: "e"}
	cut := func(context.Context, redis.Cmder) error { return errCut }
	cutPipe := func(context.Context, []redis.Cmder) error { return errCut }
	for _, guard := range []bool{false, true} {
		h := pinnedHook{c: c, e: e, guardExec: guard}
		_ = h.ProcessHook(cut)(context.Background(), redis.NewStringCmd(context.Background(), "get", "k"))
		_ = h.ProcessPipelineHook(cutPipe)(context.Background(), []redis.Cmder{redis.NewStringCmd(context.Background(), "get", "k")})
	}
	if calls := e.live.calls(); calls.Failed != 0 || e.live.consecutive.Load() != 0 || calls.Served != 0 {
		t.Fatalf("cut reads on the Watch/Conn path counted: %+v, run of %d", calls, e.live.consecutive.Load())
	}
}
