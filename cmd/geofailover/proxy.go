package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/proxy"
)

const proxyHelp = `Usage: geofailover proxy [flags] [URL ...]

Serve your regions to applications in any language: a local Redis server
(RESP2 and RESP3) that sends every command through a geofailover client, so
that redis-py, ioredis, Jedis, redis-cli... get its failover and failback.
Point your application at --listen instead of a region. Regions come from
--config (the same YAML as the other commands) or URLs, highest weight
first; with neither, two local demo regions are started (east and west,
real redis-server processes when one is installed) so that you can try it.

Without --password it listens on loopback only, unless --allow-remote.
--admin serves the status page and /metrics, with the proxy's counters.
SIGTERM or Ctrl-C drains: no new connections, commands under way are
answered (at most --drain), then it exits. SIGHUP reloads the regions and
weights from --config without dropping connections. Logs go to stderr
through slog (--log-format text or json): the client's events under the
library's names (switch, breaker-opened, health-changed, all-down, ...)
with their fields, and the proxy's own records.

Examples:
  geofailover proxy --listen 127.0.0.1:6390        # demo regions; then: redis-cli -p 6390
  geofailover proxy --config regions.yaml --listen 127.0.0.1:6379 --admin 127.0.0.1:9121
  geofailover proxy --check --config regions.yaml  # check the config and exit
`

func proxyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("proxy", proxyHelp, stderr)
	configPath := fs.String("config", "", "YAML config file with the regions")
	section := fs.String("section", "", "read the regions and options from this top-level key of the --config file")
	listen := fs.String("listen", "127.0.0.1:6379", "address applications connect to")
	admin := fs.String("admin", "", `address for the status page and /metrics ("" for none)`)
	password := fs.String("password", os.Getenv("GEOFAILOVER_PROXY_PASSWORD"), "password applications must give (AUTH, HELLO AUTH); default $GEOFAILOVER_PROXY_PASSWORD")
	allowRemote := fs.Bool("allow-remote", false, "listen on a non-loopback address without a password")
	maxClients := fs.Int("max-clients", proxy.DefaultMaxClients, "most client connections at once")
	maxRequest := fs.Int64("max-request-size", proxy.DefaultMaxRequestBytes, "largest request, in bytes")
	idle := fs.Duration("idle-timeout", 0, "close a client connection idle this long (0: never)")
	drain := fs.Duration("drain", 10*time.Second, "at SIGTERM, how long commands under way may take")
	check := fs.Bool("check", false, "check the config and flags, print the regions, and exit")
	logFormat := fs.String("log-format", "text", "log lines on stderr: text or json (level: $GEOFAILOVER_LOG, default info)")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := serviceLogger(stderr, *logFormat)
	if err != nil {
		return err
	}
	if err := checkListen(*listen, *password, *allowRemote); err != nil {
		return err
	}
	demo := *configPath == "" && len(fs.Args()) == 0
	var opts *geofailover.Options
	var cleanup func()
	if demo && !*check {
		opts, cleanup, err = demoRegions(stdout)
		if err != nil {
			return err
		}
		defer cleanup()
	} else if opts, err = loadEndpoints(*configPath, *section, fs.Args()); err != nil {
		return err
	}
	if opts.WaitWhenAllDown {
		return usageError("wait_when_all_down is for applications that link the library: the proxy answers -LOADING at once when no region can serve, so that no client's command waits without end")
	}
	if opts.StallTimeout == 0 {
		opts.StallTimeout = proxy.StallTimeout
	}
	popts := &proxy.Options{Password: *password, MaxClients: *maxClients, MaxRequestBytes: *maxRequest, IdleTimeout: *idle, Logger: log}
	if popts.Protocol, popts.DB, err = membersProtocolAndDB(opts); err != nil {
		return exitError{2, err}
	}
	if *check {
		if err := geofailover.Validate(opts); err != nil {
			return exitError{2, err}
		}
		for _, ep := range opts.Endpoints {
			fmt.Fprintf(stdout, "%-12s weight %g\n", ep.Name, ep.Weight)
		}
		fmt.Fprintf(stdout, "config OK: %d regions, RESP%d, db %d\n", len(opts.Endpoints), popts.Protocol, popts.DB)
		return nil
	}
	opts.OnEvent = func(ev geofailover.Event) { logEvent(log, ev) }
	if opts.Logger == nil {
		opts.Logger = log
	}
	c, err := geofailover.New(opts)
	if err != nil {
		return exitError{2, err}
	}
	defer c.Close()
	srv, err := proxy.New(c, popts)
	if err != nil {
		return exitError{2, err}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return exitError{2, fmt.Errorf("--listen: %w", err)}
	}
	stopStatus, err := serveStatus(c, *admin, stdout, proxyMetrics(srv))
	if err != nil {
		_ = ln.Close()
		return exitError{2, err}
	}
	defer stopStatus()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	auth := ""
	if *password != "" {
		auth = ", password required"
	}
	fmt.Fprintf(stdout, "geofailover proxy: listening on %s (RESP2 and RESP3%s)\n", ln.Addr(), auth)
	for {
		select {
		case err := <-served:
			if errors.Is(err, proxy.ErrServerClosed) {
				return nil
			}
			return err
		case <-hup:
			if *configPath == "" {
				fmt.Fprintln(stderr, "geofailover proxy: SIGHUP: no --config to reload")
				continue
			}
			if err := reload(ctx, c, *configPath, *section, stdout); err != nil {
				fmt.Fprintf(stderr, "geofailover proxy: SIGHUP: reload failed, regions unchanged where it failed: %v\n", err)
			}
		case <-ctx.Done():
			fmt.Fprintf(stdout, "geofailover proxy: draining (at most %v)\n", *drain)
			dctx, cancel := context.WithTimeout(context.Background(), *drain)
			err := srv.Shutdown(dctx)
			cancel()
			<-served
			st := srv.Stats()
			fmt.Fprintf(stdout, "geofailover proxy: stopped; %d connections served, %d commands forwarded, %d failed\n", st.Accepted, st.Forwarded, st.Failed)
			if err != nil {
				return fmt.Errorf("drain: %w", err)
			}
			return nil
		}
	}
}

