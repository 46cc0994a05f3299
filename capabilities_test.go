package geofailover

import (
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// capabilitiesPage is the page with the table of what each kind of
// endpoint can do.
const capabilitiesPage = "docs/rules.md"

// TestCapabilitiesTable holds the documented table of what each kind of
// endpoint can do to capabilitiesOf, for endpoints built as New builds
// them.
func TestCapabilitiesTable(t *testing.T) {
	page, err := os.ReadFile(capabilitiesPage)
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(page), "| endpoint given as |")
	if !ok {
		t.Fatalf("%s: no table of what each kind of endpoint can do", capabilitiesPage)
	}
	table, _, _ = strings.Cut(table, "\n\n")
	rows := map[string][]string{}
	for _, line := range strings.Split(table, "\n") {
		if cells := strings.Split(strings.Trim(line, "| "), " | "); len(cells) == 4 {
			rows[cells[0]] = cells[1:]
		}
	}
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	single := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer cluster.Close()
	defer single.Close()
	for _, k := range []struct {
		row  string
		spec Endpoint
	}{
		{"`URL` or `Options` (standalone)", Endpoint{URL: "redis://127.0.0.1:1"}},
		{"`URL` or `Options` (standalone)", Endpoint{Options: &redis.Options{Addr: "127.0.0.1:1"}}},
		{"`FailoverOptions` (Sentinel)", Endpoint{FailoverOptions: &redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}}}},
		{"`ClusterOptions`", Endpoint{ClusterOptions: &redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}}},
		{"`Client` (a client of yours)", Endpoint{Client: single}},
		{"`Client` (a client of yours)", Endpoint{Client: cluster}},
	} {
		cells, ok := rows[k.row]
		if !ok {
			t.Errorf("%s: no row %q", capabilitiesPage, k.row)
			continue
		}
		member, owned, err := buildMember(k.spec, DefaultHealthCheckTimeout)
		if err != nil {
			t.Fatal(err)
		}
		got := capabilitiesOf(member, owned)
		if owned {
			_ = member.Close()
		}
		want := capabilities{
			interruptibleBlocking: strings.HasPrefix(cells[0], "yes"),
			inlineHedging:         strings.HasPrefix(cells[1], "inline"),
			conn:                  strings.HasPrefix(cells[2], "yes") || strings.HasPrefix(cells[2], "if it is a `*redis.Client`") && member == redis.UniversalClient(single),
		}
		if got != want {
			t.Errorf("%s (%T): capabilities %+v; the table says %+v", k.row, member, got, want)
		}
	}
}
