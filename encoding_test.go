package geofailover_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEnumsAsNames: every public enum prints, encodes and decodes as its
// name.
func TestEnumsAsNames(t *testing.T) {
	type enum interface {
		String() string
		MarshalText() ([]byte, error)
	}
	var all []enum
	for _, h := range []geofailover.Health{geofailover.HealthUnknown, geofailover.Healthy, geofailover.Unhealthy} {
		all = append(all, h)
	}
	all = append(all, geofailover.BreakerClosed, geofailover.BreakerOpen)
	for k := geofailover.EventInitialSelection; k <= geofailover.EventHeldBack; k++ {
		all = append(all, k)
	}
	for r := geofailover.ReasonNone; r <= geofailover.ReasonLatency; r++ {
		all = append(all, r)
	}
	for c := geofailover.CauseNone; c <= geofailover.CauseStalled; c++ {
		all = append(all, c)
	}
	names := map[string]bool{}
	for _, v := range all {
		if names[fmt.Sprintf("%T %v", v, v)] {
			t.Errorf("%T: two values named %q", v, v)
		}
		names[fmt.Sprintf("%T %v", v, v)] = true
		b, err := json.Marshal(v)
		if err != nil || string(b) != `"`+v.String()+`"` {
			t.Errorf("%T %v encodes as %s (%v)", v, v, b, err)
		}
		if strings.Contains(v.String(), "unknown") && v != geofailover.HealthUnknown {
			t.Errorf("%T value %d has no name", v, v)
		}
	}
	var h geofailover.Health
	if err := json.Unmarshal([]byte(`"unhealthy"`), &h); err != nil || h != geofailover.Unhealthy {
		t.Errorf("decoding \"unhealthy\": %v, %v", h, err)
	}
	var c geofailover.TripCause
	if err := json.Unmarshal([]byte(`"stalled"`), &c); err != nil || c != geofailover.CauseStalled {
		t.Errorf("decoding \"stalled\": %v, %v", c, err)
	}
	var r geofailover.SwitchReason
	if err := json.Unmarshal([]byte(`"brekaer"`), &r); err == nil {
		t.Error("decoding an unknown reason succeeded")
	}
}

// TestStatusEventsAndLogsAsNames: Status and events encode to JSON with
// names and error texts and no zero fields, and the library logs every
// event through Options.Logger with names, never numbers or nulls.
func TestStatusEventsAndLogsAsNames(t *testing.T) {
	var logs syncBuffer
	east, _, c := pair(t, func(o *geofailover.Options) {
		fast(o)
		o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	log := logEvents(c)
	w := failovertest.Workload{Workers: 4}.Start(c)
	east.Kill()
	failovertest.WaitActive(t, c, "west")
	failovertest.WaitHealth(t, c, "east", geofailover.Unhealthy)
	w.Stop()

	b, err := json.Marshal(c.Status())
	must(t, err)
	js := string(b)
	for _, want := range []string{`"Health":"unhealthy"`, `"Health":"healthy"`, `"Breaker":"open"`, `"LastError":"`} {
		if !strings.Contains(js, want) {
			t.Errorf("Status JSON lacks %s: %s", want, js)
		}
	}
	for _, bad := range []string{`"Health":1`, `"Health":2`, `"Breaker":1`, `"GraceUntil":"0001`, `"LastError":{`, `null`} {
		if strings.Contains(js, bad) {
			t.Errorf("Status JSON has %s: %s", bad, js)
		}
	}

	kinds := map[string]bool{}
	for _, ev := range log.all() {
		b, err := json.Marshal(ev)
		must(t, err)
		var m map[string]any
		must(t, json.Unmarshal(b, &m))
		kind, _ := m["Kind"].(string)
		kinds[kind] = true
		for key, v := range m {
			if _, isNum := v.(float64); isNum && key != "Subscriptions" {
				t.Errorf("event JSON field %s is a number: %s", key, b)
			}
			if v == nil {
				t.Errorf("event JSON field %s is null: %s", key, b)
			}
		}
	}
	for _, k := range []string{"switch", "breaker-opened", "health-changed"} {
		if !kinds[k] {
			t.Errorf("no %s event among %v", k, kinds)
		}
	}

	logged := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var m map[string]any
		must(t, json.Unmarshal(sc.Bytes(), &m))
		msg, _ := m["msg"].(string)
		logged[msg] = true
		for _, key := range []string{"reason", "health", "prev_health", "err", "from", "to"} {
			if v, ok := m[key]; ok {
				if _, isString := v.(string); !isString {
					t.Errorf("log field %s is %v, not a name or text: %s", key, v, sc.Text())
				}
			}
		}
	}
	for kind := range kinds {
		if !logged["geofailover: "+kind] {
			t.Errorf("event %s was not logged; logged: %v", kind, logged)
		}
	}
}
