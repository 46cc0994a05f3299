package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestDeployExamples holds docs/deploy to the command: the systemd unit's
// and the Kubernetes sidecar's proxy arguments, with the sidecar's
// regions.yaml, pass `geofailover proxy --check`; the unit passes
// systemd-analyze verify where systemd is installed.
func TestDeployExamples(t *testing.T) {
	dir := t.TempDir()
	manifest, err := os.ReadFile("../../docs/deploy/kubernetes-sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var regions string
	var sidecar struct {
		Name          string
		RestartPolicy string `yaml:"restartPolicy"`
		Args          []string
	}
	dec := yaml.NewDecoder(bytes.NewReader(manifest))
	for {
		var doc struct {
			Kind string
			Data map[string]string
			Spec struct {
				Template struct {
					Spec struct {
						InitContainers []struct {
							Name          string
							RestartPolicy string `yaml:"restartPolicy"`
							Args          []string
						} `yaml:"initContainers"`
					}
				}
			}
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kubernetes-sidecar.yaml: %v", err)
		}
		switch doc.Kind {
		case "ConfigMap":
			regions = doc.Data["regions.yaml"]
		case "Deployment":
			if cs := doc.Spec.Template.Spec.InitContainers; len(cs) == 1 {
				sidecar = cs[0]
			}
		}
	}
	if regions == "" || sidecar.Name != "geofailover-proxy" || sidecar.RestartPolicy != "Always" {
		t.Fatalf("kubernetes-sidecar.yaml: want a ConfigMap with regions.yaml and a Deployment with the proxy as its one native sidecar; got regions %q, sidecar %+v", regions, sidecar)
	}
	cfg := filepath.Join(dir, "regions.yaml")
	if err := os.WriteFile(cfg, []byte(regions), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(where string, args []string) {
		t.Helper()
		args = append(args, "--check")
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "/etc/geofailover/regions.yaml", cfg)
		}
		if len(args) == 0 || args[0] != "proxy" {
			t.Fatalf("%s: %q does not run geofailover proxy", where, args)
		}
		if code, out, errOut := runCLI(t, args...); code != 0 || !strings.Contains(out, "config OK: 2 regions") {
			t.Errorf("%s: geofailover %s: exit %d: %s%s", where, strings.Join(args, " "), code, out, errOut)
		}
	}
	check("kubernetes-sidecar.yaml", sidecar.Args)

	unit, err := os.ReadFile("../../docs/deploy/geofailover-proxy.service")
	if err != nil {
		t.Fatal(err)
	}
	var execs int
	for line := range strings.Lines(string(unit)) {
		key, value, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || (key != "ExecStart" && key != "ExecStartPre") {
			continue
		}
		fields := strings.Fields(value)
		if fields[0] != "/usr/local/bin/geofailover" {
			t.Errorf("geofailover-proxy.service: %s runs %s", key, fields[0])
		}
		check("geofailover-proxy.service "+key, fields[1:])
		execs++
	}
	if execs != 2 {
		t.Errorf("geofailover-proxy.service: %d ExecStart/ExecStartPre lines, want 2", execs)
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: the unit's syntax is not checked")
		return
	}
	// verify wants the unit's programs to exist: this test binary stands
	// in for geofailover.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "geofailover-proxy.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/geofailover"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify geofailover-proxy.service: %v\n%s", err, out)
	}
}
