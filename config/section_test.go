package config_test

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/config"
)

// appConfig is an application's own config file with the library's
// section inside.
type appConfig struct {
	Listen string         `yaml:"listen"`
	Redis  config.Section `yaml:"redis"`
}

// TestSectionEmbedded: the section of an application's file converts as a
// whole file does, with errors at the lines of the application's file.
func TestSectionEmbedded(t *testing.T) {
	good := `listen: :8080
redis:
  endpoints:
    - name: eu-west
      weight: 1
      url: redis://127.0.0.1:6379
  grace_period: 2s
`
	var cfg appConfig
	if err := yaml.Unmarshal([]byte(good), &cfg); err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.Redis.Options("app.yaml")
	if err != nil || cfg.Listen != ":8080" || len(opts.Endpoints) != 1 || opts.GracePeriod.String() != "2s" {
		t.Fatalf("section: %+v, %v", opts, err)
	}

	bad := `listen: :8080
redis:
  endpoints:
    - name: eu-west
      wieght: 1
      url: redis://127.0.0.1:6379
`
	cfg = appConfig{}
	if err := yaml.Unmarshal([]byte(bad), &cfg); err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Redis.Options("app.yaml")
	if err == nil || !strings.Contains(err.Error(), "app.yaml:5:") || !strings.Contains(err.Error(), `"wieght"`) {
		t.Fatalf("error %v, want one at app.yaml:5 naming wieght", err)
	}

	var missing appConfig
	if err := yaml.Unmarshal([]byte("listen: :8080\n"), &missing); err != nil {
		t.Fatal(err)
	}
	if _, err := missing.Redis.Options("app.yaml"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing section: %v", err)
	}
}

// embedded is the README's embedding snippet, compiled.
func embedded(data []byte) (*geofailover.Client, error) {
	// BEGIN embed
	var cfg struct {
		Listen string         `yaml:"listen"`
		Redis  config.Section `yaml:"redis"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return nil, err
	}
	opts, err := cfg.Redis.Options("app.yaml")
	if err != nil {
		return nil, err
	}
	opts.Logger = slog.Default()
	c, err := geofailover.New(opts)
	// END embed
	return c, err
}

var _ = embedded

// Example: an application's own YAML file with the library's section in
// it: decode, convert, add the logger and the event callback, start.
func ExampleSection() {
	data := []byte(`listen: :8080
redis:
  endpoints:
    - name: eu-west
      weight: 1
      url: redis://127.0.0.1:6379
    - name: us-east
      weight: 0.5
      url: redis://127.0.0.1:6380
  failback_delay: 5s
`)
	var cfg struct {
		Listen string         `yaml:"listen"`
		Redis  config.Section `yaml:"redis"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		fmt.Println(err)
		return
	}
	opts, err := cfg.Redis.Options("app.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	opts.OnEvent = func(ev geofailover.Event) { _ = ev } // e.g. metrics
	c, err := geofailover.New(opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println(cfg.Listen, len(opts.Endpoints), "endpoints, failback delay", opts.FailbackDelay)
	// Output: :8080 2 endpoints, failback delay 5s
}

// ExampleLoad: a file of the library's own, then the logger, then New.
func ExampleLoad() {
	f, err := os.CreateTemp("", "geofailover-*.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.Remove(f.Name())
	fmt.Fprint(f, "endpoints:\n  - name: eu-west\n    weight: 1\n    url: redis://127.0.0.1:6379\n")
	f.Close()

	opts, err := config.Load(f.Name())
	if err != nil {
		fmt.Println(err)
		return
	}
	opts.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	c, err := geofailover.New(opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println(opts.Endpoints[0].Name)
	// Output: eu-west
}