// checkListen refuses a non-loopback listen address without a password.
func checkListen(addr, password string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usageError("--listen %q: %v", addr, err)
	}
	if password != "" || allowRemote {
		return nil
	}
	ip := net.ParseIP(host)
	if host == "localhost" || ip != nil && ip.IsLoopback() {
		return nil
	}
	return usageError("--listen %s is not a loopback address: set --password (or $GEOFAILOVER_PROXY_PASSWORD), or --allow-remote to serve without one", addr)
}

// membersProtocolAndDB returns the RESP version and database of the
// regions' connections, which must be the same for all of them.
func membersProtocolAndDB(opts *geofailover.Options) (protocol, db int, err error) {
	for i, ep := range opts.Endpoints {
		p, d := 3, 0
		switch {
		case ep.URL != "":
			o, err := redis.ParseURL(ep.URL)
			if err != nil {
				return 0, 0, fmt.Errorf("endpoint %q: %w", ep.Name, err)
			}
			p, d = o.Protocol, o.DB
		case ep.Options != nil:
			p, d = ep.Options.Protocol, ep.Options.DB
		case ep.ClusterOptions != nil:
			p = ep.ClusterOptions.Protocol
		case ep.FailoverOptions != nil:
			p, d = ep.FailoverOptions.Protocol, ep.FailoverOptions.DB
		case ep.Client != nil:
			return 0, 0, fmt.Errorf("endpoint %q: the proxy needs endpoints it builds (URL or options)", ep.Name)
		}
		if p == 0 {
			p = 3
		}
		if i > 0 && (p != protocol || d != db) {
			return 0, 0, fmt.Errorf("endpoint %q uses RESP%d and db %d, %q RESP%d and db %d: the proxy needs one protocol and one db for all regions", ep.Name, p, d, opts.Endpoints[0].Name, protocol, db)
		}
		protocol, db = p, d
	}
	return protocol, db, nil
}

