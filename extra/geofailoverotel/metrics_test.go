package geofailoverotel_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/extra/geofailoverotel"
	"github.com/geofailover/geofailover/failovertest"
)

// collect reads every data point of rm by instrument name, keyed by its
// attributes ("endpoint=east,outcome=served").
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	key := func(set attribute.Set) string {
		s := ""
		for _, kv := range set.ToSlice() {
			if s != "" {
				s += ","
			}
			s += string(kv.Key) + "=" + kv.Value.String()
		}
		return s
	}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != geofailoverotel.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			pts := map[string]float64{}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					pts[key(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					pts[key(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					pts[key(p.Attributes)] = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					pts[key(p.Attributes)] = float64(p.Count)
				}
			}
			out[m.Name] = pts
		}
	}
	return out
}

// TestMetricsAcrossFailover: the instruments follow a kill of the preferred
// endpoint under load, the failover and the failback.
func TestMetricsAcrossFailover(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, URL: east.URL()},
		{Name: "west", Weight: 0.5, URL: west.URL()},
	}, HealthCheckInterval: 100 * time.Millisecond, GracePeriod: 300 * time.Millisecond, FailbackDelay: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := geofailoverotel.InstrumentMetrics(c, geofailoverotel.WithMeterProvider(mp)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	failovertest.WaitActive(t, c, "east")
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	ps := c.Subscribe(ctx, "news")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	events, stop := c.Events(64)
	defer stop()

	run := failovertest.Workload{}.Start(c)
	time.Sleep(200 * time.Millisecond)
	if err := east.Kill(); err != nil {
		t.Fatal(err)
	}
	failovertest.WaitActive(t, c, "west")
	failovertest.NextEvent(t, events, geofailover.EventPubSubRestored, nil)
	time.Sleep(100 * time.Millisecond)
	during := collect(t, reader)
	if err := east.Restart(); err != nil {
		t.Fatal(err)
	}
	failovertest.WaitActive(t, c, "east")
	time.Sleep(300 * time.Millisecond)
	run.Stop()
	after := collect(t, reader)
	t.Logf("during the outage: %v", during)
	t.Logf("after the failback: %v", after)

	check := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("active east during", during["geofailover.endpoint.active"]["endpoint=east"], 0)
	check("active west during", during["geofailover.endpoint.active"]["endpoint=west"], 1)
	check("healthy west during", during["geofailover.endpoint.healthy"]["endpoint=west"], 1)
	check("active east after", after["geofailover.endpoint.active"]["endpoint=east"], 1)
	check("active west after", after["geofailover.endpoint.active"]["endpoint=west"], 0)
	check("healthy east after", after["geofailover.endpoint.healthy"]["endpoint=east"], 1)
	failovers, failbacks := 0.0, 0.0
	for attrs, n := range after["geofailover.switches"] {
		switch attrs {
		case "from=east,reason=breaker,to=west", "from=east,reason=health,to=west":
			failovers += n
		case "from=west,reason=failback,to=east":
			failbacks += n
		default:
			t.Errorf("unexpected switch %s (%v)", attrs, n)
		}
	}
	check("failovers east->west", failovers, 1)
	check("failbacks west->east", failbacks, 1)
	if after["geofailover.pubsub.gap.duration"]["to=west"] < 1 {
		t.Errorf("no Pub/Sub gap recorded: %v", after["geofailover.pubsub.gap.duration"])
	}
	calls := after["geofailover.endpoint.calls"]
	if calls["endpoint=east,outcome=served"] == 0 || calls["endpoint=west,outcome=served"] == 0 || calls["endpoint=east,outcome=failed"] == 0 {
		t.Errorf("calls %v: want both endpoints served, east failed some", calls)
	}
	if after["geofailover.health_check.duration"]["endpoint=west"] <= 0 {
		t.Errorf("no health-check duration for west: %v", after["geofailover.health_check.duration"])
	}
}
