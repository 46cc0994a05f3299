package failovertest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
)

// Step is one command a workload worker issues each round.
type Step struct {
	// Name labels the step in records ("SET", "GET", ...).
	Name string
	// Write says whether the step changes data.
	Write bool
	// Do issues the command through c with ctx, for worker in round. It
	// returns the command's error; return nil for expected replies such as
	// redis.Nil.
	Do func(ctx context.Context, c redis.UniversalClient, worker, round int) error
}

// Workload issues commands through a client (normally a geofailover.Client) from several
// goroutines and records every command in a Timeline. The zero value is
// the reference workload of BENCHMARKS.md's measurements: 8 workers, each doing SET
// then GET on a key of its own, with a 100 ms timeout per command and a
// 1 ms pause between rounds.
type Workload struct {
	Workers int           // goroutines; default 8
	Timeout time.Duration // per command; default 100 ms
	Pause   time.Duration // between rounds; default 1 ms (a negative value is taken as NoPause)
	NoPause bool          // no pause between rounds
	Steps   []Step        // each round's commands; default SET then GET
	// OnRecord, if set, is called with every record as it is made, from the
	// worker goroutines (concurrently): for live views.
	OnRecord func(Record)
}

// SetGet is the default round: SET wl:<worker> <round>, then GET it.
var SetGet = []Step{
	{Name: "SET", Write: true, Do: func(ctx context.Context, c redis.UniversalClient, w, n int) error {
		return c.Set(ctx, fmt.Sprintf("wl:%d", w), n, 0).Err()
	}},
	{Name: "GET", Do: func(ctx context.Context, c redis.UniversalClient, w, n int) error {
		if err := c.Get(ctx, fmt.Sprintf("wl:%d", w)).Err(); err != nil && err != redis.Nil {
			return err
		}
		return nil
	}},
}

// Record is one command of a workload.
type Record struct {
	Worker     int
	Step       string
	Write      bool
	Start, End time.Time
	// Endpoint served the command's last attempt ("" if none did). It is
	// known, in this order: from the geofailover client itself when the
	// step passes its ctx to the client's calls (geofailover.WithTrace);
	// from the step, when it reports it with Served (for work that reaches
	// the client some other way, such as a request to your service, which
	// may return the endpoint in a response header); else, for a step that
	// succeeded, it is the client's active endpoint when the step ended
	// (Inferred is then true).
	Endpoint string
	// Inferred says Endpoint was taken from the client's active endpoint,
	// not observed on the command.
	Inferred bool
	// Attempts is 1, or 2 when the command was retried on another endpoint.
	Attempts int
	// Err is what the caller got; NotApplied says it proves the command
	// was not executed (see geofailover.NotApplied).
	Err        error
	NotApplied bool
}

// Duration is End - Start.
func (r Record) Duration() time.Duration { return r.End.Sub(r.Start) }

// Run is a workload in progress.
type Run struct {
	c       redis.UniversalClient
	gc      *geofailover.Client // c, when it is one
	w       Workload
	stop    chan struct{}
	wg      sync.WaitGroup
	unsub   func()
	started time.Time

	mu      sync.Mutex
	records []Record
	events  []geofailover.Event
}

// Start runs the workload against c until Stop. c is normally a
// *geofailover.Client: the timeline then records its events too, and a
// command that no Trace or Served names an endpoint for is taken as served
// by the active one. It may be any go-redis client (one connected to
// geofailover proxy, say): then a step names its endpoint with Served.
func (w Workload) Start(c redis.UniversalClient) *Run {
	if w.Workers <= 0 {
		w.Workers = 8
	}
	if w.Timeout <= 0 {
		w.Timeout = 100 * time.Millisecond
	}
	switch {
	case w.NoPause || w.Pause < 0:
		w.Pause = 0
	case w.Pause == 0:
		w.Pause = time.Millisecond
	}
	if len(w.Steps) == 0 {
		w.Steps = SetGet
	}
	r := &Run{c: c, w: w, stop: make(chan struct{}), started: time.Now(), unsub: func() {}}
	if gc, ok := c.(*geofailover.Client); ok {
		r.gc = gc
		events, stop := gc.Events(256)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ev := range events { // closed by stop, or by the client's Close
				r.mu.Lock()
				r.events = append(r.events, ev)
				r.mu.Unlock()
			}
		}()
		r.unsub = func() { stop(); <-done }
	}
	for i := range w.Workers {
		r.wg.Add(1)
		go r.worker(i)
	}
	return r
}

