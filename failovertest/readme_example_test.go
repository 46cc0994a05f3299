package failovertest_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// The README's and the package doc's example, compiled and run. TestDocs
// checks that both show exactly this function.

// BEGIN example
func TestSurvivesRegionLoss(t *testing.T) {
	ctx := context.Background()
	east, west := failovertest.StartServer(t), failovertest.StartServer(t) // real redis-server, cleaned up
	c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
		{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	run := failovertest.Workload{}.Start(c) // 8 workers, SET+GET, 100 ms timeout
	time.Sleep(200 * time.Millisecond)
	at := time.Now()
	if err := east.Kill(); err != nil { // or Pause(), or a proxy fault
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	rep := run.Stop().Analyze(failovertest.Outage{From: "east", To: "west", At: at})
	if !rep.Moved || rep.Errors.Reads > 0 {
		t.Fatal(rep)
	}
}

// END example

// TestDocs: the README and the package doc show the example above as it is
// (whitespace aside), so the example users copy is one that compiles and
// passes.
func TestDocs(t *testing.T) {
	src, err := os.ReadFile("readme_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)// BEGIN example\n(.*)\n// END example`).FindSubmatch(src)
	if m == nil {
		t.Fatal("example markers not found")
	}
	want := squash(string(m[1]))
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	godoc := regexp.MustCompile(`(?m)^//\t?`).ReplaceAllString(string(doc), "")
	for name, text := range map[string]string{"failovertest/README.md": string(readme), "failovertest/doc.go": godoc} {
		if !strings.Contains(squash(text), want) {
			t.Errorf("%s does not show the example of readme_example_test.go as it is", name)
		}
	}
}

// squash removes all whitespace, so indentation and alignment do not count.
func squash(s string) string {
	return strings.Join(strings.Fields(s), "")
}
