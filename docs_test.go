package geofailover_test

// The README's Go code, compiled: each block the README shows lies between
// BEGIN and END markers in a test file (here, in failovertest and config,
// and in recipes_test.go), and TestREADMECodeBlocks checks that every Go
// block of the README is one of them, whitespace aside.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
)

// quickStart is the README's quick start (compiled, not run: its hosts are
// examples).
func quickStart(ctx context.Context) error {
	// BEGIN quickstart
	c, err := geofailover.New(&geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "eu-west", Weight: 1.0, Options: &redis.Options{Addr: "eu.example:6379"}},
			{Name: "us-east", Weight: 0.5, URL: "rediss://user:pass@us.example:6380/0"},
		},
		OnEvent: func(ev geofailover.Event) { log.Printf("%v %s->%s %v", ev.Kind, ev.From, ev.To, ev.Reason) },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.Set(ctx, "k", "v", 0) // any go-redis command, pipeline or transaction
	fmt.Println(c.Active()) // "eu-west"
	// END quickstart
	return nil
}

// readEvents is the README's stream reader that resumes after a switch.
func readEvents(ctx context.Context, c *geofailover.Client, handle func(redis.XMessage)) {
	// BEGIN xread
	last := "0"
	for {
		res, err := c.XRead(ctx, &redis.XReadArgs{Streams: []string{"events", last}, Block: 5 * time.Second}).Result()
		if errors.Is(err, geofailover.ErrEndpointChanged) || errors.Is(err, redis.Nil) {
			continue // the switch interrupted the wait, or nothing new: read again
		}
		if err != nil {
			continue // back off, then retry
		}
		for _, m := range res[0].Messages {
			handle(m)
			last = m.ID
		}
	}
	// END xread
}

var _ = quickStart
var _ = readEvents

// defaultsPage is the page with the table of options and defaults.
const defaultsPage = "README.md"

var markerRE = regexp.MustCompile(`(?s)// BEGIN (\w+)\n(.*?)\n\s*// END (\w+)`)

// TestREADMECodeBlocks: every Go block in the README is code a test
// compiles (whitespace and the README's shorter one-line forms aside).
func TestREADMECodeBlocks(t *testing.T) {
	var compiled []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range markerRE.FindAllStringSubmatch(string(src), -1) {
			compiled = append(compiled, squashCode(m[2]))
		}
		return nil
	})
	must(t, err)
	readme, err := os.ReadFile("README.md")
	must(t, err)
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 5 {
		t.Fatalf("found %d Go blocks in the README", len(blocks))
	}
	for _, b := range blocks {
		want := squashCode(b[1])
		found := false
		for _, c := range compiled {
			found = found || strings.Contains(c, want)
		}
		if !found {
			first, _, _ := strings.Cut(strings.TrimSpace(b[1]), "\n")
			t.Errorf("README block starting %q is not compiled by any test (put it between BEGIN/END markers)", first)
		}
	}
}

// squashCode drops whitespace, comment markers of Go doc examples, and the
// braces gofmt adds around the README's one-line "if err != nil { return
// err }" forms, so layout differences do not count.
func squashCode(s string) string {
	s = regexp.MustCompile(`(?m)^\s*//\t`).ReplaceAllString(s, "")
	return strings.Join(strings.Fields(s), "")
}

// TestREADMERulesNameTests: every rule in "The rules, in plain words" names
// a test that shows it, and every test it names exists.
func TestREADMERulesNameTests(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	must(t, err)
	text := string(readme)
	start := strings.Index(text, "## The rules, in plain words")
	end := strings.Index(text[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("section not found")
	}
	section := text[start : start+1+end]
	var sources strings.Builder
	_ = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, "_test.go") {
			b, _ := os.ReadFile(path)
			sources.Write(b)
		}
		return nil
	})
	rules := strings.Split(section, "\n- ")[1:]
	if len(rules) < 8 {
		t.Fatalf("found %d rules in the section", len(rules))
	}
	for _, rule := range rules {
		title, _, _ := strings.Cut(rule, ".")
		names := regexp.MustCompile("`(Test[A-Za-z]+)`").FindAllStringSubmatch(rule, -1)
		if len(names) == 0 {
			t.Errorf("rule %q names no test", title)
		}
		for _, n := range names {
			if !strings.Contains(sources.String(), "func "+n[1]+"(") {
				t.Errorf("rule %q names %s, which does not exist", title, n[1])
			}
		}
	}
}

