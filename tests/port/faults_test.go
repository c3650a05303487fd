package port

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/port"
	"github.com/edgedrift/drift/workflows"
)

// Each test here ports a small program built on real, old module versions
// from the Go module proxy, each chosen because it shows one fault of
// issue 18 (the comment on each program says why), and checks the verdict.

// portAndFollow ports in and returns its report: the result, or the one a
// PortFailed error carries (with the error).
func portAndFollow(t *testing.T, c client.Client, in workflows.PortInput, limit time.Duration) (workflows.PortReport, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	wr, err := drift.New(c).StartPort(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	r, err := drift.Follow[workflows.PortReport](ctx, drift.New(c), wr, 0, nil)
	if err != nil {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypePortFailed {
			t.Fatalf("port ended without its report: %v", err)
		}
	}
	return r, err
}

// expectCrossBuildFails checks the program does not build for loong64
// today, with want in the errors.
func expectCrossBuildFails(t *testing.T, dir string, want ...string) {
	t.Helper()
	out, err := runErr(dir, []string{"GOOS=linux", "GOARCH=loong64", "CGO_ENABLED=0"}, "go", "build", "-o", os.DevNull, ".")
	for _, w := range want {
		if err == nil || !strings.Contains(out, w) {
			t.Fatalf("the program should not build for loong64 with %q yet: %v\n%s", w, err, out)
		}
	}
}

// expectSameRun checks every command ran under qemu as on the host.
func expectSameRun(t *testing.T, r workflows.PortReport, output string) {
	t.Helper()
	if len(r.Runs) == 0 {
		t.Fatal("the ported program was never run")
	}
	for _, run := range r.Runs {
		if !run.Same || !run.Deterministic || run.Emulated.Output != run.Host.Output || !strings.Contains(run.Emulated.Output, output) {
			t.Errorf("run %s: %s\nhost: %q\nemulated: %q", run.Binary, run.Verdict, run.Host.Output, run.Emulated.Output)
		}
	}
}

func moduleReport(t *testing.T, r workflows.PortReport, path string) workflows.ModuleReport {
	t.Helper()
	for _, m := range r.Modules {
		if m.Path == path {
			return m
		}
	}
	t.Fatalf("%s not in the report: %+v", path, r.Modules)
	return workflows.ModuleReport{}
}

// kvfacts has no tests. go.etcd.io/bbolt v1.3.6 (2021) has no
// bolt_loong64.go (undefined: maxMapSize); v1.3.7 is the first with one,
// and it requires golang.org/x/sys v0.4.0. x/sys of 2020-09 (what v1.3.6
// requires) has no loong64 tables; the lowest tagged x/sys that builds is
// v0.1.0, so drift chooses v0.1.0 first and minimal version selection
// raises it to v0.4.0 when bbolt moves to v1.3.7.
const kvfactsGoMod = `module example.com/kvfacts

go 1.21

require (
	go.etcd.io/bbolt v1.3.6
	golang.org/x/sys v0.0.0-20200923182605-d9f96fdee20d
)
`

const kvfactsMain = `package main

import (
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

func main() {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		fmt.Println("uname:", err)
		os.Exit(1)
	}
	fmt.Println("kernel:", unix.ByteSliceToString(u.Sysname[:]))
	db, err := bolt.Open(filepath.Join(os.TempDir(), "kv.db"), 0o600, nil)
	if err != nil {
		fmt.Println("bbolt:", err)
		os.Exit(1)
	}
	defer db.Close()
	var got []byte
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("kv"))
		if err != nil {
			return err
		}
		if err := b.Put([]byte("answer"), []byte("42")); err != nil {
			return err
		}
		got = b.Get([]byte("answer"))
		return nil
	})
	fmt.Println("bbolt roundtrip:", string(got), err)
}
`

func TestPortModuleWithoutTestsWhoseUpgradeMVSRaises(t *testing.T) {
	requireTool(t, "qemu-loongarch64-static")
	c, _ := startPorting(t)
	dir := makeModule(t, "kvfacts", map[string]string{"go.mod": kvfactsGoMod, "main.go": kvfactsMain})
	expectCrossBuildFails(t, dir, "undefined: Cmsghdr")

	r, err := portAndFollow(t, c, workflows.PortInput{Repo: dir}, 20*time.Minute)
	if err != nil || r.Status != workflows.PortDone {
		t.Fatalf("port: %v\n%+v", err, r)
	}
	// No tests is said, not a failure; the program itself ran.
	if len(r.Tests) != 0 || !slices.Contains(r.Warnings, "no tests ran for linux/loong64: only the run of the program checks it") {
		t.Errorf("tests %+v warnings %v", r.Tests, r.Warnings)
	}
	expectSameRun(t, r, "kernel: Linux\nbbolt roundtrip: 42 <nil>\n")

	// The report says what ships: x/sys chosen at v0.1.0, ending at v0.4.0.
	xsys := moduleReport(t, r, "golang.org/x/sys")
	if xsys.Fix != workflows.FixUpgrade || xsys.Upgrade.Version != "v0.1.0" || xsys.Final != "v0.4.0" {
		t.Errorf("x/sys chosen %s, final %q", xsys.Upgrade.Version, xsys.Final)
	}
	if m := moduleReport(t, r, "go.etcd.io/bbolt"); m.Fix != workflows.FixUpgrade || m.Upgrade.Version != "v1.3.7" || !slices.Contains(m.Causes, port.CauseArchDecls) {
		t.Errorf("bbolt %+v", m)
	}
	changes := map[string]port.ModuleChange{}
	for _, ch := range r.Change.Modules {
		changes[ch.Path] = ch
	}
	if ch := changes["golang.org/x/sys"]; ch.Before != "v0.0.0-20200923182605-d9f96fdee20d" || ch.After != "v0.4.0" {
		t.Errorf("x/sys change %+v", ch)
	}
	if ch := changes["go.etcd.io/bbolt"]; ch.Before != "v1.3.6" || ch.After != "v1.3.7" {
		t.Errorf("bbolt change %+v", ch)
	}
	// go.mod and go.sum are tidy for every platform.
	if out, err := runErr(r.Source.Dir, nil, "go", "mod", "tidy", "-diff"); err != nil {
		t.Errorf("go.mod/go.sum not tidy:\n%s", out)
	}
	if r.Image == "" {
		t.Error("no image pushed")
	}
}

// endian calls ubinary.NativeEndian of github.com/u-root/uio at its
// 2021-05-28 pseudo-version: ubinary declares it only in little_endian.go
// and big_endian.go, whose +build lists name no loong64, so the error is
// in endian's own main.go. uio has no tagged release at all, and its
// newest pseudo-version deleted ubinary: no release helps; widening the
// constraint of little_endian.go (from the arm64 donor) does.
const endianGoMod = `module example.com/endian

go 1.21

require github.com/u-root/uio v0.0.0-20210528114334-82958018845c
`

const endianMain = `package main

import (
	"fmt"

	"github.com/u-root/uio/ubinary"
)

func order() string { return fmt.Sprint(ubinary.NativeEndian) }

func main() { fmt.Println("native byte order:", order()) }
`

const endianTest = `package main

import "testing"

func TestOrder(t *testing.T) {
	if got := order(); got != "LittleEndian" {
		t.Fatalf("order %q", got)
	}
}
`

func TestPortWidensTheConstraintOfAPackageTheMainModuleCalls(t *testing.T) {
	requireTool(t, "qemu-loongarch64-static")
	c, _ := startPorting(t)
	dir := makeModule(t, "endian", map[string]string{"go.mod": endianGoMod, "main.go": endianMain, "main_test.go": endianTest})
	expectCrossBuildFails(t, dir, "undefined: ubinary.NativeEndian")

	r, err := portAndFollow(t, c, workflows.PortInput{Repo: dir, SkipImage: true}, 15*time.Minute)
	if err != nil || r.Status != workflows.PortDone {
		t.Fatalf("port: %v\n%+v", err, r)
	}
	// Blamed on the module that should define the name, not on endian.
	if len(r.Initial.Modules) != 1 || r.Initial.Modules[0].Path != "github.com/u-root/uio" {
		t.Fatalf("initial diagnosis %+v", r.Initial)
	}
	pf := r.Initial.Modules[0].Packages[0]
	if pf.Package != "github.com/u-root/uio/ubinary" || !slices.Equal(pf.Causes, []port.Cause{port.CauseConstraint}) ||
		!slices.Equal(pf.Importers, []string{"example.com/endian"}) || !slices.Contains(pf.Files, "little_endian.go") {
		t.Fatalf("ubinary %+v", pf)
	}
	m := moduleReport(t, r, "github.com/u-root/uio")
	if m.Fix != workflows.FixPatch || len(m.Patch.Files) != 1 || !m.Patch.Files[0].Edit || !strings.HasSuffix(m.Patch.Files[0].Name, "ubinary/little_endian.go") || m.Patch.Stat == "" {
		t.Fatalf("uio %+v", m)
	}
	if !strings.Contains(m.Upgrade.Reason, "no published version") {
		t.Errorf("upgrade %+v", m.Upgrade)
	}
	expectSameRun(t, r, "native byte order: LittleEndian\n")
	if len(r.Tests) != 1 || r.Tests[0].Status != "passed" || r.Tests[0].Elapsed <= 0 {
		t.Errorf("tests %+v", r.Tests)
	}
}

// notes opens an in-memory database through github.com/mattn/go-sqlite3
// v1.14.0: with CGO_ENABLED=0 it compiles static_mock.go (+build !cgo),
// whose driver only returns "This is a stub". The cross-build passes; only
// running the program shows it (the host build has cgo).
const notesGoMod = `module example.com/notes

go 1.21

require github.com/mattn/go-sqlite3 v1.14.0
`

const notesMain = `package main

import (
	"database/sql"
	"fmt"
	"os"

	_ "github.com/mattn/go-sqlite3"
)

func main() {
	db, err := sql.Open("sqlite3", ":memory:")
	if err == nil {
		_, err = db.Exec("create table notes (body text); insert into notes values ('kept')")
	}
	var body string
	if err == nil {
		err = db.QueryRow("select body from notes").Scan(&body)
	}
	if err != nil {
		fmt.Println("sqlite:", err)
		os.Exit(1)
	}
	fmt.Println("sqlite roundtrip:", body)
}
`

func TestPortFindsACgoStubByRunningTheProgram(t *testing.T) {
	requireTool(t, "qemu-loongarch64-static")
	requireTool(t, "gcc")
	c, _ := startPorting(t)
	dir := makeModule(t, "notes", map[string]string{"go.mod": notesGoMod, "main.go": notesMain})
	if out, err := runErr(dir, []string{"GOOS=linux", "GOARCH=loong64", "CGO_ENABLED=0"}, "go", "build", "-o", os.DevNull, "."); err != nil {
		t.Fatalf("the stub cross-builds: %v\n%s", err, out)
	}

	// --skip-tests skips the tests, not the run that finds the stub.
	r, err := portAndFollow(t, c, workflows.PortInput{Repo: dir, SkipTests: true}, 20*time.Minute)
	if err == nil || r.Status != workflows.PortNeedsHuman {
		t.Fatalf("a stubbed program was ported: %v\n%+v", err, r)
	}
	if len(r.Stubs) != 1 || r.Stubs[0].Package != "github.com/mattn/go-sqlite3" || !slices.Contains(r.Stubs[0].StubFiles, "static_mock.go") {
		t.Fatalf("stubs %+v", r.Stubs)
	}
	m := moduleReport(t, r, "github.com/mattn/go-sqlite3")
	if !slices.Equal(m.Causes, []port.Cause{port.CauseStub}) || m.Fix != workflows.FixHuman || !strings.Contains(m.Advice, "modernc.org/sqlite") {
		t.Errorf("sqlite %+v", m)
	}
	run := r.Runs[0]
	if run.Same || run.Host.Output != "sqlite roundtrip: kept\n" || !strings.Contains(run.Emulated.Output, "This is a stub") || run.Emulated.Exit != 1 {
		t.Errorf("run %+v", run)
	}
	if r.Image != "" || len(r.Tests) != 0 {
		t.Errorf("image %q tests %+v after a failed run", r.Image, r.Tests)
	}
}

// compress uses github.com/DataDog/zstd v1.4.1, every non-test file of
// which imports "C" (and so does every later release up to v1.5.7): with
// CGO_ENABLED=0 nothing of it builds. No patch can replace C; the report
// names the files and a pure-Go alternative.
const compressGoMod = `module example.com/compress

go 1.21

require github.com/DataDog/zstd v1.4.1
`

const compressMain = `package main

import (
	"fmt"

	"github.com/DataDog/zstd"
)

func main() {
	out, err := zstd.Compress(nil, []byte("hello hello hello hello"))
	fmt.Println(len(out) > 0, err)
}
`

func TestPortSaysWhatACgoOnlyDependencyNeeds(t *testing.T) {
	c, _ := startPorting(t)
	dir := makeModule(t, "compress", map[string]string{"go.mod": compressGoMod, "main.go": compressMain})
	expectCrossBuildFails(t, dir, "build constraints exclude all Go files")

	r, err := portAndFollow(t, c, workflows.PortInput{Repo: dir}, 10*time.Minute)
	if err == nil || r.Status != workflows.PortNeedsHuman {
		t.Fatalf("%v\n%+v", err, r)
	}
	m := moduleReport(t, r, "github.com/DataDog/zstd")
	if !slices.Equal(m.Causes, []port.Cause{port.CauseCgo}) || m.Patch != nil || m.Fix != workflows.FixHuman {
		t.Fatalf("zstd %+v", m)
	}
	for _, want := range []string{"github.com/DataDog/zstd (errors.go, zstd.go, zstd_stream.go)", "github.com/klauspost/compress/zstd"} {
		if !strings.Contains(m.Advice, want) {
			t.Errorf("advice lacks %q: %s", want, m.Advice)
		}
	}
	if len(m.Upgrade.Tried) != 1 || m.Upgrade.Tried[0] != "v1.5.7" {
		t.Errorf("a dead module costs one try (the newest): %+v", m.Upgrade)
	}
}
