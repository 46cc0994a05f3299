package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// TestRepliesAsDirect: through the proxy, in RESP2 and RESP3, go-redis's
// typed commands get what they get from the server directly, including
// the replies whose shape depends on the protocol (maps, scores, pairs,
// XREAD, nulls).
func TestRepliesAsDirect(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			via := r.connect(t, proto)
			direct := redis.NewClient(&redis.Options{Addr: r.east.Addr, Protocol: proto})
			defer direct.Close()
			prefix := fmt.Sprintf("p%d:", proto)
			ops := []func(c *redis.Client) any{
				func(c *redis.Client) any { return c.Set(ctx, prefix+"s", "v", 0).Val() },
				func(c *redis.Client) any { return c.Get(ctx, prefix+"s").Val() },
				func(c *redis.Client) any { return c.Get(ctx, prefix+"missing").Err() },
				func(c *redis.Client) any { return c.HSet(ctx, prefix+"h", "a", "1", "b", "2").Err() },
				func(c *redis.Client) any { return c.HGetAll(ctx, prefix+"h").Val() },
				func(c *redis.Client) any {
					return c.ZAdd(ctx, prefix+"z", redis.Z{Score: 1.5, Member: "a"}, redis.Z{Score: 2, Member: "b"}).Err()
				},
				func(c *redis.Client) any { return c.ZRangeWithScores(ctx, prefix+"z", 0, -1).Val() },
				func(c *redis.Client) any { return c.ZScore(ctx, prefix+"z", "a").Val() },
				func(c *redis.Client) any { return c.ZRandMemberWithScores(ctx, prefix+"z", 5).Val() != nil },
				func(c *redis.Client) any { return c.HRandFieldWithValues(ctx, prefix+"h", 5).Val() != nil },
				func(c *redis.Client) any {
					return c.XAdd(ctx, &redis.XAddArgs{Stream: prefix + "x", ID: "1-1", Values: []string{"f", "v"}}).Err()
				},
				func(c *redis.Client) any {
					return c.XRead(ctx, &redis.XReadArgs{Streams: []string{prefix + "x", "0"}}).Val()
				},
				func(c *redis.Client) any { return c.XInfoStream(ctx, prefix+"x").Val().Length },
				func(c *redis.Client) any { return c.SAdd(ctx, prefix+"set", "m").Err() },
				func(c *redis.Client) any { return c.SMembers(ctx, prefix+"set").Val() },
				func(c *redis.Client) any { return c.SetNX(ctx, prefix+"s", "w", 0).Val() },
				func(c *redis.Client) any { return c.IncrByFloat(ctx, prefix+"f", 1.25).Val() },
				func(c *redis.Client) any { return c.LPop(ctx, prefix+"nolist").Err() },
				func(c *redis.Client) any { return c.LPopCount(ctx, prefix+"nolist", 2).Err() },
				func(c *redis.Client) any { return c.Incr(ctx, prefix+"s").Err().Error() },
				func(c *redis.Client) any { return c.ZPopMin(ctx, prefix+"z", 2).Val() },
				func(c *redis.Client) any {
					return c.GeoAdd(ctx, prefix+"g", &redis.GeoLocation{Name: "p", Longitude: 1, Latitude: 2}).Err()
				},
				func(c *redis.Client) any { return len(c.GeoPos(ctx, prefix+"g", "p", "none").Val()) },
				func(c *redis.Client) any { return c.ConfigGet(ctx, "maxmemory-policy").Val() },
				func(c *redis.Client) any { return c.Do(ctx, "ECHO", "hi").Val() },
				func(c *redis.Client) any { return c.Ping(ctx).Val() },
				func(c *redis.Client) any { return c.Exists(ctx, prefix+"s", prefix+"h").Val() },
			}
			// Each op runs directly on keys under q, then through the
			// proxy on the same keys under r.
			prefix = fmt.Sprintf("q%d:", proto)
			for i, op := range ops {
				want := op(direct)
				prefix = fmt.Sprintf("r%d:", proto)
				got := op(via)
				prefix = fmt.Sprintf("q%d:", proto)
				// Replies that name a key name it under its own prefix.
				w := strings.ReplaceAll(fmt.Sprintf("%#v", want), fmt.Sprintf("q%d:", proto), fmt.Sprintf("r%d:", proto))
				if g := fmt.Sprintf("%#v", got); g != w {
					t.Errorf("op %d: through the proxy %#v, directly %#v", i, got, want)
				}
			}
		})
	}
}

// TestFailoverAndFailback: a plain client of the proxy keeps working while
// the preferred region is killed and comes back; the only errors are for
// commands in flight at the kill.
func TestFailoverAndFailback(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	c := r.connect(t, 2)
	var errs []error
	deadline := time.Now().Add(3 * time.Second)
	killed, restarted := false, false
	for i := 0; time.Now().Before(deadline); i++ {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		key := fmt.Sprintf("k%d", i%8)
		if err := c.Set(cctx, key, i, 0).Err(); err != nil {
			errs = append(errs, err)
		} else if v, err := c.Get(cctx, key).Int(); err != nil || v != i {
			errs = append(errs, fmt.Errorf("GET %s = %d, %v; want %d", key, v, err, i))
		}
		cancel()
		switch {
		case !killed && time.Until(deadline) < 2500*time.Millisecond:
			killed = true
			if err := r.east.Kill(); err != nil {
				t.Fatal(err)
			}
		case killed && !restarted && time.Until(deadline) < 1500*time.Millisecond:
			restarted = true
			if err := r.east.Restart(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(errs) > 4 {
		t.Fatalf("%d errors through the proxy, more than the commands in flight at the kill: %v", len(errs), errs)
	}
	failovertest.WaitActive(t, r.client, "east")
	if err := c.Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Fatalf("SET after failback: %v", err)
	}
	if v := failovertest.Connect(t, r.east.Addr).Get(ctx, "after").Val(); v != "1" {
		t.Fatalf("after failback, east has %q for the key the proxy set, want 1", v)
	}
}

// TestAllRegionsDown: with every region down, a command gets a fast
// -LOADING error, which go-redis retries, and the connection stays open.
func TestAllRegionsDown(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	c := r.connect(t, 2)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	_ = r.east.Kill()
	_ = r.west.Kill()
	failovertest.WaitHealth(t, r.client, "west", geofailover.Unhealthy)
	start := time.Now()
	err := c.Get(ctx, "k").Err()
	if took := time.Since(start); err == nil || !strings.HasPrefix(err.Error(), "LOADING ") || took > 500*time.Millisecond {
		t.Fatalf("GET with all regions down = %v after %v; want a fast LOADING error", err, took)
	}
	if err := c.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "LOADING ") {
		t.Fatalf("second GET = %v; want LOADING again on the same connection", err)
	}
}
