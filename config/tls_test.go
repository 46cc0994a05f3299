package config_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/config"
	"github.com/geofailover/geofailover/failovertest"
)

// TestTLSAndACLFromFile: a file's tls section (a CA file, a client
// certificate and key) and an ACL user whose password comes from the
// environment reach a TLS-only server that requires the user.
func TestTLSAndACLFromFile(t *testing.T) {
	ca, err := failovertest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	srv := failovertest.StartServer(t, failovertest.WithTLS(ca), failovertest.WithUser("app", "file-pw-2468"))
	dir := t.TempDir()
	caFile, certFile, keyFile, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("APP_PASSWORD", srv.Password)
	file := filepath.Join(dir, "geofailover.yaml")
	yaml := fmt.Sprintf(`endpoints:
  - name: east
    weight: 1
    url: rediss://app:${APP_PASSWORD}@%s/0
    tls:
      ca_file: %s
      cert_file: %s
      key_file: %s
health_check_interval: 100ms
`, srv.Addr, caFile, certFile, keyFile)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c := clientFrom(t)(config.Load(file))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v; status %+v", err, c.Status())
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET over TLS as app: %v", err)
	}
}

// TestLagCheckFromFile: health_check: lag with a lag_check section and an
// endpoint's rest_api reach the cluster's API (a fake, trusted through its
// CA file, with the password from the environment): the lagging preferred
// endpoint is held back and traffic goes to the standby.
func TestLagCheckFromFile(t *testing.T) {
	east, west := failovertest.StartServer(t), failovertest.StartServer(t)
	api := failovertest.StartRESTAPI(t, "monitor", "api-pw-1357")
	api.AddDatabase(1, east.Addr)
	api.AddDatabase(2, west.Addr)
	api.SetLag(1, 2*time.Second)
	dir := t.TempDir()
	t.Setenv("RE_PASSWORD", "api-pw-1357")
	yaml := fmt.Sprintf(`endpoints:
  - {name: east, weight: 1, url: "redis://%s", rest_api: "%s"}
  - {name: west, weight: 0.5, url: "redis://%s", rest_api: "%s"}
health_check: lag
health_check_interval: 100ms
lag_check:
  username: monitor
  password: ${RE_PASSWORD}
  lag_tolerance: 500ms
  tls: {ca_file: %s}
`, east.Addr, api.URL, west.Addr, api.URL, api.CAFile(t, dir))
	c := clientFrom(t)(config.Parse("lag.yaml", []byte(yaml)))
	failovertest.WaitActive(t, c, "west")
	for _, st := range c.Status() {
		if st.Name == "east" && st.HeldBack == nil {
			t.Fatalf("east %+v, want held back for its lag", st)
		}
	}
	found := false
	for _, r := range api.Requests() {
		found = found || r == "GET /v1/bdbs/1/availability?extend_check=lag&availability_lag_tolerance_ms=500"
	}
	if !found {
		t.Fatalf("no availability request with the file's tolerance among %q", api.Requests())
	}
}

// clientFrom returns a function that starts a client from what a config
// function returned, failing the test on an error; the client is closed
// when the test ends.
func clientFrom(t *testing.T) func(*geofailover.Options, error) *geofailover.Client {
	return func(opts *geofailover.Options, err error) *geofailover.Client {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		c, err := geofailover.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// TestClientOptionsReachTheServer: a url endpoint's options section (a
// client name, RESP3, client-side caching, with the TLS section too) is
// what the connections use; Pub/Sub works alongside the cache.
func TestClientOptionsReachTheServer(t *testing.T) {
	ca, err := failovertest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	srv := failovertest.StartServer(t, failovertest.WithTLS(ca), failovertest.WithMinVersion("7.0"))
	dir := t.TempDir()
	caFile, _, _, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := clientFrom(t)(config.Parse("app.yaml", []byte(fmt.Sprintf(`endpoints:
  - name: east
    weight: 1
    url: rediss://%s/0
    tls: {ca_file: %s}
    options: {client_name: shop, protocol: 3, client_side_cache: true, pool_size: 3}
`, srv.Addr, caFile))))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v; status %+v", err, c.Status())
	}
	ps := c.Subscribe(ctx, "news")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
			t.Fatalf("GET = %q, %v", v, err)
		}
	}
	list, err := c.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, "name=shop ") || !strings.Contains(list, "resp=3") || strings.Contains(list, "name=shop resp=2") {
		t.Fatalf("CLIENT LIST does not show the file's client name over RESP3:\n%s", list)
	}
	if err := c.Publish(ctx, "news", "hi").Err(); err != nil {
		t.Fatal(err)
	}
	if m, err := ps.ReceiveMessage(ctx); err != nil || m.Payload != "hi" {
		t.Fatalf("message %v, %v", m, err)
	}
	for _, st := range c.Status() {
		if st.Calls.Failed != 0 {
			t.Fatalf("%s counted %d failures: %v", st.Name, st.Calls.Failed, st.LastError)
		}
	}
}
