package failovertest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RESTAPI is a fake of the part of the Redis Software (Redis Enterprise,
// Redis Cloud) REST API that health checks use, as documented: HTTPS with
// Basic auth, GET /v1/bdbs?fields=uid,endpoints, and the two availability
// requests, GET /v1/bdbs/{uid}/availability and GET
// /v1/local/bdbs/{uid}/endpoint/availability, each with the optional
// extend_check=lag and availability_lag_tolerance_ms=N parameters (the
// tolerance defaults to the cluster's, 100 ms, which PUT /v1/cluster
// {"availability_lag_tolerance_ms": N} changes). Available answers 200;
// unavailable, or lag over the tolerance when the lag check was asked
// for, answers 503 with {"error_code", "description"}. Missing or wrong
// credentials answer 401; Forbid makes them answer 403.
//
// The test controls each database (AddDatabase, SetAvailable, SetLag,
// MoveDatabase, RemoveDatabase) and the API itself (SetDelay, Hang, FailWith), and reads
// every request it served (Requests). StartRESTAPI's is closed when the
// test ends; LaunchRESTAPI's by Close.
type RESTAPI struct {
	// URL is the API's base URL, https://127.0.0.1:<port>.
	URL string

	srv       *httptest.Server
	closing   chan struct{}
	closeOnce sync.Once

	mu        sync.Mutex
	user, pw  string
	dbs       map[int]*fakeDB
	tolerance time.Duration
	delay     time.Duration
	hang      bool
	status    int
	forbid    bool
	requests  []string
}

type fakeDB struct {
	host      string
	port      int
	available bool
	lag       time.Duration
}

// StartRESTAPI starts a fake REST API on a free 127.0.0.1 port that
// accepts user and password (Basic auth). Its certificate is self-signed,
// as a cluster's is by default: trust it with TLSConfig.
func StartRESTAPI(t testing.TB, user, password string) *RESTAPI {
	t.Helper()
	a := LaunchRESTAPI(user, password)
	t.Cleanup(a.Close)
	return a
}

// LaunchRESTAPI starts the fake REST API as StartRESTAPI does, for use
// outside tests (a demo, a drill rehearsal). The caller must Close it.
func LaunchRESTAPI(user, password string) *RESTAPI {
	a := &RESTAPI{user: user, pw: password, dbs: map[int]*fakeDB{}, tolerance: 100 * time.Millisecond, closing: make(chan struct{})}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	a.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // a client that distrusts the certificate is expected
	a.srv.StartTLS()
	a.URL = a.srv.URL
	return a
}

// Close stops the fake, ending requests it holds (Hang). Safe to call
// more than once.
func (a *RESTAPI) Close() {
	a.closeOnce.Do(func() {
		close(a.closing) // ends hung requests
		a.srv.Close()
	})
}

// TLSConfig returns a client configuration that trusts the fake's
// certificate (for 127.0.0.1).
func (a *RESTAPI) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(a.srv.Certificate())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Certificate is the fake's self-signed certificate.
func (a *RESTAPI) Certificate() *x509.Certificate { return a.srv.Certificate() }

// CAFile writes the fake's certificate as PEM to a file in dir and returns
// its path, for configurations that name a CA file.
func (a *RESTAPI) CAFile(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "restapi-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatalf("failovertest: writing the REST API's certificate: %v", err)
	}
	return path
}

// AddDatabase adds database uid, served at addr (host:port), available and
// without lag.
func (a *RESTAPI) AddDatabase(uid int, addr string) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		panic(fmt.Sprintf("failovertest: AddDatabase(%d, %q): %v", uid, addr, err))
	}
	port, _ := strconv.Atoi(p)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dbs[uid] = &fakeDB{host: host, port: port, available: true}
}

// SetAvailable makes database uid available or not.
func (a *RESTAPI) SetAvailable(uid int, ok bool) { a.with(uid, func(d *fakeDB) { d.available = ok }) }

// SetLag sets database uid's replication lag.
func (a *RESTAPI) SetLag(uid int, lag time.Duration) { a.with(uid, func(d *fakeDB) { d.lag = lag }) }

// MoveDatabase gives database from the uid to (it was recreated): from is
// gone.
func (a *RESTAPI) MoveDatabase(from, to int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dbs[to] = a.dbs[from]
	delete(a.dbs, from)
}

// RemoveDatabase deletes database uid.
func (a *RESTAPI) RemoveDatabase(uid int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.dbs, uid)
}

// SetDelay makes every answer wait d.
func (a *RESTAPI) SetDelay(d time.Duration) { a.mu.Lock(); a.delay = d; a.mu.Unlock() }

