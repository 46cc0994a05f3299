package window

import (
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWindowSlides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Given 5 buckets of 1 s: a 5 s window.
		w := New(5, time.Second)
		w.Add(time.Now(), Counts{Successes: 10, Failures: 2})
		time.Sleep(2 * time.Second)
		w.Add(time.Now(), Counts{Failures: 3, Slow: 1})
		if got, want := w.Totals(time.Now()), (Counts{Successes: 10, Failures: 5, Slow: 1}); got != want {
			t.Fatalf("at 2 s: %+v, want %+v", got, want)
		}
		// At 5 s the first bucket has left the window.
		time.Sleep(3 * time.Second)
		if got, want := w.Totals(time.Now()), (Counts{Failures: 3, Slow: 1}); got != want {
			t.Fatalf("at 5 s: %+v, want %+v", got, want)
		}
		// A bucket reused by the ring is cleared first.
		w.Add(time.Now(), Counts{Successes: 1})
		if got, want := w.Totals(time.Now()), (Counts{Successes: 1, Failures: 3, Slow: 1}); got != want {
			t.Fatalf("after reuse: %+v, want %+v", got, want)
		}
		time.Sleep(10 * time.Second)
		if got := w.Totals(time.Now()); got != (Counts{}) {
			t.Fatalf("after 10 idle seconds: %+v, want empty", got)
		}
		w.Add(time.Now(), Counts{Failures: 1})
		w.Reset()
		if got := w.Totals(time.Now()); got != (Counts{}) {
			t.Fatalf("after Reset: %+v", got)
		}
	})
}
