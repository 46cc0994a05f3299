package geofailoverotel

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/geofailover/geofailover"
)

// ScopeName is the instrumentation scope of the meter InstrumentMetrics
// uses.
const ScopeName = "github.com/geofailover/geofailover/extra/geofailoverotel"

// Option configures InstrumentMetrics.
type Option func(*config)

type config struct{ provider metric.MeterProvider }

// WithMeterProvider sets the meter provider. Default: the global one
// (otel.GetMeterProvider()).
func WithMeterProvider(p metric.MeterProvider) Option { return func(c *config) { c.provider = p } }

// InstrumentMetrics reports c's failover behaviour through OpenTelemetry
// metrics, until c is closed. The instruments (names and units follow
// OpenTelemetry's conventions; the Prometheus exporter turns
// geofailover.switches into geofailover_switches_total):
//
//   - geofailover.switches (counter, {switch}; from, to, reason): traffic
//     moved from one endpoint to another (failover, failback, SwitchTo,
//     removal).
//   - geofailover.all_down (counter, {event}; from): every endpoint became
//     unusable; geofailover.recovered (counter, {event}; to): one served
//     again.
//   - geofailover.breaker.opened (counter, {event}; endpoint, cause).
//   - geofailover.pubsub.gap.duration (histogram, s): how long a PubSub's
//     subscriptions were not served, from interruption to restoration.
//   - geofailover.events.dropped (counter, {event}): events a subscriber too
//     far behind lost (the client keeps at most 10,000 undelivered events).
//   - geofailover.endpoint.active (gauge, 1 or 0, no unit; endpoint): the
//     endpoint taking traffic.
//   - geofailover.endpoint.healthy (gauge, 1 or 0, no unit; endpoint): its
//     health checks say healthy.
//   - geofailover.endpoint.breaker.open (gauge, 1 or 0, no unit; endpoint).
//   - geofailover.endpoint.weight (gauge, no unit; endpoint).
//   - geofailover.endpoint.calls.in_flight (gauge, {call}; endpoint).
//   - geofailover.endpoint.calls (counter, {call}; endpoint, outcome =
//     served, failed, caller_gave_up, retried_unsent, replayed, hedged,
//     hedge_won): see geofailover.CallCounts.
//   - geofailover.health_check.duration (gauge, s; endpoint): how long the
//     endpoint's last health check took.
//
// The per-endpoint instruments are asynchronous: they read, when the
// metrics are collected, the counters the client keeps anyway
// (Client.Status), so instrumenting adds nothing to the command path; the
// others are updated from the client's events, off the command path.
func InstrumentMetrics(c *geofailover.Client, opts ...Option) error {
	if c == nil {
		return errors.New("geofailoverotel: InstrumentMetrics: nil client")
	}
	cfg := config{provider: otel.GetMeterProvider()}
	for _, o := range opts {
		o(&cfg)
	}
	m := cfg.provider.Meter(ScopeName)
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		i, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return i
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		i, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return i
	}
	switches := counter("geofailover.switches", "{switch}", "Traffic moved from one endpoint to another.")
	allDown := counter("geofailover.all_down", "{event}", "Every endpoint became unusable.")
	recovered := counter("geofailover.recovered", "{event}", "An endpoint served again after all were down.")
	opened := counter("geofailover.breaker.opened", "{event}", "An endpoint's circuit breaker opened.")
	dropped := counter("geofailover.events.dropped", "{event}", "Events lost by a subscriber too far behind.")
	gap, err := m.Float64Histogram("geofailover.pubsub.gap.duration", metric.WithUnit("s"),
		metric.WithDescription("How long a PubSub's subscriptions were not served during a switch."))
	errs = append(errs, err)

	active := gauge("geofailover.endpoint.active", "", "1 for the endpoint taking traffic, else 0.")
	healthy := gauge("geofailover.endpoint.healthy", "", "1 if the endpoint's health checks say healthy, else 0.")
	breakerOpen := gauge("geofailover.endpoint.breaker.open", "", "1 if the endpoint's circuit breaker is open, else 0.")
	inFlight := gauge("geofailover.endpoint.calls.in_flight", "{call}", "Non-blocking calls outstanding on the endpoint.")
	weight, err := m.Float64ObservableGauge("geofailover.endpoint.weight", metric.WithDescription("The endpoint's weight."))
	errs = append(errs, err)
	checkDuration, err := m.Float64ObservableGauge("geofailover.health_check.duration", metric.WithUnit("s"),
		metric.WithDescription("How long the endpoint's last health check took."))
	errs = append(errs, err)
	calls, err := m.Int64ObservableCounter("geofailover.endpoint.calls", metric.WithUnit("{call}"),
		metric.WithDescription("Calls sent to the endpoint, by outcome."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("geofailoverotel: InstrumentMetrics: %w", err)
	}

	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, st := range c.Status() {
			at := metric.WithAttributes(attribute.String("endpoint", st.Name))
			o.ObserveInt64(active, bit(st.Active), at)
			o.ObserveInt64(healthy, bit(st.Health == geofailover.Healthy), at)
			o.ObserveInt64(breakerOpen, bit(st.Breaker == geofailover.BreakerOpen), at)
			o.ObserveInt64(inFlight, st.InFlight, at)
			o.ObserveFloat64(weight, st.Weight, at)
			if !st.LastCheck.IsZero() {
				o.ObserveFloat64(checkDuration, st.LastCheckLatency.Seconds(), at)
			}
			for outcome, n := range map[string]uint64{
				"served": st.Calls.Served, "failed": st.Calls.Failed, "caller_gave_up": st.Calls.CallerGaveUp,
				"retried_unsent": st.Calls.RetriedUnsent, "replayed": st.Calls.Replayed,
				"hedged": st.Calls.Hedged, "hedge_won": st.Calls.HedgeWins,
			} {
				o.ObserveInt64(calls, int64(n), metric.WithAttributes(attribute.String("endpoint", st.Name), attribute.String("outcome", outcome)))
			}
		}
		return nil
	}, active, healthy, breakerOpen, inFlight, weight, checkDuration, calls)
	if err != nil {
		return fmt.Errorf("geofailoverotel: InstrumentMetrics: %w", err)
	}

	events, stop := c.Events(256)
	go func() {
		defer stop()
		defer func() { _ = reg.Unregister() }()
		ctx := context.Background()
		for ev := range events { // closed by c.Close
			switch ev.Kind {
			case geofailover.EventSwitch:
				switches.Add(ctx, 1, metric.WithAttributes(attribute.String("from", ev.From), attribute.String("to", ev.To),
					attribute.String("reason", ev.Reason.String())))
			case geofailover.EventAllDown:
				allDown.Add(ctx, 1, metric.WithAttributes(attribute.String("from", ev.From)))
			case geofailover.EventRecovered:
				recovered.Add(ctx, 1, metric.WithAttributes(attribute.String("to", ev.To)))
			case geofailover.EventBreakerOpened:
				opened.Add(ctx, 1, metric.WithAttributes(attribute.String("endpoint", ev.Endpoint), attribute.String("cause", ev.Cause.String())))
			case geofailover.EventPubSubRestored:
				gap.Record(ctx, ev.At.Sub(ev.GapStart).Seconds(), metric.WithAttributes(attribute.String("to", ev.To)))
			case geofailover.EventsDropped:
				dropped.Add(ctx, int64(ev.Dropped))
			}
		}
	}()
	return nil
}

func bit(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
