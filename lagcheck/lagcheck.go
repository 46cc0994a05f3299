// Package lagcheck is a geofailover health check that asks the REST API of
// a Redis Software (Redis Enterprise) or Redis Cloud cluster whether the
// database behind an endpoint is available and, optionally, within a
// replication-lag tolerance: for Active-Active databases, whose regions
// may serve data that is seconds behind after a partition.
//
// Each check first runs a Redis check on the endpoint (PING by default):
// its failure fails the check, as any health check's does. Then it asks
// the API. The API's verdict only steers traffic: an endpoint the API does
// not confirm (unavailable, lag over the tolerance, or the API itself
// unreachable, refusing the credentials, or not knowing the database) is
// held back (geofailover.HoldBack): traffic is not moved to it by failover
// or failback while an endpoint the API confirms can take it, but the
// active endpoint is never left for it, and when every candidate is held
// back the best of them is still chosen. A lagging region thus never
// causes an outage, and a management API that is down never moves
// traffic. Options.Strict makes the API's "unavailable" fail the check
// instead.
//
// The database is found by matching the endpoint's Redis host and port
// against the database list (GET /v1/bdbs?fields=uid,endpoints: an
// endpoint's dns_name or any of its addr entries, and its port). Its uid
// is cached and dropped on any error, and found again at once when the
// cached uid is no longer known (a database recreated under a new uid).
// Then GET /v1/bdbs/{uid}/availability (or, with Options.Local,
// /v1/local/bdbs/{uid}/endpoint/availability), with
// extend_check=lag&availability_lag_tolerance_ms=N when
// Options.LagTolerance is set; 200 means confirmed. Every request uses
// Basic auth and TLS and is bounded by the check's context, that is, by
// geofailover's HealthCheckTimeout.
package lagcheck

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
)

// DefaultAPIPort is the REST API's port on a cluster's nodes.
const DefaultAPIPort = 9443

// Options configure a Check. Username and Password are required.
type Options struct {
	// APIs maps an endpoint's Redis address, host:port as its client has
	// it (a cluster endpoint: the first of its Addrs), to the base URL of
	// the REST API of the cluster that serves it ("https://host:9443").
	// An address not listed uses https://<its host>:9443.
	APIs map[string]string
	// Username and Password are a cluster user's, for Basic auth; the
	// user's role needs the view_bdb_info permission.
	Username, Password string
	// TLSConfig is the TLS configuration for the API: RootCAs holding the
	// cluster's CA (its certificate is self-signed by default). nil: the
	// system's roots. InsecureSkipVerify skips verification (unsafe: only
	// for tests).
	TLSConfig *tls.Config
	// LagTolerance, when positive, also requires the database's
	// replication lag to be within it (whole milliseconds; at least 1 ms).
	// Zero: availability only.
	LagTolerance time.Duration
	// Local asks the node's local endpoint availability
	// (/v1/local/bdbs/{uid}/endpoint/availability, for load balancers)
	// instead of the database's (/v1/bdbs/{uid}/availability).
	Local bool
	// Redis is the check run on the endpoint first; its failure fails the
	// check. Default geofailover.PingCheck. NoRedisCheck skips it.
	Redis geofailover.HealthCheckFunc
	// Strict makes the API's answer that the database is unavailable (503)
	// fail the check, so that it can make the active endpoint unhealthy,
	// instead of holding the endpoint back. Errors reaching the API still
	// only hold it back.
	Strict bool
}

// NoRedisCheck, as Options.Redis, runs no Redis check: only the API is
// asked.
func NoRedisCheck(context.Context, redis.UniversalClient) error { return nil }

// Check is the health check. Its Func is a geofailover.HealthCheckFunc.
// It keeps a connection to each API alive between checks; Close (or 30 s
// without a check) closes it.
type Check struct {
	o      Options
	client *http.Client
	query  string // the availability request's query, "" or "?extend_check=lag&..."

	mu   sync.Mutex
	uids map[string]int // Redis address -> database uid
}

