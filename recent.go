package geofailover

import "sync"

// recentLimit is how many events RecentEvents keeps.
const recentLimit = 50

// recentEvents keeps the last recentLimit events the client emitted.
type recentEvents struct {
	mu  sync.Mutex
	evs []Event
}

func (r *recentEvents) add(evs []Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, evs...)
	if over := len(r.evs) - recentLimit; over > 0 {
		r.evs = append(r.evs[:0:0], r.evs[over:]...)
	}
}

func (r *recentEvents) list() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.evs...)
}

// RecentEvents returns the client's last 50 events, oldest first: what a
// status page shows (see package statuspage), without subscribing.
func (c *Client) RecentEvents() []Event { return c.recent.list() }
