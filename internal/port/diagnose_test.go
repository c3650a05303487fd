package port

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// An undefined qualified name in the main module's own file is the
// failure of the imported package that declares it only in files its
// constraint list excludes, and of that package's module (u-root/uio's
// ubinary of 2021 lists no loong64); a name no file declares stays with
// the importer.
func TestDiagnoseTracesAnUndefinedQualifiedNameToItsPackage(t *testing.T) {
	abs, err := filepath.Abs("testdata/endian")
	if err != nil {
		t.Fatal(err)
	}
	dep := &Module{Path: "example.com/dep", Version: "v0.0.0-20210528114334-82958018845c"}
	main := &Module{Path: "example.com/endian", Main: true}
	host := &Module{Path: "example.com/gopsutil", Version: "v1.0.0"}
	hostDir, _ := filepath.Abs("testdata/gopsutilhost")
	pkgs := []Package{
		{ImportPath: "example.com/dep/ubinary", Name: "ubinary", Dir: filepath.Join(abs, "ubinary"), Module: dep,
			GoFiles: []string{"doc.go"}, IgnoredGoFiles: []string{"big_endian.go", "little_endian.go"}},
		{ImportPath: "example.com/gopsutil/host", Name: "host", Dir: hostDir, Module: host,
			GoFiles: []string{"host_linux.go"}, IgnoredGoFiles: []string{"host_linux_arm64.go"}},
		{ImportPath: "example.com/endian", Name: "main", Dir: filepath.Join(abs, "app"), Module: main},
	}
	out, err := os.ReadFile("testdata/endian/build-loong64.txt")
	if err != nil {
		t.Fatal(err)
	}
	d := Diagnose("linux", "loong64", pkgs, ParseBuildOutput(string(out), pkgs))
	var order []string
	for _, m := range d.Modules {
		order = append(order, m.Path)
	}
	if !slices.Equal(order, []string{"example.com/dep", "example.com/gopsutil", "example.com/endian"}) {
		t.Fatalf("modules %v", order)
	}
	ub := findPackage(t, d, "example.com/dep/ubinary")
	if !slices.Equal(ub.Causes, []Cause{CauseConstraint}) || !slices.Equal(ub.Missing, []string{"NativeEndian"}) ||
		!slices.Equal(ub.Files, []string{"big_endian.go", "little_endian.go"}) || !slices.Equal(ub.Importers, []string{"example.com/endian"}) ||
		len(ub.Errors) != 1 || !strings.HasSuffix(ub.Errors[0], "undefined: bin.NativeEndian") {
		t.Fatalf("ubinary %+v", ub)
	}
	depMod, _ := d.Module("example.com/dep")
	if !slices.Equal(depMod.BuildList(), []string{"example.com/dep/ubinary", "example.com/endian"}) {
		t.Errorf("build list %v", depMod.BuildList())
	}
	if m := findPackage(t, d, "example.com/endian"); !slices.Equal(m.Causes, []Cause{CauseOther}) || len(m.Errors) != 1 || !strings.Contains(m.Errors[0], "bin.Missing") {
		t.Errorf("main keeps what no dependency declares: %+v", m)
	}
	// cgo -godefs output is generated per-arch code, whatever its name.
	if h := findPackage(t, d, "example.com/gopsutil/host"); !slices.Equal(h.Causes, []Cause{CauseGeneratedFiles}) || !slices.Equal(h.Files, []string{"host_linux_arm64.go"}) {
		t.Errorf("gopsutil host %+v", h)
	}
}

func TestPlanArchFilesWidensTheConstraintOfAnImportedPackage(t *testing.T) {
	dir := copyFixture(t, filepath.Join("endian", "ubinary"))
	files, unresolved, err := PlanArchFiles(dir, "linux", "loong64", []string{"arm64", "riscv64"}, []string{"NativeEndian"})
	if err != nil || len(unresolved) > 0 || len(files) != 1 || files[0].Name != "little_endian.go" || !files[0].Edit {
		t.Fatalf("files %+v unresolved %v err %v", files, unresolved, err)
	}
	writeAndExpectBuilt(t, dir, files[0], "loong64")
	if matches(dir, "little_endian.go", "linux", "s390x") || !matches(dir, "little_endian.go", "linux", "riscv64") {
		t.Errorf("widening changed other arches:\n%s", files[0].Content)
	}
}

