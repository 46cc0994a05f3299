package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/failovertest"
)

// TestProxyEndToEnd: geofailover proxy serves two regions from a config
// file, its /metrics has the proxy's counters, SIGHUP (here: the reload
// it runs) changes weights without dropping the client's connection, and
// Ctrl-C drains and exits 0.
func TestProxyEndToEnd(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	cfg := filepath.Join(t.TempDir(), "regions.yaml")
	writeConfig := func(eastWeight, westWeight float64) {
		t.Helper()
		body := fmt.Sprintf("endpoints:\n  - name: east\n    weight: %g\n    url: %s\n  - name: west\n    weight: %g\n    url: %s\n", eastWeight, east.URL(), westWeight, west.URL())
		if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(1, 0.5)
	if code, out, errOut := runCLI(t, "proxy", "--check", "--config", cfg); code != 0 || !strings.Contains(out, "config OK: 2 regions, RESP3, db 0") {
		t.Fatalf("--check: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "proxy", "--listen", "0.0.0.0:0", "--config", cfg); code != 2 || !strings.Contains(errOut, "not a loopback address") {
		t.Fatalf("a remote --listen without a password: %d %q", code, errOut)
	}
	waiting := filepath.Join(t.TempDir(), "waiting.yaml")
	if err := os.WriteFile(waiting, []byte(fmt.Sprintf("wait_when_all_down: true\nendpoints:\n  - name: east\n    weight: 1\n    url: %s\n", east.URL())), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "proxy", "--config", waiting, "--listen", "127.0.0.1:0"); code != 2 || !strings.Contains(errOut, "wait_when_all_down") {
		t.Fatalf("wait_when_all_down: %d %q", code, errOut)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"proxy", "--config", cfg, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json"}, &out, &errb)
	}()
	wait := func(re *regexp.Regexp) string {
		t.Helper()
		for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
			if m := re.FindStringSubmatch(out.String()); m != nil {
				return m[1]
			}
			if time.Since(start) > 20*time.Second {
				t.Fatalf("proxy printed no %v: %q %q", re, out.String(), errb.String())
			}
		}
	}
	addr := wait(regexp.MustCompile(`listening on ([0-9.:]+)`))
	admin := wait(regexp.MustCompile(`metrics: http://([0-9.:]+)/metrics`))
	// Events are logged through slog under the library's names.
	for start := time.Now(); !strings.Contains(errb.String(), `"msg":"initial-selection","to":"east"`); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no initial-selection event logged as JSON on stderr: %q", errb.String())
		}
	}
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v := failovertest.Connect(t, east.Addr).Get(ctx, "k").Val(); v != "v" {
		t.Fatalf("east has %q", v)
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"geofailover_proxy_connections 1", `geofailover_proxy_commands_total{outcome="forwarded"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	id := c.ClientID(ctx).Val()

	// SIGHUP reloads the config: west's weight changes; the client's
	// connection stays.
	writeConfig(1, 0.8)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait(regexp.MustCompile(`reload: (west) weight 0.5 -> 0.8`))
	if got := c.ClientID(ctx).Val(); got != id {
		t.Fatalf("CLIENT ID after the reload = %d, want %d (the same connection)", got, id)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("proxy exited %d after Ctrl-C: %q", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not exit after Ctrl-C")
	}
	if !strings.Contains(out.String(), "draining") {
		t.Fatalf("no drain: %q", out.String())
	}
}

// TestProxyBenchQuick: proxybench runs every target it has (HAProxy and
// twemproxy when installed; in CI they must be) and prints its table.
func TestProxyBenchQuick(t *testing.T) {
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-benchmark is missing (apt-get install -y redis-tools)")
		}
		t.Skip("redis-benchmark is missing (apt-get install -y redis-tools)")
	}
	code, out, errOut := runCLI(t, "proxybench", "--rounds", "1", "--requests", "2000", "--clients", "10")
	if code != 0 {
		t.Fatalf("proxybench: %d\n%s\n%s", code, out, errOut)
	}
	rows := []string{"| direct | ", "| geofailover proxy | "}
	if os.Getenv("CI") == "true" {
		rows = append(rows, "| HAProxy | ", "| twemproxy | ")
	}
	for _, row := range rows {
		if !strings.Contains(out, row) {
			t.Errorf("no row %q in:\n%s", row, out)
		}
	}
	if !strings.Contains(out, ", 0 failed") {
		t.Errorf("the proxy failed commands:\n%s", out)
	}
}

// TestProxyBenchMemoryAndDrain runs proxybench's memory and drain parts
// small: the proxy as a child process (this test binary, see TestMain),
// its memory measured, and SIGTERM under load losing no command sent
// before it (the part fails otherwise).
func TestProxyBenchMemoryAndDrain(t *testing.T) {
	code, out, errOut := runCLI(t, "proxybench", "--parts", "memory,drain", "--idle", "200", "--busy", "20", "--drain-clients", "20")
	if code != 0 {
		t.Fatalf("proxybench: %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"| 200 idle (each sent one PING) | ", "| 20 busy (", "; 0 commands sent before SIGTERM got no answer;"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	t.Log(out)
}
