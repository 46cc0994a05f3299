package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/geofailover/geofailover/internal/resp"
)

func readAll(t *testing.T, input string, maxBytes int64) ([]request, error) {
	t.Helper()
	r := newRequestReader(strings.NewReader(input), maxBytes)
	var reqs []request
	for {
		req, err := r.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return reqs, nil
			}
			return reqs, err
		}
		if req != nil {
			reqs = append(reqs, req)
		}
	}
}

// TestRequests: arrays of bulk strings and inline commands, with Redis's
// quoting rules.
func TestRequests(t *testing.T) {
	for input, want := range map[string][]request{
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n":               {{"GET", "k"}},
		"*1\r\n$4\r\nPING\r\n*0\r\n*-1\r\n":            {{"PING"}},
		"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n":               {{"ECHO", ""}},
		"PING\r\n":                                     {{"PING"}},
		"PING\n\r\n\nECHO hi\n":                        {{"PING"}, {"ECHO", "hi"}},
		`SET k "a b\x41\n"` + "\r\n":                   {{"SET", "k", "a bA\n"}},
		`SET k 'it\'s'` + "\r\n":                       {{"SET", "k", "it's"}},
		"  SET   k   v  \r\n":                          {{"SET", "k", "v"}},
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\r\n\r\n": {{"SET", "k", "\r\n"}},
	} {
		got, err := readAll(t, input, DefaultMaxRequestBytes)
		if err != nil || !slices.EqualFunc(got, want, func(a, b request) bool { return slices.Equal(a, b) }) {
			t.Errorf("%q: %q, %v; want %q", input, got, err, want)
		}
	}
}

// TestBadRequests: each malformed input is a protocol error (never a panic
// or an allocation of the announced size); a request cut short is
// io.ErrUnexpectedEOF.
func TestBadRequests(t *testing.T) {
	deep := strings.Repeat("*1\r\n", 10000)
	for input, want := range map[string]string{
		"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nk\r\n": "expected '$', got '*'",
		deep:                                   "expected '$', got '*'",
		"*x\r\n":                               "invalid multibulk length",
		"*99999999999\r\n":                     "invalid multibulk length",
		"*1\r\n$1073741824\r\n":                "invalid bulk length",
		"*1\r\n$-5\r\n":                        "invalid bulk length",
		"*1\r\n$3\r\nGETX\r\n":                 "expected CRLF after bulk string",
		`SET k "unclosed` + "\r\n":             "unbalanced quotes",
		`SET k "a"b` + "\r\n":                  "unbalanced quotes",
		strings.Repeat("x", 70000) + "\r\n":    "too big inline request",
		"*1\r\n" + strings.Repeat("$", 100000): "too big request line",
	} {
		_, err := readAll(t, input, 512<<20)
		var pe *protocolError
		if !errors.As(err, &pe) || !strings.Contains(pe.msg, want) {
			t.Errorf("%.40q: %v; want a protocol error saying %q", input, err, want)
		}
	}
	for _, cut := range []string{"*2\r\n$3\r\nGET\r\n", "*1\r\n$10\r\nabc", "*1\r\n"} {
		if _, err := readAll(t, cut, 512<<20); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: %v; want io.ErrUnexpectedEOF", cut, err)
		}
	}
	// Arguments larger than MaxRequestBytes together.
	two := "*3\r\n$3\r\nSET\r\n$6\r\nabcdef\r\n$6\r\nabcdef\r\n"
	if _, err := readAll(t, two, 10); err == nil || !strings.Contains(err.Error(), "larger than 10 bytes") {
		t.Errorf("a 15-byte request with MaxRequestBytes 10: %v", err)
	}
}

// TestLargeArgumentMemory: a client that announces a huge argument and
// sends little costs memory for what it sent, not for what it announced.
func TestLargeArgumentMemory(t *testing.T) {
	r := newRequestReader(strings.NewReader("*1\r\n$500000000\r\n"+strings.Repeat("x", 1000)), DefaultMaxRequestBytes)
	var before, after runtimeMem
	before.read()
	_, err := r.next()
	after.read()
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("next = %v, want io.ErrUnexpectedEOF", err)
	}
	if grew := after.total - before.total; grew > 8<<20 {
		t.Fatalf("reading 1000 bytes of an announced 500 MB argument allocated %d bytes", grew)
	}
}

// FuzzRequestReader: any input gives requests, io.EOF,
// io.ErrUnexpectedEOF or a protocol error; never a panic. A request read
// back from its own encoding is itself.
func FuzzRequestReader(f *testing.F) {
	for _, s := range []string{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "PING\r\n", `SET k "a\x41"` + "\n", "*1\r\n$-1\r\n", "*3\r\n$0\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newRequestReader(bytes.NewReader(data), 1<<16)
		for range 100 {
			req, err := r.next()
			if err != nil {
				var pe *protocolError
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &pe) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var enc []byte
			enc = resp.AppendLen(enc, '*', len(req))
			for _, a := range req {
				enc = resp.AppendBulk(enc, a)
			}
			rr := newRequestReader(bufio.NewReader(bytes.NewReader(enc)), 1<<30)
			back, err := rr.next()
			if err != nil || !slices.Equal(back, req) {
				t.Fatalf("%q read back as %q, %v", req, back, err)
			}
		}
	})
}

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}
