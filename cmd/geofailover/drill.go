package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/faultproxy"
)

const drillHelp = `geofailover drill: rehearse losing your preferred endpoint, safely.

Against your real endpoints (URL endpoints from --config, or URLs given on
the command line), runs a workload through a geofailover.Client whose
connections pass through an in-process fault proxy; then simulates the
loss of the highest-weight endpoint on the client side only (--fault
blackhole: connections hang; refuse: connections are refused and cut),
restores it after --outage, waits for the failback, and reports the
measured failover, failback and errors, with an HTML report. The servers
themselves are never touched: the workload only writes keys under --prefix,
each with a 60 s TTL, and deletes them at the end.

Examples:
  geofailover drill --config geofailover.yaml
  geofailover drill --fault refuse --outage 5s redis://eu.example:6379 redis://us.example:6379
`

func drillCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("drill", drillHelp, stderr)
	configPath := fs.String("config", "", "YAML config file with the endpoints and options")
	section := fs.String("section", "", "read the endpoints and options from this top-level key of the --config file (an application's own file)")
	fault := fs.String("fault", "blackhole", "how the preferred endpoint is lost: blackhole or refuse")
	outage := fs.Duration("outage", 10*time.Second, "how long the preferred endpoint stays lost")
	warm := fs.Duration("warm", 3*time.Second, "workload time before the fault")
	prefix := fs.String("prefix", "geofailover:drill:", "key prefix for the workload (keys are deleted at the end)")
	reportPath := fs.String("report", "geofailover-drill.html", "where to write the HTML report")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *fault != "blackhole" && *fault != "refuse" {
		return usageError("--fault must be blackhole or refuse, not %q", *fault)
	}
	if *prefix == "" || strings.ContainsAny(*prefix, "*?[]\\") {
		return usageError("--prefix must be non-empty and free of glob characters (* ? [ ] \\)")
	}
	opts, err := loadEndpoints(*configPath, *section, fs.Args())
	if err != nil {
		return err
	}
	if len(opts.Endpoints) < 2 {
		return usageError("a drill needs at least two endpoints")
	}

	// Route each endpoint through a fault proxy of its own.
	type target struct {
		name   string
		direct *redis.Options
		proxy  *faultproxy.Proxy
	}
	var targets []target
	defer func() {
		for _, t := range targets {
			t.proxy.Close()
		}
	}()
	for i, e := range opts.Endpoints {
		var direct *redis.Options
		switch {
		case e.URL != "":
			var err error
			if direct, err = redis.ParseURL(e.URL); err != nil {
				return usageError("endpoint %s: bad URL", e.Name)
			}
		case e.Options != nil: // a url with an options section
			o := *e.Options
			direct = &o
		default:
			return usageError("endpoint %s: drill supports URL endpoints only (a cluster or sentinel would route around the proxy)", e.Name)
		}
		p, err := faultproxy.New(direct.Addr)
		if err != nil {
			return err
		}
		targets = append(targets, target{e.Name, direct, p})
		via := *direct
		via.Addr = p.Addr
		if via.TLSConfig != nil {
			tc := via.TLSConfig.Clone()
			if host, _, err := net.SplitHostPort(direct.Addr); err == nil && tc.ServerName == "" {
				tc.ServerName = host // certificates name the real host, not the proxy
			}
			via.TLSConfig = tc
		}
		opts.Endpoints[i] = geofailover.Endpoint{Name: e.Name, Weight: e.Weight, Options: &via}
	}
	for _, t := range targets { // runs before the proxies close
		defer cleanupKeys(t.direct, *prefix, stderr)
	}

	c, err := geofailover.New(opts)
	if err != nil {
		return exitError{2, err}
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitReady(rctx); err != nil {
		return fmt.Errorf("no endpoint became ready: %w (run geofailover probe)", err)
	}
	pref := targets[0]
	var hole *faultproxy.Fault
	x := &exercise{
		c: c, mon: newMonitor(c, stdout, "geofailover drill"), steps: keyedSteps(*prefix, time.Minute),
		preferred: pref.name,
		downLabel: fmt.Sprintf("lose %s (%s, client side)", pref.name, *fault), upLabel: "restore " + pref.name,
		fault: func() error {
			if *fault == "refuse" {
				pref.proxy.Disable()
			} else {
				hole = pref.proxy.BlackHole(faultproxy.Both)
			}
			return nil
		},
		restore: func() error {
			if *fault == "refuse" {
				return pref.proxy.Enable()
			}
			hole.Remove()
			return nil
		},
		warm: *warm, hold: *outage, settle: time.Second,
		switchTimeout: time.Minute, failbackTimeout: 10 * time.Minute,
	}
	res, err := x.run(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, t := range targets {
		names = append(names, t.name)
	}
	return res.finish(stdout, pref.name, "geofailover drill: losing "+pref.name, []string{
		fmt.Sprintf("Endpoints (highest weight first): %s.", strings.Join(names, ", ")),
		fmt.Sprintf("Fault: %s of %s on the client side for %v, through an in-process proxy.", *fault, pref.name, *outage),
		fmt.Sprintf("Workload: 8 workers, SET+GET on keys under %q (60 s TTL, deleted at the end), 100 ms timeout.", *prefix),
	}, names, *reportPath)
}

// cleanupKeys deletes the drill's keys (prefix*) on one endpoint, directly.
func cleanupKeys(o *redis.Options, prefix string, stderr io.Writer) {
	c := redis.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	it := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for it.Next(ctx) {
		c.Unlink(ctx, it.Val())
	}
	if err := it.Err(); err != nil {
		fmt.Fprintf(stderr, "geofailover drill: could not delete %s* on %s: %v (the keys expire within 60 s)\n", prefix, o.Addr, err)
	}
}
