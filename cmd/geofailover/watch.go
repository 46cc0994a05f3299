package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/extra/geofailoverotel"
	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/statuspage"
)

const watchHelp = `Usage: geofailover watch [flags] [URL ...]

Run a geofailover client against your endpoints (from --config or URLs,
highest weight first) and watch it: its health checks and breakers, which
endpoint it would send traffic to, failovers and failbacks as they happen.
No traffic is sent unless --traffic is given. While it runs it serves, on
--listen (loopback by default), the status page (/) and OpenTelemetry
metrics in the Prometheus format (/metrics). Ctrl-C ends it.

Examples:
  geofailover watch redis://eu.example:6379 redis://us.example:6379
  geofailover watch --config geofailover.yaml --listen 127.0.0.1:9121
  geofailover watch --traffic --for 1m redis://127.0.0.1:6379 redis://127.0.0.1:6380
`

func watchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("watch", watchHelp, stderr)
	configPath := fs.String("config", "", "YAML config file with the endpoints")
	section := fs.String("section", "", "read the endpoints and options from this top-level key of the --config file (an application's own file)")
	listen := fs.String("listen", "127.0.0.1:9121", `address for the status page and /metrics ("" for none)`)
	traffic := fs.Bool("traffic", false, "also send the reference workload (SET and GET on keys wl:0..7) through the client")
	duration := fs.Duration("for", 0, "stop after this long (0: until Ctrl-C)")
	if err := parse(fs, args); err != nil {
		return err
	}
	opts, err := loadEndpoints(*configPath, *section, fs.Args())
	if err != nil {
		return err
	}
	c, err := geofailover.New(opts)
	if err != nil {
		return exitError{2, err}
	}
	defer c.Close()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	mon := newMonitor(c, stdout, "watch")
	defer followEvents(c, mon.event)()
	stop, err := serveStatus(c, *listen, stdout)
	if err != nil {
		return exitError{2, err}
	}
	defer stop()
	if *traffic {
		run := failovertest.Workload{OnRecord: mon.record}.Start(c)
		defer run.Stop()
	}
	mon.run(ctx)
	return nil // --for elapsed, or Ctrl-C: the normal ways to end a watch
}

// serveStatus serves c's status page and its metrics on addr ("" for
// nothing) until stop, and says where on out.
// extra, if set, registers more metrics (the proxy's counters).
func serveStatus(c *geofailover.Client, addr string, out io.Writer, extra ...func(*prometheus.Registry) error) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	if err := geofailoverotel.InstrumentMetrics(c, geofailoverotel.WithMeterProvider(mp)); err != nil {
		_ = mp.Shutdown(context.Background())
		return nil, err
	}
	for _, register := range extra {
		if err := register(reg); err != nil {
			_ = mp.Shutdown(context.Background())
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = mp.Shutdown(context.Background())
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/", statuspage.Handler(c))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	bound := ln.Addr().String()
	fmt.Fprintf(out, "status page: http://%s/  metrics: http://%s/metrics\n", bound, bound)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
		_ = mp.Shutdown(context.Background())
	}, nil
}
