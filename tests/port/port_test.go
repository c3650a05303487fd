package port

import (
	"archive/tar"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/activities"
	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/port"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// startPorting starts a real Temporal server, a registry and a central
// worker whose port work dirs live in the test's temp dir; it returns a
// client and the server's address.
func startPorting(t *testing.T) (client.Client, string) {
	t.Helper()
	stack, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	ws, err := workerhost.StartWorkers(c, workerhost.WorkerOptions{Central: true, DataDir: t.TempDir(), Registry: reg.Host()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Stop)
	return c, stack.Address()
}

func TestMain(m *testing.M) { harness.Main(m) }

func TestPortBoltAndGopsutilProgramToLoong64(t *testing.T) {
	requireTool(t, "qemu-loongarch64-static")
	c, _ := startPorting(t)
	dir := makeProgram(t)

	// It fails today, as the seed says.
	out, err := runErr(dir, []string{"GOOS=linux", "GOARCH=loong64", "CGO_ENABLED=0"}, "go", "build", "-o", os.DevNull, ".")
	for _, want := range []string{"undefined: maxMapSize", "undefined: _CPU_SETSIZE"} {
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("the program should not build for loong64 with %q yet: %v\n%s", want, err, out)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// bolt's own suite takes over 15 minutes under qemu on this machine: it
	// runs in make bench-port; TestPortBoundsEachEmulatedTestBinary shows
	// its time limit here.
	wr, err := drift.New(c).StartPort(ctx, workflows.PortInput{Repo: dir})
	if err != nil {
		t.Fatal(err)
	}
	if wr.GetID() != "port/sysfacts/loong64" {
		t.Errorf("workflow id %s", wr.GetID())
	}
	var live []workflows.PortReport
	r, err := drift.Follow(ctx, drift.New(c), wr, 500*time.Millisecond, func(r workflows.PortReport) { live = append(live, r) })
	if err != nil {
		t.Fatalf("port failed: %v\nreport: %+v", err, r)
	}
	if len(live) == 0 || live[0].Status != workflows.PortRunning {
		t.Errorf("the Report query answered nothing while the port ran: %+v", live)
	}

	// Every failing module was attributed, fixed and verified.
	initial := map[string][]port.Cause{}
	for _, m := range r.Initial.Modules {
		initial[m.Path] = m.Causes
	}
	if !slices.Contains(initial["github.com/boltdb/bolt"], port.CauseArchDecls) || !slices.Contains(initial["golang.org/x/sys"], port.CauseGeneratedFiles) {
		t.Errorf("initial diagnosis %v", initial)
	}
	fixes := map[string]workflows.ModuleReport{}
	for _, m := range r.Modules {
		fixes[m.Path] = m
	}
	if m := fixes["golang.org/x/sys"]; m.Fix != workflows.FixUpgrade || m.Upgrade.Version == "" {
		t.Errorf("x/sys: %+v", m)
	}
	bolt := fixes["github.com/boltdb/bolt"]
	if bolt.Fix != workflows.FixPatch || len(bolt.Patch.Files) != 1 || !slices.Contains(bolt.Errors, bolt.Errors[0]) {
		t.Fatalf("bolt: %+v", bolt)
	}
	// bolt is archived: the move to go.etcd.io/bbolt is verified and offered.
	if s := bolt.Successor; s == nil || s.Successor != "go.etcd.io/bbolt" || s.Version == "" || s.Applied || !strings.Contains(bolt.Advice, "go.etcd.io/bbolt@"+s.Version+" continues it") {
		t.Errorf("bolt's successor %+v: %s", bolt.Successor, bolt.Advice)
	}
	if fixes["github.com/shirou/gopsutil"].Fix != workflows.FixPatch {
		t.Errorf("gopsutil: %+v", fixes["github.com/shirou/gopsutil"])
	}

	// The patched bolt carries the seed's values, derived from a donor arch.
	work := filepath.Dir(r.Source.Dir)
	gen, err := os.ReadFile(filepath.Join(r.Source.Dir, bolt.Patch.Files[0].Name))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"//go:build loong64", "maxMapSize = 0xFFFFFFFFFFFF", "maxAllocSize = 0x7FFFFFFF", "brokenUnaligned = false"} {
		if !strings.Contains(string(gen), want) {
			t.Errorf("%s lacks %q:\n%s", bolt.Patch.Files[0].Name, want, gen)
		}
	}

	// The change set is a git branch and a patch: go.mod's replaces and the
	// patched copies.
	branch := run(t, r.Source.Dir, nil, "git", "rev-parse", "--abbrev-ref", "HEAD")
	if strings.TrimSpace(branch) != "drift/port-loong64" || r.Change.Commit == "" {
		t.Errorf("branch %q change %+v", branch, r.Change)
	}
	patch, err := os.ReadFile(r.Change.Patch)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+replace github.com/boltdb/bolt => ./third_party/github.com/boltdb/bolt", "bolt_loong64.go", "host_linux_loong64.go", "golang.org/x/sys " + fixes["golang.org/x/sys"].Upgrade.Version} {
		if !strings.Contains(string(patch), want) {
			t.Errorf("patch lacks %q", want)
		}
	}
	if clean := run(t, dir, nil, "git", "status", "--porcelain"); clean != "" {
		t.Errorf("the source repository was modified:\n%s", clean)
	}

	// The program ran under qemu as on the host, its tests passed under
	// qemu; the binary went into the image.
	expectSameRun(t, r, "bolt roundtrip: 42")
	if len(r.Tests) == 0 || !r.Tests[0].Passed || r.Tests[0].Package != "example.com/sysfacts" {
		t.Errorf("tests %+v", r.Tests)
	}
	if r.Image == "" || len(r.Binaries) != 1 {
		t.Fatalf("image %q binaries %+v", r.Image, r.Binaries)
	}

	// The image's binary, run under qemu, prints what the program prints on amd64.
	bin := extractFromImage(t, r.Image, "app/sysfacts", filepath.Join(work, "from-image"))
	onLoong64 := run(t, "", nil, "qemu-loongarch64-static", bin)
	amd64Bin := filepath.Join(work, "sysfacts-amd64")
	run(t, r.Source.Dir, []string{"GOARCH=amd64", "CGO_ENABLED=0"}, "go", "build", "-o", amd64Bin, ".")
	onAmd64 := run(t, "", nil, amd64Bin)
	if onLoong64 != onAmd64 || !strings.Contains(onAmd64, "bolt roundtrip: 42") {
		t.Errorf("loong64 under qemu printed\n%s\namd64 printed\n%s", onLoong64, onAmd64)
	}
	if f, err := elf.Open(bin); err != nil || f.Machine != elf.EM_LOONGARCH {
		t.Errorf("the image's binary is not for LoongArch: %v", err)
	} else {
		f.Close()
	}

	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, wr.GetID(), path)
	}
}

