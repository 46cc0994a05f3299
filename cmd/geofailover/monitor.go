package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// monitor shows a workload live: on a terminal a view redrawn four times a
// second (active endpoint, ops/s, errors, latency, each endpoint's health
// and breaker, recent events); otherwise plain log lines.
type monitor struct {
	c     *geofailover.Client
	out   io.Writer
	tty   bool
	title string
	start time.Time

	mu     sync.Mutex
	ops    int64
	errs   int64
	recent []sampleRec // the last second or so of commands
	events []string    // formatted, newest last
	marks  []mark
}

type sampleRec struct {
	end time.Time
	dur time.Duration
	err bool
}

// mark is something the command did (took a region down, brought it back).
type mark struct {
	at    time.Time
	label string
}

func newMonitor(c *geofailover.Client, out io.Writer, title string) *monitor {
	return &monitor{c: c, out: &syncWriter{w: out}, tty: isTerminal(out), title: title, start: time.Now()}
}

// syncWriter serializes writes from the monitor, the event goroutine and
// the command.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (m *monitor) record(r failovertest.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops++
	if r.Err != nil {
		m.errs++
	}
	m.recent = append(m.recent, sampleRec{r.End, r.Duration(), r.Err != nil})
	if len(m.recent) > 200000 {
		m.trim(time.Now())
	}
}

func (m *monitor) trim(now time.Time) {
	cut := 0
	for cut < len(m.recent) && now.Sub(m.recent[cut].end) > time.Second {
		cut++
	}
	m.recent = append(m.recent[:0], m.recent[cut:]...)
}

func (m *monitor) event(ev geofailover.Event) {
	line := fmt.Sprintf("%s  %s", ev.At.Format("15:04:05.000"), describe(ev))
	m.mu.Lock()
	m.events = append(m.events, line)
	if len(m.events) > 100 {
		m.events = m.events[len(m.events)-100:]
	}
	m.mu.Unlock()
	if !m.tty {
		fmt.Fprintln(m.out, "EVENT "+line)
	}
}

// note records and shows something the command did.
func (m *monitor) note(label string) {
	now := time.Now()
	m.mu.Lock()
	m.marks = append(m.marks, mark{now, label})
	m.events = append(m.events, fmt.Sprintf("%s  >>> %s", now.Format("15:04:05.000"), label))
	m.mu.Unlock()
	if !m.tty {
		fmt.Fprintf(m.out, "%s  >>> %s\n", now.Format("15:04:05.000"), label)
	}
}

func describe(ev geofailover.Event) string {
	switch ev.Kind {
	case geofailover.EventSwitch:
		s := fmt.Sprintf("switch %s -> %s (%v)", ev.From, ev.To, ev.Reason)
		if ev.DetectionTime > 0 {
			s += fmt.Sprintf(", detected in %v", ev.DetectionTime.Round(10*time.Microsecond))
		}
		return s
	case geofailover.EventInitialSelection:
		return "initial selection " + ev.To
	case geofailover.EventHealthChanged:
		return fmt.Sprintf("%s is %v", ev.Endpoint, ev.Health)
	case geofailover.EventBreakerOpened:
		return fmt.Sprintf("%s breaker opened (%s)", ev.Endpoint, ev.Cause)
	case geofailover.EventBreakerClosed:
		return fmt.Sprintf("%s breaker closed", ev.Endpoint)
	case geofailover.EventAllDown:
		return "all endpoints down"
	case geofailover.EventRecovered:
		return "recovered on " + ev.To
	case geofailover.EventPubSubInterrupted:
		return fmt.Sprintf("pubsub interrupted on %s", ev.From)
	case geofailover.EventPubSubRestored:
		return fmt.Sprintf("pubsub restored on %s (gap %v)", ev.To, ev.At.Sub(ev.GapStart).Round(10*time.Microsecond))
	case geofailover.EventsDropped:
		return fmt.Sprintf("%d events dropped (this view fell behind)", ev.Dropped)
	}
	return ev.Kind.String()
}

// run redraws until ctx ends.
func (m *monitor) run(ctx context.Context) {
	period := time.Second
	if m.tty {
		period = 250 * time.Millisecond
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if m.tty {
				m.draw()
			}
			return
		case <-t.C:
			m.draw()
		}
	}
}

func (m *monitor) draw() {
	now := time.Now()
	m.mu.Lock()
	m.trim(now)
	var n, errs int
	durs := make([]time.Duration, 0, len(m.recent))
	for _, r := range m.recent {
		n++
		if r.err {
			errs++
		}
		durs = append(durs, r.dur)
	}
	ops, totalErrs := m.ops, m.errs
	events := append([]string(nil), m.events...)
	m.mu.Unlock()
	sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
	p50, p99 := pct(durs, 0.50), pct(durs, 0.99)
	elapsed := now.Sub(m.start).Round(100 * time.Millisecond)
	active := m.c.Active()
	if active == "" {
		active = "(none)"
	}
	if !m.tty {
		fmt.Fprintf(m.out, "%s  %6v  active=%-9s ops/s=%-6d errors/s=%-4d p50=%-8v p99=%-8v total ops=%d errors=%d\n",
			now.Format("15:04:05.000"), elapsed, active, n, errs, p50.Round(time.Microsecond), p99.Round(time.Microsecond), ops, totalErrs)
		return
	}
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J")
	fmt.Fprintf(&b, "%s   %v   (Ctrl-C to stop)\n\n", m.title, elapsed)
	fmt.Fprintf(&b, "  active endpoint  %s\n", active)
	fmt.Fprintf(&b, "  ops/s            %d\n", n)
	fmt.Fprintf(&b, "  errors           %d in the last second, %d in all (of %d commands)\n", errs, totalErrs, ops)
	fmt.Fprintf(&b, "  latency          p50 %v   p99 %v\n\n", p50.Round(time.Microsecond), p99.Round(time.Microsecond))
	fmt.Fprintf(&b, "  %-10s %-7s %-10s %-8s %-9s %s\n", "ENDPOINT", "WEIGHT", "HEALTH", "BREAKER", "IN FLIGHT", "LAST ERROR")
	for _, st := range m.c.Status() {
		name := st.Name
		if st.Active {
			name = "*" + name
		}
		lastErr := ""
		if st.LastError != nil {
			lastErr = st.LastError.Error()
			if len(lastErr) > 40 {
				lastErr = lastErr[:40] + "..."
			}
		}
		fmt.Fprintf(&b, "  %-10s %-7.2f %-10v %-8v %-9d %s\n", name, st.Weight, st.Health, st.Breaker, st.InFlight, lastErr)
	}
	b.WriteString("\n  events:\n")
	if len(events) > 10 {
		events = events[len(events)-10:]
	}
	for _, e := range events {
		fmt.Fprintf(&b, "   %s\n", e)
	}
	fmt.Fprint(m.out, b.String())
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}
