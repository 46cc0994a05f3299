package geofailover_test

// Repeat tests of Pub/Sub facts that go-redis's own specs depend on, 200
// tries each, through a plain *redis.Client (the control) and through a
// geofailover.Client on the same server: the client must do no worse.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/failovertest"
)

const fidelityTries = 200

type subscriber interface {
	Subscribe(context.Context, ...string) *redis.PubSub
	PSubscribe(context.Context, ...string) *redis.PubSub
}

// compareFacts runs fact against both clients and fails when geofailover
// misses more often than the plain client.
func compareFacts(t *testing.T, name string, fact func(t *testing.T, c subscriber, pub *redis.Client, try int) error) {
	t.Helper()
	srv := failovertest.StartServer(t)
	pub := direct(t, srv)
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer plain.Close()
	gf := oneEndpoint(t, &redis.Options{Addr: srv.Addr}, nil)
	misses := map[string]int{}
	var first = map[string]error{}
	for _, side := range []struct {
		name string
		c    subscriber
	}{{"plain", plain}, {"geofailover", gf}} {
		for try := range fidelityTries {
			if err := fact(t, side.c, pub, try); err != nil {
				misses[side.name]++
				if first[side.name] == nil {
					first[side.name] = err
				}
			}
		}
	}
	t.Logf("%s: %d of %d tries failed through plain go-redis, %d through geofailover", name, misses["plain"], fidelityTries, misses["geofailover"])
	if misses["geofailover"] > misses["plain"] {
		t.Errorf("%s: geofailover failed %d of %d tries, plain go-redis %d (first: %v)", name, misses["geofailover"], fidelityTries, misses["plain"], first["geofailover"])
	}
}

func receiveKind(ctx context.Context, ps *redis.PubSub) (any, error) {
	return ps.ReceiveTimeout(ctx, time.Second)
}

// TestPubSubConfirmations: subscribing to three channels gives three
// confirmations, in order, with counts 1, 2, 3 — the server's own.
func TestPubSubConfirmations(t *testing.T) {
	compareFacts(t, "confirmation counts and order", func(t *testing.T, c subscriber, _ *redis.Client, try int) error {
		ctx := ctxFor(t, testTimeout)
		chans := []string{fmt.Sprint("a", try), fmt.Sprint("b", try), fmt.Sprint("c", try)}
		ps := c.Subscribe(ctx, chans...)
		defer ps.Close()
		for i, ch := range chans {
			msg, err := receiveKind(ctx, ps)
			if err != nil {
				return err
			}
			s, ok := msg.(*redis.Subscription)
			if !ok || s.Kind != "subscribe" || s.Channel != ch || s.Count != i+1 {
				return fmt.Errorf("confirmation %d: %+v, want subscribe %s %d", i, msg, ch, i+1)
			}
		}
		return nil
	})
}

// TestPubSubNoLossAroundUnsubscribe: a message PUBLISH counted as
// delivered before the UNSUBSCRIBE reaches the subscriber, for channels and
// patterns.
func TestPubSubNoLossAroundUnsubscribe(t *testing.T) {
	for _, pattern := range []bool{false, true} {
		name := "channel"
		if pattern {
			name = "pattern"
		}
		t.Run(name, func(t *testing.T) {
			compareFacts(t, "message before "+name+" unsubscribe", func(t *testing.T, c subscriber, pub *redis.Client, try int) error {
				ctx := ctxFor(t, testTimeout)
				ch := fmt.Sprint("u", try)
				var ps *redis.PubSub
				if pattern {
					ps = c.PSubscribe(ctx, ch+"*")
				} else {
					ps = c.Subscribe(ctx, ch)
				}
				defer ps.Close()
				if _, err := receiveKind(ctx, ps); err != nil {
					return err
				}
				n, err := pub.Publish(ctx, ch, "m").Result()
				if err != nil || n != 1 {
					return fmt.Errorf("PUBLISH: %d receivers, %v", n, err)
				}
				if pattern {
					err = ps.PUnsubscribe(ctx, ch+"*")
				} else {
					err = ps.Unsubscribe(ctx, ch)
				}
				if err != nil {
					return err
				}
				for {
					msg, err := receiveKind(ctx, ps)
					if err != nil {
						return fmt.Errorf("the message PUBLISH counted was not received: %w", err)
					}
					switch m := msg.(type) {
					case *redis.Message:
						if m.Channel == ch && m.Payload == "m" {
							return nil
						}
					case *redis.Subscription:
						if m.Kind == "unsubscribe" || m.Kind == "punsubscribe" {
							return fmt.Errorf("unsubscribe confirmed before the message PUBLISH counted")
						}
					}
				}
			})
		})
	}
}

// TestPubSubPublishRightAfterSubscribe: once Subscribe has returned, the
// SUBSCRIBE is on its way to the server ahead of any later command, so a
// PUBLISH sent right after it on another connection reaches the subscriber.
func TestPubSubPublishRightAfterSubscribe(t *testing.T) {
	compareFacts(t, "PUBLISH right after Subscribe", func(t *testing.T, c subscriber, pub *redis.Client, try int) error {
		ctx := ctxFor(t, testTimeout)
		ch := fmt.Sprint("p", try)
		ps := c.Subscribe(ctx, ch)
		defer ps.Close()
		n, err := pub.Publish(ctx, ch, "m").Result()
		if err != nil || n != 1 {
			return fmt.Errorf("PUBLISH right after Subscribe reached %d subscribers (%v)", n, err)
		}
		return nil
	})
}

// TestPubSubClientSetName: CLIENT SETNAME on the PubSub reaches the
// server's subscription connection, and its reply comes back.
func TestPubSubClientSetName(t *testing.T) {
	srv, _, ps := subscribed(t, "named")
	ctx := ctxFor(t, testTimeout)
	must(t, ps.ClientSetName(ctx, "my-subscriber"))
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := direct(t, srv).ClientList(ctx).Result()
	must(t, err)
	if !containsField(list, "name=my-subscriber") {
		t.Fatalf("CLIENT LIST has no name=my-subscriber:\n%s", list)
	}
}

func containsField(list, field string) bool {
	for i := 0; i+len(field) <= len(list); i++ {
		if list[i:i+len(field)] == field && (i == 0 || list[i-1] == ' ') {
			return true
		}
	}
	return false
}
