package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/failovertest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		// proxybench's child proxy (os.Executable is this test binary).
		main()
	}
	failovertest.VerifyTestMain(m)
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code = run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// checkReport parses the report as XML (it is written as well-formed
// XHTML) and checks the chart and the events are in it.
func checkReport(t *testing.T, path string, want ...string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	dec.Entity = xml.HTMLEntity
	svgs := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("report is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "svg" {
			svgs++
		}
	}
	if svgs != 1 {
		t.Errorf("report has %d svg elements, want 1", svgs)
	}
	for _, w := range want {
		if !bytes.Contains(data, []byte(w)) {
			t.Errorf("report lacks %q", w)
		}
	}
	if bytes.Contains(data, []byte("<script")) || bytes.Contains(data, []byte("http://cdn")) {
		t.Error("report is not self-contained")
	}
}

func TestDemoQuick(t *testing.T) {
	for _, mode := range []string{"redis-server", "in-process"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "redis-server" {
				if _, err := failovertest.Binary(); err != nil && os.Getenv("CI") != "true" {
					t.Skip(err)
				}
			}
			report := filepath.Join(t.TempDir(), "report.html")
			args := []string{"demo", "--quick", "--report", report}
			if mode == "in-process" {
				args = append(args, "--in-process", "--listen", "127.0.0.1:0")
			}
			code, out, errOut := runCLI(t, args...)
			if mode == "in-process" && !strings.Contains(out, "status page: http://127.0.0.1:") {
				t.Errorf("demo --listen printed no status page address:\n%s", out)
			}
			if code != 0 {
				t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			for _, w := range []string{"summary:", "eu-west -> us-east", "switch eu-west -> us-east", "switch us-east -> eu-west (failback)", "report: " + report} {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if mode == "redis-server" && !strings.Contains(out, "started redis-server") {
				t.Errorf("did not use redis-server:\n%s", out)
			}
			checkReport(t, report, "failover eu-west→us-east", "failback us-east→eu-west", "take eu-west down", "Summary")
			// No server is left running.
			for _, addr := range regexp.MustCompile(`127\.0\.0\.1:\d+`).FindAllString(out, -1) {
				if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
					c.Close()
					t.Errorf("%s still accepts connections after the demo", addr)
				}
			}
		})
	}
}

