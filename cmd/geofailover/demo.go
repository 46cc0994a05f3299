package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
)

const demoHelp = `geofailover demo: fail a local region over and back, live.

Starts three local Redis servers named like regions (eu-west weight 1,
us-east 0.6, ap-south 0.3): real redis-server processes when one is on PATH,
otherwise in-process servers. Runs a workload (8 workers, SET+GET, 100 ms
timeout) through a geofailover.Client with default options, SIGKILLs
eu-west, restarts it, shows the failover and the failback as they happen,
prints a summary and writes an HTML report with a timeline chart.
Ctrl-C stops it at any point and leaves no server running.

Examples:
  geofailover demo
  geofailover demo --quick --report /tmp/report.html
`

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", demoHelp, stderr)
	quick := fs.Bool("quick", false, "a short run with tuned timings (a few seconds)")
	inProcess := fs.Bool("in-process", false, "use in-process servers even if redis-server is on PATH")
	reportPath := fs.String("report", "geofailover-report.html", "where to write the HTML report")
	listen := fs.String("listen", "", "also serve the live status page (/) and /metrics on this address, e.g. 127.0.0.1:9121")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments %v", fs.Args())
	}

	names, weights := []string{"eu-west", "us-east", "ap-south"}, []float64{1, 0.6, 0.3}
	regions, kind, cleanup, err := startRegions(names, weights, *inProcess)
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "started %s:\n", kind)
	opts := &geofailover.Options{}
	for _, r := range regions {
		fmt.Fprintf(stdout, "  %-9s weight %.1f on %s\n", r.name, r.weight, r.addr)
		opts.Endpoints = append(opts.Endpoints, geofailover.Endpoint{Name: r.name, Weight: r.weight, Options: &redis.Options{Addr: r.addr}})
	}
	timing := "default options"
	warm, hold, settle := 3*time.Second, 5*time.Second, 2*time.Second
	if *quick {
		timing = "tuned options (100 ms checks, 500 ms grace, 300 ms failback delay)"
		opts.HealthCheckInterval, opts.HealthCheckTimeout = 100*time.Millisecond, 100*time.Millisecond
		opts.GracePeriod, opts.FailbackDelay = 500*time.Millisecond, 300*time.Millisecond
		warm, hold, settle = time.Second, 1500*time.Millisecond, 500*time.Millisecond
	}
	c, err := geofailover.New(opts)
	if err != nil {
		return err
	}
	defer c.Close()
	stop, err := serveStatus(c, *listen, stdout)
	if err != nil {
		return exitError{2, err}
	}
	defer stop()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitReady(rctx); err != nil {
		return err
	}
	pref := regions[0]
	x := &exercise{
		c: c, mon: newMonitor(c, stdout, "geofailover demo"), steps: keyedSteps("demo:", time.Minute),
		preferred: pref.name, downLabel: "take " + pref.name + " down (" + downHow(kind) + ")", upLabel: "bring " + pref.name + " back",
		fault: pref.down, restore: pref.up,
		warm: warm, hold: hold, settle: settle, switchTimeout: 30 * time.Second, failbackTimeout: 2 * time.Minute,
	}
	res, err := x.run(ctx)
	if err != nil {
		return err
	}
	return res.finish(stdout, pref.name, "geofailover demo: losing "+pref.name, []string{
		"Servers: " + kind + ".",
		fmt.Sprintf("Endpoints: eu-west (weight 1), us-east (0.6), ap-south (0.3); %s.", timing),
		"Workload: 8 workers, SET+GET on keys of their own, 100 ms timeout per command, 1 ms pause.",
	}, names, *reportPath)
}

func downHow(kind string) string {
	if len(kind) > 12 && kind[:12] == "redis-server" {
		return "SIGKILL"
	}
	return "server closed"
}
