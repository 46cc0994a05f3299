package geofailover_test

// Tests of the README's recipes.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
)

// frozenReads freezes east under a read-only load whose per-call deadline
// is d and returns the reads that failed.
func frozenReads(t *testing.T, d time.Duration) (failed, total int64) {
	t.Helper()
	east, _, c := pair(t, nil) // defaults: StallTimeout 500 ms
	waitHealthy(t, c, "west")
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
	waitActive(t, c, "west")
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
