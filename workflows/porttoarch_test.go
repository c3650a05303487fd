package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/port"
	"github.com/edgedrift/drift/internal/runtime"
)

// fakeBuild stands in for the go command: modules fail until an upgrade
// or a patch fixes them, as configured.
type fakeBuild struct {
	mu         sync.Mutex
	failing    []string        // module paths, dependencies first
	upgradable map[string]bool // a newer version builds
	patchable  map[string]bool // a donor arch has the missing files
	testsFail  bool
	buildTime  time.Duration   // how long the cross-build takes
	calls      []string        // "activity module" in order
	cgoOnly    map[string]bool // modules failing for cgo alone
	noTests    bool            // the module has no test packages
	testPkgs   []string        // test packages of the port's module (default: the module itself)
	testTime   time.Duration   // how long each package's tests take
	timesOut   map[string]bool // packages whose tests hit the time limit
	runDiffers bool            // the program runs differently under emulation
	stubs      []port.Stub
	noBinaries bool
	sumRaised  string          // go.mod ends with the first module at this version
	deployErr  error           // the cloud's deploy fails so
	listErr    error           // listing tests fails so
	successor  map[string]bool // moving the module to its successor works
	running    int             // test packages running now
	maxRunning int
	tested     []activities.PortTestPackageInput
}

func (f *fakeBuild) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeBuild) fixed(mod string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = slices.DeleteFunc(f.failing, func(m string) bool { return m == mod })
}

