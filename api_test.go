package geofailover_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

func TestSetWeightSwitchesAtOnce(t *testing.T) {
	_, _, c := pair(t, fast)
	failovertest.WaitActive(t, c, "east")
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	time.Sleep(300 * time.Millisecond) // west has been healthy for FailbackDelay
	ctx := t.Context()
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.SetWeight(done, "west", 2); !errors.Is(err, context.Canceled) || c.Active() != "east" {
		t.Fatalf("SetWeight with a done context = %v, active %q; want context.Canceled and nothing changed", err, c.Active())
	}
	if err := c.SetWeight(ctx, "west", 2); err != nil {
		t.Fatal(err)
	}
	if got := c.Active(); got != "west" {
		t.Fatalf("active = %q right after SetWeight(west, 2), want west", got)
	}
	for _, bad := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if err := c.SetWeight(ctx, "west", bad); err == nil {
			t.Errorf("SetWeight(%v) accepted", bad)
		}
	}
	if err := c.SetWeight(ctx, "nope", 1); !errors.Is(err, geofailover.ErrUnknownEndpoint) {
		t.Errorf("SetWeight(nope) = %v, want ErrUnknownEndpoint", err)
	}
}

func TestSwitchTo(t *testing.T) {
	east, _, c := pair(t, fast)
	failovertest.WaitActive(t, c, "east")
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	ctx := context.Background()
	events, stop := c.Events(16)
	defer stop()

	if err := c.SwitchTo(ctx, "west"); err != nil {
		t.Fatal(err)
	}
	if got := c.Active(); got != "west" {
		t.Fatalf("active = %q after SwitchTo(west)", got)
	}
	if ev := failovertest.NextEvent(t, events, geofailover.EventSwitch, nil); ev.Reason != geofailover.ReasonManual {
		t.Errorf("switch reason %v, want manual", ev.Reason)
	}
	// The pin holds: no failback to east while west is usable.
	time.Sleep(600 * time.Millisecond)
	if got := c.Active(); got != "west" {
		t.Fatalf("pin did not hold: active = %q", got)
	}
	// Releasing the pin lets failback choose east again.
	if err := c.SwitchTo(ctx, ""); err != nil {
		t.Fatal(err)
	}
	failovertest.WaitActive(t, c, "east")

	// An unhealthy target is refused unless forced.
	east.Kill()
	failovertest.WaitActive(t, c, "west")
	if err := c.SwitchTo(ctx, "east"); !errors.Is(err, geofailover.ErrEndpointUnhealthy) {
		t.Fatalf("SwitchTo(dead east) = %v, want ErrEndpointUnhealthy", err)
	}
	if err := c.SwitchTo(ctx, "east", geofailover.Force()); err != nil {
		t.Fatalf("forced SwitchTo: %v", err)
	}
	if got := c.Active(); got != "east" {
		t.Fatalf("active = %q after forced switch", got)
	}
	if err := c.SwitchTo(ctx, "nope"); !errors.Is(err, geofailover.ErrUnknownEndpoint) {
		t.Errorf("SwitchTo(nope) = %v", err)
	}
}