func (r *Run) worker(id int) {
	defer r.wg.Done()
	local := make([]Record, 0, 1024)
	flush := func() {
		r.mu.Lock()
		r.records = append(r.records, local...)
		r.mu.Unlock()
		local = local[:0]
	}
	defer flush()
	for n := 0; ; n++ {
		for _, s := range r.w.Steps {
			select {
			case <-r.stop:
				return
			default:
			}
			var tr geofailover.Trace
			var served servedBy
			ctx := context.WithValue(geofailover.WithTrace(context.Background(), &tr), servedKey{}, &served)
			ctx, cancel := context.WithTimeout(ctx, r.w.Timeout)
			start := time.Now()
			err := s.Do(ctx, r.c, id, n)
			end := time.Now()
			cancel()
			rec := Record{
				Worker: id, Step: s.Name, Write: s.Write, Start: start, End: end,
				Endpoint: tr.Endpoint, Attempts: tr.Attempts, Err: err,
				NotApplied: err != nil && geofailover.NotApplied(err),
			}
			switch {
			case rec.Endpoint != "":
			case served.name() != "":
				rec.Endpoint, rec.Attempts = served.name(), max(rec.Attempts, 1)
			case err == nil && r.gc != nil:
				rec.Endpoint, rec.Attempts, rec.Inferred = r.gc.Active(), 1, true
			}
			if r.w.OnRecord != nil {
				r.w.OnRecord(rec)
			}
			local = append(local, rec)
			if len(local) == cap(local) {
				flush()
			}
		}
		if r.w.Pause > 0 {
			select {
			case <-r.stop:
				return
			case <-time.After(r.w.Pause):
			}
		}
	}
}

type servedKey struct{}

// servedBy is what a step reported with Served.
type servedBy struct {
	mu       sync.Mutex
	endpoint string
}

func (s *servedBy) name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endpoint
}

// Served lets a workload step report which endpoint served its work, when
// that work does not pass the step's ctx to the geofailover client (a
// request to your service, say, whose handler can return c.Active() or a
// geofailover.Trace's endpoint in a response header). Call it with the ctx
// the step was given; it does nothing with any other context.
func Served(ctx context.Context, endpoint string) {
	if s, ok := ctx.Value(servedKey{}).(*servedBy); ok {
		s.mu.Lock()
		s.endpoint = endpoint
		s.mu.Unlock()
	}
}

// Stop ends the workload, waits for its workers and returns the timeline.
func (r *Run) Stop() *Timeline {
	close(r.stop)
	r.wg.Wait()
	r.unsub()
	r.mu.Lock()
	defer r.mu.Unlock()
	recs := append([]Record(nil), r.records...)
	sort.Slice(recs, func(i, j int) bool { return recs[i].End.Before(recs[j].End) })
	return &Timeline{Records: recs, Events: append([]geofailover.Event(nil), r.events...), Start: r.started, End: time.Now(), Workers: r.w.Workers}
}

// Timeline is what a workload recorded: every command (ordered by end
// time) and every client event.
type Timeline struct {
	Records    []Record
	Events     []geofailover.Event
	Start, End time.Time
	Workers    int
}

// FirstSuccess returns the time from after to the first successful command
// served by endpoint that ended after it.
func (tl *Timeline) FirstSuccess(endpoint string, after time.Time) (time.Duration, bool) {
	for _, r := range tl.Records {
		if r.End.After(after) && r.Err == nil && r.Endpoint == endpoint {
			return r.End.Sub(after), true
		}
	}
	return 0, false
}

// AllMoved returns the time from after until every worker has had a
// successful command served by endpoint (false if one never did).
func (tl *Timeline) AllMoved(endpoint string, after time.Time) (time.Duration, bool) {
	seen := map[int]time.Time{}
	for _, r := range tl.Records {
		if _, ok := seen[r.Worker]; !ok && r.End.After(after) && r.Err == nil && r.Endpoint == endpoint {
			seen[r.Worker] = r.End
		}
	}
	if len(seen) < tl.Workers {
		return 0, false
	}
	var last time.Time
	for _, t := range seen {
		if t.After(last) {
			last = t
		}
	}
	return last.Sub(after), true
}

