package geofailover_test

// The docs, held to the code: each Go block a page shows lies between
// BEGIN and END markers in a test file (here, in failovertest and config,
// and in recipes_test.go), and TestDocsCodeBlocks checks that every Go
// block of every page is one of them, whitespace aside; the tests the pages
// name exist, their links lead somewhere, and the tables of defaults and
// rules match the code.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// The pages with the tables and rules the tests below hold to the code.
const (
	defaultsPage = "docs/client.md"
	rulesPage    = "docs/rules.md"
)

var markerRE = regexp.MustCompile(`(?s)// BEGIN (\w+)\n(.*?)\n\s*// END (\w+)`)

// docPages are the repository's Markdown pages: the README, docs/, the
// pages beside packages, CONTRIBUTING, BENCHMARKS and CHANGELOG.
func docPages(t *testing.T) []string {
	t.Helper()
	var pages []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			pages = append(pages, path)
		}
		return nil
	})
	must(t, err)
	if len(pages) < 10 {
		t.Fatalf("found %d pages: %v", len(pages), pages)
	}
	return pages
}

// testSources is every test file of the repository (all its modules).
func testSources(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "node_modules" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, "_test.go") {
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			b.Write(src)
			b.WriteString("\n")
		}
		return nil
	})
	must(t, err)
	return b.String()
}

// TestDocsCodeBlocks: every Go block of every page is code a test compiles
// (between BEGIN and END markers in a test file; whitespace and the pages'
// shorter one-line forms aside).
func TestDocsCodeBlocks(t *testing.T) {
	var compiled []string
	for _, m := range markerRE.FindAllStringSubmatch(testSources(t), -1) {
		compiled = append(compiled, squashCode(m[2]))
	}
	blocks := 0
	for _, page := range docPages(t) {
		text, err := os.ReadFile(page)
		must(t, err)
		for _, b := range regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(text), -1) {
			blocks++
			want := squashCode(b[1])
			found := false
			for _, c := range compiled {
				found = found || strings.Contains(c, want)
			}
			if !found {
				first, _, _ := strings.Cut(strings.TrimSpace(b[1]), "\n")
				t.Errorf("%s: the Go block starting %q is not compiled by any test (put it between BEGIN/END markers)", page, first)
			}
		}
	}
	if blocks < 5 {
		t.Fatalf("found %d Go blocks in the pages", blocks)
	}
}

// squashCode drops whitespace, comment markers of Go doc examples, and the
// braces gofmt adds around the pages' one-line "if err != nil { return
// err }" forms, so layout differences do not count.
func squashCode(s string) string {
	s = regexp.MustCompile(`(?m)^\s*//\t`).ReplaceAllString(s, "")
	return strings.Join(strings.Fields(s), "")
}

// TestDocsNameTests: every test, benchmark and example a page names exists.
func TestDocsNameTests(t *testing.T) {
	sources := testSources(t)
	named := 0
	for _, page := range docPages(t) {
		text, err := os.ReadFile(page)
		must(t, err)
		for _, n := range regexp.MustCompile(`\b((?:Test|Benchmark|Example|Fuzz)[A-Z][A-Za-z0-9_]*)`).FindAllStringSubmatch(string(text), -1) {
			named++
			if !strings.Contains(sources, "func "+n[1]+"(") {
				t.Errorf("%s names %s, which does not exist", page, n[1])
			}
		}
	}
	if named < 50 {
		t.Fatalf("the pages name %d tests", named)
	}
}

// TestDocsLinks: every relative link of every page leads to a file that
// exists, and every anchor to a heading of the page it names.
func TestDocsLinks(t *testing.T) {
	linkRE := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range docPages(t) {
		text, err := os.ReadFile(page)
		must(t, err)
		for _, m := range linkRE.FindAllStringSubmatch(string(text), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s links to %s, which does not exist", page, target)
					continue
				}
			}
			if anchor != "" && !slices.Contains(headingAnchors(t, path), anchor) {
				t.Errorf("%s links to %s: %s has no heading #%s", page, target, path, anchor)
			}
		}
	}
}

// headingAnchors are the anchors GitHub gives the headings of a page.
func headingAnchors(t *testing.T, page string) []string {
	text, err := os.ReadFile(page)
	must(t, err)
	var out []string
	for _, h := range regexp.MustCompile(`(?m)^#+ (.*)$`).FindAllStringSubmatch(string(text), -1) {
		a := strings.ToLower(h[1])
		a = regexp.MustCompile("[^a-z0-9 _-]").ReplaceAllString(a, "")
		out = append(out, strings.ReplaceAll(a, " ", "-"))
	}
	return out
}

// TestREADMEIsShort: the README stays a page a newcomer reads in minutes;
// the rest belongs in the pages it links to.
func TestREADMEIsShort(t *testing.T) {
	text, err := os.ReadFile("README.md")
	must(t, err)
	if n := strings.Count(string(text), "\n"); n > 200 {
		t.Errorf("README.md has %d lines; move detail to a page under docs/ and link it", n)
	}
}

// TestREADMERulesNameTests: every rule in "The rules, in plain words" names
// a test that shows it (TestDocsNameTests checks that it exists).
func TestREADMERulesNameTests(t *testing.T) {
	text, err := os.ReadFile(rulesPage)
	must(t, err)
	start := strings.Index(string(text), "## The rules, in plain words")
	end := strings.Index(string(text)[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatalf("%s: section not found", rulesPage)
	}
	rules := strings.Split(string(text)[start:start+1+end], "\n- ")[1:]
	if len(rules) < 8 {
		t.Fatalf("found %d rules in the section", len(rules))
	}
	for _, rule := range rules {
		title, _, _ := strings.Cut(rule, ".")
		if !regexp.MustCompile("`Test[A-Za-z]+").MatchString(rule) {
			t.Errorf("%s: rule %q names no test", rulesPage, title)
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
