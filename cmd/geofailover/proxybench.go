package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/proxy"
)

const proxyBenchHelp = `Usage: geofailover proxybench [flags]

Measure what geofailover proxy costs against a direct connection, HAProxy
(TCP mode, redis PING checks, a backup server) and twemproxy (nutcracker):
redis-benchmark SET and GET with --clients connections, one at a time
(-P 1) and pipelined by 16 (-P 16), on a local redis-server. Each round
runs every target in turn (rotated, since the machine is noisy), and the
medians over --rounds are printed as a Markdown table: requests per
second, the ratio to direct, and p50/p99 latency at -P 1. Targets whose
program is not installed (haproxy, nutcracker) are left out, with a note.
The proxy runs in this process; the others are separate processes.

Other parts (--parts, comma-separated):
  failover  an application in Go (go-redis) and in Python (redis-py), 8
            workers with 100 ms deadlines, through the proxy and through
            HAProxy (usual and tuned checks), while the preferred region is
            killed or frozen for --outage: first success on the standby,
            all workers moved, errors, failback (about 4 minutes)
  memory    the proxy as a child process: resident memory with no client,
            --idle idle connections and --busy busy ones
  drain     SIGTERM to the proxy while --drain-clients send pipelines: the
            commands sent before it that got no answer (an error if any)

Examples:
  geofailover proxybench
  geofailover proxybench --rounds 5 --requests 200000
  geofailover proxybench --parts failover,memory,drain
`

// benchTarget is one way of reaching the server.
type benchTarget struct {
	name string
	addr string
}

// benchResult is one redis-benchmark line.
type benchResult struct {
	rps, p50, p99 float64
}

func proxyBenchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("proxybench", proxyBenchHelp, stderr)
	rounds := fs.Int("rounds", 3, "rounds of every target")
	requests := fs.Int("requests", 100000, "requests per redis-benchmark run (-n)")
	clients := fs.Int("clients", 50, "redis-benchmark connections (-c)")
	parts := fs.String("parts", "overhead", "what to measure, comma-separated: overhead, failover, memory, drain")
	outage := fs.Duration("outage", 3*time.Second, "failover: how long the preferred region stays killed or frozen")
	idle := fs.Int("idle", 10000, "memory: idle client connections")
	busy := fs.Int("busy", 1000, "memory: busy client connections")
	drainClients := fs.Int("drain-clients", 200, "drain: client connections under load at SIGTERM")
	if err := parse(fs, args); err != nil {
		return err
	}
	do := map[string]bool{}
	for part := range strings.SplitSeq(*parts, ",") {
		switch part = strings.TrimSpace(part); part {
		case "overhead", "failover", "memory", "drain":
			do[part] = true
		default:
			return usageError("--parts: unknown part %q (want overhead, failover, memory, drain)", part)
		}
	}
	if *idle < 1 || *busy < 1 || *drainClients < 1 {
		return usageError("--idle, --busy and --drain-clients must be at least 1")
	}
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		return exitError{2, errors.New("redis-benchmark is not installed (apt-get install -y redis-tools)")}
	}
	dir, err := os.MkdirTemp("", "geofailover-proxybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if do["failover"] {
		if err := runProxyFailover(ctx, dir, []string{"kill", "freeze"}, *outage, stdout, stderr); err != nil {
			return err
		}
	}
	if do["memory"] {
		if err := runProxyMemory(ctx, dir, *idle, *busy, stdout); err != nil {
			return err
		}
	}
	if do["drain"] {
		if err := runProxyDrain(dir, *drainClients, stdout); err != nil {
			return err
		}
	}
	if !do["overhead"] {
		return nil
	}
	region, standby, stopRegions, err := launchRegions(filepath.Join(dir, "overhead"))
	if err != nil {
		return err
	}
	defer stopRegions()
	targets := []benchTarget{{name: "direct", addr: region.Addr}}
	addr, srv, stopProxy, err := serveProxy(ctx, region.Addr, standby.Addr, nil)
	if err != nil {
		return err
	}
	defer stopProxy()
	targets = append(targets, benchTarget{name: "geofailover proxy", addr: addr})
	if addr, stop, err := startHAProxy(dir, region.Addr, standby.Addr, "inter 1s fall 2 rise 3"); err != nil {
		fmt.Fprintf(stdout, "note: HAProxy left out: %v\n", err)
	} else {
		defer stop()
		targets = append(targets, benchTarget{name: "HAProxy", addr: addr})
	}
	if addr, stop, err := startTwemproxy(dir, region.Addr); err != nil {
		fmt.Fprintf(stdout, "note: twemproxy left out: %v\n", err)
	} else {
		defer stop()
		targets = append(targets, benchTarget{name: "twemproxy", addr: addr})
	}

	// results[target][pipeline][test] = one result per round
	results := map[string]map[int]map[string][]benchResult{}
	for _, t := range targets {
		results[t.name] = map[int]map[string][]benchResult{1: {}, 16: {}}
	}
	for round := range *rounds {
		for _, pipeline := range []int{1, 16} {
			order := slices.Clone(targets)
			k := round % len(order)
			order = append(order[k:], order[:k]...)
			for _, t := range order {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				got, err := redisBenchmark(ctx, t.addr, *requests, *clients, pipeline)
				if err != nil {
					return fmt.Errorf("%s -P %d: %w", t.name, pipeline, err)
				}
				for test, r := range got {
					results[t.name][pipeline][test] = append(results[t.name][pipeline][test], r)
				}
				fmt.Fprintf(stderr, "round %d -P %d %-18s SET %.0f GET %.0f\n", round+1, pipeline, t.name, got["SET"].rps, got["GET"].rps)
			}
		}
	}
	fmt.Fprintf(stdout, "\nredis-benchmark -t set,get -n %d -c %d, medians of %d rounds (%s):\n\n", *requests, *clients, *rounds, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintln(stdout, "| target | -P 1 SET rps | -P 1 GET rps | -P 1 SET p50 / p99 ms | -P 1 GET p50 / p99 ms | -P 16 SET rps | -P 16 GET rps |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|")
	direct := results["direct"]
	for _, t := range targets {
		r := results[t.name]
		cell := func(p int, test string) string {
			m := median(r[p][test], func(b benchResult) float64 { return b.rps })
			d := median(direct[p][test], func(b benchResult) float64 { return b.rps })
			return fmt.Sprintf("%.0f (%.2f)", m, m/d)
		}
		lat := func(test string) string {
			return fmt.Sprintf("%.3f / %.3f", median(r[1][test], func(b benchResult) float64 { return b.p50 }),
				median(r[1][test], func(b benchResult) float64 { return b.p99 }))
		}
		fmt.Fprintf(stdout, "| %s | %s | %s | %s | %s | %s | %s |\n", t.name, cell(1, "SET"), cell(1, "GET"), lat("SET"), lat("GET"), cell(16, "SET"), cell(16, "GET"))
	}
	st := srv.Stats()
	fmt.Fprintf(stdout, "\nproxy: %d commands forwarded, %d failed\n", st.Forwarded, st.Failed)
	return nil
}

func median(rs []benchResult, f func(benchResult) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// redisBenchmark runs redis-benchmark on addr and returns its SET and GET
// lines.
func redisBenchmark(ctx context.Context, addr string, n, clients, pipeline int) (map[string]benchResult, error) {
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.CommandContext(ctx, "redis-benchmark", "-h", host, "-p", port, "-t", "set,get",
		"-n", strconv.Itoa(n), "-c", strconv.Itoa(clients), "-P", strconv.Itoa(pipeline), "--csv").Output()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark: %w", err)
	}
	rows, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark output %q: %w", out, err)
	}
	got := map[string]benchResult{}
	for _, row := range rows {
		if len(row) < 7 || row[0] == "test" {
			continue
		}
		num := func(i int) float64 { v, _ := strconv.ParseFloat(row[i], 64); return v }
		got[row[0]] = benchResult{rps: num(1), p50: num(4), p99: num(6)}
	}
	if len(got) != 2 {
		return nil, fmt.Errorf("redis-benchmark printed %q", out)
	}
	return got, nil
}

