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

// Cluster is a Redis Cluster of masters this package started (no
// replicas), each serving an equal share of the 16384 slots, formed in Go
// (CLUSTER ADDSLOTS, SET-CONFIG-EPOCH, MEET). A master that is killed and
// restarted keeps its identity and slots (nodes.conf is in its directory).
type Cluster struct {
	// Masters are the nodes, in slot order: Masters[0] serves the lowest
	// slots.
	Masters []*Server
	// NodeTimeout is the cluster-node-timeout the nodes run with: how long
	// a master may be unreachable before the others mark it failed.
	NodeTimeout time.Duration
}

// StartCluster starts a cluster of masters nodes for t (at least 1), as
// StartServer starts a server (cleanup, logs on failure, skip or fail
// without redis-server), with cluster-node-timeout 2 s. opts apply to
// every node (not WithTLS). It returns once every node reports
// cluster_state:ok.
func StartCluster(t testing.TB, masters int, opts ...ServerOption) *Cluster {
	t.Helper()
	c, err := LaunchCluster(t.TempDir(), masters, opts...)
	forTest(t, err, "cluster node", func() []*Server { return c.Masters })
	return c
}

// LaunchCluster is StartCluster outside tests, with the nodes' files in
// subdirectories of dir. The caller must Kill every master.
func LaunchCluster(dir string, masters int, opts ...ServerOption) (*Cluster, error) {
	if masters < 1 {
		return nil, fmt.Errorf("failovertest: a cluster needs at least one master, not %d", masters)
	}
	c := &Cluster{NodeTimeout: 2 * time.Second}
	nodeOpts := append(append([]ServerOption(nil), opts...), WithArgs("--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", strconv.Itoa(int(c.NodeTimeout.Milliseconds()))))
	fail := func(err error) (*Cluster, error) {
		for _, s := range c.Masters {
			s.Kill()
		}
		return nil, err
	}
	for i := range masters {
		s, err := LaunchServer(fmt.Sprintf("%s/node%d", dir, i), nodeOpts...)
		if err != nil {
			return fail(err)
		}
		if s.TLS != nil {
			s.Kill()
			return fail(errors.New("failovertest: WithTLS is not supported for clusters"))
		}
		c.Masters = append(c.Masters, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	per := 16384 / masters
	for i, s := range c.Masters {
		lo, hi := i*per, (i+1)*per-1
		if i == masters-1 {
			hi = 16383
		}
		rc := s.client()
		args := []any{"cluster", "addslots"}
		for slot := lo; slot <= hi; slot++ {
			args = append(args, slot)
		}
		err := rc.Do(ctx, args...).Err()
		if err == nil {
			err = rc.Do(ctx, "cluster", "set-config-epoch", i+1).Err()
		}
		if err == nil && i > 0 {
			err = rc.Do(ctx, "cluster", "meet", "127.0.0.1", c.Masters[0].Port).Err()
		}
		rc.Close()
		if err != nil {
			return fail(fmt.Errorf("failovertest: forming the cluster at %s: %w", s.Addr, err))
		}
	}
	if err := c.WaitOK(ctx); err != nil {
		return fail(err)
	}
	return c, nil
}

// client is a plain client to the server, for the kit's own commands.
func (s *Server) client() *redis.Client {
	o := s.Options()
	o.MaxRetries = -1
	return redis.NewClient(o)
}

// Addrs returns the masters' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Masters))
	for i, s := range c.Masters {
		out[i] = s.Addr
	}
	return out
}

// Options returns go-redis cluster options that reach the cluster (its
// addresses, and the ACL user when the nodes have one).
func (c *Cluster) Options() *redis.ClusterOptions {
	s := c.Masters[0]
	return &redis.ClusterOptions{Addrs: c.Addrs(), Username: s.Username, Password: s.Password}
}

// MasterFor returns the master that serves key's slot (asking a running
// node for the slot).
func (c *Cluster) MasterFor(ctx context.Context, key string) (*Server, error) {
	var lastErr error
	for _, s := range c.Masters {
		rc := s.client()
		slot, err := rc.ClusterKeySlot(ctx, key).Result()
		rc.Close()
		if err != nil {
			lastErr = err
			continue
		}
		per := int64(16384 / len(c.Masters))
		return c.Masters[min(slot/per, int64(len(c.Masters)-1))], nil
	}
	return nil, fmt.Errorf("failovertest: no node answered CLUSTER KEYSLOT: %w", lastErr)
}

// WaitOK waits until every master answers and reports cluster_state:ok
// with every other master known (bounded by ctx).
func (c *Cluster) WaitOK(ctx context.Context) error {
	var last string
	for {
		ok := true
		for _, s := range c.Masters {
			rc := s.client()
			info, err := rc.ClusterInfo(ctx).Result()
			rc.Close()
			if err != nil {
				ok, last = false, fmt.Sprintf("%s: %v", s.Addr, err)
				break
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d\r", len(c.Masters))) {
				ok, last = false, fmt.Sprintf("%s: %s", s.Addr, strings.Join(strings.Fields(info)[:3], " "))
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("failovertest: cluster not ok: %s: %w", last, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