func TestAddAndRemoveEndpoint(t *testing.T) {
	_, _, c := pair(t, fast)
	failovertest.WaitActive(t, c, "east")
	north := failovertest.StartServer(t)
	ctx := t.Context()
	if err := c.AddEndpoint(ctx, geofailover.Endpoint{Name: "north", Weight: 5, Options: &redis.Options{Addr: north.Addr}}); err != nil {
		t.Fatal(err)
	}
	took := failovertest.WaitActive(t, c, "north")
	t.Logf("added endpoint became active after %v", took)
	if err := c.AddEndpoint(ctx, geofailover.Endpoint{Name: "north", Weight: 1, URL: "redis://" + north.Addr}); err == nil {
		t.Error("duplicate AddEndpoint accepted")
	}
	if err := c.Set(ctx, "where", "north", 0).Err(); err != nil {
		t.Fatal(err)
	}

	events, stop := c.Events(16)
	defer stop()
	if err := c.RemoveEndpoint(ctx, "north"); err != nil {
		t.Fatal(err)
	}
	if got := c.Active(); got != "east" {
		t.Fatalf("active = %q after removing north, want east", got)
	}
	if ev := failovertest.NextEvent(t, events, geofailover.EventSwitch, nil); ev.Reason != geofailover.ReasonRemoved || ev.From != "north" {
		t.Errorf("switch event %+v, want from north, reason removed", ev)
	}
	if n := len(c.Status()); n != 2 {
		t.Errorf("Status has %d endpoints after removal, want 2", n)
	}
	if err := c.Get(ctx, "where").Err(); err != redis.Nil {
		t.Errorf("GET after removal = %v, want redis.Nil from east", err)
	}
	if err := c.RemoveEndpoint(ctx, "north"); !errors.Is(err, geofailover.ErrUnknownEndpoint) {
		t.Errorf("second RemoveEndpoint = %v", err)
	}
	if err := c.RemoveEndpoint(ctx, "west"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveEndpoint(ctx, "east"); err == nil || !strings.Contains(err.Error(), "last endpoint") {
		t.Errorf("removing the last endpoint = %v, want refusal", err)
	}
}

func TestStatusAndCommands(t *testing.T) {
	_, west, c := pair(t, fast)
	failovertest.WaitActive(t, c, "east")
	ctx := context.Background()
	if err := c.Set(ctx, "a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "n")
		p.Incr(ctx, "n")
		return nil
	})
	if err != nil || cmds[1].(*redis.IntCmd).Val() != 2 {
		t.Fatalf("pipeline: %v %v", cmds, err)
	}
	cmds, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "n")
		p.Get(ctx, "a")
		return nil
	})
	if err != nil || cmds[0].(*redis.IntCmd).Val() != 3 || cmds[1].(*redis.StringCmd).Val() != "1" {
		t.Fatalf("tx pipeline: %v %v", cmds, err)
	}
	err = c.Watch(ctx, func(tx *redis.Tx) error {
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "a", "2", 0)
			return nil
		})
		return err
	}, "a")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if v, err := c.Do(ctx, "GET", "a").Text(); err != nil || v != "2" {
		t.Fatalf("Do GET = %q, %v", v, err)
	}
	// None of it reached west.
	direct := redis.NewClient(&redis.Options{Addr: west.Addr})
	defer direct.Close()
	if n, _ := direct.DBSize(ctx).Result(); n != 0 {
		t.Errorf("west has %d keys; commands leaked off the active endpoint", n)
	}

	st := c.Status()
	if len(st) != 2 || st[0].Name != "east" || !st[0].Active || st[0].Health != geofailover.Healthy ||
		st[1].Active || st[0].LastCheck.IsZero() || st[0].Weight != 1 {
		t.Errorf("Status = %+v", st)
	}
	if c.PoolStats() == nil {
		t.Error("PoolStats is nil")
	}
	if _, err := c.AutoPipeline(); !errors.Is(err, geofailover.ErrNotSupported) {
		t.Errorf("AutoPipeline = %v, want ErrNotSupported", err)
	}
}

// TestHooksWrapRouting: hooks added to the Client see every command once.
func TestHooksWrapRouting(t *testing.T) {
	_, _, c := pair(t, fast)
	h := &countingHook{}
	c.AddHook(h)
	ctx := context.Background()
	c.Set(ctx, "k", "v", 0)
	c.Pipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, "k"); return nil })
	if h.cmds != 1 || h.pipes != 1 {
		t.Errorf("hook saw %d commands and %d pipelines, want 1 and 1", h.cmds, h.pipes)
	}
}

type countingHook struct{ cmds, pipes int }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.cmds++; return next(ctx, cmd) }
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.pipes++; return next(ctx, cmds) }
}