func (f *fakeBuild) install(env *testsuite.TestWorkflowEnvironment) {
	env.RegisterActivity(&activities.Port{})
	env.RegisterActivity(&activities.Cloud{})
	env.OnActivity(portActs.PortFetch, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PortFetchInput) (activities.PortSource, error) {
			f.record("fetch")
			return activities.PortSource{Dir: "/work/src", Module: "example.com/app", Base: "abc", Arch: in.Arch}, nil
		})
	env.OnActivity(portActs.PortDiagnose, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PortDiagnoseInput) (port.Diagnosis, error) {
			f.record("diagnose")
			f.mu.Lock()
			defer f.mu.Unlock()
			d := port.Diagnosis{GOOS: "linux", GOARCH: in.Source.Arch}
			for _, m := range f.failing {
				cause := port.CauseArchDecls
				if f.cgoOnly[m] {
					cause = port.CauseCgo
				}
				d.Modules = append(d.Modules, port.ModuleFailure{Path: m, Version: "v1.0.0", Causes: []port.Cause{cause},
					Packages: []port.PackageFailure{{Package: m, Causes: []port.Cause{cause}, Files: []string{"x.go"}, Errors: []string{m + "/x.go:1:1: undefined: maxMapSize"}}}})
			}
			return d, nil
		})
	env.OnActivity(portActs.PortUpgrade, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PortFixInput) (activities.PortUpgrade, error) {
			f.record("upgrade " + in.Module.Path)
			if f.upgradable[in.Module.Path] {
				f.fixed(in.Module.Path)
				return activities.PortUpgrade{From: "v1.0.0", Version: "v1.2.0", Tried: []string{"v1.9.0", "v1.2.0"}}, nil
			}
			return activities.PortUpgrade{From: "v1.0.0", Reason: "no version up to v1.9.0 builds"}, nil
		})
	env.OnActivity(portActs.PortPatch, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PortFixInput) (activities.PortPatch, error) {
			f.record("patch " + in.Module.Path)
			if f.patchable[in.Module.Path] {
				f.fixed(in.Module.Path)
				return activities.PortPatch{Dir: "third_party/" + in.Module.Path, Donors: []string{"arm64"},
					Files: []port.ArchFile{{Name: "x_loong64.go", From: "x_arm64.go", Donor: "arm64"}}}, nil
			}
			return activities.PortPatch{Donors: []string{"arm64"}, Errors: in.Module.Packages[0].Errors, Reason: "no donor arch (arm64) declares what is missing: maxMapSize"}, nil
		})
	env.OnActivity(portActs.PortSuccessor, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PortSuccessorInput) (activities.PortSuccessor, error) {
			f.record(fmt.Sprintf("successor %s apply=%v", in.Module, in.Apply))
			res := activities.PortSuccessor{Successor: "go.etcd.io/bbolt", Files: []string{"main.go"}}
			if !f.successor[in.Module] {
				res.Reason = "no version of go.etcd.io/bbolt up to v1.4.3 builds for loong64"
				return res, nil
			}
			res.Version, res.Applied = "v1.3.7", in.Apply
			if in.Apply {
				f.fixed(in.Module)
			}
			return res, nil
		})
	env.OnActivity(portActs.PortCommit, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PortCommitInput) (activities.PortCommit, error) {
			f.record("commit")
			c := activities.PortCommit{Branch: activities.PortBranch(in.Source.Arch), Commit: "def", Patch: "/work/port.patch"}
			if in.Tidy {
				c.Tidy = "go.mod and go.sum tidy"
			}
			if f.sumRaised != "" {
				c.Modules = []port.ModuleChange{{Path: "golang.org/x/sys", Before: "v1.0.0", After: f.sumRaised}, {Path: "github.com/kr/text", Before: "v0.1.0", After: "v0.2.0", Indirect: true}}
			}
			return c, nil
		})
	env.OnActivity(portActs.PortBuild, mock.Anything, mock.Anything).After(f.buildTime).Return(
		func(context.Context, activities.PortDiagnoseInput) ([]activities.PortBinary, error) {
			f.record("build")
			if f.noBinaries {
				return nil, nil
			}
			return []activities.PortBinary{{Name: "app", Path: "/work/bin/app", Size: 1}}, nil
		})
	env.OnActivity(portActs.PortVerify, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PortVerifyInput) (activities.PortVerification, error) {
			f.record("verify")
			v := activities.PortVerification{Stubs: f.stubs}
			for _, b := range in.Binaries {
				r := activities.PortRunCheck{Binary: b.Name, Host: port.Run{Output: "42\n"}, Emulated: port.Run{Output: "42\n"}, Deterministic: true, Same: true, Verdict: "exit 0 and the same output as the host"}
				if f.runDiffers {
					r.Emulated, r.Same, r.Verdict = port.Run{Exit: 1, Output: "stub"}, false, "host: exit 0; emulated: exit 1: stub"
				}
				v.Runs = append(v.Runs, r)
			}
			return v, nil
		})
	env.OnActivity(portActs.PortTestList, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PortTestInput) (activities.PortTestPlan, error) {
			f.record("test-list")
			if f.listErr != nil {
				return activities.PortTestPlan{}, f.listErr
			}
			plan := activities.PortTestPlan{Cores: 2, ModFile: "/work/test/go.mod"}
			if f.noTests {
				return plan, nil
			}
			for _, m := range in.Modules {
				pkgs := []string{m}
				if m == in.Source.Module && f.testPkgs != nil {
					pkgs = f.testPkgs
				}
				for _, p := range pkgs {
					plan.Runs = append(plan.Runs, activities.PortTestRun{Module: m, Package: p, Status: activities.TestQueued})
				}
			}
			plan.Runs = append(plan.Runs, activities.PortTestRun{Module: in.Source.Module, Package: "example.com/app/sqlite", Status: activities.TestSkipped, Note: "tests need cgo (s.go): not run with CGO_ENABLED=0"})
			return plan, nil
		})
	env.OnActivity(portActs.PortTestPackage, mock.Anything, mock.Anything).After(f.testTime).Return(
		func(_ context.Context, in activities.PortTestPackageInput) (activities.PortTestRun, error) {
			f.record("test " + in.Run.Package)
			f.mu.Lock()
			f.tested = append(f.tested, in)
			f.mu.Unlock()
			r := in.Run
			r.Elapsed = f.testTime
			switch {
			case f.timesOut[r.Package]:
				r.Status, r.Output = activities.TestTimedOut, r.Package+": tests still running after "+in.Timeout.String()
			case f.testsFail:
				r.Status = activities.TestFailed
			default:
				r.Status, r.Passed = activities.TestPassed, true
			}
			return r, nil
		})
	env.OnActivity(cloudActs.DeployInstance, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.DeployRequest) (runtime.Endpoint, error) {
			f.record("deploy " + req.Name + " " + req.Spec.Labels[runtime.LabelCloud])
			if f.deployErr != nil {
				return runtime.Endpoint{}, f.deployErr
			}
			return runtime.Endpoint{URL: "http://127.0.0.1:4000", Host: "127.0.0.1", Port: 4000}, nil
		})
	env.OnActivity(cloudActs.Verify, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.VerifyRequest) (string, error) {
			f.record("verify-service " + req.URL + req.Health)
			return req.URL + req.Health + " answered 200", nil
		})
	env.OnActivity(portActs.PortTest, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PortTestInput) ([]activities.PortTestRun, error) {
			f.record("test")
			var runs []activities.PortTestRun
			for _, m := range in.Modules {
				runs = append(runs, activities.PortTestRun{Module: m, Package: m, Passed: !f.testsFail})
			}
			return runs, nil
		})
	env.OnActivity(portActs.PortImage, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PortImageInput) (string, error) {
			f.record("image " + in.Name + ":" + in.Arch)
			return "127.0.0.1:5000/" + in.Name + "@sha256:0", nil
		})
}

