package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/proxy"
)

// The failover half of proxybench: the reference workload (8 workers,
// SET then GET on a key of their own, 100 ms deadline each) from a plain
// go-redis client with default options (but ContextTimeoutEnabled), pointed at geofailover proxy or
// at HAProxy, while the preferred region is killed or frozen (SIGSTOP) for
// a few seconds and comes back. Each command is a pipeline with a GET of a
// marker key that names the region that served it.

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
		{name: "geofailover proxy", start: func(dir, east, west string) (string, func() []geofailover.Event, func(), error) {
			c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
				{Name: "east", Weight: 1, URL: "redis://" + east},
				{Name: "west", Weight: 0.5, URL: "redis://" + west},
			}, StallTimeout: proxy.StallTimeout})
			if err != nil {
				return "", nil, nil, err
			}
			var mu sync.Mutex
			var events []geofailover.Event
			c.OnEvent(func(ev geofailover.Event) { mu.Lock(); events = append(events, ev); mu.Unlock() })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.WaitReady(ctx); err != nil {
				_ = c.Close()
				return "", nil, nil, err
			}
			srv, err := proxy.New(c, nil)
			if err != nil {
				_ = c.Close()
				return "", nil, nil, err
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				_ = c.Close()
				return "", nil, nil, err
			}
			go func() { _ = srv.Serve(ln) }()
			return ln.Addr().String(), func() []geofailover.Event {
					mu.Lock()
					defer mu.Unlock()
					return append([]geofailover.Event(nil), events...)
				}, func() {
					_ = srv.Close()
					_ = c.Close()
				}, nil
		}},
		{name: "HAProxy, usual (inter 1s fall 2 rise 3)", start: haproxy("inter 1s fall 2 rise 3")},
		{name: "HAProxy, tuned (inter 100ms fall 2 rise 2)", start: haproxy("inter 100ms fall 2 rise 2")},
	}
}

// runProxyFailover runs each target through each fault and prints a table.
func runProxyFailover(ctx context.Context, dir string, faults []string, outage time.Duration, stdout, stderr io.Writer) error {
	type row struct {
		target, fault string
		rep           failovertest.Report
	}
	var rows []row
	for _, t := range proxyFailoverTargets() {
		for _, fault := range faults {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep, err := proxyFailoverRun(ctx, dir, t, fault, outage)
			if err != nil {
				fmt.Fprintf(stdout, "note: %s, %s left out: %v\n", t.name, fault, err)
				continue
			}
			fmt.Fprintf(stderr, "%s, %s: %v\n", t.name, fault, rep)
			rows = append(rows, row{t.name, fault, rep})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].fault < rows[j].fault })
	fmt.Fprintf(stdout, "\nFailover: 8 workers (plain go-redis, default options but ContextTimeoutEnabled), SET then GET with a 100 ms deadline, the preferred region %s for %v (%s):\n\n", "killed or frozen", outage, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintln(stdout, "| fault | target | first success on the standby | all workers moved | errors (reads + writes) | slowest command | failback | errors after recovery |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|")
	ms := func(d time.Duration, ok bool) string {
		if !ok {
			return "never"
		}
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	for _, r := range rows {
		fmt.Fprintf(stdout, "| %s | %s | %s | %s | %d (%d + %d) | %s | %s | %d |\n", r.fault, r.target,
			ms(r.rep.FirstSuccess, r.rep.Moved), ms(r.rep.AllMoved, r.rep.AllWorkersMoved),
			r.rep.Errors.Total(), r.rep.Errors.Reads, r.rep.Errors.Writes, ms(r.rep.Slowest, true),
			ms(r.rep.Failback, r.rep.FailedBack), r.rep.ErrorsAfterRecovery.Total())
	}
	return nil
}

// proxyFailoverRun runs one target through one fault on fresh servers.
func proxyFailoverRun(ctx context.Context, dir string, t failoverTarget, fault string, outage time.Duration) (failovertest.Report, error) {
	var rep failovertest.Report
	sub := filepath.Join(dir, fmt.Sprintf("failover-%d", time.Now().UnixNano()))
	east, err := failovertest.LaunchServer(filepath.Join(sub, "east"))
	if err != nil {
		return rep, err
	}
	defer east.Kill()
	west, err := failovertest.LaunchServer(filepath.Join(sub, "west"))
	if err != nil {
		return rep, err
	}
	defer west.Kill()
	// mark names a server in the key each command reads back.
	mark := func(s *failovertest.Server, name string) error {
		c := redis.NewClient(&redis.Options{Addr: s.Addr})
		defer c.Close()
		return c.Set(ctx, "geofailover:region", name, 0).Err()
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
	// ContextTimeoutEnabled: the 100 ms deadline bounds each command, as
	// an application that sets deadlines expects (go-redis's default would
	// wait out its 3 s read timeout on a hung server).
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer client.Close()

	tl := &failovertest.Timeline{Workers: 8, Start: time.Now()}
	var mu sync.Mutex
	stopWork := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprint("bench:", w)
			for n := 0; ; n++ {
				for _, write := range []bool{true, false} {
					select {
					case <-stopWork:
						return
					default:
					}
					cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
					start := time.Now()
					var region *redis.StringCmd
					_, err := client.Pipelined(cctx, func(p redis.Pipeliner) error {
						if write {
							p.Set(cctx, key, n, 0)
						} else {
							p.Get(cctx, key)
						}
						region = p.Get(cctx, "geofailover:region")
						return nil
					})
					end := time.Now()
					cancel()
					if err == redis.Nil {
						err = nil
					}
					step := "GET"
					if write {
						step = "SET"
					}
					rec := failovertest.Record{Worker: w, Step: step, Write: write, Start: start, End: end, Err: err}
					if err == nil {
						rec.Endpoint = region.Val()
					}
					mu.Lock()
					tl.Records = append(tl.Records, rec)
					mu.Unlock()
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	at := time.Now()
	switch fault {
	case "kill":
		err = east.Kill()
	default:
		err = east.Pause()
	}
	if err != nil {
		close(stopWork)
		wg.Wait()
		return rep, err
	}
	time.Sleep(outage)
	recovered := time.Now()
	if fault == "kill" {
		// A restarted server has no data: mark it again at once (a
		// command that reads no mark counts as served by no region).
		if err = east.Restart(); err == nil {
			err = mark(east, "east")
		}
	} else {
		err = east.Resume()
	}
	if err == nil {
		// Long enough for HAProxy's usual rise (3 checks a second apart)
		// and the library's default failback (about 10 s).
		time.Sleep(15 * time.Second)
	}
	close(stopWork)
	wg.Wait()
	if err != nil {
		return rep, err
	}
	tl.End = time.Now()
	tl.Events = events()
	sort.Slice(tl.Records, func(i, j int) bool { return tl.Records[i].End.Before(tl.Records[j].End) })
	return tl.Analyze(failovertest.Outage{From: "east", To: "west", At: at, Recovered: recovered}), nil
}
