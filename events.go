package geofailover

import (
	"sync"
	"time"

	"github.com/geofailover/geofailover/internal/breaker"
)

// EventKind says what an Event reports.
type EventKind int

// The kinds of Event.
const (
	// EventInitialSelection: the first endpoint chosen after New (To).
	EventInitialSelection EventKind = iota + 1
	// EventSwitch: traffic moved From one endpoint To another, for Reason.
	EventSwitch
	// EventHealthChanged: Endpoint's health went from PrevHealth to Health.
	EventHealthChanged
	// EventBreakerOpened: Endpoint's breaker opened; Cause says why.
	EventBreakerOpened
	// EventBreakerClosed: Endpoint's breaker closed again.
	EventBreakerClosed
	// EventAllDown: no endpoint can take traffic (From was the last active).
	EventAllDown
	// EventRecovered: after all were down, To took traffic again.
	EventRecovered
	// EventPubSubInterrupted: a PubSub's subscriptions (Subscriptions of
	// them) stopped being served by From, at At: a gap in delivery began.
	EventPubSubInterrupted
	// EventPubSubRestored: the gap that began at GapStart ended at At: all
	// Subscriptions are confirmed on To. Messages published in between
	// were not delivered.
	EventPubSubRestored
	// EventsDropped: a subscriber fell so far behind that more than
	// maxPendingEvents events waited for delivery; the oldest of them,
	// Dropped in all, were discarded. It is delivered in their place,
	// before the events that were kept.
	EventsDropped
	// EventHeldBack: Endpoint's health checks began (Err: why) or ceased
	// (Err nil) to hold it back (see HoldBackError).
	EventHeldBack
)

// maxPendingEvents is the most events that wait for delivery to
// subscribers (OnEvent, Events). Beyond it the oldest waiting events are
// dropped and replaced by one EventsDropped, so a subscriber that never
// reads costs bounded memory.
const maxPendingEvents = 10000

// String returns the kind's name ("switch", "breaker-opened", ...).
func (k EventKind) String() string {
	switch k {
	case EventInitialSelection:
		return "initial-selection"
	case EventSwitch:
		return "switch"
	case EventHealthChanged:
		return "health-changed"
	case EventBreakerOpened:
		return "breaker-opened"
	case EventBreakerClosed:
		return "breaker-closed"
	case EventAllDown:
		return "all-down"
	case EventRecovered:
		return "recovered"
	case EventPubSubInterrupted:
		return "pubsub-interrupted"
	case EventPubSubRestored:
		return "pubsub-restored"
	case EventsDropped:
		return "events-dropped"
	case EventHeldBack:
		return "held-back"
	}
	return "unknown"
}

// SwitchReason says why traffic moved.
type SwitchReason int

// The reasons for a switch.
const (
	ReasonNone     SwitchReason = iota
	ReasonBreaker               // the active endpoint's breaker opened
	ReasonHealth                // the active endpoint failed its health checks
	ReasonFailback              // a preferred endpoint recovered (or a weight changed)
	ReasonManual                // SwitchTo
	ReasonRemoved               // the active endpoint was removed
	ReasonLatency               // an endpoint of equal weight has been clearly faster (Options.LatencySwitchAfter)
)

// String returns the reason's name ("breaker", "failback", ...).
func (r SwitchReason) String() string {
	switch r {
	case ReasonBreaker:
		return "breaker"
	case ReasonHealth:
		return "health"
	case ReasonFailback:
		return "failback"
	case ReasonManual:
		return "manual"
	case ReasonRemoved:
		return "removed"
	case ReasonLatency:
		return "latency"
	}
	return "none"
}

// TripCause says why an endpoint's breaker opened.
type TripCause int

// The causes of a breaker opening (see Options for each threshold).
const (
	CauseNone                TripCause = iota // no trip: events other than EventBreakerOpened
	CauseConsecutiveFailures                  // BreakerConsecutiveFailures failed commands in a row
	CauseFailureRatio                         // BreakerMinFailures failures, at least BreakerFailureRatio of the calls, in the window
	CauseSlowCalls                            // SlowCallMinCalls calls, at least SlowCallRatio of them slow, in the window
	CauseStalled                              // commands outstanding and none completed for StallTimeout
)

// String returns the cause's name: "consecutive failures", "failure
// ratio", "slow calls", "stalled", or "none".
func (c TripCause) String() string {
	switch c {
	case CauseConsecutiveFailures:
		return "consecutive failures"
	case CauseFailureRatio:
		return "failure ratio"
	case CauseSlowCalls:
		return "slow calls"
	case CauseStalled:
		return "stalled"
	}
	return "none"
}

// tripCause is the public name of the breaker rule's verdict.
func tripCause(c breaker.Cause) TripCause {
	switch c {
	case breaker.CauseConsecutive:
		return CauseConsecutiveFailures
	case breaker.CauseFailures:
		return CauseFailureRatio
	case breaker.CauseSlow:
		return CauseSlowCalls
	case breaker.CauseStall:
		return CauseStalled
	}
	return CauseNone
}

// Event reports a change in the client's state. Fields that do not apply to
// a Kind are zero.
type Event struct {
	Kind EventKind
	At   time.Time
	// Endpoint is the subject of health and breaker events.
	Endpoint string
	// From and To are the endpoints a switch left and chose ("" for none).
	From, To string
	// Reason says why a switch, all-down or recovery happened.
	Reason SwitchReason
	// DetectionTime is, for a switch away from a failed endpoint, the time
	// from the first sign of the failure to the switch.
	DetectionTime time.Duration
	// Health and PrevHealth are the new and old health of Endpoint.
	Health, PrevHealth Health
	// Cause says why a breaker opened (EventBreakerOpened only).
	Cause TripCause
	// Err is the last error seen on Endpoint (or on From, for a switch).
	Err error
	// GapStart is, for EventPubSubRestored, when the gap began (At is when
	// it ended).
	GapStart time.Time
	// Subscriptions is, for Pub/Sub events, how many channels, patterns
	// and shard channels the PubSub holds.
	Subscriptions int
	// Dropped is, for EventsDropped, how many events were discarded.
	Dropped int
}