// startHAProxy runs HAProxy in TCP mode in front of primary (backup:
// backup), with redis PING checks of the given timing.
func startHAProxy(dir, primary, backup, timing string) (string, func(), error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return "", nil, errors.New("haproxy is not installed (apt-get install -y haproxy)")
	}
	port, err := freeLocalPort()
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`global
  maxconn 4096
defaults
  mode tcp
  timeout connect 1s
  timeout client 1h
  timeout server 1h
frontend redis
  bind %s
  default_backend regions
backend regions
  option tcp-check
  tcp-check send PING\r\n
  tcp-check expect string +PONG
  server primary %s check %s on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions
  server backup %s check %s backup
`, addr, primary, timing, backup, timing)
	path := filepath.Join(dir, fmt.Sprintf("haproxy-%d.cfg", port))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", nil, err
	}
	return startDaemon(exec.Command(bin, "-db", "-f", path), addr)
}

// startTwemproxy runs twemproxy (nutcracker) in front of server.
func startTwemproxy(dir, server string) (string, func(), error) {
	bin, err := exec.LookPath("nutcracker")
	if err != nil {
		return "", nil, errors.New("nutcracker is not installed (apt-get install -y nutcracker)")
	}
	port, err := freeLocalPort()
	if err != nil {
		return "", nil, err
	}
	stats, err := freeLocalPort()
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf("region:\n  listen: %s\n  redis: true\n  hash: fnv1a_64\n  distribution: ketama\n  auto_eject_hosts: false\n  servers:\n   - %s:1\n", addr, server)
	path := filepath.Join(dir, fmt.Sprintf("nutcracker-%d.yml", port))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", nil, err
	}
	return startDaemon(exec.Command(bin, "-c", path, "-s", strconv.Itoa(stats), "-a", "127.0.0.1", "-o", filepath.Join(dir, "nutcracker.log")), addr)
}

// startDaemon starts cmd and waits until addr accepts connections.
func startDaemon(cmd *exec.Cmd, addr string) (string, func(), error) {
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
		if nc, err := net.Dial("tcp", addr); err == nil {
			_ = nc.Close()
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("%s did not listen on %s", filepath.Base(cmd.Path), addr)
}

func freeLocalPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// launchRegions starts two local redis-server regions under dir: east
// (the preferred one) and west. stop kills both.
func launchRegions(dir string) (east, west *failovertest.Server, stop func(), err error) {
	if east, err = failovertest.LaunchServer(filepath.Join(dir, "east")); err != nil {
		return nil, nil, nil, err
	}
	if west, err = failovertest.LaunchServer(filepath.Join(dir, "west")); err != nil {
		_ = east.Kill()
		return nil, nil, nil, err
	}
	return east, west, func() { _ = east.Kill(); _ = west.Kill() }, nil
}

// serveProxy serves, in this process and on a loopback port, a proxy in
// front of a geofailover client of the regions at east and west (weights 1
// and 0.5), with tune (if any) applied to the client's options. It returns
// once the client is ready; stop closes the proxy, then the client.
func serveProxy(ctx context.Context, east, west string, tune func(*geofailover.Options)) (addr string, srv *proxy.Server, stop func(), err error) {
	opts := &geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, URL: "redis://" + east},
		{Name: "west", Weight: 0.5, URL: "redis://" + west},
	}}
	if tune != nil {
		tune(opts)
	}
	c, err := geofailover.New(opts)
	if err != nil {
		return "", nil, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = c.WaitReady(wctx)
	cancel()
	if err == nil {
		srv, err = proxy.New(c, nil)
	}
	var ln net.Listener
	if err == nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		_ = c.Close()
		return "", nil, nil, err
	}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), srv, func() {
		_ = srv.Close()
		_ = c.Close()
	}, nil
}
