package cmdtable_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/internal/cmdtable"
	"github.com/geofailover/geofailover/internal/cmdtable/source"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		name string
		want cmdtable.Flags
	}{
		{"get", cmdtable.Known | cmdtable.ReadOnly | cmdtable.Harmless},
		{"mget", cmdtable.Known | cmdtable.ReadOnly | cmdtable.Harmless},
		{"ping", cmdtable.Known | cmdtable.Harmless},
		{"eval", cmdtable.Known},    // noscript: a script may write
		{"publish", cmdtable.Known}, // pubsub: a message sent twice
		{"incr", cmdtable.Known},
		{"set", cmdtable.Known},
		{"exec", cmdtable.Known},
		{"blpop", cmdtable.Known | cmdtable.Blocking},
		{"xread", cmdtable.Known | cmdtable.ReadOnly | cmdtable.Blocking},
		{"wait", cmdtable.Known | cmdtable.Blocking},
		{"object", cmdtable.Known | cmdtable.Container | cmdtable.Harmless},
		{"object|encoding", cmdtable.Known | cmdtable.ReadOnly | cmdtable.Harmless},
		{"client|kill", cmdtable.Known}, // admin
		{"json.get", 0},                 // a module's command is unknown: treated as a write
		{"GET", 0},                      // names are looked up in lower case
	} {
		if got := cmdtable.Lookup(tc.name); got != tc.want {
			t.Errorf("Lookup(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, b := range []byte("bBwWxX") {
		if !cmdtable.MayBlock(b) {
			t.Errorf("MayBlock(%q) = false", b)
		}
	}
	if cmdtable.MayBlock('g') || cmdtable.MayBlock('S') {
		t.Error("MayBlock true for a letter no blocking command starts with")
	}
}

// TestTableMatchesServer regenerates the table from the local redis-server
// and compares it with the checked-in one.
func TestTableMatchesServer(t *testing.T) {
	s := failovertest.StartServer(t)
	live, err := source.Read(context.Background(), s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if live.Version != cmdtable.Version {
		// A different Redis may add commands or change flags; the commands
		// the replay tests depend on must still agree.
		t.Logf("table is from redis %s, local server is %s: comparing core commands only", cmdtable.Version, live.Version)
		for _, n := range []string{"get", "set", "incr", "mget", "scan", "exec", "blpop", "xread", "publish"} {
			if live.Flags[n] != cmdtable.Lookup(n) {
				t.Errorf("%s: server says %v, table says %v", n, live.Flags[n], cmdtable.Lookup(n))
			}
		}
		return
	}
	n := 0
	for name, f := range live.Flags {
		n++
		if got := cmdtable.Lookup(name); got != f {
			t.Errorf("%s: server says %s, checked-in table says %s (run go generate ./internal/cmdtable)",
				name, source.FlagsExpr(f), source.FlagsExpr(got))
		}
	}
	if n < 200 {
		t.Fatalf("server reported only %d commands", n)
	}
	if want := cmdtable.Len(); n != want {
		t.Errorf("server reported %d commands, checked-in table has %d", n, want)
	}
}

// TestLower: any case of a known name is its table string, without an
// allocation; other names are lowered as strings.ToLower does.
func TestLower(t *testing.T) {
	for in, want := range map[string]string{"GET": "get", "get": "get", "ZRangeByScore": "zrangebyscore", "NoSuchCommand": "nosuchcommand", "": ""} {
		if got := cmdtable.Lower(in); got != want {
			t.Errorf("Lower(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = cmdtable.Lower("HGETALL") }); n != 0 {
		t.Errorf("Lower of a known command allocates %v times", n)
	}
}