func runPort(t *testing.T, f *fakeBuild, in PortInput) (*testsuite.TestWorkflowEnvironment, PortReport, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	f.install(env)
	env.ExecuteWorkflow(PortToArch, in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	var r PortReport
	err := env.GetWorkflowError()
	if err == nil {
		if err := env.GetWorkflowResult(&r); err != nil {
			t.Fatal(err)
		}
	}
	return env, r, err
}

func TestPortUpgradesWhatCanBeUpgradedAndPatchesTheRest(t *testing.T) {
	f := &fakeBuild{
		failing:    []string{"golang.org/x/sys", "github.com/boltdb/bolt"},
		upgradable: map[string]bool{"golang.org/x/sys": true},
		patchable:  map[string]bool{"github.com/boltdb/bolt": true},
	}
	_, r, err := runPort(t, f, PortInput{Repo: "/src/sysfacts", TestModules: []string{"github.com/boltdb/bolt"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"fetch", "diagnose", "upgrade golang.org/x/sys", "diagnose", "upgrade github.com/boltdb/bolt", "patch github.com/boltdb/bolt",
		"diagnose", "successor github.com/boltdb/bolt apply=false", "commit", "build", "verify", "test-list", "test example.com/app", "test github.com/boltdb/bolt", "image port/sysfacts:loong64"}
	slices.Sort(f.calls[12:14]) // the two test packages run at once
	if !slices.Equal(f.calls, want) {
		t.Fatalf("calls\n%v\nwant\n%v", f.calls, want)
	}
	if r.Status != PortDone || r.Arch != "loong64" || r.Image == "" || r.Change == nil || len(r.Tests) != 3 || len(r.Runs) != 1 || !r.Runs[0].Same {
		t.Fatalf("report %+v", r)
	}
	if r.ID != "default-test-workflow-id" || r.Initial == nil || len(r.Initial.Modules) != 2 {
		t.Errorf("report id %q initial %+v", r.ID, r.Initial)
	}
	if len(r.Modules) != 2 || r.Modules[0].Fix != FixUpgrade || r.Modules[0].Upgrade.Version != "v1.2.0" ||
		r.Modules[1].Fix != FixPatch || r.Modules[1].Patch.Files[0].Donor != "arm64" || r.Modules[1].Errors[0] == "" {
		t.Fatalf("modules %+v", r.Modules)
	}
	var steps []string
	for _, s := range r.Steps {
		steps = append(steps, s.Step)
	}
	if !slices.Equal(steps, []string{"fetch", "diagnose", "upgrade", "patch", "successor", "commit", "build", "verify", "test", "image"}) {
		t.Errorf("steps %v", steps)
	}
}

func TestPortEndsNeedingAHumanWithTheExactErrors(t *testing.T) {
	f := &fakeBuild{failing: []string{"github.com/needs/cgo"}}
	_, _, err := runPort(t, f, PortInput{Repo: "https://git.example/app.git", Arch: "riscv64"})
	r := portFailure(t, err)
	if r.Status != PortNeedsHuman || len(r.Modules) != 1 || r.Modules[0].Fix != FixHuman ||
		r.Modules[0].Errors[0] != "github.com/needs/cgo/x.go:1:1: undefined: maxMapSize" ||
		r.Modules[0].Verification != "upgrade: no version up to v1.9.0 builds; patch: no donor arch (arm64) declares what is missing: maxMapSize" {
		t.Fatalf("report %+v", r)
	}
	// What was done is still committed for the human; nothing is built.
	if !slices.Contains(f.calls, "commit") || slices.Contains(f.calls, "build") {
		t.Errorf("calls %v", f.calls)
	}
	if r.Change == nil || r.Change.Branch != "drift/port-riscv64" {
		t.Errorf("change %+v", r.Change)
	}
}

func TestPortFailsWhenTestsFailUnderEmulation(t *testing.T) {
	f := &fakeBuild{testsFail: true}
	_, _, err := runPort(t, f, PortInput{Repo: "/src/app"})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypePortFailed {
		t.Fatalf("want %s, got %v", ErrTypePortFailed, err)
	}
	var r PortReport
	if err := appErr.Details(&r); err != nil || r.Status != PortTestsFailed {
		t.Fatalf("report %+v (%v)", r, err)
	}
	if slices.ContainsFunc(f.calls, func(c string) bool { return len(c) > 5 && c[:5] == "image" }) {
		t.Errorf("an image was pushed after failing tests: %v", f.calls)
	}
}

func TestPortOfACleanModuleSkipsWhatItIsToldTo(t *testing.T) {
	f := &fakeBuild{}
	_, r, err := runPort(t, f, PortInput{Repo: "/src/app", Arch: "arm64", SkipTests: true, SkipImage: true, Packages: []string{"./cmd/app"}})
	if err != nil {
		t.Fatal(err)
	}
	// --skip-tests skips the tests, never the run of the program.
	if !slices.Equal(f.calls, []string{"fetch", "diagnose", "commit", "build", "verify"}) || r.Status != PortDone || len(r.Modules) != 0 {
		t.Fatalf("calls %v report %+v", f.calls, r)
	}
}

func TestPortRejectsBadInputBeforeAnySideEffect(t *testing.T) {
	cases := []struct {
		name string
		in   PortInput
		typ  string
	}{
		{"no repo", PortInput{Arch: "loong64"}, ErrTypeInvalidPort},
		{"unknown arch", PortInput{Repo: "/src/app", Arch: "z80"}, activities.ErrTypeUnknownArch},
		{"empty package", PortInput{Repo: "/src/app", Packages: []string{""}}, ErrTypeInvalidPort},
		{"empty test module", PortInput{Repo: "/src/app", TestModules: []string{""}}, ErrTypeInvalidPort},
		{"negative test timeout", PortInput{Repo: "/src/app", TestTimeout: -time.Second}, ErrTypeInvalidPort},
		{"service port", PortInput{Repo: "/src/app", Service: &PortService{Port: 70000}}, ErrTypeInvalidPort},
		{"service cloud", PortInput{Repo: "/src/app", Service: &PortService{Cloud: "Fog_1", Port: 80}}, ErrTypeInvalidPort},
		{"service health", PortInput{Repo: "/src/app", Service: &PortService{Port: 80, Health: "healthz"}}, ErrTypeInvalidPort},
		{"service without image", PortInput{Repo: "/src/app", SkipImage: true, Service: &PortService{Port: 80}}, ErrTypeInvalidPort},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeBuild{}
			_, _, err := runPort(t, f, c.in)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != c.typ || !appErr.NonRetryable() {
				t.Fatalf("want non-retryable %s, got %v", c.typ, err)
			}
			if len(f.calls) != 0 {
				t.Errorf("activities ran: %v", f.calls)
			}
		})
	}
}

func TestPortStopsOnANonRetryableFetchError(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Port{})
	attempts := 0
	env.OnActivity(portActs.PortFetch, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.PortFetchInput) (activities.PortSource, error) {
			attempts++
			return activities.PortSource{}, temporal.NewNonRetryableApplicationError("no go.mod", activities.ErrTypeNotGoModule, nil)
		})
	env.ExecuteWorkflow(PortToArch, PortInput{Repo: "/src/notgo"})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != activities.ErrTypeNotGoModule || attempts != 1 {
		t.Fatalf("err %v after %d attempts", err, attempts)
	}
}

