package workflows

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/port"
)

// fakeBuild stands in for the go command: modules fail until an upgrade
// or a patch fixes them, as configured.
type fakeBuild struct {
	mu         sync.Mutex
	failing    []string        // module paths, dependencies first
	upgradable map[string]bool // a newer version builds
	patchable  map[string]bool // a donor arch has the missing files
	testsFail  bool
	buildTime  time.Duration // how long the cross-build takes
	calls      []string      // "activity module" in order
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
				d.Modules = append(d.Modules, port.ModuleFailure{Path: m, Version: "v1.0.0", Causes: []port.Cause{port.CauseArchDecls},
					Packages: []port.PackageFailure{{Package: m, Causes: []port.Cause{port.CauseArchDecls}, Errors: []string{m + "/x.go:1:1: undefined: maxMapSize"}}}})
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
	env.OnActivity(portActs.PortCommit, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PortCommitInput) (activities.PortCommit, error) {
			f.record("commit")
			return activities.PortCommit{Branch: activities.PortBranch(in.Source.Arch), Commit: "def", Patch: "/work/port.patch"}, nil
		})
	env.OnActivity(portActs.PortBuild, mock.Anything, mock.Anything).After(f.buildTime).Return(
		func(context.Context, activities.PortDiagnoseInput) ([]activities.PortBinary, error) {
			f.record("build")
			return []activities.PortBinary{{Name: "app", Path: "/work/bin/app", Size: 1}}, nil
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
		"diagnose", "commit", "build", "test", "image port/sysfacts:loong64"}
	if !slices.Equal(f.calls, want) {
		t.Fatalf("calls\n%v\nwant\n%v", f.calls, want)
	}
	if r.Status != PortDone || r.Arch != "loong64" || r.Image == "" || r.Change == nil || len(r.Tests) != 2 {
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
	if !slices.Equal(steps, []string{"fetch", "diagnose", "upgrade", "patch", "commit", "build", "test", "image"}) {
		t.Errorf("steps %v", steps)
	}
}

func TestPortEndsNeedingAHumanWithTheExactErrors(t *testing.T) {
	f := &fakeBuild{failing: []string{"github.com/needs/cgo"}}
	_, _, err := runPort(t, f, PortInput{Repo: "https://git.example/app.git", Arch: "riscv64"})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypePortFailed {
		t.Fatalf("want %s, got %v", ErrTypePortFailed, err)
	}
	var r PortReport
	if err := appErr.Details(&r); err != nil {
		t.Fatal(err)
	}
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
	if !slices.Equal(f.calls, []string{"fetch", "diagnose", "commit", "build"}) || r.Status != PortDone || len(r.Modules) != 0 {
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
	var during PortReport
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(names.ProgressQuery)
		if err != nil {
			t.Error(err)
			return
		}
		if err := v.Get(&during); err != nil {
			t.Error(err)
		}
	}, 30*time.Second)
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