// Hang makes requests never answer (until the client gives up) while on.
func (a *RESTAPI) Hang(on bool) { a.mu.Lock(); a.hang = on; a.mu.Unlock() }

// FailWith makes every request answer status (for example 500); 0 ends it.
func (a *RESTAPI) FailWith(status int) { a.mu.Lock(); a.status = status; a.mu.Unlock() }

// Forbid makes requests with the right credentials answer 403 (a role
// without view_bdb_info) while on.
func (a *RESTAPI) Forbid(on bool) { a.mu.Lock(); a.forbid = on; a.mu.Unlock() }

// Requests returns the requests served so far, as "GET /path?query".
func (a *RESTAPI) Requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.requests...)
}

func (a *RESTAPI) with(uid int, f func(*fakeDB)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.dbs[uid]
	if !ok {
		panic(fmt.Sprintf("failovertest: no database %d in the fake REST API", uid))
	}
	f(d)
}

func (a *RESTAPI) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.requests = append(a.requests, r.Method+" "+r.URL.RequestURI())
	delay, hang, status, forbid := a.delay, a.hang, a.status, a.forbid
	a.mu.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
		case <-a.closing:
		}
		return
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-a.closing:
			return
		}
	}
	if user, pw, ok := r.BasicAuth(); !ok || user != a.user || pw != a.pw {
		w.Header().Set("WWW-Authenticate", `Basic realm="restapi"`)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	if forbid {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	path := strings.Trim(r.URL.Path, "/")
	parts := strings.Split(path, "/")
	switch {
	case r.Method == http.MethodGet && path == "v1/bdbs":
		a.list(w, r)
	case r.Method == http.MethodPut && path == "v1/cluster":
		var body struct {
			Tolerance *int `json:"availability_lag_tolerance_ms"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Tolerance == nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.tolerance = time.Duration(*body.Tolerance) * time.Millisecond
		a.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{})
	case r.Method == http.MethodGet && len(parts) == 4 && parts[0] == "v1" && parts[1] == "bdbs" && parts[3] == "availability":
		a.availability(w, r, parts[2], "bdb_unavailable")
	case r.Method == http.MethodGet && len(parts) == 6 && path == "v1/local/bdbs/"+parts[3]+"/endpoint/availability":
		a.availability(w, r, parts[3], "bdb_endpoint_unavailable")
	default:
		http.NotFound(w, r)
	}
}

func (a *RESTAPI) list(w http.ResponseWriter, r *http.Request) {
	fields := map[string]bool{}
	if f := r.URL.Query().Get("fields"); f != "" {
		for _, name := range strings.Split(f, ",") {
			fields[name] = true
		}
	}
	a.mu.Lock()
	out := make([]map[string]any, 0, len(a.dbs))
	for uid, d := range a.dbs {
		db := map[string]any{
			"uid": uid,
			"endpoints": []map[string]any{{
				"uid": fmt.Sprintf("%d:1", uid), "dns_name": "redis-" + strconv.Itoa(d.port) + ".cluster.test",
				"port": d.port, "addr": []string{d.host}, "addr_type": "external",
			}},
			"name": fmt.Sprintf("db%d", uid), "status": "active", "crdt": true,
		}
		if len(fields) > 0 {
			for k := range db {
				if !fields[k] {
					delete(db, k)
				}
			}
		}
		out = append(out, db)
	}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (a *RESTAPI) availability(w http.ResponseWriter, r *http.Request, id, unavailable string) {
	uid, err := strconv.Atoi(id)
	a.mu.Lock()
	d, ok := a.dbs[uid]
	var db fakeDB
	if ok {
		db = *d
	}
	tolerance := a.tolerance
	a.mu.Unlock()
	if err != nil || !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error_code": "db_not_found", "description": "Database not found"})
		return
	}
	q := r.URL.Query()
	if ms := q.Get("availability_lag_tolerance_ms"); ms != "" {
		n, err := strconv.Atoi(ms)
		if err != nil || n < 0 {
			http.Error(w, "bad availability_lag_tolerance_ms", http.StatusBadRequest)
			return
		}
		tolerance = time.Duration(n) * time.Millisecond
	}
	switch {
	case !db.available:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error_code": unavailable, "description": "Database is unavailable"})
	case q.Get("extend_check") == "lag" && db.lag > tolerance:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error_code": "bdb_lag_exceeded",
			"description": fmt.Sprintf("Replication lag %d ms exceeds tolerance %d ms", db.lag.Milliseconds(), tolerance.Milliseconds())})
	default:
		writeJSON(w, http.StatusOK, map[string]any{})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
