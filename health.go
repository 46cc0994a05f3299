package geofailover

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Health checking. Each endpoint has a checker goroutine (runChecker) that
// probes it through a small client of its own (buildProbe) with
// Options.HealthCheck (PingCheck by default) and hands every result to the
// supervisor, which folds it into the endpoint's health state (onCheck).
// Anything that suspects an endpoint asks its checker for a check at once
// (suspect).

type checkResult struct {
	ep      *endpoint
	epoch   uint64
	err     error
	latency time.Duration
	at      time.Time
}

// runChecker probes e every HealthCheckInterval until ctx ends, and hands
// each result to the supervisor. After a failed check it replaces the probe
// client, so the next check dials afresh instead of meeting a dial error
// that go-redis cached.
func (c *Client) runChecker(ctx context.Context, e *endpoint) {
	defer c.wg.Done()
	probe, owned, dial := buildProbe(e.spec, c.cfg.HealthCheckTimeout)
	defer func() {
		if owned {
			probe.Close()
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	minSpacing := max(c.cfg.HealthCheckInterval/10, 10*time.Millisecond)
	var start time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-e.probeNow:
			if wait := minSpacing - time.Since(start); wait > 0 {
				// Checked very recently: bring the next check forward only.
				timer.Reset(wait)
				continue
			}
			timer.Stop()
		}
		epoch := e.epoch.Load()
		start = time.Now()
		cctx, cancel := context.WithTimeout(ctx, c.cfg.HealthCheckTimeout+dial)
		err := safeCheck(cctx, c.cfg.HealthCheck, probe)
		cancel()
		if ctx.Err() != nil {
			return
		}
		end := time.Now()
		if err != nil && owned {
			probe.Close()
			probe, _, _ = buildProbe(e.spec, c.cfg.HealthCheckTimeout)
		}
		select {
		case c.sup.results <- checkResult{ep: e, epoch: epoch, err: err, latency: end.Sub(start), at: end}:
		case <-ctx.Done():
			return
		}
		next := c.cfg.HealthCheckInterval
		if err != nil || c.allDown.Load() {
			// Confirm a failure quickly (hysteresis still counts checks),
			// and while nothing is serving, look for a survivor often.
			next = max(next/4, 10*time.Millisecond)
		}
		timer.Reset(next)
	}
}

// safeCheck runs a health check, turning a panic in a user's check into a
// failed check, so a checker never dies.
func safeCheck(ctx context.Context, check HealthCheckFunc, probe redis.UniversalClient) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("geofailover: health check panicked: %v", p)
		}
	}()
	return check(ctx, probe)
}

// buildProbe returns a small client for health checks, with a fresh pool,
// so that a probe never sees a dial error go-redis cached in a traffic pool,
// and the time it may spend dialling: the endpoint's DialTimeout, or
// timeout when that is zero. Each command of a check is bounded by timeout
// on its own (read and write timeouts), so a check may take up to the dial
// time plus timeout when it must dial: an endpoint that dials slowly but
// within its DialTimeout still passes, and a hung one is still caught by
// timeout. For a caller's client it returns that client (owned=false) and
// no dial allowance.
func buildProbe(spec Endpoint, timeout time.Duration) (c redis.UniversalClient, owned bool, dial time.Duration) {
	switch {
	case spec.Client != nil:
		return spec.Client, false, 0
	case spec.URL != "", spec.Options != nil:
		o, _ := standaloneOptions(spec) // validated in New
		k := standaloneKnobs(o)
		k.probe(timeout)
		o.MaxIdleConns, o.MaxActiveConns = 0, 0
		o.ReadBufferSize, o.WriteBufferSize = 4096, 4096 // a check is a few bytes
		o.PipelinePoolSize = -1
		return redis.NewClient(o), true, o.DialTimeout
	case spec.ClusterOptions != nil:
		o := *spec.ClusterOptions
		clusterKnobs(&o).probe(timeout)
		return redis.NewClusterClient(&o), true, o.DialTimeout
	default:
		o := *spec.FailoverOptions
		sentinelKnobs(&o).probe(timeout)
		return redis.NewFailoverClient(&o), true, o.DialTimeout
	}
}