// ErrorCounts counts failed commands.
type ErrorCounts struct {
	Reads, Writes int
	// NotApplied failed provably unexecuted; Ambiguous may have been
	// applied (their answer was lost).
	NotApplied, Ambiguous int
	// Sample holds up to 5 of the errors.
	Sample []error
}

// Total is Reads + Writes.
func (e ErrorCounts) Total() int { return e.Reads + e.Writes }

// Errors counts the commands that failed and ended in [from, to) (zero to
// means no end).
func (tl *Timeline) Errors(from, to time.Time) ErrorCounts {
	var ec ErrorCounts
	for _, r := range tl.Records {
		if r.Err == nil || r.End.Before(from) || (!to.IsZero() && !r.End.Before(to)) {
			continue
		}
		if r.Write {
			ec.Writes++
		} else {
			ec.Reads++
		}
		if r.NotApplied {
			ec.NotApplied++
		} else {
			ec.Ambiguous++
		}
		if len(ec.Sample) < 5 {
			ec.Sample = append(ec.Sample, r.Err)
		}
	}
	return ec
}

// Slowest returns the longest command that was in progress at some time in
// [from, to) (zero to means no end).
func (tl *Timeline) Slowest(from, to time.Time) time.Duration {
	var d time.Duration
	for _, r := range tl.Records {
		if r.End.Before(from) || (!to.IsZero() && !r.Start.Before(to)) {
			continue
		}
		d = max(d, r.Duration())
	}
	return d
}

// Switches returns the switch events (failover, failback, manual).
func (tl *Timeline) Switches() []geofailover.Event {
	var out []geofailover.Event
	for _, ev := range tl.Events {
		if ev.Kind == geofailover.EventSwitch {
			out = append(out, ev)
		}
	}
	return out
}

// Outage describes a fault for Analyze: traffic was on From when the fault
// began at At; it should move to To; Recovered (zero if it did not) is when
// From came back.
type Outage struct {
	From, To      string
	At, Recovered time.Time
}

// Report is what Analyze measures.
type Report struct {
	// FirstSuccess: from the fault to the first success served by To.
	FirstSuccess time.Duration
	// AllMoved: from the fault until every worker succeeded on To.
	AllMoved time.Duration
	// Errors during the outage (from the fault to the recovery, or the end).
	Errors ErrorCounts
	// Slowest command in progress during the outage.
	Slowest time.Duration
	// Failback: from the recovery to the first success served by From
	// again (zero if there was no recovery or no failback).
	Failback time.Duration
	// ErrorsAfterRecovery are the errors from the recovery to the end of
	// the run: those of the failback, or of a recovery that went wrong
	// (none without a recovery).
	ErrorsAfterRecovery ErrorCounts
	// Switches over the whole run.
	Switches int
	// Moved, AllWorkersMoved and FailedBack say whether those happened.
	Moved, AllWorkersMoved, FailedBack bool
}

// Analyze measures the timeline against an outage.
func (tl *Timeline) Analyze(o Outage) Report {
	var rep Report
	rep.FirstSuccess, rep.Moved = tl.FirstSuccess(o.To, o.At)
	rep.AllMoved, rep.AllWorkersMoved = tl.AllMoved(o.To, o.At)
	rep.Errors = tl.Errors(o.At, o.Recovered)
	rep.Slowest = tl.Slowest(o.At, o.Recovered)
	if !o.Recovered.IsZero() {
		rep.Failback, rep.FailedBack = tl.FirstSuccess(o.From, o.Recovered)
		rep.ErrorsAfterRecovery = tl.Errors(o.Recovered, time.Time{})
	}
	rep.Switches = len(tl.Switches())
	return rep
}

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "first success on the new endpoint %s; all workers moved %s; ", opt(r.FirstSuccess, r.Moved), opt(r.AllMoved, r.AllWorkersMoved))
	fmt.Fprintf(&b, "errors %d reads + %d writes (%d not applied, %d ambiguous); slowest command %v; ",
		r.Errors.Reads, r.Errors.Writes, r.Errors.NotApplied, r.Errors.Ambiguous, r.Slowest.Round(time.Microsecond))
	fmt.Fprintf(&b, "failback %s; errors after recovery %d reads + %d writes; %d switches", opt(r.Failback, r.FailedBack),
		r.ErrorsAfterRecovery.Reads, r.ErrorsAfterRecovery.Writes, r.Switches)
	return b.String()
}

func opt(d time.Duration, ok bool) string {
	if !ok {
		return "never"
	}
	return d.Round(time.Microsecond).String()
}
