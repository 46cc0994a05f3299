package chaos_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// site is one region of a topology scenario: an endpoint, and how to take
// the whole region down and bring it back.
type site struct {
	name     string
	endpoint geofailover.Endpoint
	kill     func(t *testing.T)
	restart  func(t *testing.T)
	cluster  *failovertest.Cluster       // for cluster sites
	group    *failovertest.SentinelGroup // for Sentinel sites
}

// topologies are the kinds of region the suite runs its key scenarios on.
var topologies = []struct {
	name  string
	start func(t *testing.T, ca *failovertest.CA, name string, weight float64) *site
}{
	{"tls-acl", func(t *testing.T, ca *failovertest.CA, name string, weight float64) *site {
		s := failovertest.StartServer(t, failovertest.WithTLS(ca), failovertest.WithUser("app", name+"-pw-4242"))
		return &site{name: name, endpoint: geofailover.Endpoint{Name: name, Weight: weight, URL: s.URL(), TLSConfig: s.TLS},
			kill: func(t *testing.T) { must(t, s.Kill()) }, restart: func(t *testing.T) { must(t, s.Restart()) }}
	}},
	{"cluster", func(t *testing.T, _ *failovertest.CA, name string, weight float64) *site {
		cl := failovertest.StartCluster(t, 3, failovertest.WithUser("app", name+"-pw-4242"))
		return &site{name: name, endpoint: geofailover.Endpoint{Name: name, Weight: weight, ClusterOptions: cl.Options()}, cluster: cl,
			kill: func(t *testing.T) {
				for _, m := range cl.Masters {
					must(t, m.Kill())
				}
			},
			restart: func(t *testing.T) {
				for _, m := range cl.Masters {
					must(t, m.Restart())
				}
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				must(t, cl.WaitOK(ctx))
			}}
	}},
	{"sentinel", func(t *testing.T, _ *failovertest.CA, name string, weight float64) *site {
		g := failovertest.StartSentinelGroup(t, 1, failovertest.WithUser("app", name+"-pw-4242"))
		return &site{name: name, endpoint: geofailover.Endpoint{Name: name, Weight: weight, FailoverOptions: g.Options()}, group: g,
			kill: func(t *testing.T) {
				for _, s := range g.Nodes() {
					must(t, s.Kill())
				}
			},
			restart: func(t *testing.T) {
				for _, s := range g.Nodes() {
					must(t, s.Restart())
				}
			}}
	}},
}

// TestTopologies runs the key scenarios on each kind of region (TLS with
// an ACL user, a 3-master Redis Cluster, a Sentinel-managed primary with a
// replica): the whole preferred region lost under load and then idle, each
// followed by failback, and every region down then back.
func TestTopologies(t *testing.T) {
	ca, err := failovertest.NewCA()
	must(t, err)
	for _, topo := range topologies {
		t.Run(topo.name, func(t *testing.T) {
			east, west := topo.start(t, ca, "east", 1), topo.start(t, ca, "west", 0.5)
			c := topologyClient(t, east, west)
			from, to := &region{name: "east"}, &region{name: "west"}

			t.Run("loss-under-load", func(t *testing.T) {
				rep := outage(t, c, from, to, func() { east.kill(t) }, func() { east.restart(t) },
					checks{moved: true, failback: true, maxSwitches: 2}, failovertest.Workload{})
				// At most the commands in flight at the kill fail (reads are
				// replayed when their deadline leaves time for it). On TLS,
				// each worker's first command on the standby (or the replay
				// of its read) sets up a connection with a handshake, which
				// a loaded machine may not finish within 100 ms: one more
				// per worker.
				limit := 8
				if topo.name == "tls-acl" {
					limit = 16
				}
				if rep.Errors.Total() > limit {
					t.Errorf("%d read and %d write errors, want at most %d", rep.Errors.Reads, rep.Errors.Writes, limit)
				}
			})
			t.Run("loss-idle", func(t *testing.T) {
				failovertest.WaitActive(t, c, "east")
				east.kill(t)
				took := failovertest.WaitActive(t, c, "west")
				t.Logf("%s: idle region loss: switched after %v", topo.name, took)
				east.restart(t)
				failovertest.WaitActive(t, c, "east")
			})
			t.Run("all-down", func(t *testing.T) {
				failovertest.WaitActive(t, c, "east")
				east.kill(t)
				west.kill(t)
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				for c.Get(ctx, "k").Err() == nil || !errors.Is(c.Get(ctx, "k").Err(), geofailover.ErrNoHealthyEndpoint) {
					if ctx.Err() != nil {
						t.Fatalf("every region down, yet commands do not fail fast: %v", c.Get(ctx, "k").Err())
					}
					time.Sleep(10 * time.Millisecond)
				}
				west.restart(t)
				took := failovertest.WaitActive(t, c, "west")
				t.Logf("%s: all down, then west back: serving after %v", topo.name, took)
				if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
					t.Errorf("SET after west came back: %v", err)
				}
				east.restart(t)
				failovertest.WaitActive(t, c, "east")
			})
			if east.cluster != nil {
				clusterPartialFaults(t, c, east.cluster)
			}
			if east.group != nil {
				sentinelPromotion(t, c, east.group)
			}
		})
	}
}