func TestProbe(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	code, out, errOut := runCLI(t, "probe", "--pings", "3", "redis://"+east.Addr, "redis://"+west.Addr)
	if code != 0 || !strings.Contains(out, east.Version) || strings.Count(out, "master") != 2 {
		t.Fatalf("probe of two healthy servers: exit %d\n%s%s", code, out, errOut)
	}
	west.Kill()
	if code, out, _ := runCLI(t, "probe", "redis://"+east.Addr, "redis://"+west.Addr); code != 0 || !strings.Contains(out, "connection refused") {
		t.Fatalf("probe with the standby down: exit %d\n%s", code, out)
	}
	code, out, errOut = runCLI(t, "probe", "redis://"+west.Addr, "redis://"+east.Addr)
	if code != 1 || !strings.Contains(errOut, "highest-weight endpoint") {
		t.Fatalf("probe with the preferred endpoint down: exit %d\n%s%s", code, out, errOut)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("endpoints:\n  - name: a\n    wieght: 1\n"), 0o644)
	code, _, errOut := runCLI(t, "probe", "--config", bad)
	if code != 2 || !strings.Contains(errOut, "bad.yaml:3: unknown field \"wieght\"") {
		t.Errorf("bad config: exit %d, %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "probe", "--config", filepath.Join(dir, "missing.yaml"))
	if code != 2 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("missing config: exit %d, %s", code, errOut)
	}
}

func TestUsage(t *testing.T) {
	if code, _, errOut := runCLI(t); code != 2 || !strings.Contains(errOut, "Usage:") {
		t.Errorf("no command: exit %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "dmeo"); code != 2 || !strings.Contains(errOut, `unknown command "dmeo"`) {
		t.Errorf("unknown command: exit %d %s", code, errOut)
	}
	for _, cmd := range []string{"demo", "probe", "drill"} {
		if code, _, errOut := runCLI(t, cmd, "--help"); code != 0 || !strings.Contains(errOut, "Examples:") {
			t.Errorf("%s --help: exit %d %s", cmd, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "probe"); code != 2 || !strings.Contains(errOut, "no endpoints") {
		t.Errorf("probe without endpoints: exit %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "drill", "--fault", "flood", "redis://a:1", "redis://b:2"); code != 2 || !strings.Contains(errOut, "--fault") {
		t.Errorf("drill with a bad fault: exit %d %s", code, errOut)
	}
}

func TestDrill(t *testing.T) {
	for _, fault := range []string{"blackhole", "refuse"} {
		t.Run(fault, func(t *testing.T) {
			east, west := failovertest.StartServer(t), failovertest.StartServer(t)
			dir := t.TempDir()
			cfg := filepath.Join(dir, "drill.yaml")
			os.WriteFile(cfg, []byte(`endpoints:
  - name: east
    weight: 1
    url: redis://`+east.Addr+`/0
  - name: west
    weight: 0.5
    url: redis://`+west.Addr+`/0
health_check_interval: 100ms
health_check_timeout: 100ms
grace_period: 500ms
failback_delay: 300ms
`), 0o644)
			// A key outside the prefix must survive the drill.
			ctx := context.Background()
			ec := redis.NewClient(&redis.Options{Addr: east.Addr})
			defer ec.Close()
			ec.Set(ctx, "app:keep", "1", 0)
			report := filepath.Join(dir, "drill.html")
			code, out, errOut := runCLI(t, "drill", "--config", cfg, "--fault", fault, "--outage", "1s", "--warm", "500ms", "--report", report)
			if code != 0 {
				t.Fatalf("drill exited %d\n%s\n%s", code, out, errOut)
			}
			if !strings.Contains(out, "east -> west") || !strings.Contains(out, "switch west -> east (failback)") ||
				!strings.Contains(out, "errors after recovery") {
				t.Errorf("output:\n%s", out)
			}
			checkReport(t, report, "failover east→west", "failback west→east")
			for _, s := range []*failovertest.Server{east, west} {
				c := redis.NewClient(&redis.Options{Addr: s.Addr})
				keys, err := c.Keys(ctx, "geofailover:drill:*").Result()
				c.Close()
				if err != nil || len(keys) != 0 {
					t.Errorf("%s: drill keys left: %v %v", s.Addr, keys, err)
				}
			}
			if v, _ := ec.Get(ctx, "app:keep").Result(); v != "1" {
				t.Error("the drill touched a key outside its prefix")
			}
		})
	}
}

// TestDemoInterrupted: Ctrl-C (a cancelled context) mid-demo exits 130 and
// leaves no server running.
func TestDemoInterrupted(t *testing.T) {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(700*time.Millisecond, cancel) // as signal.NotifyContext does on Ctrl-C
	code := run(ctx, []string{"demo", "--quick", "--report", filepath.Join(t.TempDir(), "r.html")}, &out, &errb)
	if code != 130 || !strings.Contains(errb.String(), "interrupted") {
		t.Fatalf("interrupted demo: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	addrs := regexp.MustCompile(`127\.0\.0\.1:\d+`).FindAllString(out.String(), -1)
	if len(addrs) != 3 {
		t.Fatalf("found %d server addresses in the output:\n%s", len(addrs), out.String())
	}
	for _, addr := range addrs {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Ctrl-C", addr)
		}
	}
}

func TestProbeAuth(t *testing.T) {
	s := failovertest.StartServer(t, failovertest.WithArgs("--requirepass", "sesame"))
	code, out, _ := runCLI(t, "probe", "redis://"+s.Addr)
	if code != 1 || !strings.Contains(out, "NOAUTH") {
		t.Errorf("probe without the password: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "probe", "redis://:sesame@"+s.Addr)
	if code != 0 || strings.Contains(out, "sesame") {
		t.Errorf("probe with the password: exit %d (and the password must not be printed)\n%s", code, out)
	}
}

// TestBench runs the failover benchmark briefly, to keep it working (it is
// not a timed test).
func TestBench(t *testing.T) {
	if _, err := failovertest.Binary(); err != nil && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	dir := t.TempDir()
	code, out, errOut := runCLI(t, "bench", "--runs", "1", "--faults", "kill,blackhole", "--traffic", "idle,load", "--quick",
		"--json", filepath.Join(dir, "b.json"), "--markdown", filepath.Join(dir, "b.md"))
	if code != 0 {
		t.Fatalf("bench exited %d\n%s\n%s", code, out, errOut)
	}
	md, err := os.ReadFile(filepath.Join(dir, "b.md"))
	if err != nil || !strings.Contains(string(md), "| kill | load |") || !strings.Contains(string(md), "| blackhole | idle |") {
		t.Fatalf("markdown:\n%s (%v)", md, err)
	}
	js, err := os.ReadFile(filepath.Join(dir, "b.json"))
	if err != nil || !strings.Contains(string(js), `"switched": true`) {
		t.Fatalf("json:\n%s (%v)", js, err)
	}
	if code, _, errOut := runCLI(t, "bench", "--faults", "meteor"); code != 2 || !strings.Contains(errOut, "unknown fault") {
		t.Errorf("bad fault: exit %d %s", code, errOut)
	}
}

// lockedBuffer is a bytes.Buffer safe to read while the command writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWatchEndToEnd: watch runs a client against local servers, shows the
// failover when the preferred one is killed, serves the status page and
// /metrics meanwhile, and Ctrl-C (the context ending) exits cleanly.
func TestWatchEndToEnd(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"watch", "--listen", "127.0.0.1:0", "--traffic", east.URL(), west.URL()}, &out, &errb)
	}()
	addrRE := regexp.MustCompile(`status page: http://([0-9.:]+)/`)
	var base string
	for start := time.Now(); base == ""; time.Sleep(20 * time.Millisecond) {
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			base = "http://" + m[1]
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("watch printed no address: %q %q", out.String(), errb.String())
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	fetch := func(path, accept string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Accept", accept)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitActive := func(name string) {
		t.Helper()
		want := `"Active":"` + name + `"`
		for start := time.Now(); !strings.Contains(fetch("/", "application/json"), want); time.Sleep(50 * time.Millisecond) {
			if time.Since(start) > 30*time.Second {
				t.Fatalf("the status page never showed %s active: %s", name, fetch("/", "application/json"))
			}
		}
	}
	eastName, westName := strings.TrimPrefix(east.URL(), "redis://"), strings.TrimPrefix(west.URL(), "redis://")
	waitActive(eastName)
	if err := east.Kill(); err != nil {
		t.Fatal(err)
	}
	waitActive(westName)
	time.Sleep(1500 * time.Millisecond) // a redraw and a metrics collection after the switch
	metrics := fetch("/metrics", "text/plain")
	for _, want := range []string{`geofailover_switches_total{from="` + eastName, `geofailover_endpoint_active{endpoint="` + westName + `"`, "geofailover_endpoint_calls_total"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	if page := fetch("/", "text/html"); !strings.Contains(page, `<strong id="active">`+westName+`</strong>`) {
		t.Errorf("the status page does not show %s active", westName)
	}
	cancel() // Ctrl-C
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("watch exited %d after Ctrl-C: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not exit within 10 s of Ctrl-C")
	}
	if !strings.Contains(out.String(), "switch "+eastName+" -> "+westName) {
		t.Errorf("the live view did not show the switch:\n%s", out.String())
	}
}

// TestProbeSection: --section reads the endpoints from a key of an
// application's own file, whose other keys are its own; an endpoint's
// options section applies (probe shows the endpoint by address).
func TestProbeSection(t *testing.T) {
	east := failovertest.StartServer(t)
	dir := t.TempDir()
	app := filepath.Join(dir, "app.yaml")
	os.WriteFile(app, []byte("listen: :8080\nfeatures: {beta: true}\nredis:\n  endpoints:\n    - name: east\n      weight: 1\n      url: redis://"+east.Addr+"/0\n      options: {pool_size: 4, client_name: shop}\n"), 0o644)
	if code, out, errOut := runCLI(t, "probe", "--config", app, "--section", "redis"); code != 0 || !strings.Contains(out, east.Addr) {
		t.Fatalf("probe --section redis: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "probe", "--config", app); code != 2 || !strings.Contains(errOut, `unknown field "listen"`) {
		t.Errorf("the whole application file as a config: exit %d, %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "probe", "--config", app, "--section", "cache"); code != 2 || !strings.Contains(errOut, `no top-level "cache" section`) {
		t.Errorf("a missing section: exit %d, %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "probe", "--section", "redis", "redis://"+east.Addr); code != 2 || !strings.Contains(errOut, "--section needs --config") {
		t.Errorf("--section without --config: exit %d, %s", code, errOut)
	}
}
