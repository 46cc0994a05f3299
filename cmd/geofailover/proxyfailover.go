package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/proxy"
)

// The failover half of proxybench: the reference workload (8 workers,
// SET then GET on a key of their own, 100 ms deadline each) from an
// application in Go (go-redis, default options but ContextTimeoutEnabled)
// or Python (redis-py, default options but a 100 ms socket timeout),
// pointed at geofailover proxy or at HAProxy, while the preferred region is
// killed or frozen (SIGSTOP) for a few seconds and comes back. Each command
// is a pipeline with a GET of a marker key that names the region that
// served it.

// failoverTarget is a way for a plain client to reach two regions.
type failoverTarget struct {
	name  string
	start func(dir, east, west string) (addr string, events func() []geofailover.Event, stop func(), err error)
}

func proxyFailoverTargets() []failoverTarget {
	haproxy := func(timing string) func(dir, east, west string) (string, func() []geofailover.Event, func(), error) {
		return func(dir, east, west string) (string, func() []geofailover.Event, func(), error) {
			addr, stop, err := startHAProxy(dir, east, west, timing)
			return addr, func() []geofailover.Event { return nil }, stop, err
		}
	}
	return []failoverTarget{
		{name: "geofailover proxy", start: func(_, east, west string) (string, func() []geofailover.Event, func(), error) {
			var mu sync.Mutex
			var events []geofailover.Event
			addr, _, stop, err := serveProxy(context.Background(), east, west, func(o *geofailover.Options) {
				o.StallTimeout = proxy.StallTimeout // as geofailover proxy gives its regions
				o.OnEvent = func(ev geofailover.Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }
			})
			return addr, func() []geofailover.Event {
				mu.Lock()
				defer mu.Unlock()
				return append([]geofailover.Event(nil), events...)
			}, stop, err
		}},
		{name: "HAProxy, usual (inter 1s fall 2 rise 3)", start: haproxy("inter 1s fall 2 rise 3")},
		{name: "HAProxy, tuned (inter 100ms fall 2 rise 2)", start: haproxy("inter 100ms fall 2 rise 2")},
	}
}

// failoverApp is an application that runs the reference workload against
// a proxy at addr until the returned stop, which gives its records.
type failoverApp struct {
	name  string
	start func(dir, addr string) (stop func() ([]failovertest.Record, error), err error)
}

// markerKey names, on each region, the region itself.
const markerKey = "geofailover:region"

func failoverApps() []failoverApp {
	return []failoverApp{{name: "go-redis", start: startGoRedisApp}, {name: "redis-py", start: startRedisPyApp}}
}

// startGoRedisApp runs the reference workload from a plain go-redis client.
// ContextTimeoutEnabled: the 100 ms deadline bounds each command, as an
// application that sets deadlines expects (go-redis's default would wait
// out its 3 s read timeout on a hung server).
func startGoRedisApp(_, addr string) (func() ([]failovertest.Record, error), error) {
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	step := func(name string, write bool) failovertest.Step {
		return failovertest.Step{Name: name, Write: write, Do: func(ctx context.Context, c redis.UniversalClient, w, n int) error {
			key := fmt.Sprint("bench:", w)
			var region *redis.StringCmd
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				if write {
					p.Set(ctx, key, n, 0)
				} else {
					p.Get(ctx, key)
				}
				region = p.Get(ctx, markerKey)
				return nil
			})
			if err == redis.Nil {
				err = nil
			}
			if err == nil {
				failovertest.Served(ctx, region.Val())
			}
			return err
		}}
	}
	run := failovertest.Workload{Steps: []failovertest.Step{step("SET", true), step("GET", false)}}.Start(client)
	return func() ([]failovertest.Record, error) {
		tl := run.Stop()
		return tl.Records, client.Close()
	}, nil
}

//go:embed workloads/redis_py.py
var redisPyWorkload []byte

// startRedisPyApp runs workloads/redis_py.py with a python3 that has
// redis-py (Debian's python3-redis).
func startRedisPyApp(dir, addr string) (func() ([]failovertest.Record, error), error) {
	py := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import redis").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		return nil, errors.New("no python3 with redis-py (apt-get install -y python3-redis)")
	}
	script := filepath.Join(dir, "redis_py.py")
	if err := os.WriteFile(script, redisPyWorkload, 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(py, script, addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	out := bufio.NewScanner(stdout)
	out.Buffer(make([]byte, 64<<10), 1<<20)
	if !out.Scan() || out.Text() != "ready" {
		_ = stdin.Close()
		_ = cmd.Wait()
		return nil, fmt.Errorf("redis-py workload did not start: %s", strings.TrimSpace(stderr.String()))
	}
	return func() ([]failovertest.Record, error) {
		_ = stdin.Close()
		var recs []failovertest.Record
		for out.Scan() {
			var r struct {
				Worker      int
				Write       bool
				Start, End  int64
				Err, Region *string
			}
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				_ = cmd.Wait()
				return nil, fmt.Errorf("redis-py workload: %v in %q", err, out.Text())
			}
			rec := failovertest.Record{Worker: r.Worker, Step: "GET", Write: r.Write, Start: time.Unix(0, r.Start), End: time.Unix(0, r.End)}
			if r.Write {
				rec.Step = "SET"
			}
			if r.Err != nil {
				rec.Err = errors.New(*r.Err)
			} else if r.Region != nil {
				rec.Endpoint = *r.Region
			}
			recs = append(recs, rec)
		}
		if err := cmd.Wait(); err != nil {
			return nil, fmt.Errorf("redis-py workload: %v: %s", err, strings.TrimSpace(stderr.String()))
		}
		return recs, out.Err()
	}, nil
}

