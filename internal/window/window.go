// Package window keeps command outcomes in a sliding time window made of a
// ring of fixed buckets, for one endpoint's circuit breaker.
//
// A Window is not safe for concurrent use: the supervisor goroutine owns it
// and folds the counts that the command path accumulated into it.
package window

import "time"

// Counts are the outcomes recorded in a span of time.
type Counts struct {
	Successes uint64
	Failures  uint64
	Slow      uint64
}

// Calls is the number of completed calls.
func (c Counts) Calls() uint64 { return c.Successes + c.Failures }

func (c *Counts) add(o Counts) {
	c.Successes += o.Successes
	c.Failures += o.Failures
	c.Slow += o.Slow
}

type bucket struct {
	epoch int64 // bucket number since the Unix epoch; identifies the span held
	Counts
}

// Window is a sliding window of len(buckets)*bucketSize. Outcomes are added to
// the bucket covering the time they are added at; Totals sums the buckets
// still inside the window. A bucket is recycled (cleared) when the ring comes
// round to it, so no timer is needed.
type Window struct {
	size    time.Duration
	buckets []bucket
}

// New returns a window of n buckets of size each. n and size must be > 0.
func New(n int, size time.Duration) *Window {
	if n <= 0 || size <= 0 {
		panic("window: bucket count and size must be positive")
	}
	w := &Window{size: size, buckets: make([]bucket, n)}
	w.Reset()
	return w
}

func (w *Window) epoch(now time.Time) int64 { return now.UnixNano() / int64(w.size) }

// Add records c at time now.
func (w *Window) Add(now time.Time, c Counts) {
	if c == (Counts{}) {
		return
	}
	e := w.epoch(now)
	b := &w.buckets[int(e%int64(len(w.buckets)))]
	if b.epoch != e {
		*b = bucket{epoch: e}
	}
	b.add(c)
}

// Totals sums the outcomes recorded within the window ending at now.
func (w *Window) Totals(now time.Time) Counts {
	e := w.epoch(now)
	oldest := e - int64(len(w.buckets)) + 1
	var t Counts
	for i := range w.buckets {
		if b := &w.buckets[i]; b.epoch >= oldest && b.epoch <= e {
			t.add(b.Counts)
		}
	}
	return t
}

// Reset forgets every outcome.
func (w *Window) Reset() {
	for i := range w.buckets {
		w.buckets[i] = bucket{epoch: -1 << 62}
	}
}
