package geofailover_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// publisher publishes straight to one server, bypassing the client.
func publisher(t *testing.T, s *failovertest.Server) *redis.Client {
	t.Helper()
	return failovertest.Connect(t, s.Addr)
}

// publishAll sends one message on each kind of subscription the tests hold:
// channel "news", pattern "alerts.*" and shard channel "orders" (and
// "late", subscribed later), tagged with tag. It returns what the
// subscriber should see, as "channel=payload" strings.
func publishAll(t *testing.T, s *failovertest.Server, tag string, channels ...string) []string {
	t.Helper()
	p := publisher(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var want []string
	for _, ch := range channels {
		payload := ch + "-" + tag
		var err error
		if ch == "orders" {
			err = p.SPublish(ctx, ch, payload).Err()
		} else {
			err = p.Publish(ctx, ch, payload).Err()
		}
		if err != nil {
			t.Fatalf("publish %s on %s: %v", ch, s.Addr, err)
		}
		want = append(want, ch+"="+payload)
	}
	return want
}

// expectMessages reads from ch until it has seen every message in want,
// failing if a message does not arrive or an unexpected one does.
func expectMessages(t *testing.T, ch <-chan *redis.Message, want []string) {
	t.Helper()
	missing := map[string]bool{}
	for _, w := range want {
		missing[w] = true
	}
	deadline := time.After(5 * time.Second)
	for len(missing) > 0 {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatal("message channel closed")
			}
			got := m.Channel + "=" + m.Payload
			if !missing[got] {
				t.Fatalf("unexpected message %q (want %v)", got, want)
			}
			delete(missing, got)
		case <-deadline:
			var left []string
			for m := range missing {
				left = append(left, m)
			}
			sort.Strings(left)
			t.Fatalf("messages not delivered within 5s: %v", left)
		}
	}
}

// subscribeAll returns a PubSub holding all three kinds of subscription,
// each confirmed by a server, and its message channel.
func subscribeAll(t *testing.T, c *geofailover.Client) (*redis.PubSub, <-chan *redis.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ps := c.Subscribe(ctx, "news")
	t.Cleanup(func() { ps.Close() })
	if err := ps.PSubscribe(ctx, "alerts.*"); err != nil {
		t.Fatal(err)
	}
	if err := ps.SSubscribe(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for len(got) < 3 {
		msg, err := ps.Receive(ctx)
		if err != nil {
			t.Fatalf("waiting for confirmations: %v", err)
		}
		sub, ok := msg.(*redis.Subscription)
		if !ok {
			t.Fatalf("got %T before the confirmations", msg)
		}
		got[sub.Kind+" "+sub.Channel] = true
	}
	for _, want := range []string{"subscribe news", "psubscribe alerts.*", "ssubscribe orders"} {
		if !got[want] {
			t.Fatalf("confirmations %v lack %q", got, want)
		}
	}
	return ps, ps.Channel()
}

func gapOf(ev geofailover.Event) time.Duration { return ev.At.Sub(ev.GapStart) }

// TestPubSubFollowsFailover: channel, pattern and shard subscriptions,
// including one added and one removed after creation, keep delivering
// through a failover (SIGKILL, and SIGSTOP) and the failback.
func TestPubSubFollowsFailover(t *testing.T) {
	for _, fault := range []string{"kill", "stop"} {
		t.Run(fault, func(t *testing.T) {
			east, west, c := pair(t, fast)
			evs, cancel := c.Events(64)
			defer cancel()
			ps, msgs := subscribeAll(t, c)
			all := []string{"news", "alerts.1", "orders"}
			expectMessages(t, msgs, publishAll(t, east, "before", all...))

			inject(t, fault, east, c)
			ev := failovertest.NextEvent(t, evs, geofailover.EventPubSubRestored, to("west"))
			if ev.From != "east" || ev.Subscriptions != 3 {
				t.Errorf("restored event %+v: want from east, 3 subscriptions", ev)
			}
			t.Logf("%s: re-subscription gap on failover %v", fault, gapOf(ev))
			expectMessages(t, msgs, publishAll(t, west, "failover", all...))

			// Added after creation, while on west.
			ctx, cancelCtx := context.WithTimeout(context.Background(), testTimeout)
			defer cancelCtx()
			if err := ps.Subscribe(ctx, "late"); err != nil {
				t.Fatal(err)
			}
			all = append(all, "late")
			waitSubscribers(t, west, "late")
			expectMessages(t, msgs, publishAll(t, west, "late", all...))

			heal(t, fault, east)
			failovertest.WaitActive(t, c, "east")
			ev = failovertest.NextEvent(t, evs, geofailover.EventPubSubRestored, to("east"))
			t.Logf("%s: re-subscription gap on failback %v", fault, gapOf(ev))
			if ev.Subscriptions != 4 {
				t.Errorf("restored event %+v: want 4 subscriptions", ev)
			}
			expectMessages(t, msgs, publishAll(t, east, "failback", all...))

			// Removed after creation: no longer delivered, the rest still are.
			if err := ps.Unsubscribe(ctx, "news"); err != nil {
				t.Fatal(err)
			}
			waitSubscribers(t, east, "news", 0)
			expectMessages(t, msgs, publishAll(t, east, "after-unsubscribe", "alerts.2", "orders", "late"))
			publishAll(t, east, "unwanted", "news")
			expectMessages(t, msgs, publishAll(t, east, "last", "late"))
		})
	}
}

// waitSubscribers waits until channel has want subscribers (default 1) on s.
func waitSubscribers(t *testing.T, s *failovertest.Server, channel string, want ...int64) {
	t.Helper()
	n := int64(1)
	if len(want) > 0 {
		n = want[0]
	}
	p := publisher(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		numsub := p.PubSubNumSub
		if channel == "orders" { // the shard channel
			numsub = p.PubSubShardNumSub
		}
		got, err := numsub(ctx, channel).Result()
		if err == nil && got[channel] == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s has %v subscribers on %s, want %d (err %v)", channel, got, s.Addr, n, err)
		case <-time.After(time.Millisecond):
		}
	}
}