// runProxyFailover runs each application through each target and fault,
// and prints a table.
func runProxyFailover(ctx context.Context, dir string, faults []string, outage time.Duration, stdout, stderr io.Writer) error {
	type row struct {
		target, app, fault string
		rep                failovertest.Report
	}
	var rows []row
	for _, t := range proxyFailoverTargets() {
		for _, app := range failoverApps() {
			for _, fault := range faults {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				rep, err := proxyFailoverRun(ctx, dir, t, app, fault, outage)
				if err != nil {
					fmt.Fprintf(stdout, "note: %s, %s, %s left out: %v\n", t.name, app.name, fault, err)
					continue
				}
				fmt.Fprintf(stderr, "%s, %s, %s: %v\n", t.name, app.name, fault, rep)
				rows = append(rows, row{t.name, app.name, fault, rep})
			}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].fault != rows[j].fault {
			return rows[i].fault < rows[j].fault
		}
		return rows[i].app < rows[j].app
	})
	fmt.Fprintf(stdout, "\nFailover: 8 workers doing SET then GET, 100 ms deadline each, in Go (go-redis, default options but ContextTimeoutEnabled) or Python (redis-py, default options but socket_timeout=0.1), the preferred region killed or frozen for %v (%s):\n\n", outage, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintln(stdout, "| fault | application | target | first success on the standby | all workers moved | errors (reads + writes) | slowest command | failback | errors after recovery |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|")
	ms := func(d time.Duration, ok bool) string {
		if !ok {
			return "never"
		}
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	for _, r := range rows {
		fmt.Fprintf(stdout, "| %s | %s | %s | %s | %s | %d (%d + %d) | %s | %s | %d |\n", r.fault, r.app, r.target,
			ms(r.rep.FirstSuccess, r.rep.Moved), ms(r.rep.AllMoved, r.rep.AllWorkersMoved),
			r.rep.Errors.Total(), r.rep.Errors.Reads, r.rep.Errors.Writes, ms(r.rep.Slowest, true),
			ms(r.rep.Failback, r.rep.FailedBack), r.rep.ErrorsAfterRecovery.Total())
	}
	return nil
}

// proxyFailoverRun runs one application through one target and one fault,
// on fresh servers.
func proxyFailoverRun(ctx context.Context, dir string, t failoverTarget, app failoverApp, fault string, outage time.Duration) (failovertest.Report, error) {
	var rep failovertest.Report
	sub := filepath.Join(dir, fmt.Sprintf("failover-%d", time.Now().UnixNano()))
	east, west, stopRegions, err := launchRegions(sub)
	if err != nil {
		return rep, err
	}
	defer stopRegions()
	// mark names a server in the key each command reads back.
	mark := func(s *failovertest.Server, name string) error {
		c := redis.NewClient(&redis.Options{Addr: s.Addr})
		defer c.Close()
		return c.Set(ctx, markerKey, name, 0).Err()
	}
	if err := mark(east, "east"); err != nil {
		return rep, err
	}
	if err := mark(west, "west"); err != nil {
		return rep, err
	}
	addr, events, stop, err := t.start(sub, east.Addr, west.Addr)
	if err != nil {
		return rep, err
	}
	defer stop()
	begin := time.Now()
	stopApp, err := app.start(sub, addr)
	if err != nil {
		return rep, err
	}
	time.Sleep(time.Second)
	at := time.Now()
	if fault == "kill" {
		err = east.Kill()
	} else {
		err = east.Pause()
	}
	var recovered time.Time
	if err == nil {
		time.Sleep(outage)
		recovered = time.Now()
		if fault == "kill" {
			// A restarted server has no data: mark it again at once (a
			// command that reads no mark counts as served by no region).
			if err = east.Restart(); err == nil {
				err = mark(east, "east")
			}
		} else {
			err = east.Resume()
		}
	}
	if err == nil {
		// Long enough for HAProxy's usual rise (3 checks a second apart)
		// and the library's default failback (about 10 s).
		time.Sleep(15 * time.Second)
	}
	records, appErr := stopApp()
	if err = errors.Join(err, appErr); err != nil {
		return rep, err
	}
	sort.Slice(records, func(i, j int) bool { return records[i].End.Before(records[j].End) })
	tl := &failovertest.Timeline{Workers: 8, Start: begin, End: time.Now(), Records: records, Events: events()}
	return tl.Analyze(failovertest.Outage{From: "east", To: "west", At: at, Recovered: recovered}), nil
}