func TestPortReportIsQueryableWhileRunning(t *testing.T) {
	// The build takes a minute of workflow time; ask for the report meanwhile.
	f := &fakeBuild{failing: []string{"github.com/boltdb/bolt"}, patchable: map[string]bool{"github.com/boltdb/bolt": true}, buildTime: time.Minute}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	f.install(env)
	during := reportAt(t, env, 30*time.Second)
	env.ExecuteWorkflow(PortToArch, PortInput{Repo: "/src/app", SkipTests: true})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if during.Status != PortRunning || during.Step != "cross-build for linux/loong64" || len(during.Modules) != 1 || during.Modules[0].Fix != FixPatch {
		t.Fatalf("report while building %+v", during)
	}
}

func TestPortID(t *testing.T) {
	for repo, want := range map[string]string{
		"https://github.com/acme/sysfacts.git": "port/sysfacts/loong64",
		"/tmp/x/sysfacts/":                     "port/sysfacts/loong64",
		"":                                     "port/module/loong64",
	} {
		if got := names.PortID(repo, ""); got != want {
			t.Errorf("names.PortID(%q) = %q, want %q", repo, got, want)
		}
	}
}

// portFailure is the report a PortFailed error carries.
func portFailure(t *testing.T, err error) PortReport {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypePortFailed {
		t.Fatalf("want %s, got %v", ErrTypePortFailed, err)
	}
	var r PortReport
	if err := appErr.Details(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPortOfAModuleWithoutTestsWarnsAndRunsTheProgram(t *testing.T) {
	f := &fakeBuild{noTests: true}
	_, r, err := runPort(t, f, PortInput{Repo: "/src/app"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != PortDone || !slices.Contains(r.Warnings, "no tests ran for linux/loong64: only the run of the program checks it") || len(r.Runs) != 1 {
		t.Fatalf("report %+v", r)
	}
	if !slices.ContainsFunc(r.Checks, func(c PortCheck) bool { return c.OK && c.Check == "run app under qemu-loongarch64-static vs the host" }) {
		t.Errorf("checks %+v", r.Checks)
	}
}

func TestPortThatRunsDifferentlyFailsAndPushesNothing(t *testing.T) {
	f := &fakeBuild{runDiffers: true}
	_, _, err := runPort(t, f, PortInput{Repo: "/src/app", SkipTests: true})
	r := portFailure(t, err)
	if r.Status != PortRunFailed || !strings.Contains(r.Step, "emulated: exit 1: stub") {
		t.Fatalf("report %s: %s", r.Status, r.Step)
	}
	if slices.ContainsFunc(f.calls, func(c string) bool { return strings.HasPrefix(c, "image") || strings.HasPrefix(c, "test") }) {
		t.Errorf("calls %v", f.calls)
	}
}

// A dependency that compiles a stub without cgo is what the run blames:
// the module is reported with the stub files, the cgo files and a pure-Go
// alternative; when the runs agree it is only a warning.
func TestPortBlamesAStubWhenTheRunDiffers(t *testing.T) {
	stub := port.Stub{Package: "github.com/mattn/go-sqlite3", Module: "github.com/mattn/go-sqlite3", Version: "v1.14.0", StubFiles: []string{"static_mock.go"}, CgoFiles: []string{"sqlite3.go"}}
	f := &fakeBuild{runDiffers: true, stubs: []port.Stub{stub}}
	_, _, err := runPort(t, f, PortInput{Repo: "/src/app"})
	r := portFailure(t, err)
	if r.Status != PortNeedsHuman || len(r.Modules) != 1 {
		t.Fatalf("report %+v", r)
	}
	m := r.Modules[0]
	if m.Path != stub.Module || !slices.Equal(m.Causes, []port.Cause{port.CauseStub}) || m.Fix != FixHuman ||
		!strings.Contains(m.Verification, "static_mock.go") || !strings.Contains(m.Advice, "modernc.org/sqlite") || !strings.Contains(m.Advice, "sqlite3.go") {
		t.Fatalf("stub module %+v", m)
	}

	f = &fakeBuild{stubs: []port.Stub{stub}}
	_, ok, err := runPort(t, f, PortInput{Repo: "/src/app"})
	if err != nil || ok.Status != PortDone || !slices.ContainsFunc(ok.Warnings, func(w string) bool {
		return strings.Contains(w, "static_mock.go without cgo instead of sqlite3.go; the runs show no difference")
	}) {
		t.Fatalf("harmless stub: %v %+v", err, ok.Warnings)
	}
}

// A cgo-only module is never patched: no file of another arch replaces C.
func TestPortNeverPatchesACgoOnlyModule(t *testing.T) {
	f := &fakeBuild{failing: []string{"github.com/DataDog/zstd"}, cgoOnly: map[string]bool{"github.com/DataDog/zstd": true}}
	_, _, err := runPort(t, f, PortInput{Repo: "/src/app"})
	r := portFailure(t, err)
	if slices.Contains(f.calls, "patch github.com/DataDog/zstd") {
		t.Errorf("a cgo-only module was patched: %v", f.calls)
	}
	m := r.Modules[0]
	if r.Status != PortNeedsHuman || m.Fix != FixHuman || !strings.Contains(m.Advice, "github.com/DataDog/zstd (x.go)") ||
		!strings.Contains(m.Advice, "github.com/klauspost/compress/zstd") || strings.HasSuffix(m.Verification, ": ") {
		t.Fatalf("report %+v", m)
	}
}

func TestPortReportsVersionsAsGoModEnds(t *testing.T) {
	f := &fakeBuild{failing: []string{"golang.org/x/sys"}, upgradable: map[string]bool{"golang.org/x/sys": true}, sumRaised: "v1.5.0"}
	_, r, err := runPort(t, f, PortInput{Repo: "/src/app"})
	if err != nil {
		t.Fatal(err)
	}
	if m := r.Modules[0]; m.Upgrade.Version != "v1.2.0" || m.Final != "v1.5.0" {
		t.Errorf("chosen %s, final %s", m.Upgrade.Version, m.Final)
	}
	if len(r.Change.Modules) != 2 || !r.Change.Modules[1].Indirect {
		t.Errorf("changes %+v", r.Change.Modules)
	}
	if !slices.ContainsFunc(r.Checks, func(c PortCheck) bool { return c.Check == "go mod tidy" && c.OK }) {
		t.Errorf("checks %+v", r.Checks)
	}
}

// Tests run per package, at most as many at once as the worker has cores,
// each bounded; the Report query shows each package's status while they
// run; a package at its limit fails the port with a verdict naming it; a
// package whose tests need cgo is skipped with a note.
func TestPortRunsBoundedTestsInParallelAndShowsProgress(t *testing.T) {
	pkgs := []string{"example.com/app", "example.com/app/a", "example.com/app/b", "example.com/app/c"}
	f := &fakeBuild{testPkgs: pkgs, testTime: time.Minute, timesOut: map[string]bool{"example.com/app/b": true}}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	f.install(env)
	during := reportAt(t, env, 90*time.Second)
	env.ExecuteWorkflow(PortToArch, PortInput{Repo: "/src/app", TestTimeout: 3 * time.Minute})
	r := portFailure(t, env.GetWorkflowError())
	if r.Status != PortTestsFailed || !strings.Contains(r.Step, "example.com/app/b (timed out after 3m0s)") {
		t.Fatalf("report %s: %s", r.Status, r.Step)
	}
	var statuses []string
	for _, tr := range during.Tests {
		statuses = append(statuses, tr.Package+" "+tr.Status)
	}
	want := []string{"example.com/app passed", "example.com/app/a passed", "example.com/app/b running", "example.com/app/c running", "example.com/app/sqlite skipped"}
	if !slices.Equal(statuses, want) {
		t.Errorf("while testing: %v, want %v", statuses, want)
	}
	if r.Tests[0].Elapsed != time.Minute || len(f.tested) != 4 || f.tested[0].Timeout != 3*time.Minute || f.tested[0].ModFile != "/work/test/go.mod" {
		t.Errorf("tests %+v, inputs %+v", r.Tests, f.tested)
	}
	if !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "tests need cgo") }) {
		t.Errorf("warnings %v", r.Warnings)
	}
}

// A failure of the test listing (or any step after fetch) ends the port
// with the report so far, never without it.
func TestPortKeepsTheReportWhenAStepFails(t *testing.T) {
	f := &fakeBuild{failing: []string{"golang.org/x/sys"}, upgradable: map[string]bool{"golang.org/x/sys": true},
		listErr: temporal.NewNonRetryableApplicationError("go list: missing go.sum entry", "GoList", nil)}
	_, _, err := runPort(t, f, PortInput{Repo: "/src/app", TestModules: []string{"github.com/boltdb/bolt"}})
	r := portFailure(t, err)
	if r.Status != PortFailedStatus || !strings.Contains(r.Step, "missing go.sum entry") || len(r.Modules) != 1 || r.Change == nil || len(r.Runs) != 1 {
		t.Fatalf("report %+v", r)
	}
}

func TestPortDeploysAServiceOnACloudOfItsArch(t *testing.T) {
	f := &fakeBuild{}
	_, r, err := runPort(t, f, PortInput{Repo: "/src/hello", Service: &PortService{Cloud: "fog-loong", Port: 8080, Health: "/healthz"}})
	if err != nil {
		t.Fatal(err)
	}
	n := len(f.calls)
	if n < 2 || f.calls[n-2] != "deploy port-hello-loong64 fog-loong" || f.calls[n-1] != "verify-service http://127.0.0.1:4000/healthz" {
		t.Fatalf("calls %v", f.calls)
	}
	if r.Service == nil || r.Service.Cloud != "fog-loong" || r.Service.Endpoint.Port != 4000 || !strings.Contains(r.Service.Verified, "answered 200") {
		t.Fatalf("service %+v", r.Service)
	}

	// Without a cloud it is said, not deployed.
	f = &fakeBuild{}
	_, r, err = runPort(t, f, PortInput{Repo: "/src/hello", Service: &PortService{Port: 8080}})
	if err != nil || r.Service != nil || !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "--cloud") }) {
		t.Fatalf("no cloud: %v %+v", err, r.Warnings)
	}

	// A cloud that refuses the image fails the port with the report.
	f = &fakeBuild{deployErr: temporal.NewNonRetryableApplicationError("cloud fog-x runs linux/amd64, and … has only linux/loong64", activities.ErrTypeWrongPlatform, nil)}
	_, _, err = runPort(t, f, PortInput{Repo: "/src/hello", Service: &PortService{Cloud: "fog-x", Port: 8080}})
	if r := portFailure(t, err); r.Status != PortServiceFailed || !strings.Contains(r.Step, "has only linux/loong64") || r.Image == "" {
		t.Fatalf("report %s: %s", r.Status, r.Step)
	}
}

