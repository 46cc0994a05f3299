package geofailover

import (
	"testing"
	"time"

	"github.com/geofailover/geofailover/internal/breaker"
)

// TestEventQueueIsBounded: a subscriber that stops reading costs at most
// maxPendingEvents waiting events; the oldest beyond are dropped, and the
// subscriber learns how many from one EventsDropped delivered in their
// place, before the events that were kept, in order.
func TestEventQueueIsBounded(t *testing.T) {
	q := newEventQueue()
	defer q.close()
	release := make(chan struct{})
	var got []Event
	seen := 0 // events delivered or reported dropped
	done := make(chan struct{})
	const total = 3 * maxPendingEvents
	q.subscribe(func(ev Event) {
		if len(got) == 0 {
			<-release // stuck on the first event while the rest pile up
		}
		got = append(got, ev)
		if seen += max(ev.Dropped, 1); seen == total {
			close(done)
		}
	}, true)
	for i := range total {
		q.publish(Event{Kind: EventHealthChanged, Subscriptions: i})
		if i == 0 {
			// Let the delivery goroutine take the first event.
			for waited := time.Duration(0); ; waited += time.Millisecond {
				q.mu.Lock()
				taken := len(q.pending) == 0
				q.mu.Unlock()
				if taken || waited > 10*time.Second {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	q.mu.Lock()
	waiting := len(q.pending)
	q.mu.Unlock()
	if waiting > maxPendingEvents {
		t.Errorf("%d events wait for a stuck subscriber, more than maxPendingEvents (%d)", waiting, maxPendingEvents)
	}
	close(release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("only %d deliveries after the subscriber resumed", len(got))
	}
	if len(got) != maxPendingEvents+2 {
		t.Errorf("%d deliveries, want the first event, one EventsDropped and %d kept", len(got), maxPendingEvents)
	}
	if got[1].Kind != EventsDropped || got[1].Dropped != total-1-maxPendingEvents {
		t.Errorf("second delivery %+v, want EventsDropped with Dropped %d", got[1], total-1-maxPendingEvents)
	}
	for i, ev := range got[2:] {
		if want := total - maxPendingEvents + i; ev.Kind != EventHealthChanged || ev.Subscriptions != want {
			t.Fatalf("kept event %d is %+v, want event %d (oldest dropped, order kept)", i, ev, want)
		}
	}
}

// TestTripCauseNames: every verdict of the breaker rule has its own public
// cause (a new rule cannot be reported as "none").
func TestTripCauseNames(t *testing.T) {
	seen := map[TripCause]breaker.Cause{}
	for c := breaker.CauseConsecutive; c <= breaker.CauseStall; c++ {
		tc := tripCause(c)
		if tc == CauseNone || seen[tc] != 0 {
			t.Errorf("breaker cause %v is reported as %v", c, tc)
		}
		if tc.String() != c.String() {
			t.Errorf("breaker cause %q is named %q", c, tc)
		}
		seen[tc] = c
	}
}