// defaults are the Default* constants, by the option they are the default
// of; TestDefaultsTable checks that the list is complete.
var defaults = map[string]any{
	"HealthCheckInterval":        geofailover.DefaultHealthCheckInterval,
	"HealthCheckTimeout":         geofailover.DefaultHealthCheckTimeout,
	"UnhealthyAfter":             geofailover.DefaultUnhealthyAfter,
	"HealthyAfter":               geofailover.DefaultHealthyAfter,
	"BreakerWindow":              geofailover.DefaultBreakerWindow,
	"BreakerBucket":              geofailover.DefaultBreakerBucket,
	"BreakerMinFailures":         geofailover.DefaultBreakerMinFailures,
	"BreakerFailureRatio":        geofailover.DefaultBreakerFailureRatio,
	"BreakerConsecutiveFailures": geofailover.DefaultBreakerConsecutiveFailures,
	"SlowCallRatio":              geofailover.DefaultSlowCallRatio,
	"SlowCallMinCalls":           geofailover.DefaultSlowCallMinCalls,
	"StallTimeout":               geofailover.DefaultStallTimeout,
	"GracePeriod":                geofailover.DefaultGracePeriod,
	"GracePeriodMax":             geofailover.DefaultGracePeriodMax,
	"FailbackDelay":              geofailover.DefaultFailbackDelay,
	"LatencySwitchAfter":         geofailover.DefaultLatencySwitchAfter,
}

// TestDefaultsTable holds the documented table of options and defaults to
// the Default* constants: every constant has its row, and the row gives its
// value, so that a default cannot change in one place only.
func TestDefaultsTable(t *testing.T) {
	src, err := os.ReadFile("options.go")
	must(t, err)
	for _, m := range regexp.MustCompile(`(?m)^\s+Default(\w+)\s+=`).FindAllStringSubmatch(string(src), -1) {
		if _, ok := defaults[m[1]]; !ok {
			t.Errorf("Default%s is not in this test's list", m[1])
		}
	}
	page, err := os.ReadFile(defaultsPage)
	must(t, err)
	_, table, ok := strings.Cut(string(page), "| option | default | meaning |")
	if !ok {
		t.Fatalf("%s: no table of options and defaults", defaultsPage)
	}
	table, _, _ = strings.Cut(table, "\n\n")
	documented := map[string]string{}
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.Contains(cells[1], "`") {
			continue
		}
		names := strings.Split(cells[1], "/")
		values := strings.Split(cells[2], "/")
		if len(names) != len(values) {
			t.Errorf("%s: row %q has %d options and %d defaults", defaultsPage, line, len(names), len(values))
			continue
		}
		for i, n := range names {
			documented[strings.Trim(strings.TrimSpace(n), "`")] = strings.TrimSpace(values[i])
		}
	}
	for name, v := range defaults {
		want := fmt.Sprint(v)
		if d, ok := v.(time.Duration); ok {
			want = docDuration(d)
		}
		got, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("%s: no row for %s (default %s)", defaultsPage, name, want)
		case got != want:
			t.Errorf("%s: %s's default is given as %q; Default%s is %s", defaultsPage, name, got, name, want)
		}
	}
}

// docDuration writes a duration as the docs do: "500 ms", "1 s", "5 min".
func docDuration(d time.Duration) string {
	switch {
	case d%time.Minute == 0:
		return fmt.Sprintf("%d min", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%d s", d/time.Second)
	}
	return fmt.Sprintf("%d ms", d/time.Millisecond)
}
