package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// exercise runs a workload through a client, takes the preferred endpoint
// away, brings it back, and measures what happened. demo and drill share it.
type exercise struct {
	c         *geofailover.Client
	mon       *monitor
	steps     []failovertest.Step
	preferred string
	downLabel string // e.g. "SIGKILL eu-west"
	upLabel   string
	fault     func() error
	restore   func() error

	warm, hold, settle time.Duration
	switchTimeout      time.Duration // wait this long for a failover
	failbackTimeout    time.Duration // and for the failback
}

// result is what an exercise measured.
type result struct {
	tl                *failovertest.Timeline
	rep               failovertest.Report
	to                string // where traffic failed over to
	faultAt, restored time.Time
	marks             []mark
}

// keyedSteps is the workload round: SET prefix<worker> round EX ttl, then
// GET it. Keys stay under prefix and expire on their own.
func keyedSteps(prefix string, ttl time.Duration) []failovertest.Step {
	return []failovertest.Step{
		{Name: "SET", Write: true, Do: func(ctx context.Context, c redis.UniversalClient, w, n int) error {
			return c.Set(ctx, fmt.Sprintf("%s%d", prefix, w), n, ttl).Err()
		}},
		{Name: "GET", Do: func(ctx context.Context, c redis.UniversalClient, w, n int) error {
			if err := c.Get(ctx, fmt.Sprintf("%s%d", prefix, w)).Err(); err != nil && err != redis.Nil {
				return err
			}
			return nil
		}},
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// waitFor polls cond until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) (bool, error) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false, nil
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return false, err
		}
	}
	return true, nil
}

// run performs the exercise. On error (including Ctrl-C) the endpoint is
// restored before returning.
func (x *exercise) run(ctx context.Context) (res *result, err error) {
	res = &result{}
	defer followEvents(x.c, x.mon.event)()
	run := failovertest.Workload{Steps: x.steps, OnRecord: x.mon.record}.Start(x.c)
	monCtx, stopMon := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { defer close(monDone); x.mon.run(monCtx) }()
	restored := false
	defer func() {
		if !res.faultAt.IsZero() && !restored {
			_ = x.restore()
		}
		res.tl = run.Stop()
		stopMon()
		<-monDone
		x.mon.mu.Lock()
		res.marks = append([]mark(nil), x.mon.marks...)
		x.mon.mu.Unlock()
	}()

	if err := sleep(ctx, x.warm); err != nil {
		return res, err
	}
	if a := x.c.Active(); a != x.preferred {
		return res, fmt.Errorf("traffic is on %q, not on the preferred endpoint %q: is it up? (run geofailover probe)", a, x.preferred)
	}
	x.mon.note(x.downLabel)
	res.faultAt = time.Now()
	if err := x.fault(); err != nil {
		return res, err
	}
	moved, err := waitFor(ctx, x.switchTimeout, func() bool { a := x.c.Active(); return a != "" && a != x.preferred })
	if err != nil {
		return res, err
	}
	if !moved {
		return res, fmt.Errorf("traffic did not leave %s within %v", x.preferred, x.switchTimeout)
	}
	res.to = x.c.Active()
	if err := sleep(ctx, x.hold); err != nil {
		return res, err
	}
	x.mon.note(x.upLabel)
	res.restored = time.Now()
	restored = true
	if err := x.restore(); err != nil {
		return res, err
	}
	back, err := waitFor(ctx, x.failbackTimeout, func() bool { return x.c.Active() == x.preferred })
	if err != nil {
		return res, err
	}
	if !back {
		return res, fmt.Errorf("no failback to %s within %v", x.preferred, x.failbackTimeout)
	}
	return res, sleep(ctx, x.settle)
}

// analyze fills res.rep.
func (res *result) analyze(preferred string) {
	res.rep = res.tl.Analyze(failovertest.Outage{From: preferred, To: res.to, At: res.faultAt, Recovered: res.restored})
}

// summary returns the summary as label/value rows.
func (res *result) summary(preferred string) [][2]string {
	r := res.rep
	dur := func(d time.Duration, ok bool) string {
		if !ok {
			return "did not happen"
		}
		return d.Round(10 * time.Microsecond).String()
	}
	return [][2]string{
		{"failed over", fmt.Sprintf("%s -> %s", preferred, res.to)},
		{"time to first success on " + res.to, dur(r.FirstSuccess, r.Moved)},
		{"time until every worker moved", dur(r.AllMoved, r.AllWorkersMoved)},
		{"errors during the outage", fmt.Sprintf("%d reads, %d writes (%d provably not applied)", r.Errors.Reads, r.Errors.Writes, r.Errors.NotApplied)},
		{"slowest command during the outage", r.Slowest.Round(10 * time.Microsecond).String()},
		{"time to fail back after recovery", dur(r.Failback, r.FailedBack)},
		{"errors after recovery", fmt.Sprintf("%d reads, %d writes (%d provably not applied)", r.ErrorsAfterRecovery.Reads, r.ErrorsAfterRecovery.Writes, r.ErrorsAfterRecovery.NotApplied)},
		{"switches", fmt.Sprint(r.Switches)},
		{"commands", fmt.Sprint(len(res.tl.Records))},
	}
}

// finish measures a finished exercise, prints the summary and writes the
// HTML report (title, set-up lines, endpoints in weight order) to path.
func (res *result) finish(stdout io.Writer, preferred, title string, setup, endpoints []string, path string) error {
	res.analyze(preferred)
	rows := res.summary(preferred)
	printSummary(stdout, rows)
	rep := &report{title: title, setup: setup, endpoints: endpoints, summary: rows, tl: res.tl, marks: res.marks}
	if err := rep.write(path); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	fmt.Fprintf(stdout, "\nreport: %s\n", path)
	return nil
}

func printSummary(w io.Writer, rows [][2]string) {
	fmt.Fprintln(w, "\nsummary:")
	for _, r := range rows {
		fmt.Fprintf(w, "  %-36s %s\n", r[0], r[1])
	}
}