func TestPortWithoutCommandsSkipsTheRunAndTheImage(t *testing.T) {
	f := &fakeBuild{noBinaries: true}
	_, r, err := runPort(t, f, PortInput{Repo: "/src/lib"})
	if err != nil || r.Image != "" || slices.Contains(f.calls, "verify") || !slices.Contains(r.Warnings, "no main package: no command to run under emulation") ||
		!slices.Contains(r.Warnings, "no main package: no command to put in an image") {
		t.Fatalf("%v calls %v warnings %v", err, f.calls, r.Warnings)
	}
}

// An archived module that no upgrade or patch fixes is moved to the
// module that continues it, verified like the other fixes; one that a
// patch fixed gets the move offered, verified in a scratch copy.
func TestPortMovesADeadModuleToItsSuccessor(t *testing.T) {
	f := &fakeBuild{failing: []string{"github.com/boltdb/bolt"}, successor: map[string]bool{"github.com/boltdb/bolt": true}}
	_, r, err := runPort(t, f, PortInput{Repo: "/src/app"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.calls, "successor github.com/boltdb/bolt apply=true") || r.Modules[0].Fix != FixSuccessor ||
		!strings.Contains(r.Modules[0].Verification, "go.etcd.io/bbolt@v1.3.7") {
		t.Fatalf("calls %v modules %+v", f.calls, r.Modules)
	}

	f = &fakeBuild{failing: []string{"github.com/boltdb/bolt"}, patchable: map[string]bool{"github.com/boltdb/bolt": true}, successor: map[string]bool{"github.com/boltdb/bolt": true}}
	_, r, err = runPort(t, f, PortInput{Repo: "/src/app"})
	if err != nil || r.Modules[0].Fix != FixPatch || !strings.Contains(r.Modules[0].Advice, "go.etcd.io/bbolt@v1.3.7 continues it") || !strings.Contains(r.Modules[0].Advice, "verified") {
		t.Fatalf("%v modules %+v", err, r.Modules)
	}

	// A successor that does not verify leaves the module for a human.
	f = &fakeBuild{failing: []string{"github.com/boltdb/bolt"}}
	_, _, err = runPort(t, f, PortInput{Repo: "/src/app"})
	if r := portFailure(t, err); r.Status != PortNeedsHuman || !strings.Contains(r.Modules[0].Verification, "successor go.etcd.io/bbolt: no version") {
		t.Fatalf("report %+v", r.Modules)
	}
}

// reportAt answers, once the test ends, what the Report query said after
// d of workflow time.
func reportAt(t *testing.T, env *testsuite.TestWorkflowEnvironment, d time.Duration) *PortReport {
	var r PortReport
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(names.ProgressQuery)
		if err == nil {
			err = v.Get(&r)
		}
		if err != nil {
			t.Error(err)
		}
	}, d)
	return &r
}
