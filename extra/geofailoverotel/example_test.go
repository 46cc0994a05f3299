package geofailoverotel_test

import (
	"context"
	"fmt"
	"os"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// instrument is what an application gives Options.OnNewClient: go-redis's
// own OpenTelemetry tracing and metrics (redisotel) on every client the
// library builds, with the endpoint's name as an attribute.
func instrument(endpoint string, c redis.UniversalClient) {
	attrs := redisotel.WithAttributes(attribute.String("geofailover.endpoint", endpoint))
	if err := redisotel.InstrumentTracing(c, attrs); err != nil {
		fmt.Fprintln(os.Stderr, "tracing:", err)
	}
	if err := redisotel.InstrumentMetrics(c, attrs); err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
	}
}

// Instrument every member of a client with redisotel (tracing and
// metrics, through the global OpenTelemetry providers), naming the endpoint.
func Example_redisotel() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	east, err := failovertest.LaunchServer(dir + "/east")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer east.Kill()
	c, err := geofailover.New(&geofailover.Options{
		Endpoints:   []geofailover.Endpoint{{Name: "east", Weight: 1, URL: east.URL()}},
		OnNewClient: instrument,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.WaitReady(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Set(ctx, "k", "v", 0).Err())
	// Output: <nil>
}