// New validates o and returns a Check.
func New(o Options) (*Check, error) {
	if o.Username == "" || o.Password == "" {
		return nil, errors.New("lagcheck: Username and Password are required (Basic auth)")
	}
	if o.LagTolerance < 0 || o.LagTolerance > 0 && o.LagTolerance < time.Millisecond {
		return nil, fmt.Errorf("lagcheck: LagTolerance %v: want zero (availability only) or at least 1ms", o.LagTolerance)
	}
	for addr, base := range o.APIs {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("lagcheck: APIs: %q is not a host:port Redis address", addr)
		}
		u, err := url.Parse(base)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("lagcheck: APIs[%q]: %q is not an https:// URL (the REST API speaks only HTTPS)", addr, base)
		}
	}
	if o.Redis == nil {
		o.Redis = geofailover.PingCheck
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.TLSConfig != nil {
		tr.TLSClientConfig = o.TLSConfig.Clone()
	}
	tr.MaxIdleConnsPerHost = 2
	tr.IdleConnTimeout = 30 * time.Second // checks come every second or so; after the client closes, connections go
	c := &Check{o: o, client: &http.Client{Transport: tr, CheckRedirect: noRedirect}, uids: map[string]int{}}
	if o.LagTolerance > 0 {
		c.query = "?extend_check=lag&availability_lag_tolerance_ms=" + strconv.FormatInt(o.LagTolerance.Milliseconds(), 10)
	}
	return c, nil
}

// noRedirect refuses redirects: the credentials go to the API named, only.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Close closes the Check's idle connections; it stays usable.
func (c *Check) Close() { c.client.CloseIdleConnections() }

// Func returns the check, for geofailover.Options.HealthCheck.
func (c *Check) Func() geofailover.HealthCheckFunc { return c.check }

func (c *Check) check(ctx context.Context, probe redis.UniversalClient) error {
	if err := c.o.Redis(ctx, probe); err != nil {
		return err
	}
	addr, err := redisAddr(probe)
	if err != nil {
		return geofailover.HoldBack(err) // a configuration error, not the endpoint's failure
	}
	unavailable, err := c.ask(ctx, addr)
	if err == nil {
		return nil
	}
	if unavailable && c.o.Strict {
		return err
	}
	return geofailover.HoldBack(err)
}

// ask asks the API about the database at addr. unavailable says the API
// answered that it is not available (as opposed to an error reaching it).
func (c *Check) ask(ctx context.Context, addr string) (unavailable bool, err error) {
	base := c.apiFor(addr)
	c.mu.Lock()
	uid, cached := c.uids[addr]
	c.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if !cached {
			if uid, err = c.find(ctx, base, addr); err != nil {
				return false, err
			}
		}
		unavailable, notFound, err := c.availability(ctx, base, uid)
		c.mu.Lock()
		if err == nil {
			c.uids[addr] = uid
		} else {
			delete(c.uids, addr) // found again on the next check
		}
		c.mu.Unlock()
		if err != nil && notFound && cached && attempt == 0 {
			cached = false // the database was recreated under another uid: find it now
			continue
		}
		return unavailable, err
	}
}

func (c *Check) apiFor(addr string) string {
	if base, ok := c.o.APIs[addr]; ok {
		return strings.TrimRight(base, "/")
	}
	host, _, _ := net.SplitHostPort(addr)
	return "https://" + net.JoinHostPort(host, strconv.Itoa(DefaultAPIPort))
}

