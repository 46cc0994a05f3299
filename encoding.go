package geofailover

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// This file makes the public types print, encode and log as names: every
// enum has MarshalText/UnmarshalText (so encoding/json, YAML and slog show
// "healthy", not 1), EndpointStatus and Event encode to JSON without zero
// values and with errors as their text, and every event is logged, at a
// level that fits it, through Options.Logger.

// MarshalText encodes the health as its name ("healthy").
func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a name MarshalText gives.
func (h *Health) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, h, "health", HealthUnknown, Healthy, Unhealthy)
}

// MarshalText encodes the state as its name ("open").
func (s BreakerState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a name MarshalText gives.
func (s *BreakerState) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, s, "breaker state", BreakerClosed, BreakerOpen)
}

// MarshalText encodes the cause as its name ("stalled").
func (c TripCause) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText decodes a name MarshalText gives.
func (c *TripCause) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, c, "trip cause", CauseNone, CauseConsecutiveFailures, CauseFailureRatio, CauseSlowCalls, CauseStalled)
}

// MarshalText encodes the kind as its name ("switch").
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes a name MarshalText gives.
func (k *EventKind) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, k, "event kind", EventInitialSelection, EventSwitch, EventHealthChanged,
		EventBreakerOpened, EventBreakerClosed, EventAllDown, EventRecovered, EventPubSubInterrupted, EventPubSubRestored, EventsDropped, EventHeldBack)
}

// MarshalText encodes the reason as its name ("breaker").
func (r SwitchReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText decodes a name MarshalText gives.
func (r *SwitchReason) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, r, "switch reason", ReasonNone, ReasonBreaker, ReasonHealth, ReasonFailback, ReasonManual, ReasonRemoved, ReasonLatency)
}

// unmarshalEnum sets *v to the one of values whose name is b.
func unmarshalEnum[T fmt.Stringer](b []byte, v *T, what string, values ...T) error {
	for _, x := range values {
		if x.String() == string(b) {
			*v = x
			return nil
		}
	}
	return fmt.Errorf("geofailover: unknown %s %q", what, b)
}

// errText is an error's text, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// timeOrNil is t, or nil when t is zero (omitted from JSON).
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// MarshalJSON encodes the status with names for health and breaker state,
// the last error and the reason it is held back as their texts, the check latencies as duration strings
// ("1.2ms"), and without the fields that are zero (no error, no check yet,
// no grace period).
func (s EndpointStatus) MarshalJSON() ([]byte, error) {
	durText := func(d time.Duration) string {
		if d <= 0 {
			return ""
		}
		return d.String()
	}
	type fields EndpointStatus // its fields, without this method
	return json.Marshal(struct {
		fields
		LastError        string     `json:",omitempty"`
		HeldBack         string     `json:",omitempty"`
		CheckLatency     string     `json:",omitempty"`
		LastCheckLatency string     `json:",omitempty"`
		LastCheck        *time.Time `json:",omitempty"`
		GraceUntil       *time.Time `json:",omitempty"`
	}{fields(s), errText(s.LastError), errText(s.HeldBack), durText(s.CheckLatency), durText(s.LastCheckLatency), timeOrNil(s.LastCheck), timeOrNil(s.GraceUntil)})
}

// MarshalJSON encodes the event with names for its kind, reason and
// health, the error as its text, the detection time as a duration string,
// and without the fields that do not apply to its kind.
func (ev Event) MarshalJSON() ([]byte, error) {
	out := map[string]any{"Kind": ev.Kind, "At": ev.At}
	for _, a := range ev.attrs() {
		if a.Key != "kind" {
			out[jsonName[a.Key]] = a.Value.Any()
		}
	}
	return json.Marshal(out)
}

var jsonName = map[string]string{
	"endpoint": "Endpoint", "from": "From", "to": "To", "reason": "Reason", "detection": "DetectionTime",
	"health": "Health", "prev_health": "PrevHealth", "cause": "Cause", "err": "Err",
	"gap_start": "GapStart", "subscriptions": "Subscriptions", "dropped": "Dropped",
}

// attrs are the event's fields that apply to its kind, for slog and JSON.
func (ev Event) attrs() []slog.Attr {
	as := []slog.Attr{slog.String("kind", ev.Kind.String())}
	add := func(key string, v any, set bool) {
		if set {
			as = append(as, slog.Any(key, v))
		}
	}
	add("endpoint", ev.Endpoint, ev.Endpoint != "")
	add("from", ev.From, ev.From != "")
	add("to", ev.To, ev.To != "")
	add("reason", ev.Reason, ev.Reason != ReasonNone)
	add("detection", ev.DetectionTime.String(), ev.DetectionTime > 0)
	add("health", ev.Health, ev.Kind == EventHealthChanged)
	add("prev_health", ev.PrevHealth, ev.Kind == EventHealthChanged)
	add("cause", ev.Cause, ev.Cause != CauseNone)
	add("err", errText(ev.Err), ev.Err != nil)
	add("gap_start", ev.GapStart, !ev.GapStart.IsZero())
	add("subscriptions", ev.Subscriptions, ev.Subscriptions > 0)
	add("dropped", ev.Dropped, ev.Dropped > 0)
	return as
}

// LogValue logs the event as a group of the fields that apply to its kind.
func (ev Event) LogValue() slog.Value { return slog.GroupValue(ev.attrs()...) }

// level is how loud an event is in the log: losing something (a failover,
// a breaker opening, an endpoint turning unhealthy, all down, a Pub/Sub
// gap) is a warning; getting it back, or a planned move, is information.
func (ev Event) level() slog.Level {
	switch ev.Kind {
	case EventBreakerOpened, EventAllDown, EventPubSubInterrupted, EventsDropped:
		return slog.LevelWarn
	case EventHealthChanged:
		if ev.Health == Unhealthy {
			return slog.LevelWarn
		}
	case EventSwitch:
		if ev.Reason == ReasonBreaker || ev.Reason == ReasonHealth {
			return slog.LevelWarn
		}
	}
	return slog.LevelInfo
}

// emit logs events and queues them for the subscribers: the one way events
// leave the client.
func (c *Client) emit(evs ...Event) {
	if len(evs) == 0 {
		return
	}
	log := c.cfg.Logger
	for _, ev := range evs {
		if log.Enabled(context.Background(), ev.level()) {
			log.LogAttrs(context.Background(), ev.level(), "geofailover: "+ev.Kind.String(), ev.attrs()[1:]...)
		}
	}
	c.recent.add(evs)
	c.events.publish(evs...)
}