func TestCgoSplitFindsStubsAndCgoOnlyPackages(t *testing.T) {
	sqlite := &Module{Path: "github.com/mattn/go-sqlite3", Version: "v1.14.0"}
	zstd := &Module{Path: "github.com/DataDog/zstd", Version: "v1.4.1"}
	on := []Package{
		{ImportPath: "net", Standard: true, GoFiles: []string{"net.go"}, CgoFiles: []string{"cgo_unix.go"}},
		{ImportPath: "github.com/mattn/go-sqlite3", Module: sqlite, GoFiles: []string{"doc.go"}, CgoFiles: []string{"sqlite3.go", "sqlite3_opt_preupdate.go"}},
		{ImportPath: "github.com/DataDog/zstd", Module: zstd, CgoFiles: []string{"errors.go", "zstd.go"}},
		{ImportPath: "example.com/app", GoFiles: []string{"main.go"}},
	}
	off := []Package{
		{ImportPath: "net", Standard: true, GoFiles: []string{"net.go", "cgo_stub.go"}},
		{ImportPath: "github.com/mattn/go-sqlite3", Module: sqlite, GoFiles: []string{"doc.go", "static_mock.go"}},
		{ImportPath: "github.com/DataDog/zstd", Module: zstd},
		{ImportPath: "example.com/app", GoFiles: []string{"main.go"}},
	}
	got := CgoSplit(on, off)
	if len(got) != 2 {
		t.Fatalf("stubs %+v", got)
	}
	if s := got[0]; s.Package != "github.com/mattn/go-sqlite3" || s.CgoOnly || !slices.Equal(s.StubFiles, []string{"static_mock.go"}) || s.Version != "v1.14.0" {
		t.Errorf("sqlite %+v", s)
	}
	if s := got[1]; s.Package != "github.com/DataDog/zstd" || !s.CgoOnly || len(s.StubFiles) != 0 || !slices.Equal(s.CgoFiles, []string{"errors.go", "zstd.go"}) {
		t.Errorf("zstd %+v", s)
	}
}

func TestTestsNeedCgo(t *testing.T) {
	cases := []struct {
		name    string
		on, off Package
		need    bool
		files   []string
	}{
		{"pure Go", Package{GoFiles: []string{"a.go"}, TestGoFiles: []string{"a_test.go"}}, Package{GoFiles: []string{"a.go"}, TestGoFiles: []string{"a_test.go"}}, false, nil},
		{"cgo-only package", Package{CgoFiles: []string{"z.go"}, TestGoFiles: []string{"z_test.go"}}, Package{TestGoFiles: []string{"z_test.go"}}, true, []string{"z.go"}},
		{"tests behind a cgo constraint", Package{GoFiles: []string{"doc.go"}, CgoFiles: []string{"s.go"}, TestGoFiles: []string{"s_test.go"}},
			Package{GoFiles: []string{"doc.go", "mock.go"}}, true, []string{"s.go", "s_test.go"}},
		{"stub whose tests run without cgo", Package{GoFiles: []string{"doc.go"}, CgoFiles: []string{"s.go"}, TestGoFiles: []string{"doc_test.go"}},
			Package{GoFiles: []string{"doc.go", "mock.go"}, TestGoFiles: []string{"doc_test.go"}}, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			need, files := TestsNeedCgo(c.on, c.off)
			if need != c.need || !slices.Equal(files, c.files) {
				t.Errorf("got %v %v", need, files)
			}
		})
	}
}