// eventQueue delivers events to subscribers in order, on one goroutine of
// its own, so that neither the command path nor the supervisor ever waits
// for a subscriber. A slow subscriber delays later deliveries; at most
// maxPendingEvents wait (the oldest beyond are dropped, and counted in an
// EventsDropped delivered in their place). close never waits for a subscriber: it releases channel
// subscribers at once and leaves a callback that is running to finish on
// its own.
type eventQueue struct {
	mu         sync.Mutex // protects the following fields
	pending    []Event
	dropped    int // events dropped from the head of pending, not yet reported
	subs       []*subscriber
	closed     bool
	delivering *subscriber // the subscriber the delivery goroutine is handing an event to

	signal chan struct{} // capacity 1: "pending is not empty"
	quit   chan struct{} // closed by close: releases channel subscribers
	done   chan struct{} // closed when the delivery goroutine has exited
}

// subscriber is the Options.OnEvent callback (user) or one Events channel
// (ours: its function returns when quit is closed or the channel is
// stopped).
type subscriber struct {
	fn   func(Event)
	user bool
	// onClose (Events: closes the channel) runs once, when the queue
	// closes or the subscription is cancelled, and never while fn runs.
	onClose   func()
	closeOnce sync.Once
	cancelled bool // protected by the queue's mu
}

func (s *subscriber) closed() {
	if s.onClose != nil {
		s.closeOnce.Do(s.onClose)
	}
}

func newEventQueue() *eventQueue {
	q := &eventQueue{signal: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return q
}

// publish queues events for delivery; it never blocks on subscribers.
func (q *eventQueue) publish(evs ...Event) {
	if len(evs) == 0 {
		return
	}
	q.mu.Lock()
	if q.closed || len(q.subs) == 0 {
		q.mu.Unlock()
		return
	}
	q.pending = append(q.pending, evs...)
	if over := len(q.pending) - maxPendingEvents; over > 0 {
		q.pending = q.pending[over:] // the array is reallocated, to the live part, as it grows
		q.dropped += over
	}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// subscribe adds fn (user: a caller's callback, which may block); the
// returned function removes it.
func (q *eventQueue) subscribe(fn func(Event), user bool) (cancel func()) {
	return q.subscribeClosing(fn, user, nil)
}

// subscribeClosing is subscribe with onClose, which runs once: when the
// queue closes (at once if it is closed already), or when the subscription
// is cancelled, but never while fn is running (then right after it
// returns, on the delivery goroutine).
func (q *eventQueue) subscribeClosing(fn func(Event), user bool, onClose func()) (cancel func()) {
	s := &subscriber{fn: fn, user: user, onClose: onClose}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		s.closed()
		return func() {}
	}
	q.subs = append(append([]*subscriber(nil), q.subs...), s)
	q.mu.Unlock()
	return func() {
		q.mu.Lock()
		subs := make([]*subscriber, 0, len(q.subs))
		for _, o := range q.subs {
			if o != s {
				subs = append(subs, o)
			}
		}
		q.subs = subs
		s.cancelled = true
		busy := q.delivering == s
		q.mu.Unlock()
		if !busy {
			s.closed()
		}
	}
}

func (q *eventQueue) run() {
	defer close(q.done)
	defer func() {
		q.mu.Lock()
		subs := q.subs
		q.subs = nil
		q.mu.Unlock()
		for _, s := range subs {
			s.closed()
		}
	}()
	for {
		select {
		case <-q.signal:
		case <-q.quit:
			return
		}
		for {
			q.mu.Lock()
			if q.closed {
				q.mu.Unlock()
				return
			}
			var ev Event
			switch {
			case q.dropped > 0:
				ev = Event{Kind: EventsDropped, At: time.Now(), Dropped: q.dropped}
				q.dropped = 0
			case len(q.pending) > 0:
				ev = q.pending[0]
				q.pending = q.pending[1:]
			default:
				q.pending = nil
				q.mu.Unlock()
			}
			if ev.Kind == 0 {
				break
			}
			subs := q.subs
			q.mu.Unlock()
			for _, s := range subs {
				if !q.deliver(s, ev) {
					return
				}
			}
		}
	}
}

// deliver hands ev to s unless the queue is closed.
func (q *eventQueue) deliver(s *subscriber, ev Event) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	if s.cancelled {
		q.mu.Unlock()
		return true
	}
	q.delivering = s
	q.mu.Unlock()
	s.fn(ev)
	q.mu.Lock()
	q.delivering = nil
	cancelled := s.cancelled
	q.mu.Unlock()
	if cancelled {
		s.closed() // cancelled while fn ran
	}
	return true
}

// close stops delivery: events not yet delivered are dropped and no
// delivery starts after it returns. It waits for the delivery goroutine
// unless that goroutine is inside a user's callback, which it leaves to
// return on its own (the goroutine then exits).
func (q *eventQueue) close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		q.pending, q.dropped = nil, 0
		close(q.quit)
	}
	busy := q.delivering != nil && q.delivering.user // inside a user's callback
	q.mu.Unlock()
	if !busy {
		<-q.done
	}
}
