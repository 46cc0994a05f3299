// Command geofailover demonstrates, probes and drills client-side
// geographic failover with the geofailover library.
//
//	geofailover demo  [--quick] [--in-process] [--report FILE]
//	geofailover probe [--config FILE [--section KEY]] [--pings N] [URL ...]
//	geofailover drill [--config FILE [--section KEY]] [--fault blackhole|refuse] [--outage D] [--prefix P] [--report FILE] [URL ...]
//	geofailover bench [--runs N] [--faults kill,stop,blackhole,latency] [--traffic idle,load] [--quick]
//	geofailover watch [--config FILE [--section KEY]] [--listen ADDR] [--traffic] [--for D] [URL ...]
//	geofailover proxy [--config FILE [--section KEY]] [--listen ADDR] [--admin ADDR] [--password P] [--check] [URL ...]
//	geofailover proxybench [--rounds N] [--requests N] [--clients N]
//
// Run "geofailover help" or "geofailover COMMAND --help" for details.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/geofailover/geofailover"
)

const usage = `geofailover: client-side geographic failover for go-redis

Usage:
  geofailover demo  [flags]          fail a local region over and back, live, with an HTML report
  geofailover probe [flags] [URL...] check each endpoint once and print a table
  geofailover drill [flags] [URL...] rehearse losing your preferred endpoint, safely, with a report
  geofailover bench [flags]          measure failover and failback on local servers (JSON, Markdown)
  geofailover watch [flags] [URL...] watch a client on your endpoints live; status page and /metrics
  geofailover proxy [flags] [URL...] serve your regions to any language: a local Redis server with failover
  geofailover proxybench [flags]     measure the proxy against direct, HAProxy and twemproxy (redis-benchmark)

Examples:
  geofailover demo                         # three local servers, about 30 s
  geofailover demo --quick                 # a short version
  geofailover probe redis://eu.example:6379 redis://us.example:6379
  geofailover probe --config geofailover.yaml
  geofailover drill --config geofailover.yaml --fault blackhole --outage 10s

Run "geofailover COMMAND --help" for a command's flags. GEOFAILOVER_LOG=debug
shows go-redis's own log lines (one per failed dial during an outage).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the exit status: 0 success, 1 the
// command found a problem (e.g. probe: the preferred endpoint is
// unusable), 2 a usage or configuration error, 130 interrupted.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// go-redis logs every refused dial: its lines go to stderr only with
	// GEOFAILOVER_LOG=debug.
	geofailover.LogRedisTo(logger(stderr), slog.LevelDebug)
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "demo":
		err = demoCmd(ctx, args[1:], stdout, stderr)
	case "probe":
		err = probeCmd(ctx, args[1:], stdout, stderr)
	case "drill":
		err = drillCmd(ctx, args[1:], stdout, stderr)
	case "bench":
		err = benchCmd(ctx, args[1:], stdout, stderr)
	case "watch":
		err = watchCmd(ctx, args[1:], stdout, stderr)
	case "proxy":
		err = proxyCmd(ctx, args[1:], stdout, stderr)
	case "proxybench":
		err = proxyBenchCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "geofailover: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ee exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "geofailover: interrupted")
		return 130
	case errors.As(err, &ee):
		fmt.Fprintf(stderr, "geofailover %s: %v\n", args[0], ee.err)
		return ee.code
	default:
		fmt.Fprintf(stderr, "geofailover %s: %v\n", args[0], err)
		return 1
	}
}

// exitError carries an exit status.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }

func usageError(format string, args ...any) error {
	return exitError{2, fmt.Errorf(format, args...)}
}

// newFlags returns a flag set whose --help prints help (with examples) to
// out and whose errors are usage errors.
func newFlags(name, help string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, help)
		fmt.Fprintln(out, "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; a bad flag is a usage error, --help is flag.ErrHelp.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitError{2, err}
	}
	return nil
}

// logger is the command's log: text on stderr, at the level GEOFAILOVER_LOG
// names (debug, info, warn, error; default warn).
func logger(stderr io.Writer) *slog.Logger {
	level, err := logLevel(slog.LevelWarn)
	if err != nil {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}
