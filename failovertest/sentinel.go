package failovertest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelGroup is a Sentinel-managed region this package started: a
// primary, its replicas and one Sentinel watching them (quorum 1, a
// primary is down after 1 s, failover timeout 3 s), all on loopback.
type SentinelGroup struct {
	// MasterName is the name the Sentinel knows the group by.
	MasterName string
	// Primary is the server started as primary; after a promotion (Promote,
	// or the Sentinel's own failover) it may be a replica.
	Primary *Server
	// Replicas are the servers started as its replicas.
	Replicas []*Server
	// Sentinel is the Sentinel process.
	Sentinel *Server
}

// StartSentinelGroup starts a primary with replicas replicas and a
// Sentinel for t, as StartServer starts a server (cleanup, logs on
// failure, skip or fail without redis-server). opts apply to the data
// servers (WithUser too: replicas and the Sentinel authenticate as that
// user; not WithTLS). It returns once the Sentinel knows the primary and
// every replica.
func StartSentinelGroup(t testing.TB, replicas int, opts ...ServerOption) *SentinelGroup {
	t.Helper()
	g, err := LaunchSentinelGroup(t.TempDir(), replicas, opts...)
	forTest(t, err, "sentinel group node", func() []*Server { return g.Nodes() })
	return g
}

// LaunchSentinelGroup is StartSentinelGroup outside tests, with the
// processes' files in subdirectories of dir. The caller must Kill every
// node (Nodes).
func LaunchSentinelGroup(dir string, replicas int, opts ...ServerOption) (*SentinelGroup, error) {
	g := &SentinelGroup{MasterName: "failovertest"}
	fail := func(err error) (*SentinelGroup, error) {
		for _, s := range g.Nodes() {
			s.Kill()
		}
		return nil, err
	}
	p, err := LaunchServer(dir+"/primary", opts...)
	if err != nil {
		return fail(err)
	}
	g.Primary = p
	if p.TLS != nil {
		return fail(errors.New("failovertest: WithTLS is not supported for Sentinel groups"))
	}
	var auth []string
	if p.Username != "" {
		auth = []string{"--masteruser", p.Username, "--masterauth", p.Password}
	}
	for i := range replicas {
		r, err := LaunchServer(fmt.Sprintf("%s/replica%d", dir, i), append(append([]ServerOption(nil), opts...),
			WithArgs(append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(p.Port)}, auth...)...))...)
		if err != nil {
			return fail(err)
		}
		g.Replicas = append(g.Replicas, r)
	}
	if p.Username != "" {
		// The primary becomes a replica after a promotion: it must be able
		// to authenticate to the new primary too (now, and after Restart).
		p.extra = append(p.extra, auth...)
		rc := p.client()
		err := rc.ConfigSet(context.Background(), "masteruser", p.Username).Err()
		if err == nil {
			err = rc.ConfigSet(context.Background(), "masterauth", p.Password).Err()
		}
		rc.Close()
		if err != nil {
			return fail(fmt.Errorf("failovertest: sentinel group: %w", err))
		}
	}
	conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 1\nsentinel down-after-milliseconds %[1]s 1000\nsentinel failover-timeout %[1]s 3000\n", g.MasterName, p.Port)
	if p.Username != "" {
		conf += fmt.Sprintf("sentinel auth-user %[1]s %[2]s\nsentinel auth-pass %[1]s %[3]s\n", g.MasterName, p.Username, p.Password)
	}
	sen, err := LaunchServer(dir+"/sentinel", withSentinelConf(conf))
	if err != nil {
		return fail(err)
	}
	g.Sentinel = sen
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.waitReplicas(ctx, replicas); err != nil {
		return fail(err)
	}
	return g, nil
}

func withSentinelConf(conf string) ServerOption { return func(c *serverConfig) { c.sentinel = conf } }

// Nodes returns every process of the group: the data servers and the
// Sentinel (to kill a whole region).
func (g *SentinelGroup) Nodes() []*Server {
	var out []*Server
	if g.Primary != nil {
		out = append(out, g.Primary)
	}
	out = append(out, g.Replicas...)
	if g.Sentinel != nil {
		out = append(out, g.Sentinel)
	}
	return out
}

// Options returns go-redis options that reach the group through its
// Sentinel (and its ACL user, if any).
func (g *SentinelGroup) Options() *redis.FailoverOptions {
	return &redis.FailoverOptions{MasterName: g.MasterName, SentinelAddrs: []string{g.Sentinel.Addr},
		Username: g.Primary.Username, Password: g.Primary.Password}
}

func (g *SentinelGroup) sentinel() *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: g.Sentinel.Addr, MaxRetries: -1})
}

// PrimaryAddr returns the address the Sentinel gives for the primary now.
func (g *SentinelGroup) PrimaryAddr(ctx context.Context) (string, error) {
	sc := g.sentinel()
	defer sc.Close()
	hp, err := sc.GetMasterAddrByName(ctx, g.MasterName).Result()
	if err != nil {
		return "", fmt.Errorf("failovertest: SENTINEL GET-MASTER-ADDR-BY-NAME: %w", err)
	}
	return hp[0] + ":" + hp[1], nil
}

// Promote asks the Sentinel to fail over (SENTINEL FAILOVER: a replica is
// promoted, the old primary becomes its replica) and waits, bounded by
// ctx, until the Sentinel gives the new primary's address, which it
// returns.
func (g *SentinelGroup) Promote(ctx context.Context) (string, error) {
	before, err := g.PrimaryAddr(ctx)
	if err != nil {
		return "", err
	}
	sc := g.sentinel()
	defer sc.Close()
	if err := sc.Failover(ctx, g.MasterName).Err(); err != nil {
		return "", fmt.Errorf("failovertest: SENTINEL FAILOVER: %w", err)
	}
	for {
		now, err := g.PrimaryAddr(ctx)
		if err == nil && now != before {
			return now, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("failovertest: the primary is still %s: %w", before, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitReplicas waits until the Sentinel knows n replicas of the primary
// and they are in sync (bounded by ctx).
func (g *SentinelGroup) waitReplicas(ctx context.Context, n int) error {
	sc := g.sentinel()
	defer sc.Close()
	var last string
	for {
		rs, err := sc.Replicas(ctx, g.MasterName).Result()
		ok := 0
		for _, r := range rs {
			if r["master-link-status"] == "ok" && !strings.Contains(r["flags"], "down") {
				ok++
			}
		}
		if err == nil && ok >= n {
			return nil
		}
		last = fmt.Sprintf("%d of %d replicas ready (%v)", ok, n, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("failovertest: sentinel group: %s: %w", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
