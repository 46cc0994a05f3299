package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
)

const probeHelp = `geofailover probe: check each endpoint once and print a table.

For each endpoint: reachable, authentication accepted, round-trip time
(min/median/max over --pings PINGs), server version and role, and whether
it accepts a write (a key under "geofailover:probe:" with a 10 s TTL,
deleted at once). Exits 1 when the highest-weight endpoint is unusable,
2 on a usage or configuration error.

Examples:
  geofailover probe redis://127.0.0.1:6379 redis://127.0.0.1:6380
  geofailover probe --config geofailover.yaml --pings 20
`

// probeResult is one endpoint's row.
type probeResult struct {
	name, target      string
	weight            float64
	reachable, authOK bool
	min, median, max  time.Duration
	version, role     string
	writable          bool
	problem           string
}

func (p probeResult) usable() bool { return p.reachable && p.authOK && p.problem == "" }

func probeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("probe", probeHelp, stderr)
	configPath := fs.String("config", "", "YAML config file with the endpoints")
	section := fs.String("section", "", "read the endpoints and options from this top-level key of the --config file (an application's own file)")
	pings := fs.Int("pings", 5, "PINGs per endpoint for the round-trip time")
	timeout := fs.Duration("timeout", 2*time.Second, "timeout of each step")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *pings < 1 {
		return usageError("--pings must be at least 1")
	}
	opts, err := loadEndpoints(*configPath, *section, fs.Args())
	if err != nil {
		return err
	}
	var results []probeResult
	for _, e := range opts.Endpoints {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		results = append(results, probe(ctx, e, *pings, *timeout))
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tWEIGHT\tTARGET\tREACHABLE\tAUTH\tRTT min/median/max\tVERSION\tROLE\tWRITABLE\tPROBLEM")
	for _, r := range results {
		rtt := "-"
		if r.reachable && r.authOK {
			rtt = fmt.Sprintf("%v / %v / %v", r.min.Round(time.Microsecond), r.median.Round(time.Microsecond), r.max.Round(time.Microsecond))
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.weight, r.target, yesNo(r.reachable), yesNo(r.authOK), rtt,
			orDash(r.version), orDash(r.role), yesNo(r.writable), orDash(r.problem))
	}
	tw.Flush()
	if len(results) > 0 && !results[0].usable() {
		return exitError{1, fmt.Errorf("the highest-weight endpoint %s is unusable: %s", results[0].name, results[0].problem)}
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// probe checks one endpoint.
func probe(ctx context.Context, e geofailover.Endpoint, pings int, timeout time.Duration) probeResult {
	res := probeResult{name: e.Name, weight: e.Weight, target: describeTarget(e)}
	c, err := clientFor(e, timeout)
	if err != nil {
		res.problem = err.Error()
		return res
	}
	defer c.Close()
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, timeout) }

	var rtts []time.Duration
	for i := range pings {
		sctx, cancel := step()
		start := time.Now()
		err := c.Ping(sctx).Err()
		d := time.Since(start)
		cancel()
		if err != nil {
			res.reachable, res.authOK = classifyProbeErr(err)
			res.problem = oneLine(err)
			if i == 0 || !res.reachable {
				return res
			}
			break
		}
		res.reachable, res.authOK = true, true
		rtts = append(rtts, d)
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	res.min, res.median, res.max = rtts[0], rtts[len(rtts)/2], rtts[len(rtts)-1]

	sctx, cancel := step()
	if info, err := c.InfoMap(sctx, "server", "replication").Result(); err == nil {
		res.version = info["Server"]["redis_version"]
		res.role = info["Replication"]["role"]
	}
	cancel()
	var b [8]byte
	_, _ = rand.Read(b[:])
	key := "geofailover:probe:" + hex.EncodeToString(b[:])
	sctx, cancel = step()
	err = c.Set(sctx, key, "1", 10*time.Second).Err()
	if err == nil {
		res.writable = true
		c.Del(sctx, key)
	} else if res.problem == "" && strings.HasPrefix(err.Error(), "READONLY") {
		res.problem = "read-only (a replica?)"
	}
	cancel()
	return res
}

// classifyProbeErr says whether err means the endpoint was reachable, and
// whether authentication was accepted.
func classifyProbeErr(err error) (reachable, authOK bool) {
	msg := err.Error()
	if strings.HasPrefix(msg, "NOAUTH") || strings.HasPrefix(msg, "WRONGPASS") || strings.Contains(msg, "invalid password") || strings.Contains(msg, "invalid username-password") {
		return true, false
	}
	var nerr net.Error
	if errors.As(err, &nerr) || errors.Is(err, io.EOF) {
		return false, false
	}
	return true, true
}

func oneLine(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// clientFor builds a plain go-redis client for e: one dial attempt, no
// retries, deadlines from the context.
func clientFor(e geofailover.Endpoint, timeout time.Duration) (redis.UniversalClient, error) {
	switch {
	case e.URL != "":
		o, err := redis.ParseURL(e.URL)
		if err != nil {
			return nil, fmt.Errorf("bad URL")
		}
		o.MaxRetries, o.DialerRetries, o.DialTimeout, o.ContextTimeoutEnabled = -1, 1, timeout, true
		return redis.NewClient(o), nil
	case e.Options != nil: // a url with an options section
		o := *e.Options
		o.MaxRetries, o.DialerRetries, o.DialTimeout, o.ContextTimeoutEnabled = -1, 1, timeout, true
		return redis.NewClient(&o), nil
	case e.ClusterOptions != nil:
		o := *e.ClusterOptions
		o.MaxRetries, o.DialTimeout, o.ContextTimeoutEnabled = -1, timeout, true
		return redis.NewClusterClient(&o), nil
	case e.FailoverOptions != nil:
		o := *e.FailoverOptions
		o.MaxRetries, o.DialTimeout, o.ContextTimeoutEnabled = -1, timeout, true
		return redis.NewFailoverClient(&o), nil
	}
	return nil, fmt.Errorf("endpoint %s has no target the probe can use", e.Name)
}