// What MVS and tidying leave is what the report says: the chosen x/sys
// v0.1.0 ends at v0.5.0 because another fix requires it, and indirect
// bumps and new replaces are listed too.
func TestModuleChangesAreAsGoModEnds(t *testing.T) {
	before, err := ParseGoModJSON([]byte(`{"Require":[{"Path":"golang.org/x/sys","Version":"v0.0.0-20180909124046-d0be0721c37e"},
		{"Path":"github.com/boltdb/bolt","Version":"v1.3.1"},{"Path":"github.com/kr/text","Version":"v0.1.0","Indirect":true},{"Path":"example.com/gone","Version":"v1.0.0"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	after, err := ParseGoModJSON([]byte(`{"Require":[{"Path":"golang.org/x/sys","Version":"v0.5.0"},{"Path":"github.com/boltdb/bolt","Version":"v1.3.1"},
		{"Path":"github.com/kr/text","Version":"v0.2.0","Indirect":true},{"Path":"github.com/tklauser/numcpus","Version":"v0.6.0","Indirect":true}],
		"Replace":[{"Old":{"Path":"github.com/boltdb/bolt"},"New":{"Path":"./third_party/github.com/boltdb/bolt"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := ModuleChanges(before, after)
	want := []ModuleChange{
		{Path: "example.com/gone", Before: "v1.0.0"},
		{Path: "github.com/boltdb/bolt", Before: "v1.3.1", After: "v1.3.1", Replace: "./third_party/github.com/boltdb/bolt"},
		{Path: "github.com/kr/text", Before: "v0.1.0", After: "v0.2.0", Indirect: true},
		{Path: "github.com/tklauser/numcpus", After: "v0.6.0", Indirect: true},
		{Path: "golang.org/x/sys", Before: "v0.0.0-20180909124046-d0be0721c37e", After: "v0.5.0"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("changes\n%+v\nwant\n%+v", got, want)
	}
}

func TestCompareRuns(t *testing.T) {
	ok := Run{Exit: 0, Output: "bolt roundtrip: 42\n"}
	cases := []struct {
		name          string
		h1, h2, got   Run
		same, determ  bool
		whyContaining string
	}{
		{"same", ok, ok, ok, true, true, "same output"},
		{"stub error", ok, ok, Run{Exit: 1, Output: "sqlite: Binary was compiled with 'CGO_ENABLED=0', go-sqlite3 requires cgo to work. This is a stub"}, false, true, "This is a stub"},
		{"different output", ok, ok, Run{Exit: 0, Output: "bolt roundtrip: \n"}, false, true, `line 1: host "bolt roundtrip: 42", emulated "bolt roundtrip: "`},
		{"varying output", Run{Output: "pid 1"}, Run{Output: "pid 2"}, Run{Output: "pid 3"}, true, false, "not compared"},
		{"both keep running", Run{TimedOut: true, Exit: -1}, Run{TimedOut: true, Exit: -1}, Run{TimedOut: true, Exit: -1, Output: "listening"}, true, false, "still running"},
		{"crashes under emulation", Run{TimedOut: true}, Run{TimedOut: true}, Run{Exit: 2, Output: "panic: boom"}, false, false, "panic: boom"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			same, determ, why := CompareRuns(c.h1, c.h2, c.got)
			if same != c.same || determ != c.determ || !strings.Contains(why, c.whyContaining) {
				t.Errorf("got %v %v %q", same, determ, why)
			}
		})
	}
}

// The advice for a cgo-only module names its package and files and never
// ends in an empty list.
func TestCgoAdviceNamesFilesAndAlternatives(t *testing.T) {
	m := ModuleFailure{Path: "github.com/DataDog/zstd", Packages: []PackageFailure{{Package: "github.com/DataDog/zstd", Causes: []Cause{CauseCgo}, Files: []string{"errors.go", "zstd.go"}}}}
	got := CgoAdvice(m, "loong64")
	for _, want := range []string{"github.com/DataDog/zstd (errors.go, zstd.go)", "github.com/klauspost/compress/zstd"} {
		if !strings.Contains(got, want) {
			t.Errorf("advice lacks %q: %s", want, got)
		}
	}
	m.Path = "github.com/coreos/pkg"
	if got := CgoAdvice(m, "loong64"); strings.HasSuffix(got, ": ") || !strings.Contains(got, "knows no pure-Go alternative") {
		t.Errorf("advice without alternatives: %s", got)
	}
	if s, ok := Successor("github.com/boltdb/bolt"); !ok || s != "go.etcd.io/bbolt" {
		t.Errorf("successor %q %v", s, ok)
	}
}

func TestRewriteImportsMovesToTheSuccessorKeepingTheName(t *testing.T) {
	src := []byte(`package main

import (
	"fmt"

	"github.com/boltdb/bolt"
	bolterr "github.com/boltdb/bolt/errors"
	"github.com/boltdb/boltx"
)

func main() { fmt.Println(bolt.Open, bolterr.X, boltx.Y) }
`)
	out, changed, err := RewriteImports(src, "github.com/boltdb/bolt", "go.etcd.io/bbolt", "bolt")
	if err != nil || !changed {
		t.Fatalf("changed %v err %v", changed, err)
	}
	for _, want := range []string{`bolt "go.etcd.io/bbolt"`, `bolterr "go.etcd.io/bbolt/errors"`, `"github.com/boltdb/boltx"`, "bolt.Open"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rewritten file lacks %s:\n%s", want, out)
		}
	}
	if _, changed, _ := RewriteImports([]byte("package x\n\nimport \"fmt\"\n\nvar _ = fmt.Sprint\n"), "github.com/boltdb/bolt", "go.etcd.io/bbolt", "bolt"); changed {
		t.Error("a file without the import changed")
	}
}
