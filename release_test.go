package geofailover_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestFreshModule: a module outside this workspace can go get the core
// module and build the README's quick start, and it inherits only go-redis:
// its go.mod requires geofailover, go-redis and what go-redis itself
// requires, and the program links no package of any other module (the
// core's test dependency, goleak, appears in neither).
func TestFreshModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module from scratch; not in -short")
	}
	root, err := filepath.Abs(".")
	must(t, err)
	src, err := os.ReadFile("docs_test.go")
	must(t, err)
	m := regexp.MustCompile(`(?s)// BEGIN quickstart\n(.*?)\n\s*// END quickstart`).FindSubmatch(src)
	if m == nil {
		t.Fatal("the quick start's markers are not in docs_test.go")
	}
	dir := t.TempDir()
	program := `package main

import (
	"context"
	"fmt"
	"log"

	"github.com/geofailover/geofailover"
	"github.com/redis/go-redis/v9"
)

// run is the README's quick start.
func run(ctx context.Context) error {
` + string(m[1]) + `
	return nil
}

func main() { _ = run }
`
	must(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(program), 0o644))
	goCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	const core = "github.com/geofailover/geofailover"
	goCmd("mod", "init", "example.com/fresh")
	goCmd("mod", "edit", "-replace", core+"="+root) // this checkout, as the proxy would serve it
	goCmd("get", core+"@v0.0.0-00010101000000-000000000000")
	goCmd("build", "./...")

	allowed := []string{core, "github.com/redis/go-redis/v9"}
	for _, line := range strings.Split(goCmd("mod", "graph"), "\n") {
		if from, to, ok := strings.Cut(line, " "); ok && strings.HasPrefix(from, "github.com/redis/go-redis/v9@") {
			allowed = append(allowed, strings.Split(to, "@")[0])
		}
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	must(t, err)
	for _, req := range regexp.MustCompile(`(?m)^\s+(\S+) v\S+`).FindAllStringSubmatch(string(gomod), -1) {
		if !slices.Contains(allowed, req[1]) {
			t.Errorf("the fresh module requires %s, which neither geofailover's packages nor go-redis need:\n%s", req[1], gomod)
		}
	}
	linked := strings.Fields(goCmd("list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", "."))
	for _, mod := range linked {
		if !slices.Contains(allowed, mod) && mod != "example.com/fresh" {
			t.Errorf("the quick start links a package of %s", mod)
		}
	}
	if !slices.Contains(linked, "github.com/redis/go-redis/v9") {
		t.Errorf("the quick start links no go-redis package: %v", linked)
	}
}