// find returns the uid of the database served at addr.
func (c *Check) find(ctx context.Context, base, addr string) (int, error) {
	var dbs []struct {
		UID       int `json:"uid"`
		Endpoints []struct {
			DNSName string   `json:"dns_name"`
			Port    int      `json:"port"`
			Addr    []string `json:"addr"`
		} `json:"endpoints"`
	}
	status, body, err := c.get(ctx, base+"/v1/bdbs?fields=uid,endpoints")
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, c.statusErr("listing databases", status, body)
	}
	if err := json.Unmarshal(body, &dbs); err != nil {
		return 0, fmt.Errorf("lagcheck: %s: the database list is not JSON: %v", base, err)
	}
	host, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	for _, db := range dbs {
		for _, ep := range db.Endpoints {
			if ep.Port != port {
				continue
			}
			if strings.EqualFold(ep.DNSName, host) {
				return db.UID, nil
			}
			for _, a := range ep.Addr {
				if a == host {
					return db.UID, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("lagcheck: %s knows no database served at %s (of %d databases)", base, addr, len(dbs))
}

// availability asks about database uid. notFound says the API does not
// know the uid.
func (c *Check) availability(ctx context.Context, base string, uid int) (unavailable, notFound bool, err error) {
	path := fmt.Sprintf("/v1/bdbs/%d/availability", uid)
	if c.o.Local {
		path = fmt.Sprintf("/v1/local/bdbs/%d/endpoint/availability", uid)
	}
	status, body, err := c.get(ctx, base+path+c.query)
	if err != nil {
		return false, false, err
	}
	if status == http.StatusOK {
		return false, false, nil
	}
	var reply struct {
		Code        string `json:"error_code"`
		Description string `json:"description"`
	}
	_ = json.Unmarshal(body, &reply)
	if status == http.StatusNotFound || reply.Code == "db_not_found" {
		return false, true, fmt.Errorf("lagcheck: %s: database %d not found", base, uid)
	}
	if status == http.StatusServiceUnavailable {
		what := "unavailable"
		if c.o.LagTolerance > 0 {
			what = fmt.Sprintf("unavailable or lagging more than %v", c.o.LagTolerance)
		}
		detail := ""
		if reply.Code != "" || reply.Description != "" {
			detail = fmt.Sprintf(" (%s: %s)", reply.Code, reply.Description)
		}
		return true, false, fmt.Errorf("lagcheck: %s: database %d is %s%s", base, uid, what, detail)
	}
	return false, false, c.statusErr(fmt.Sprintf("asking about database %d", uid), status, body)
}

func (c *Check) statusErr(doing string, status int, body []byte) error {
	switch status {
	case http.StatusUnauthorized:
		return fmt.Errorf("lagcheck: %s: 401: the REST API refused user %q's credentials", doing, c.o.Username)
	case http.StatusForbidden:
		return fmt.Errorf("lagcheck: %s: 403: user %q lacks the view_bdb_info permission", doing, c.o.Username)
	}
	text := strings.TrimSpace(string(body))
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	return fmt.Errorf("lagcheck: %s: HTTP %d: %s", doing, status, text)
}

// get sends a GET with Basic auth, bounded by ctx, and returns the status
// and up to 1 MiB of the body; the rest is drained so the connection is
// reused.
func (c *Check) get(ctx context.Context, u string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("lagcheck: %v", err)
	}
	req.SetBasicAuth(c.o.Username, c.o.Password)
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("lagcheck: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("lagcheck: reading the answer of %s: %w", req.URL.Redacted(), err)
	}
	return resp.StatusCode, body, nil
}

// redisAddr is the endpoint's address as its probe client has it.
func redisAddr(probe redis.UniversalClient) (string, error) {
	switch p := probe.(type) {
	case *redis.ClusterClient:
		if addrs := p.Options().Addrs; len(addrs) > 0 {
			return addrs[0], nil
		}
	case *redis.Client:
		if addr := p.Options().Addr; addr != "" && addr != "FailoverClient" {
			if _, _, err := net.SplitHostPort(addr); err == nil {
				return addr, nil
			}
		}
	}
	return "", fmt.Errorf("lagcheck: cannot tell the Redis address of a %T endpoint (a Sentinel endpoint?); the check needs a standalone or cluster endpoint", probe)
}
