package geofailover_test

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateAPI = flag.Bool("update-api", false, "rewrite api/geofailover.txt from the code (after an intended API change)")

// apiPackages are the packages whose exported API we promise: their
// directories in this repository, and their import paths.
var apiPackages = []struct{ dir, path string }{
	{".", "github.com/geofailover/geofailover"},
	{"failovertest", "github.com/geofailover/geofailover/failovertest"},
	{"lagcheck", "github.com/geofailover/geofailover/lagcheck"},
	{"proxy", "github.com/geofailover/geofailover/proxy"},
	{"statuspage", "github.com/geofailover/geofailover/statuspage"},
	{"config", "github.com/geofailover/geofailover/config"},
	{"faultproxy", "github.com/geofailover/geofailover/faultproxy"},
	{"extra/geofailoverotel", "github.com/geofailover/geofailover/extra/geofailoverotel"},
}

const apiFile = "api/geofailover.txt"

// TestAPIFile holds the exported API of every public package to
// api/geofailover.txt (one line per exported name, method and field, as Go
// keeps its own in api/), so that no change to it goes unnoticed: after an
// intended one, run
//
//	go test -run TestAPIFile -update-api .
//
// and commit the file with the change (and a CHANGELOG line).
func TestAPIFile(t *testing.T) {
	var lines []string
	for _, p := range apiPackages {
		got, err := exportedAPI(p.dir)
		if err != nil {
			t.Fatalf("%s: %v", p.dir, err)
		}
		if len(got) == 0 {
			t.Fatalf("%s: no exported API found", p.dir)
		}
		for _, l := range got {
			lines = append(lines, "pkg "+p.path+", "+l)
		}
	}
	slices.Sort(lines)
	text := strings.Join(lines, "\n") + "\n"
	if *updateAPI {
		if err := os.WriteFile(apiFile, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(apiFile)
	if err != nil {
		t.Fatalf("%v (write it with -update-api)", err)
	}
	wantLines := strings.Split(strings.TrimSuffix(string(want), "\n"), "\n")
	var added, removed []string
	for _, l := range lines {
		if !slices.Contains(wantLines, l) {
			added = append(added, "+ "+l)
		}
	}
	for _, l := range wantLines {
		if !slices.Contains(lines, l) {
			removed = append(removed, "- "+l)
		}
	}
	if len(added)+len(removed) > 0 {
		t.Errorf("the exported API differs from %s (if intended: go test -run TestAPIFile -update-api ., and a CHANGELOG line):\n%s",
			apiFile, strings.Join(append(removed, added...), "\n"))
	}
	t.Logf("%d lines of exported API in %d packages", len(lines), len(apiPackages))
}

// exportedAPI lists the exported declarations of the Go package in dir
// (test files left out), without their doc comments or bodies: funcs and
// methods with their signatures, types with their kind, each exported
// field and interface method on a line of its own, consts and vars with
// their type where it is written.
func exportedAPI(dir string) ([]string, error) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []*ast.File
	for _, e := range entries {
		if name := e.Name(); !e.IsDir() && strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
			if err != nil {
				return nil, err
			}
			if f.Name.Name != "main" {
				files = append(files, f)
			}
		}
	}
	src := func(n ast.Node) string {
		var b bytes.Buffer
		_ = printer.Fprint(&b, fset, n)
		return strings.Join(strings.Fields(b.String()), " ")
	}
	var out []string
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv == nil {
					out = append(out, "func "+d.Name.Name+strings.TrimPrefix(src(d.Type), "func"))
					continue
				}
				recv := d.Recv.List[0].Type
				base := recv
				if s, ok := base.(*ast.StarExpr); ok {
					base = s.X
				}
				if id, ok := base.(*ast.Ident); ok && id.IsExported() {
					out = append(out, fmt.Sprintf("method (%s) %s%s", src(recv), d.Name.Name, strings.TrimPrefix(src(d.Type), "func")))
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							out = append(out, typeAPI(s, src)...)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if !n.IsExported() {
								continue
							}
							l := d.Tok.String() + " " + n.Name
							if s.Type != nil {
								l += " " + src(s.Type)
							}
							out = append(out, l)
						}
					}
				}
			}
		}
	}
	return out, nil
}

// typeAPI is a type's line, and a line per exported field or method of a
// struct or interface it declares.
func typeAPI(s *ast.TypeSpec, src func(ast.Node) string) []string {
	name := s.Name.Name
	if s.TypeParams != nil {
		name += src(s.TypeParams)
	}
	alias := ""
	if s.Assign.IsValid() {
		alias = "= "
	}
	switch t := s.Type.(type) {
	case *ast.StructType:
		out := []string{"type " + name + " struct"}
		for _, f := range t.Fields.List {
			if len(f.Names) == 0 { // embedded
				out = append(out, "type "+s.Name.Name+" struct, embedded "+src(f.Type))
				continue
			}
			for _, n := range f.Names {
				if n.IsExported() {
					out = append(out, "type "+s.Name.Name+" struct, "+n.Name+" "+src(f.Type))
				}
			}
		}
		return out
	case *ast.InterfaceType:
		out := []string{"type " + name + " interface"}
		for _, m := range t.Methods.List {
			if len(m.Names) == 0 {
				out = append(out, "type "+s.Name.Name+" interface, embedded "+src(m.Type))
				continue
			}
			for _, n := range m.Names {
				if n.IsExported() {
					out = append(out, "type "+s.Name.Name+" interface, "+n.Name+strings.TrimPrefix(src(m.Type), "func"))
				}
			}
		}
		return out
	}
	return []string{"type " + name + " " + alias + src(s.Type)}
}