// PingCheck is the default health check: PING must answer PONG; on a
// Redis Cluster, every master must, and report the cluster's state ok (see
// eachNode).
func PingCheck(ctx context.Context, c redis.UniversalClient) error {
	return eachNode(ctx, c, func(ctx context.Context, n redis.UniversalClient) error { return n.Ping(ctx).Err() })
}

// eachNode runs check on c, or, when c is a cluster client, on every
// master of the cluster at once, each of which must also report
// cluster_state:ok (CLUSTER INFO): a region whose cluster cannot serve all
// its slots, or has not yet agreed that it can again after a restart, is
// not healthy, so it fails over, and back, as a whole (docs/client.md: "Redis
// Cluster endpoints").
func eachNode(ctx context.Context, c redis.UniversalClient, check func(context.Context, redis.UniversalClient) error) error {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return check(ctx, c)
	}
	return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		err := check(ctx, n)
		if err == nil {
			var info string
			if info, err = n.ClusterInfo(ctx).Result(); err == nil && !strings.Contains(info, "cluster_state:ok") {
				err = errors.New("geofailover: cluster_state is not ok")
			}
		}
		if err != nil {
			return fmt.Errorf("master %s: %w", n.Options().Addr, err)
		}
		return nil
	})
}

// EchoCheck is a health check that sends ECHO with a random payload and
// requires the same payload back, so a proxy or a stale reply cannot pass;
// on a Redis Cluster, from every master.
func EchoCheck(ctx context.Context, c redis.UniversalClient) error {
	return eachNode(ctx, c, func(ctx context.Context, n redis.UniversalClient) error {
		var b [8]byte
		_, _ = rand.Read(b[:])
		want := hex.EncodeToString(b[:])
		got, err := n.Echo(ctx, want).Result()
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("geofailover: ECHO returned %q, want %q", got, want)
		}
		return nil
	})
}

// onCheck applies one health-check result, with N/M hysteresis: the first
// result decides on its own; later, UnhealthyAfter failures in a row make an
// endpoint unhealthy and HealthyAfter passes in a row make it healthy.
func (s *supervisor) onCheck(r checkResult) {
	e := r.ep
	if e.removed || r.epoch != e.epoch.Load() {
		return // a stale probe, from before the endpoint's breaker opened
	}
	e.lastCheck, e.lastLatency = r.at, r.latency
	prev := e.health
	var held error
	if hb := (*HoldBackError)(nil); errors.As(r.err, &hb) {
		r.err, held = nil, hb.Err // it answered: a pass, with a proviso
	}
	if (held == nil) != (e.heldBack == nil) {
		s.emit(Event{Kind: EventHeldBack, At: r.at, Endpoint: e.name, Err: held})
	}
	e.heldBack = held
	if r.err == nil {
		if prev == Unhealthy && e.passes == 0 {
			s.refresh(e, r.at)
		}
		if !e.lastPassed {
			e.passingSince = r.at
		}
		if started := r.at.Add(-r.latency); started.After(e.stallSince) {
			e.stallSince = started // the server answered: it is not hung
		}
		e.passes, e.fails, e.lastPassed, e.downHard = e.passes+1, 0, true, false
		e.observeCheckRTT(r.latency)
		if prev != Healthy && (prev == HealthUnknown || e.passes >= s.cfg.HealthyAfter) {
			e.health, e.healthySince = Healthy, r.at
		}
	} else {
		e.passes, e.fails, e.lastPassed, e.lastErr = 0, e.fails+1, false, r.err
		e.downHard = provenDown(r.err)
		e.passingSince = time.Time{}
		if e.fails == 1 {
			e.firstFailAt = r.at
		}
		if prev != Unhealthy && (prev == HealthUnknown || e.fails >= s.cfg.UnhealthyAfter) {
			e.health = Unhealthy
		}
	}
	if e.health != prev {
		s.emit(Event{Kind: EventHealthChanged, At: r.at, Endpoint: e.name, Health: e.health, PrevHealth: prev, Err: r.err})
	}
}

// suspect asks for a health check of e now, because something that does not
// feed the breaker (a Pub/Sub connection) or the first failure of a run saw
// it fail. The checker honours it at most once per tenth of the check
// interval. It never blocks.
func (e *endpoint) suspect() {
	select {
	case e.probeNow <- struct{}{}:
	default:
	}
}