// The same mechanism works for other arches: for riscv64 it generates
// bolt_riscv64.go from a donor, and the program's own tests (a bolt round
// trip among them) pass under qemu-riscv64. Bolt's whole suite runs only in
// the loong64 test above: under emulation it takes minutes per arch.
func TestPortToRiscv64RunsItsTestsUnderQemu(t *testing.T) {
	requireTool(t, "qemu-riscv64-static")
	c, _ := startPorting(t)
	dir := makeProgram(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	wr, err := drift.New(c).StartPort(ctx, workflows.PortInput{Repo: dir, Arch: "riscv64", SkipImage: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := drift.Follow[workflows.PortReport](ctx, drift.New(c), wr, 0, nil)
	if err != nil {
		t.Fatalf("port failed: %v\nreport: %+v", err, r.Tests)
	}
	var boltPatch []string
	for _, m := range r.Modules {
		if m.Path == "github.com/boltdb/bolt" && m.Fix == workflows.FixPatch {
			for _, f := range m.Patch.Files {
				boltPatch = append(boltPatch, f.Name)
			}
		}
	}
	if !slices.ContainsFunc(boltPatch, func(name string) bool { return strings.HasSuffix(name, "bolt_riscv64.go") }) {
		t.Errorf("bolt patch files %v, want bolt_riscv64.go", boltPatch)
	}
	if len(r.Tests) == 0 || !r.Tests[0].Passed || r.Tests[0].Package != "example.com/sysfacts" {
		t.Errorf("tests %+v", r.Tests)
	}
}

// expectBoltTestsPassed checks that bolt's own test suite ran under qemu
// and passed.
func expectBoltTestsPassed(t *testing.T, runs []activities.PortTestRun) {
	t.Helper()
	var boltRuns []activities.PortTestRun
	for _, tr := range runs {
		if tr.Module == "github.com/boltdb/bolt" {
			boltRuns = append(boltRuns, tr)
		}
	}
	if len(boltRuns) == 0 || !slices.ContainsFunc(boltRuns, func(tr activities.PortTestRun) bool { return tr.Package == "github.com/boltdb/bolt" && tr.Passed }) {
		t.Fatalf("bolt's tests: %+v", boltRuns)
	}
}

// Every emulated test binary has a time limit: bolt's suite, far longer
// than 20 s under qemu, is killed at it, and the verdict names the
// package; the program's own tests pass, each with its duration, and the
// report is kept.
func TestPortBoundsEachEmulatedTestBinary(t *testing.T) {
	requireTool(t, "qemu-loongarch64-static")
	c, _ := startPorting(t)
	dir := makeProgram(t)
	r, err := portAndFollow(t, c, workflows.PortInput{Repo: dir, TestModules: []string{"github.com/boltdb/bolt"}, TestTimeout: 20 * time.Second, SkipImage: true}, 20*time.Minute)
	if err == nil || r.Status != workflows.PortTestsFailed || !strings.Contains(r.Step, "github.com/boltdb/bolt (timed out after 20s)") {
		t.Fatalf("%v\n%s: %s", err, r.Status, r.Step)
	}
	status := map[string]activities.PortTestRun{}
	for _, tr := range r.Tests {
		status[tr.Package] = tr
	}
	if tr := status["example.com/sysfacts"]; tr.Status != activities.TestPassed || tr.Elapsed <= 0 {
		t.Errorf("sysfacts tests %+v", tr)
	}
	if tr := status["github.com/boltdb/bolt"]; tr.Status != activities.TestTimedOut || tr.Elapsed < 20*time.Second || tr.Elapsed > time.Minute || !strings.Contains(tr.Output, "killed") {
		t.Errorf("bolt tests %+v", tr)
	}
	if len(r.Modules) != 3 || len(r.Runs) != 1 {
		t.Errorf("the report lost what came before the tests: %+v", r)
	}
}

func TestPortRejectsBadInput(t *testing.T) {
	c, _ := startPorting(t)
	notGo := t.TempDir()
	if err := os.WriteFile(filepath.Join(notGo, "README"), []byte("no go here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   workflows.PortInput
		typ  string
	}{
		{"not a Go module", workflows.PortInput{Repo: notGo}, activities.ErrTypeNotGoModule},
		{"unknown arch", workflows.PortInput{Repo: notGo, Arch: "z80"}, activities.ErrTypeUnknownArch},
		{"arch without a linux port", workflows.PortInput{Repo: notGo, Arch: "sparc64"}, activities.ErrTypeUnknownArch},
		{"unreachable repo", workflows.PortInput{Repo: "http://127.0.0.1:1/nothing.git"}, activities.ErrTypeUnreachableRepo},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			wr, err := drift.New(c).StartPort(ctx, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = drift.Follow[workflows.PortReport](ctx, drift.New(c), wr, 0, nil)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != tc.typ {
				t.Fatalf("want %s, got %v", tc.typ, err)
			}
			if time.Since(start) > 20*time.Second {
				t.Errorf("took %s: bad input must not be retried", time.Since(start))
			}
		})
	}
}

// A dependency no upgrade or donor can fix ends in a report naming it with
// the compiler's errors, never in a pass.
func TestPortEndsInAReportWhenItCannotFix(t *testing.T) {
	c, _ := startPorting(t)
	dir := makeAsmOnly(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	wr, err := drift.New(c).StartPort(ctx, workflows.PortInput{Repo: dir})
	if err != nil {
		t.Fatal(err)
	}
	r, err := drift.Follow[workflows.PortReport](ctx, drift.New(c), wr, 0, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypePortFailed {
		t.Fatalf("want %s, got %v", workflows.ErrTypePortFailed, err)
	}
	if r.Status != workflows.PortNeedsHuman || len(r.Modules) != 1 || r.Modules[0].Fix != workflows.FixHuman ||
		!slices.Contains(r.Modules[0].Causes, port.CauseAssembly) || !strings.Contains(strings.Join(r.Modules[0].Errors, "\n"), "missing function body") {
		t.Fatalf("report %+v", r)
	}
	if again, err := drift.New(c).PortReport(ctx, wr.GetID()); err == nil || again.Status != workflows.PortNeedsHuman {
		t.Errorf("drift port report after the end: %+v (%v)", again.Status, err)
	}
}

// The CLI follows a port, prints its report and fails with it; the report
// stays readable after the port ended.
func TestPortCLI(t *testing.T) {
	_, address := startPorting(t)
	drift, _ := harness.Binaries(t)
	dir := makeAsmOnly(t)
	out, err := runErr("", nil, drift, "port", "run", dir, "--address", address)
	if err == nil || !strings.Contains(out, "needs a human") || !strings.Contains(out, "missing function body") || !strings.Contains(out, "its own code needs changing") {
		t.Fatalf("drift port run: %v\n%s", err, out)
	}
	out = run(t, "", nil, drift, "port", "report", dir, "--address", address, "--json")
	var r workflows.PortReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.ID != "port/asmonly/loong64" || r.Status != workflows.PortNeedsHuman {
		t.Fatalf("drift port report --json: %v\n%s", err, out)
	}
}

// makeAsmOnly writes a module whose only function is in amd64 assembly:
// nothing can port it.
func makeAsmOnly(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "asmonly")
	files := map[string]string{
		"go.mod":      "module example.com/asmonly\n\ngo 1.21\n",
		"main.go":     "package main\n\nimport \"fmt\"\n\nfunc add(a, b int) int\n\nfunc main() { fmt.Println(add(1, 2)) }\n",
		"add_amd64.s": "#include \"textflag.h\"\n\nTEXT ·add(SB),NOSPLIT,$0-24\n\tMOVQ a+0(FP), AX\n\tADDQ b+8(FP), AX\n\tMOVQ AX, ret+16(FP)\n\tRET\n",
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		harness.RequireHeavy(t, name+" is not installed (apt-get install qemu-user-static)")
	}
}

// extractFromImage pulls ref and writes the file at path inside it to dst.
func extractFromImage(t *testing.T, ref, path, dst string) string {
	t.Helper()
	r, err := image.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil || cf.Architecture != "loong64" || cf.OS != "linux" {
		t.Fatalf("image platform %s/%s (%v)", cf.OS, cf.Architecture, err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	return extractFile(t, rc, path, dst)
}

// extractFile writes the file named path in the tar stream r to dst
// (executable) and returns dst.
func extractFile(t *testing.T, r io.Reader, path, dst string) string {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the archive: %v", path, err)
		}
		if hdr.Name != path {
			continue
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		return dst
	}
}

// `drift demo port` against a running stack ports the example module
// shipped in deploy/examples/port, runs it under qemu and prints the
// report.
func TestPortDemo(t *testing.T) {
	requireTool(t, "qemu-loongarch64-static")
	_, address := startPorting(t)
	drift, _ := harness.Binaries(t)
	dataDir := t.TempDir()
	out := run(t, "", nil, drift, "demo", "port", "--address", address, "--data-dir", dataDir)
	t.Log(out)
	for _, want := range []string{
		"port/sysinfo/loong64: example.com/sysinfo",
		"for linux/loong64: ported",
		"github.com/boltdb/bolt", "patch: bolt_loong64.go from bolt_arm64.go",
		"golang.org/x/sys", "upgrade → v0.1.0",
		"ok   run sysinfo under qemu-loongarch64-static vs the host: exit 0 and the same output as the host",
		"ok   tests under qemu-loongarch64-static: 1 of 1 packages passed",
		"image 127.0.0.1:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
