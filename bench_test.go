package geofailover_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// nullHook answers every command without a network: it isolates the cost
// of routing from the cost of Redis.
type nullHook struct{}

func (nullHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (nullHook) ProcessHook(redis.ProcessHook) redis.ProcessHook {
	return func(context.Context, redis.Cmder) error { return nil }
}
func (nullHook) ProcessPipelineHook(redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(context.Context, []redis.Cmder) error { return nil }
}

func nullClient() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	c.AddHook(nullHook{})
	return c
}

// BenchmarkRouting measures the routing layer alone: GET through a Client
// whose endpoint answers in-process, against the same endpoint called
// directly. The difference is what geofailover adds per command.
func BenchmarkRouting(b *testing.B) {
	ctx := context.Background()
	member := nullClient()
	defer member.Close()
	c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{{Name: "a", Weight: 1, Client: member}}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = member.Get(ctx, benchKey).Err()
		}
	})
	b.Run("geofailover", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = c.Get(ctx, benchKey).Err()
		}
	})
	b.Run("direct-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8) // 16 goroutines on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = member.Get(ctx, benchKey).Err()
			}
		})
	})
	b.Run("geofailover-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = c.Get(ctx, benchKey).Err()
			}
		})
	})
}

// BenchmarkRedis compares GET, SET and a 10-command pipeline through a
// Client and through a plain *redis.Client on the same local redis-server,
// on one goroutine and on 16.
func BenchmarkRedis(b *testing.B) {
	s := failovertest.StartServer(b)
	ctx := context.Background()
	plain := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer plain.Close()
	c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{{Name: "a", Weight: 1, Options: &redis.Options{Addr: s.Addr}}}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	plain.Set(ctx, "k", "v", 0)
	ops := map[string]func(redis.Cmdable) error{
		"GET": func(r redis.Cmdable) error { return r.Get(ctx, "k").Err() },
		"SET": func(r redis.Cmdable) error { return r.Set(ctx, "k", "v", 0).Err() },
		"pipeline10": func(r redis.Cmdable) error {
			_, err := r.Pipelined(ctx, func(p redis.Pipeliner) error {
				for range 10 {
					p.Get(ctx, "k")
				}
				return nil
			})
			return err
		},
	}
	for _, name := range []string{"GET", "SET", "pipeline10"} {
		op := ops[name]
		for _, target := range []struct {
			name string
			r    redis.Cmdable
		}{{"plain", plain}, {"geofailover", c}} {
			b.Run(name+"/"+target.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := op(target.r); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(name+"/"+target.name+"-parallel16", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := op(target.r); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// benchKey is a variable, as keys are in applications: a constant key would
// let the compiler skip boxing it on one path and not the other.
var benchKey = string([]byte("key"))