// reload applies the config file's regions and weights to c: new regions
// are added, missing ones removed, weights set, and a region whose address
// or options changed replaced.
func reload(ctx context.Context, c *geofailover.Client, path, section string, out io.Writer) error {
	next, err := loadEndpoints(path, section, nil)
	if err != nil {
		return err
	}
	current := map[string]geofailover.EndpointStatus{}
	for _, st := range c.Status() {
		current[st.Name] = st
	}
	var errs []error
	wanted := map[string]bool{}
	for _, ep := range next.Endpoints {
		wanted[ep.Name] = true
		st, ok := current[ep.Name]
		switch {
		case !ok:
			errs = append(errs, c.AddEndpoint(ctx, ep))
			fmt.Fprintf(out, "reload: added %s (weight %g)\n", ep.Name, ep.Weight)
		case st.Weight != ep.Weight:
			errs = append(errs, c.SetWeight(ctx, ep.Name, ep.Weight))
			fmt.Fprintf(out, "reload: %s weight %g -> %g\n", ep.Name, st.Weight, ep.Weight)
		}
	}
	for name := range current {
		if !wanted[name] {
			errs = append(errs, c.RemoveEndpoint(ctx, name))
			fmt.Fprintf(out, "reload: removed %s\n", name)
		}
	}
	return errors.Join(errs...)
}

// demoRegions starts two local regions for a proxy with no config.
func demoRegions(out io.Writer) (*geofailover.Options, func(), error) {
	regions, kind, cleanup, err := startRegions([]string{"east", "west"}, []float64{1, 0.5}, false)
	if err != nil {
		return nil, nil, err
	}
	opts := &geofailover.Options{}
	for _, r := range regions {
		opts.Endpoints = append(opts.Endpoints, geofailover.Endpoint{Name: r.name, Weight: r.weight, URL: "redis://" + r.addr})
		fmt.Fprintf(out, "demo region %-5s %s (weight %g)\n", r.name, r.addr, r.weight)
	}
	fmt.Fprintf(out, "demo regions are %s; stop east (e.g. redis-cli -h %s -p %s SHUTDOWN NOSAVE) to watch the proxy fail over\n",
		kind, hostOf(regions[0].addr), portOf(regions[0].addr))
	return opts, cleanup, nil
}

func hostOf(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// proxyMetrics registers the proxy's counters for /metrics.
func proxyMetrics(srv *proxy.Server) func(*prometheus.Registry) error {
	return func(reg *prometheus.Registry) error {
		gauge := func(name, help string, f func(proxy.Stats) float64) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(srv.Stats()) })
		}
		counter := func(name, help string, f func(proxy.Stats) uint64, labels prometheus.Labels) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(f(srv.Stats())) })
		}
		cs := []prometheus.Collector{
			gauge("geofailover_proxy_connections", "Client connections open now.", func(s proxy.Stats) float64 { return float64(s.Connections) }),
			counter("geofailover_proxy_connections_accepted_total", "Client connections accepted.", func(s proxy.Stats) uint64 { return s.Accepted }, nil),
			counter("geofailover_proxy_connections_rejected_total", "Client connections refused (max clients, shutting down).", func(s proxy.Stats) uint64 { return s.Rejected }, nil),
			counter("geofailover_proxy_protocol_errors_total", "Connections closed for malformed input.", func(s proxy.Stats) uint64 { return s.ProtocolErrors }, nil),
			counter("geofailover_proxy_received_bytes_total", "Bytes received from clients.", func(s proxy.Stats) uint64 { return s.BytesIn }, nil),
			counter("geofailover_proxy_sent_bytes_total", "Bytes sent to clients.", func(s proxy.Stats) uint64 { return s.BytesOut }, nil),
		}
		for outcome, f := range map[string]func(proxy.Stats) uint64{
			"forwarded": func(s proxy.Stats) uint64 { return s.Forwarded },
			"local":     func(s proxy.Stats) uint64 { return s.Local },
			"refused":   func(s proxy.Stats) uint64 { return s.Refused },
			"failed":    func(s proxy.Stats) uint64 { return s.Failed },
		} {
			cs = append(cs, counter("geofailover_proxy_commands_total", "Client commands by outcome.", f, prometheus.Labels{"outcome": outcome}))
		}
		for _, col := range cs {
			if err := reg.Register(col); err != nil {
				return err
			}
		}
		return nil
	}
}