func TestCloseIsCleanAndFinal(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	caller := redis.NewClient(&redis.Options{Addr: west.Addr})
	defer caller.Close()
	var events []geofailover.Event
	c, err := geofailover.New(&geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "east", Weight: 1, Options: &redis.Options{Addr: east.Addr}},
			{Name: "west", Weight: 0.5, Client: caller},
		},
		OnEvent: func(ev geofailover.Event) { events = append(events, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	n := len(events) // safe: no delivery after Close returns
	var initial []geofailover.Event
	for _, ev := range events {
		if ev.Kind == geofailover.EventInitialSelection {
			initial = append(initial, ev)
		}
	}
	if len(initial) != 1 || initial[0].To != "east" {
		t.Errorf("events %+v, want one initial selection, of east", events)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, geofailover.ErrClosed) {
		t.Errorf("command after Close = %v, want ErrClosed", err)
	}
	if err := c.SwitchTo(ctx, "west"); !errors.Is(err, geofailover.ErrClosed) {
		t.Errorf("SwitchTo after Close = %v, want ErrClosed", err)
	}
	// The caller's client stays open.
	if err := caller.Ping(ctx).Err(); err != nil {
		t.Errorf("caller's client closed by us: %v", err)
	}
	time.Sleep(10 * time.Millisecond)
	if len(events) != n {
		t.Errorf("events delivered after Close")
	}
}

// TestReplyErrorsDoNotTrip: error replies that say nothing about the
// endpoint (WRONGTYPE, unknown command, redis.Nil) never open its breaker.
func TestReplyErrorsDoNotTrip(t *testing.T) {
	_, _, c := pair(t, fast)
	failovertest.WaitActive(t, c, "east")
	ctx := context.Background()
	c.LPush(ctx, "list", "x")
	for range 20 {
		if err := c.Get(ctx, "list").Err(); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("GET on a list = %v, want WRONGTYPE", err)
		}
		c.Do(ctx, "NOSUCHCOMMAND")
		c.Get(ctx, "missing")
	}
	time.Sleep(150 * time.Millisecond) // a supervisor tick or two
	st := c.Status()
	if c.Active() != "east" || st[0].Breaker != geofailover.BreakerClosed {
		t.Fatalf("reply errors moved traffic: active %q, status %+v", c.Active(), st)
	}
}

// TestHealthCheckKinds: EchoCheck passes on a real server, and a custom
// check that fails moves traffic away for reason health.
func TestHealthCheckKinds(t *testing.T) {
	ctx := context.Background()
	s := failovertest.StartServer(t)
	probe := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer probe.Close()
	if err := geofailover.EchoCheck(ctx, probe); err != nil {
		t.Fatalf("EchoCheck on a live server: %v", err)
	}

	var eastBad atomic.Bool
	_, _, c := pair(t, func(o *geofailover.Options) {
		fast(o)
		o.HealthCheck = func(ctx context.Context, rc redis.UniversalClient) error {
			if eastBad.Load() && rc.(*redis.Client).Options().Addr == eastAddr(o) {
				return errors.New("custom check says no")
			}
			return geofailover.EchoCheck(ctx, rc)
		}
	})
	failovertest.WaitActive(t, c, "east")
	eastBad.Store(true)
	failovertest.WaitActive(t, c, "west")
	var st geofailover.EndpointStatus
	for _, s := range c.Status() {
		if s.Name == "east" {
			st = s
		}
	}
	if st.Health != geofailover.Unhealthy || st.LastError == nil || !strings.Contains(st.LastError.Error(), "custom check says no") {
		t.Errorf("east status %+v, want unhealthy with the custom error", st)
	}
}

func eastAddr(o *geofailover.Options) string { return o.Endpoints[0].Options.Addr }

// TestCustomFailureRule: Options.IsEndpointFailure replaces the rule; here
// WRONGTYPE counts, so five in a row trip east's breaker.
func TestCustomFailureRule(t *testing.T) {
	_, _, c := pair(t, func(o *geofailover.Options) {
		fast(o)
		o.IsEndpointFailure = func(err error) bool {
			return strings.Contains(err.Error(), "WRONGTYPE") || geofailover.DefaultIsEndpointFailure(err)
		}
	})
	failovertest.WaitActive(t, c, "east")
	failovertest.WaitHealth(t, c, "west", geofailover.Healthy)
	ctx := context.Background()
	c.LPush(ctx, "list", "x")
	for range 5 {
		c.Get(ctx, "list")
	}
	failovertest.WaitActive(t, c, "west")
}