// TestPubSubRapidSwitches: switches in quick succession (well within a
// second) lose no subscription.
func TestPubSubRapidSwitches(t *testing.T) {
	east, west, c := pair(t, fast)
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	_, msgs := subscribeAll(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	start := time.Now()
	for i := range 6 {
		to := "west"
		if i%2 == 1 {
			to = "east"
		}
		if err := c.SwitchTo(ctx, to); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i) * 20 * time.Millisecond)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("six switches took %v", d)
	}
	for _, ch := range []string{"news", "orders"} {
		waitSubscribers(t, east, ch)
		waitSubscribers(t, west, ch, 0)
	}
	expectMessages(t, msgs, publishAll(t, east, "after", "news", "alerts.x", "orders"))
	publishAll(t, west, "stale", "news")
	expectMessages(t, msgs, publishAll(t, east, "last", "news"))
}

// TestPubSubReceiveMessage: the Receive-style API (no Channel) goes on
// working across a failover, and Ping is answered.
func TestPubSubReceiveMessage(t *testing.T) {
	east, west, c := pair(t, fast)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ps := c.Subscribe(ctx, "news")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ps.Ping(ctx, "hi"); err != nil {
		t.Fatal(err)
	}
	if msg, err := ps.Receive(ctx); err != nil || fmt.Sprint(msg) != "Pong<hi>" {
		t.Fatalf("Receive after Ping = %v, %v", msg, err)
	}
	publishAll(t, east, "1", "news")
	if m, err := ps.ReceiveMessage(ctx); err != nil || m.Payload != "news-1" {
		t.Fatalf("ReceiveMessage = %v, %v", m, err)
	}
	east.Kill()
	failovertest.WaitActive(t, c, "west")
	waitSubscribers(t, west, "news")
	publishAll(t, west, "2", "news")
	if m, err := ps.ReceiveMessage(ctx); err != nil || m.Payload != "news-2" {
		t.Fatalf("ReceiveMessage after failover = %v, %v", m, err)
	}
}

// TestPubSubAfterClose: Client.Close ends every PubSub's delivery: its
// Channel is closed and, once the app closes the PubSub as go-redis
// requires, nothing is left running (goleak).
func TestPubSubAfterClose(t *testing.T) {
	_, _, c := pair(t, fast)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ps := c.Subscribe(ctx, "news")
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	ch := ps.Channel()
	c.Close()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("message after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Channel not closed 5s after Client.Close")
	}
	ps.Close()
	late := c.Subscribe(ctx, "x")
	defer late.Close()
	if err := late.Ping(ctx); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Subscribe after Close: Ping err = %v, want closed", err)
	}
}

// TestPubSubGapDefaults measures the re-subscription gap after a SIGKILL
// with default options: under the reference workload the kill is seen by
// the commands; with no traffic, by the broken Pub/Sub connection, which
// asks for health checks at once.
func TestPubSubGapDefaults(t *testing.T) {
	for _, load := range []bool{true, false} {
		t.Run(fmt.Sprintf("load=%v", load), func(t *testing.T) {
			east, west, c := pair(t, nil)
			failovertest.WaitActive(t, c, "east")
			evs, cancel := c.Events(64)
			defer cancel()
			_, msgs := subscribeAll(t, c)
			if load {
				w := failovertest.Workload{Workers: 8}.Start(c)
				defer w.Stop()
				time.Sleep(100 * time.Millisecond)
			}
			east.Kill()
			ev := failovertest.NextEvent(t, evs, geofailover.EventPubSubRestored, to("west"))
			t.Logf("pubsub gap, defaults, SIGKILL, load=%v: %v (3 subscriptions: channel, pattern, shard)", load, gapOf(ev))
			expectMessages(t, msgs, publishAll(t, west, "after", "news", "alerts.9", "orders"))
		})
	}
}
