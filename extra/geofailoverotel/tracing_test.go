package geofailoverotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

func TestMain(m *testing.M) { failovertest.VerifyTestMain(m) }

// TestRedisotelSpansAcrossFailover: with redisotel attached through
// OnNewClient, the commands served by each endpoint, before and after a
// failover and after the failback, have spans that name that endpoint.
func TestRedisotelSpansAcrossFailover(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, URL: east.URL()},
		{Name: "west", Weight: 0.5, URL: west.URL()},
	}, HealthCheckInterval: 100 * time.Millisecond, GracePeriod: 300 * time.Millisecond, FailbackDelay: 200 * time.Millisecond,
		OnNewClient: func(endpoint string, rc redis.UniversalClient) {
			err := redisotel.InstrumentTracing(rc, redisotel.WithTracerProvider(tp),
				redisotel.WithAttributes(attribute.String("geofailover.endpoint", endpoint)))
			if err != nil {
				t.Errorf("redisotel.InstrumentTracing on %s: %v", endpoint, err)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	failovertest.WaitActive(t, c, "east")
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)

	// set writes key phase on the active endpoint; its span names the
	// endpoint that served it.
	set := func(phase string) {
		t.Helper()
		if err := c.Set(ctx, phase, phase, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", phase, err)
		}
	}
	set("before")
	if err := east.Kill(); err != nil {
		t.Fatal(err)
	}
	failovertest.WaitActive(t, c, "west")
	set("during")
	if err := east.Restart(); err != nil {
		t.Fatal(err)
	}
	failovertest.WaitActive(t, c, "east")
	set("after")

	want := map[string]string{"before": "east", "during": "west", "after": "east"}
	got := map[string]string{}
	for _, s := range spans.GetSpans() {
		var endpoint, statement string
		for _, a := range s.Attributes {
			switch a.Key {
			case "geofailover.endpoint":
				endpoint = a.Value.AsString()
			case "db.statement", "db.query.text":
				statement = a.Value.AsString()
			}
		}
		for phase := range want {
			if statement == "set "+phase+" "+phase {
				got[phase] = endpoint
			}
		}
	}
	for phase, endpoint := range want {
		if got[phase] != endpoint {
			t.Errorf("the span of SET %s names endpoint %q, want %q (spans: %d)", phase, got[phase], endpoint, len(spans.GetSpans()))
		}
	}
}
