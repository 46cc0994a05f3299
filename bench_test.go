package geofailover_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// BenchmarkRoutingHedged is BenchmarkRouting for hedged reads: GET through
// a Client over two endpoints built from Options (so the first attempt
// runs on the caller's goroutine and can be cut), whose members answer
// in-process, with HedgeReads off and on. The difference is what hedging
// adds per read, without the noise of a network round trip (the scan of
// the write, which needs a connection, is not included: TestSingleRead's
// neighbour BenchmarkSingleRead measures it).
func BenchmarkRoutingHedged(b *testing.B) {
	ctx := context.Background()
	for _, hedge := range []bool{false, true} {
		c, err := geofailover.New(&geofailover.Options{
			HedgeReads: hedge,
			Endpoints: []geofailover.Endpoint{
				{Name: "a", Weight: 1, Options: &redis.Options{Addr: "127.0.0.1:1"}},
				{Name: "b", Weight: 0.5, Options: &redis.Options{Addr: "127.0.0.1:1"}},
			},
			HealthCheck: func(context.Context, redis.UniversalClient) error { return nil },
			OnNewClient: func(_ string, rc redis.UniversalClient) { rc.AddHook(nullHook{}) },
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		name := map[bool]string{false: "off", true: "on"}[hedge]
		b.Run("hedge-"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = c.Get(ctx, benchKey).Err()
			}
		})
		b.Run("hedge-"+name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_ = c.Get(ctx, benchKey).Err()
				}
			})
		})
		c.Close()
	}
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

// BenchmarkScale: one client with 50 endpoints and 10,000 goroutines. It
// reports the heap per endpoint, the process CPU while idle (health checks
// only, 50 endpoints), and the time to switch under the 10,000 goroutines
// when the preferred endpoint is SIGKILLed. Run with -benchtime=1x.
func BenchmarkScale(b *testing.B) {
	const endpoints, goroutines = 50, 10000
	for b.Loop() {
		preferred, rest := failovertest.StartServer(b), failovertest.StartServer(b)
		ctx := context.Background()
		eps := []geofailover.Endpoint{{Name: "e0", Weight: 100, Options: &redis.Options{Addr: preferred.Addr, PoolSize: 200}}}
		for i := 1; i < endpoints; i++ {
			eps = append(eps, geofailover.Endpoint{Name: fmt.Sprintf("e%d", i), Weight: float64(100 - i), Options: &redis.Options{Addr: rest.Addr, PoolSize: 200}})
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c, err := geofailover.New(&geofailover.Options{Endpoints: eps})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Second) // every endpoint checked, pools warm
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/endpoints, "heap-B/endpoint")

		cpu0, wall0 := cpuTime(), time.Now()
		time.Sleep(5 * time.Second)
		b.ReportMetric(100*float64(cpuTime()-cpu0)/float64(time.Since(wall0)), "idle-cpu-%")

		stop := make(chan struct{})
		var wg sync.WaitGroup
		var okAfter atomic.Int64
		var killed atomic.Int64 // UnixNano of the kill
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("k%d", g%100)
				for {
					select {
					case <-stop:
						return
					default:
					}
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					err := c.Get(cctx, key).Err()
					cancel()
					if (err == nil || err == redis.Nil) && killed.Load() != 0 {
						okAfter.CompareAndSwap(0, time.Now().UnixNano())
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
		time.Sleep(time.Second)
		killed.Store(time.Now().UnixNano())
		start := time.Now()
		preferred.Kill()
		for c.Active() == "e0" {
			if time.Since(start) > 30*time.Second {
				b.Fatal("no switch within 30 s")
			}
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "switch-ms")
		time.Sleep(500 * time.Millisecond)
		close(stop)
		wg.Wait()
		if t := okAfter.Load(); t != 0 {
			b.ReportMetric(float64(t-killed.Load())/1e6, "first-success-ms")
		}
		c.Close()
		// go-redis keeps a dial-retry goroutine for up to a second after a
		// pool that saw failed dials is closed; let it end before goleak looks.
		time.Sleep(1500 * time.Millisecond)
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHedgedReads: GET through a Client over two local servers, with
// and without HedgeReads (derived delay), on one goroutine and on 16. It
// reports the hedges sent per read: on a healthy endpoint they stay within
// the budget (hedgeShare), and the throughput should not change.
func BenchmarkHedgedReads(b *testing.B) {
	east, west := failovertest.StartServer(b), failovertest.StartServer(b)
	ctx := context.Background()
	for _, hedge := range []bool{false, true} {
		c, err := geofailover.New(&geofailover.Options{HedgeReads: hedge, Endpoints: []geofailover.Endpoint{
			{Name: "east", Weight: 1, Options: &redis.Options{Addr: east.Addr}},
			{Name: "west", Weight: 0.5, Options: &redis.Options{Addr: west.Addr}},
		}})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		c.Set(ctx, benchKey, "v", 0)
		hedges := func() uint64 {
			var n uint64
			for _, st := range c.Status() {
				n += st.Calls.Hedged
			}
			return n
		}
		name := map[bool]string{false: "off", true: "on"}[hedge]
		b.Run("GET/hedge-"+name, func(b *testing.B) {
			b.ReportAllocs()
			before := hedges()
			for b.Loop() {
				if err := c.Get(ctx, benchKey).Err(); err != nil && err != redis.Nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(hedges()-before)/float64(b.N), "hedges/read")
		})
		b.Run("GET/hedge-"+name+"-parallel16", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			before := hedges()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.Get(ctx, benchKey).Err(); err != nil && err != redis.Nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(hedges()-before)/float64(b.N), "hedges/read")
		})
		c.Close()
	}
}
