package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/geofailover/geofailover"
)

// serviceLogger is the slog logger of a long-running command (the proxy):
// text or JSON on w, at Info unless $GEOFAILOVER_LOG names a level.
func serviceLogger(w io.Writer, format string) (*slog.Logger, error) {
	level, err := logLevel(slog.LevelInfo)
	if err != nil {
		return nil, usageError("$GEOFAILOVER_LOG=%q: want debug, info, warn or error", os.Getenv("GEOFAILOVER_LOG"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError("--log-format %q: want text or json", format)
}

// logEvent logs a client event under the library's name for its kind
// ("switch", "breaker-opened", ...; geofailover.EventKind.String), with its
// fields as attributes: Error when every endpoint is down, Warn for what
// degrades service (a breaker opening, a switch away from a failed
// endpoint, an interrupted subscription, dropped events), Info otherwise.
func logEvent(log *slog.Logger, ev geofailover.Event) {
	level := slog.LevelInfo
	switch ev.Kind {
	case geofailover.EventAllDown:
		level = slog.LevelError
	case geofailover.EventBreakerOpened, geofailover.EventPubSubInterrupted, geofailover.EventsDropped:
		level = slog.LevelWarn
	case geofailover.EventSwitch:
		if ev.Reason == geofailover.ReasonBreaker || ev.Reason == geofailover.ReasonHealth {
			level = slog.LevelWarn
		}
	}
	attrs := make([]slog.Attr, 0, 8)
	str := func(key, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(key, v))
		}
	}
	str("endpoint", ev.Endpoint)
	str("from", ev.From)
	str("to", ev.To)
	if ev.Kind == geofailover.EventSwitch || ev.Kind == geofailover.EventRecovered {
		str("reason", ev.Reason.String())
	}
	if ev.DetectionTime > 0 {
		attrs = append(attrs, slog.Duration("detection_time", ev.DetectionTime))
	}
	if ev.Kind == geofailover.EventHealthChanged {
		str("health", ev.Health.String())
		str("previous_health", ev.PrevHealth.String())
	}
	if ev.Cause != geofailover.CauseNone {
		str("cause", ev.Cause.String())
	}
	if ev.Err != nil {
		str("err", ev.Err.Error())
	}
	if ev.Subscriptions > 0 {
		attrs = append(attrs, slog.Int("subscriptions", ev.Subscriptions))
	}
	if ev.Dropped > 0 {
		attrs = append(attrs, slog.Int("dropped", ev.Dropped))
	}
	log.LogAttrs(context.Background(), level, ev.Kind.String(), attrs...)
}

// logLevel is the level $GEOFAILOVER_LOG names (debug, info, warn, error),
// or def when it is unset.
func logLevel(def slog.Level) (slog.Level, error) {
	s := os.Getenv("GEOFAILOVER_LOG")
	if s == "" {
		return def, nil
	}
	var level slog.Level
	return level, level.UnmarshalText([]byte(s))
}

// followEvents calls fn with each of c's events from now on, on a
// goroutine of its own, until the returned function is called (it waits
// for that goroutine) or c closes.
func followEvents(c *geofailover.Client, fn func(geofailover.Event)) (stop func()) {
	events, unsubscribe := c.Events(256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range events {
			fn(ev)
		}
	}()
	return func() { unsubscribe(); <-done }
}
