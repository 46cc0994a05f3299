package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/faultproxy"
)

const benchHelp = `geofailover bench: measure failover and failback, reproducibly.

Runs the reference scenario of BENCHMARKS.md against real local
redis-server processes: east (weight 1) and west (weight 0.5), a client with
default options, and either no traffic or 8 workers doing SET+GET with a
100 ms timeout per command and a 1 ms pause. Each fault (kill: SIGKILL;
stop: SIGSTOP; blackhole: a fault proxy that lets nothing through; latency:
200 ms added by the proxy) is applied to east under each traffic level,
--runs times; east is restored once traffic has moved and stayed on west
for a second. It reports the median, min and max of each measure and writes
them as JSON and as a Markdown table.

Examples:
  geofailover bench                                  # everything, 5 runs each (several minutes)
  geofailover bench --runs 1 --faults kill --traffic load --quick
`

// benchRun is one measured run.
type benchRun struct {
	Fault    string `json:"fault"`
	Traffic  string `json:"traffic"`
	Switched bool   `json:"switched"`
	// Durations in milliseconds.
	SwitchMs        float64 `json:"switch_ms"`          // fault -> active endpoint changed
	FirstSuccessMs  float64 `json:"first_success_ms"`   // fault -> first success on west (load only)
	AllMovedMs      float64 `json:"all_moved_ms"`       // fault -> every worker succeeded on west (load only)
	SlowestMs       float64 `json:"slowest_ms"`         // slowest command during the outage (load only)
	FailbackMs      float64 `json:"failback_ms"`        // restore -> active endpoint back on east
	ReadErrors      int     `json:"read_errors"`        // during the outage
	WriteErrors     int     `json:"write_errors"`       //
	NotAppliedErrs  int     `json:"not_applied_errors"` //
	AmbiguousErrors int     `json:"ambiguous_errors"`   //
	Switches        int     `json:"switches"`
}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", benchHelp, stderr)
	runs := fs.Int("runs", 5, "runs per fault and traffic level")
	faults := fs.String("faults", "kill,stop,blackhole,latency", "faults to apply (comma-separated)")
	traffic := fs.String("traffic", "idle,load", "traffic levels (comma-separated): idle, load")
	quick := fs.Bool("quick", false, "tuned options (100 ms checks, 500 ms grace, 300 ms failback delay) instead of the defaults")
	jsonPath := fs.String("json", "bench.json", "where to write the runs and their summary as JSON")
	mdPath := fs.String("markdown", "bench.md", "where to write the Markdown table")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *runs < 1 {
		return usageError("--runs must be at least 1")
	}
	for _, f := range split(*faults) {
		if f != "kill" && f != "stop" && f != "blackhole" && f != "latency" {
			return usageError("unknown fault %q (kill, stop, blackhole, latency)", f)
		}
	}
	for _, t := range split(*traffic) {
		if t != "idle" && t != "load" {
			return usageError("unknown traffic level %q (idle, load)", t)
		}
	}
	if _, err := failovertest.Binary(); err != nil {
		return err
	}
	var all []benchRun
	total := len(split(*faults)) * len(split(*traffic)) * *runs
	n := 0
	for _, f := range split(*faults) {
		for _, t := range split(*traffic) {
			for range *runs {
				n++
				fmt.Fprintf(stdout, "[%d/%d] %s, %s ... ", n, total, f, t)
				r, err := benchOnce(ctx, f, t, *quick)
				if err != nil {
					fmt.Fprintln(stdout, "failed")
					return err
				}
				fmt.Fprintf(stdout, "switch %.1f ms, failback %.0f ms, errors %d+%d\n", r.SwitchMs, r.FailbackMs, r.ReadErrors, r.WriteErrors)
				all = append(all, r)
			}
		}
	}
	options := "default options"
	if *quick {
		options = "tuned options (100 ms checks, 500 ms grace, 300 ms failback delay)"
	}
	md := benchMarkdown(all, options)
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, md)
	data, _ := json.MarshalIndent(map[string]any{"options": options, "runs": all}, "", "  ")
	if err := os.WriteFile(*jsonPath, data, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(*mdPath, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", *jsonPath, *mdPath)
	return nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// benchOnce runs one scenario on fresh servers.
func benchOnce(ctx context.Context, fault, traffic string, quick bool) (benchRun, error) {
	r := benchRun{Fault: fault, Traffic: traffic}
	dir, err := os.MkdirTemp("", "geofailover-bench-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	east, err := failovertest.LaunchServer(dir + "/east")
	if err != nil {
		return r, err
	}
	defer east.Kill()
	west, err := failovertest.LaunchServer(dir + "/west")
	if err != nil {
		return r, err
	}
	defer west.Kill()
	eastAddr := east.Addr
	var proxy *faultproxy.Proxy
	if fault == "blackhole" || fault == "latency" {
		if proxy, err = faultproxy.New(east.Addr); err != nil {
			return r, err
		}
		defer proxy.Close()
		eastAddr = proxy.Addr
	}
	opts := &geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, Options: &redis.Options{Addr: eastAddr}},
		{Name: "west", Weight: 0.5, Options: &redis.Options{Addr: west.Addr}},
	}}
	if quick {
		opts.HealthCheckInterval, opts.HealthCheckTimeout = 100*time.Millisecond, 100*time.Millisecond
		opts.GracePeriod, opts.FailbackDelay = 500*time.Millisecond, 300*time.Millisecond
	}
	c, err := geofailover.New(opts)
	if err != nil {
		return r, err
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitReady(wctx); err != nil {
		return r, err
	}
	if ok, err := waitFor(ctx, 30*time.Second, func() bool { return c.Active() == "east" && healthy(c, "west") }); err != nil || !ok {
		return r, fmt.Errorf("set-up: east active and west healthy: %v", err)
	}
	var run *failovertest.Run
	if traffic == "load" {
		run = failovertest.Workload{}.Start(c)
		defer func() {
			if run != nil {
				run.Stop()
			}
		}()
	}
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		return r, err
	}
	var heal func() error
	at := time.Now()
	switch fault {
	case "kill":
		east.Kill()
		heal = east.Restart
	case "stop":
		if err := east.Pause(); err != nil {
			return r, err
		}
		heal = east.Resume
		defer east.Resume()
	case "blackhole":
		f := proxy.BlackHole(faultproxy.Both)
		heal = func() error { f.Remove(); return nil }
	case "latency":
		f := proxy.Latency(200*time.Millisecond, 0, faultproxy.Both)
		heal = func() error { f.Remove(); return nil }
	}
	switched, err := waitFor(ctx, 30*time.Second, func() bool { return c.Active() == "west" })
	if err != nil {
		return r, err
	}
	r.Switched = switched
	r.SwitchMs = ms(time.Since(at))
	if !switched {
		r.SwitchMs = 0
	}
	if err := sleep(ctx, time.Second); err != nil {
		return r, err
	}
	restored := time.Now()
	if err := heal(); err != nil {
		return r, err
	}
	back, err := waitFor(ctx, 2*time.Minute, func() bool { return c.Active() == "east" })
	if err != nil {
		return r, err
	}
	if back {
		r.FailbackMs = ms(time.Since(restored))
	}
	if run != nil {
		_ = sleep(ctx, 200*time.Millisecond)
		tl := run.Stop()
		run = nil
		rep := tl.Analyze(failovertest.Outage{From: "east", To: "west", At: at, Recovered: restored})
		r.FirstSuccessMs, r.AllMovedMs, r.SlowestMs = ms(rep.FirstSuccess), ms(rep.AllMoved), ms(rep.Slowest)
		r.ReadErrors, r.WriteErrors = rep.Errors.Reads, rep.Errors.Writes
		r.NotAppliedErrs, r.AmbiguousErrors = rep.Errors.NotApplied, rep.Errors.Ambiguous
		r.Switches = rep.Switches
	} else if back {
		r.Switches = 2
	}
	return r, nil
}

