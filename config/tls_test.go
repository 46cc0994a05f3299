package config_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	opts, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := geofailover.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v; status %+v", err, c.Status())
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET over TLS as app: %v", err)
	}
}
