package proxy_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// needTool returns the path of a redis-tools program, skipping the test
// without it (failing in CI).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (in CI that is a failure): apt-get install -y redis-tools", name)
		}
		t.Skipf("%s is missing: apt-get install -y redis-tools", name)
	}
	return p
}

// TestRedisCLI: redis-cli works through the proxy in RESP2 and RESP3,
// for ordinary, inline-quoted and local commands.
func TestRedisCLI(t *testing.T) {
	cli := needTool(t, "redis-cli")
	r := startRig(t, nil)
	host, port, _ := strings.Cut(r.addr, ":")
	run := func(addr string, args ...string) string {
		t.Helper()
		h, p, _ := strings.Cut(addr, ":")
		out, err := exec.Command(cli, append([]string{"-h", h, "-p", p}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// Each step through the proxy (whose traffic goes to east) and directly
	// on west, the standby: the same output.
	for _, args := range [][]string{
		{"SET", "greeting", "hello world"},
		{"GET", "greeting"},
		{"-3", "HSET", "h", "a", "1"},
		{"-3", "HGETALL", "h"},
		{"HGETALL", "h"},
		{"ZADD", "z", "1.5", "m"},
		{"-3", "ZRANGE", "z", "0", "-1", "WITHSCORES"},
		{"ZRANGE", "z", "0", "-1", "WITHSCORES"},
		{"CLIENT", "SETNAME", "cli"},
		{"ECHO", "x"},
		{"-n", "2", "SET", "indb2", "v"},
		{"-n", "2", "GET", "indb2"},
		{"GET", "indb2"},
		{"-3", "GET", "nothing"},
		{"INCR", "greeting"},
	} {
		if got, want := run(r.addr, args...), run(r.west.Addr, args...); got != want {
			t.Errorf("redis-cli %q: %q through the proxy, %q directly", args, got, want)
		}
	}
	// Commands piped in as text, one per line (inline, with quotes).
	cmd := exec.Command(cli, "-h", host, "-p", port)
	cmd.Stdin = strings.NewReader("SET quoted \"a b\"\nGET quoted\nPING\n")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "OK\na b\nPONG" {
		t.Fatalf("piped redis-cli: %q, %v", out, err)
	}
}

// TestRedisBenchmark: redis-benchmark's SET and GET, one at a time and
// pipelined by 16, get no error through the proxy.
func TestRedisBenchmark(t *testing.T) {
	bench := needTool(t, "redis-benchmark")
	r := startRig(t, nil)
	host, port, _ := strings.Cut(r.addr, ":")
	for _, pipeline := range []string{"1", "16"} {
		out, err := exec.Command(bench, "-h", host, "-p", port, "-t", "set,get", "-n", "5000", "-c", "10", "-P", pipeline, "-q").CombinedOutput()
		text := string(out)
		if err != nil || strings.Contains(text, "ERR") || strings.Count(text, "requests per second") != 2 {
			t.Fatalf("redis-benchmark -P %s: %v\n%s", pipeline, err, text)
		}
		t.Logf("-P %s: %s", pipeline, strings.Join(strings.Fields(strings.ReplaceAll(text, "\r", "\n")), " "))
	}
}
