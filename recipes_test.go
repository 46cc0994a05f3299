package geofailover_test

// Tests of the README's recipes.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// frozenReads freezes east under a read-only load whose per-call deadline
// is d and returns the reads that failed.
func frozenReads(t *testing.T, d time.Duration) (failed, total int64) {
	t.Helper()
	east, _, c := pair(t, nil) // defaults: StallTimeout 500 ms
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	ctx := context.Background()
	must(t, c.Set(ctx, "k", "v", 0).Err())
	warm(t, c, 8)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad, all atomic.Int64
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				cctx, cancel := context.WithTimeout(ctx, d)
				err := c.Get(cctx, "k").Err()
				cancel()
				all.Add(1)
				if err != nil && !errors.Is(err, redis.Nil) {
					bad.Add(1)
				}
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	pause(t, east)
	defer func() { _ = east.Resume() }()
	failovertest.WaitActive(t, c, "west")
	time.Sleep(d + 200*time.Millisecond)
	stop.Store(true)
	wg.Wait()
	return bad.Load(), all.Load()
}

// TestRecipeDeadlineAboveStallTimeout: reads in flight on a server that
// freezes are replayed on the next endpoint when their deadline outlasts
// StallTimeout; with a deadline equal to it they run out with it.
func TestRecipeDeadlineAboveStallTimeout(t *testing.T) {
	failed, total := frozenReads(t, 2*geofailover.DefaultStallTimeout)
	t.Logf("deadline 2 × StallTimeout: %d of %d reads failed", failed, total)
	if failed > 0 {
		t.Errorf("%d reads failed with a deadline of twice StallTimeout: they should have been replayed", failed)
	}
	failed, total = frozenReads(t, geofailover.DefaultStallTimeout)
	t.Logf("deadline = StallTimeout: %d of %d reads failed (the recipe's warning)", failed, total)
}

// TestRecipeCloseStopsABlockedConsumer: Close interrupts a blocking
// XREADGROUP at once; cancelling its context does not (go-redis follows a
// context's deadline on the socket, not its cancellation).
func TestRecipeCloseStopsABlockedConsumer(t *testing.T) {
	_, _, c := pair(t, nil)
	ctx := ctxFor(t, testTimeout)
	must(t, c.XGroupCreateMkStream(ctx, "jobs", "workers", "$").Err())
	read := func(ctx context.Context) chan error {
		done := make(chan error, 1)
		go func() {
			done <- c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "w1",
				Streams: []string{"jobs", ">"}, Block: 0}).Err()
		}()
		return done
	}
	cctx, cancel := context.WithCancel(ctx)
	cancelled := read(cctx)
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-cancelled:
		t.Logf("cancelling returned %v (go-redis may improve this)", err)
	case <-time.After(300 * time.Millisecond):
		t.Log("cancelling the context did not interrupt the blocked XREADGROUP (as the recipe says)")
	}
	blocked := read(ctx)
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	must(t, c.Close())
	for _, ch := range []chan error{blocked, cancelled} {
		select {
		case err := <-ch:
			if err == nil {
				t.Fatal("a blocked XREADGROUP returned no error at Close")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Close did not interrupt a blocked XREADGROUP within 2 s")
		}
	}
	t.Logf("Close interrupted the blocked consumers in %v", time.Since(start))
}

// BEGIN consume
// consume reads stream with consumer group group as consumer me, through a
// switch between regions, until ctx ends; handle must be idempotent (an
// entry may be handled again after a switch: delivery is at-least-once).
func consume(ctx context.Context, c *geofailover.Client, stream, group, me string, handle func(redis.XMessage)) {
	id := "0" // first our own pending entries, then new ones (">")
	for ctx.Err() == nil {
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: me,
			Streams: []string{stream, id}, Count: 100, Block: 200 * time.Millisecond}).Result()
		switch {
		case errors.Is(err, geofailover.ErrEndpointChanged):
			id = "0" // the wait was interrupted by a switch: re-read our pending entries there
			continue
		case err != nil && strings.HasPrefix(err.Error(), "NOGROUP"):
			// This region has no such group yet: create it, from the start
			// of the stream (BUSYGROUP: another consumer just did).
			if err := c.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
				time.Sleep(100 * time.Millisecond)
			}
			id = "0"
			continue
		case errors.Is(err, redis.Nil):
			id = ">"
			continue
		case err != nil:
			time.Sleep(100 * time.Millisecond) // all down, or a timeout: try again
			continue
		}
		msgs := res[0].Messages
		if id == "0" && len(msgs) == 0 {
			id = ">" // no pending entries left: read new ones
			continue
		}
		for _, m := range msgs {
			handle(m)
			c.XAck(ctx, stream, group, m.ID)
		}
	}
}

// END consume

// TestRecipeStreamConsumerAcrossRegions: a consumer group reader keeps
// going when traffic moves to a region where its group does not exist yet,
// and every entry is handled at least once. (The entries are written to
// both servers, as Active-Active replication would.)
func TestRecipeStreamConsumerAcrossRegions(t *testing.T) {
	east, west, c := pair(t, fast)
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	ctx := ctxFor(t, testTimeout)
	both := []*redis.Client{direct(t, east), direct(t, west)}
	add := func(from, to int) {
		for i := from; i < to; i++ {
			id := fmt.Sprintf("%d-1", i+1)
			for _, r := range both {
				if r == both[0] && east.PID() == 0 {
					continue // east is down
				}
				must(t, r.XAdd(ctx, &redis.XAddArgs{Stream: "jobs", ID: id, Values: []any{"n", i}}).Err())
			}
		}
	}
	add(0, 50)
	var mu sync.Mutex
	handled := map[string]int{}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		consume(cctx, c, "jobs", "workers", "w1", func(m redis.XMessage) {
			mu.Lock()
			handled[m.ID]++
			mu.Unlock()
		})
	}()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 50 })
	must(t, east.Kill())
	failovertest.WaitActive(t, c, "west")
	add(50, 100)
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 100 })
	stop()
	<-done
	for i := range 100 {
		if id := fmt.Sprintf("%d-1", i+1); handled[id] == 0 {
			t.Fatalf("entry %s never handled", id)
		}
	}
	again := 0
	for _, n := range handled {
		again += n - 1
	}
	t.Logf("100 entries handled, %d of them again after the switch (at-least-once)", again)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", testTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRecipesPage: docs/recipes.md shows consume as it is here (whitespace
// aside), so the recipe users copy is the one tested.
func TestRecipesPage(t *testing.T) {
	src, err := os.ReadFile("recipes_test.go")
	must(t, err)
	m := regexp.MustCompile(`(?s)// BEGIN consume\n(.*)\n// END consume`).FindSubmatch(src)
	if m == nil {
		t.Fatal("recipe markers not found")
	}
	page, err := os.ReadFile("docs/recipes.md")
	must(t, err)
	squash := func(s string) string { return strings.Join(strings.Fields(s), "") }
	if !strings.Contains(squash(string(page)), squash(string(m[1]))) {
		t.Fatal("docs/recipes.md does not show consume as recipes_test.go has it")
	}
}
