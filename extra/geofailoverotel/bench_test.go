package geofailoverotel_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/extra/geofailoverotel"
)

type nullHook struct{}

func (nullHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (nullHook) ProcessHook(redis.ProcessHook) redis.ProcessHook {
	return func(context.Context, redis.Cmder) error { return nil }
}
func (nullHook) ProcessPipelineHook(redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(context.Context, []redis.Cmder) error { return nil }
}

// BenchmarkRoutingInstrumented is the core's BenchmarkRouting (GET through
// a Client whose endpoint answers in-process) with and without
// InstrumentMetrics, the metrics collected meanwhile: the instruments read
// counters the command path keeps anyway, so both cost the same.
func BenchmarkRoutingInstrumented(b *testing.B) {
	for _, instrumented := range []bool{false, true} {
		name := "plain"
		if instrumented {
			name = "metrics"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			member := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
			member.AddHook(nullHook{})
			defer member.Close()
			c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{{Name: "a", Weight: 1, Client: member}}})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			defer mp.Shutdown(ctx)
			if instrumented {
				if err := geofailoverotel.InstrumentMetrics(c, geofailoverotel.WithMeterProvider(mp)); err != nil {
					b.Fatal(err)
				}
			}
			if err := c.WaitReady(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				_ = c.Get(ctx, "k").Err()
				if n++; n%100000 == 0 && instrumented {
					var rm metricdata.ResourceMetrics
					_ = reader.Collect(ctx, &rm)
				}
			}
		})
	}
}