func healthy(c *geofailover.Client, name string) bool {
	for _, st := range c.Status() {
		if st.Name == name {
			return st.Health == geofailover.Healthy
		}
	}
	return false
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// benchMarkdown renders median [min-max] per scenario.
func benchMarkdown(runs []benchRun, options string) string {
	type key struct{ fault, traffic string }
	groups := map[key][]benchRun{}
	var order []key
	for _, r := range runs {
		k := key{r.Fault, r.Traffic}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Reference scenario, %s; median [min-max] of %d run(s) each. Times in ms.\n\n", options, len(runs)/max(len(order), 1))
	b.WriteString("| fault | traffic | active switched | first success on west | all workers moved | read errors | write errors | slowest command | failback | switches |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, k := range order {
		g := groups[k]
		col := func(f func(benchRun) float64, digits int) string {
			vals := make([]float64, len(g))
			for i, r := range g {
				vals[i] = f(r)
			}
			sort.Float64s(vals)
			med := vals[len(vals)/2]
			if len(vals)%2 == 0 {
				med = (vals[len(vals)/2-1] + vals[len(vals)/2]) / 2
			}
			if vals[0] == vals[len(vals)-1] {
				return fmt.Sprintf("%.*f", digits, med)
			}
			return fmt.Sprintf("%.*f [%.*f-%.*f]", digits, med, digits, vals[0], digits, vals[len(vals)-1])
		}
		na := func(s string) string {
			if k.traffic == "idle" {
				return "-"
			}
			return s
		}
		switched := 0
		for _, r := range g {
			if r.Switched {
				switched++
			}
		}
		if switched == 0 {
			fmt.Fprintf(&b, "| %s | %s | no switch | | | | | | | |\n", k.fault, k.traffic)
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", k.fault, k.traffic,
			col(func(r benchRun) float64 { return r.SwitchMs }, 1),
			na(col(func(r benchRun) float64 { return r.FirstSuccessMs }, 1)),
			na(col(func(r benchRun) float64 { return r.AllMovedMs }, 1)),
			na(col(func(r benchRun) float64 { return float64(r.ReadErrors) }, 0)),
			na(col(func(r benchRun) float64 { return float64(r.WriteErrors) }, 0)),
			na(col(func(r benchRun) float64 { return r.SlowestMs }, 1)),
			col(func(r benchRun) float64 { return r.FailbackMs }, 0),
			col(func(r benchRun) float64 { return float64(r.Switches) }, 0))
	}
	return b.String()
}