// clusterPartialFaults: one master of the preferred region's cluster killed,
// then one hung (SIGSTOP), under load. A region that cannot serve all its
// slots fails over as a whole; a dead master's commands fail fast as never
// sent and are retried on the next region.
func clusterPartialFaults(t *testing.T, c *geofailover.Client, cl *failovertest.Cluster) {
	from, to := &region{name: "east"}, &region{name: "west"}
	heal := func(s *failovertest.Server) func() {
		return func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			must(t, cl.WaitOK(ctx))
		}
	}
	t.Run("master-killed", func(t *testing.T) {
		failovertest.WaitActive(t, c, "east")
		m := cl.Masters[1]
		// 300 ms deadlines: see TestClusterMasterKilledUnderLoad.
		rep := outage(t, c, from, to, func() { must(t, m.Kill()) }, func() { must(t, m.Restart()); heal(m)() },
			checks{moved: true, failback: true, maxSwitches: 2}, failovertest.Workload{Timeout: 300 * time.Millisecond})
		if rep.Errors.Reads > 0 || rep.Errors.Writes > 8 {
			t.Errorf("%d read and %d write errors, want 0 reads and at most the 8 writes in flight", rep.Errors.Reads, rep.Errors.Writes)
		}
	})
	t.Run("master-hung", func(t *testing.T) {
		failovertest.WaitActive(t, c, "east")
		m := cl.Masters[2]
		rep := outage(t, c, from, to, func() { must(t, m.Pause()) }, func() { must(t, m.Resume()); heal(m)() },
			checks{moved: true, failback: true, maxSwitches: 2}, failovertest.Workload{})
		t.Logf("one master hung: %d read and %d write errors (the commands to that master until the switch wait out their deadline)", rep.Errors.Reads, rep.Errors.Writes)
	})
}

// sentinelPromotion: the preferred region's Sentinel promotes its replica
// under load (an in-region failover). The region's client follows the new
// primary; writes refused meanwhile (READONLY) are never applied, so they
// are retried on the next region.
func sentinelPromotion(t *testing.T, c *geofailover.Client, g *failovertest.SentinelGroup) {
	t.Run("promotion", func(t *testing.T) {
		failovertest.WaitActive(t, c, "east")
		run := failovertest.Workload{}.Start(c)
		time.Sleep(200 * time.Millisecond)
		at := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		primary, err := g.Promote(ctx)
		must(t, err)
		time.Sleep(2 * time.Second)
		tl := run.Stop()
		rep := tl.Analyze(failovertest.Outage{From: "east", To: "west", At: at})
		t.Logf("in-region promotion to %s: %v; active %s", primary, rep, c.Active())
		if rep.Errors.Reads > 0 || rep.Errors.Writes > 8 {
			t.Errorf("%d read and %d write errors, want 0 reads and at most the 8 writes in flight", rep.Errors.Reads, rep.Errors.Writes)
		}
		failovertest.WaitActive(t, c, "east")
	})
}

// topologyClient is a client over two sites with quick checks.
func topologyClient(t *testing.T, east, west *site) *geofailover.Client {
	t.Helper()
	opts := &geofailover.Options{Endpoints: []geofailover.Endpoint{east.endpoint, west.endpoint}}
	quick(opts)
	c, err := geofailover.New(opts)
	must(t, err)
	t.Cleanup(func() { c.Close() })
	failovertest.LogEventsOnFailure(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	must(t, c.WaitReady(ctx))
	failovertest.WaitActive(t, c, "east")
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	return c
}
