package workflows

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
)

// upgradeCloud is fog-north, the one cloud hosting the component, running
// the real cloud activities, and the scripted outcomes of the upgrade's own
// activities (loading a driver, verifying an env).
type upgradeCloud struct {
	clouds   *testClouds
	rt       *runtimetest.Instant
	mu       sync.Mutex
	noStart  map[string]string // version → start-up error of the related service
	verifies []bool            // outcomes of successive verifications; then pass
}

func newUpgradeCloud(t *testing.T) *upgradeCloud {
	clouds := newTestClouds(t, exampleTopology, 0)
	f := &upgradeCloud{clouds: clouds, rt: clouds.runtimes["fog-north"], noStart: map[string]string{}}
	// The running env: cinder 24.2.0 and its volume service, plus another
	// component that must never be touched.
	for _, name := range []string{"cinder", "cinder-volume"} {
		clouds.seed("fog-north", name, runtime.Spec{Image: "registry.test/cinder:24.2.0", Port: 8080,
			Labels: map[string]string{activities.LabelComponent: "cinder", activities.LabelEnv: "cinder-prod", activities.LabelVersion: "24.2.0"}})
	}
	clouds.seed("fog-north", "glance", runtime.Spec{Image: "registry.test/glance:29.0.0", Port: 8080,
		Labels: map[string]string{activities.LabelComponent: "glance", activities.LabelEnv: "glance-prod", activities.LabelVersion: "29.0.0"}})
	// The related service fails to start at a version noStart names; an
	// env image without the driver layered in is a bug of the workflow.
	f.rt.OnDeploy = func(_ context.Context, name string, spec runtime.Spec) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if msg, ok := f.noStart[spec.Labels[activities.LabelVersion]]; ok && spec.Env["ROLE"] == "volume" {
			return temporal.NewNonRetryableApplicationError("deploy "+name+": container exited; last log lines:\n"+msg, "Test", nil)
		}
		if !strings.Contains(spec.Image, "-drivers:") {
			return errors.New("env image without the driver: " + spec.Image)
		}
		return nil
	}
	return f
}

func (f *upgradeCloud) install(env *testsuite.TestWorkflowEnvironment) {
	f.clouds.install(env)
	env.RegisterActivity(&activities.Upgrade{})
	env.OnActivity(upgradeActs.LoadDriver, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.LoadDriverRequest) (string, error) {
			return req.To + "@sha256:0123456789012345678901234567890123456789012345678901234567890123", nil
		})
	env.OnActivity(upgradeActs.VerifyEnv, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.EnvVerifyRequest) (activities.Verification, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			pass := true
			if len(f.verifies) > 0 {
				pass, f.verifies = f.verifies[0], f.verifies[1:]
			}
			v := activities.Verification{Mode: req.Mode, Passed: pass}
			for _, t := range req.Targets {
				v.Checks = append(v.Checks, activities.Check{Name: t.Instance + " health", OK: true})
			}
			v.Checks = append(v.Checks, activities.Check{Name: "cinder-volume driver", OK: pass, Detail: map[bool]string{true: "created and deleted", false: "create volume: backend unreachable"}[pass]})
			return v, nil
		})
}

// envs lists the envs of component still live.
func (f *upgradeCloud) envs(component string) []string {
	set := map[string]bool{}
	for _, in := range runtimetest.List(f.clouds.t, f.rt, map[string]string{activities.LabelComponent: component}) {
		set[in.Labels[activities.LabelEnv]] = true
	}
	return slices.Sorted(maps.Keys(set))
}

func upgradeInput() UpgradeInput {
	return UpgradeInput{
		Cloud:     "fog-north",
		Component: ComponentSpec{Name: "cinder", Repository: "registry.test/cinder", Version: "24.2.0", Port: 8080, Health: "/healthz", Env: map[string]string{"ROLE": "api"}},
		Related:   RelatedSpec{Name: "cinder-volume", Env: map[string]string{"ROLE": "volume"}, Health: "/healthz", Verify: "/verify"},
		Driver:    DriverSpec{Name: "acme", Version: "2.0.0", Image: "registry.test/drivers/acme:2.0.0"},
		Policy:    PolicyPlatform,
		Index:     string(examples.Releases),
		Backoff:   10 * time.Second,
	}
}

func runUpgrade(t *testing.T, f *upgradeCloud, in UpgradeInput) (UpgradeProgress, UpgradeProgress, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	f.install(env)
	env.RegisterWorkflow(ComponentUpgrade)
	env.ExecuteWorkflow(ComponentUpgrade, in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("upgrade did not complete")
	}
	var res UpgradeProgress
	err := env.GetWorkflowResult(&res)
	v, qerr := env.QueryWorkflow(names.ProgressQuery)
	if qerr != nil {
		t.Fatal(qerr)
	}
	var prog UpgradeProgress
	if err := v.Get(&prog); err != nil {
		t.Fatal(err)
	}
	return res, prog, err
}

func statuses(as []Attempt) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Version+":"+a.Status)
	}
	return out
}

func TestUpgradeSucceedsFirstTry(t *testing.T) {
	f := newUpgradeCloud(t)
	res, _, err := runUpgrade(t, f, upgradeInput())
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != "done" || res.Series != "gazpacho" || res.Serving.Version != "28.0.0" || res.Retired != "cinder-prod" {
		t.Fatalf("result %+v", res)
	}
	if got := statuses(res.Attempts); !slices.Equal(got, []string{"28.0.0:passed"}) {
		t.Errorf("attempts %v", got)
	}
	if got := f.envs("cinder"); !slices.Equal(got, []string{res.Serving.Name}) {
		t.Errorf("cinder envs %v, want only %s", got, res.Serving.Name)
	}
	if got := f.envs("glance"); !slices.Equal(got, []string{"glance-prod"}) {
		t.Errorf("glance touched: %v", got)
	}
	if !strings.Contains(res.Serving.Image, "cinder-drivers:28.0.0-acme-2.0.0@") {
		t.Errorf("serving image %s lacks the driver", res.Serving.Image)
	}
}

func TestUpgradeRedoesAfterFailedVerify(t *testing.T) {
	f := newUpgradeCloud(t)
	f.verifies = []bool{false}
	res, _, err := runUpgrade(t, f, upgradeInput())
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(res.Attempts); !slices.Equal(got, []string{"28.0.0:failed", "28.0.0:passed"}) {
		t.Fatalf("attempts %v", got)
	}
	first, second := res.Attempts[0], res.Attempts[1]
	if !strings.Contains(first.Error, "backend unreachable") || first.Verification == nil || first.Verification.Passed {
		t.Errorf("first attempt report %+v", first)
	}
	if first.Env.Name == second.Env.Name {
		t.Error("the redo reused the failed env instead of a fresh one")
	}
	if wait := second.Started.Sub(first.Ended); wait < 10*time.Second {
		t.Errorf("redo after %s, want the 10s backoff", wait)
	}
	if got := f.envs("cinder"); !slices.Equal(got, []string{second.Env.Name}) {
		t.Errorf("cinder envs %v", got)
	}
}

func TestUpgradeAllAttemptsFailKeepsOldEnv(t *testing.T) {
	f := newUpgradeCloud(t)
	f.verifies = []bool{false, false, false}
	_, prog, err := runUpgrade(t, f, upgradeInput())
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeUpgradeFailed || !strings.Contains(err.Error(), "stays at 24.2.0") {
		t.Fatalf("error %v, want %s", err, ErrTypeUpgradeFailed)
	}
	var report UpgradeProgress
	if err := appErr.Details(&report); err != nil || len(report.Attempts) != 3 {
		t.Fatalf("report %+v (%v)", report, err)
	}
	for _, a := range report.Attempts {
		if a.Status != AttemptFailed || a.Error == "" || a.Verification == nil {
			t.Errorf("attempt %+v", a)
		}
	}
	if prog.Phase != "failed" || prog.Serving.Name != "cinder-prod" {
		t.Errorf("progress %+v", prog)
	}
	if got := f.envs("cinder"); !slices.Equal(got, []string{"cinder-prod"}) {
		t.Errorf("cinder envs %v, want the old env alone", got)
	}
}

func TestUpgradeNextCandidateOnRedo(t *testing.T) {
	f := newUpgradeCloud(t)
	f.verifies = []bool{false}
	in := upgradeInput()
	in.NextCandidate = true
	res, _, err := runUpgrade(t, f, in)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(res.Attempts); !slices.Equal(got, []string{"28.0.0:failed", "27.0.0:passed"}) {
		t.Fatalf("attempts %v", got)
	}
}

func TestUpgradeDriverPolicyPicksLowestFit(t *testing.T) {
	f := newUpgradeCloud(t)
	in := upgradeInput()
	in.Policy = PolicyDriver
	in.Component.ErrorFormat = "FATAL: {driver} needs {component} {constraint}"
	f.noStart["24.2.0"] = "loading drivers\nFATAL: acme needs cinder >= 26.0.0, < 28.0.0"
	res, _, err := runUpgrade(t, f, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.DriverError == nil || res.DriverError.Constraint != ">= 26.0.0, < 28.0.0" {
		t.Fatalf("driver error %+v", res.DriverError)
	}
	if !slices.Equal(res.Candidates, []string{"26.0.0", "26.1.0", "27.0.0"}) {
		t.Errorf("candidates %v", res.Candidates)
	}
	if res.Serving.Version != "26.0.0" || !slices.Equal(statuses(res.Attempts), []string{"26.0.0:passed"}) {
		t.Errorf("serving %s after %v", res.Serving.Version, statuses(res.Attempts))
	}
	if got := f.envs("cinder"); !slices.Equal(got, []string{res.Serving.Name}) {
		t.Errorf("cinder envs %v (probe env left?)", got)
	}
}

func TestUpgradeDriverPolicyFailures(t *testing.T) {
	for name, c := range map[string]struct {
		probe, typ, says string
	}{
		"driver already works":  {"", ErrTypeNotNewer, "no upgrade needed"},
		"unrecognised error":    {"panic: nil map", ErrTypeNoCandidate, "not with an error in the format"},
		"nothing satisfies":     {"driver acme 2.0.0 requires cinder >= 30.0, running 24.2.0", ErrTypeNoCandidate, ">= 30.0"},
		"unreadable constraint": {"driver acme 2.0.0 requires cinder the newest, running 24.2.0", ErrTypeNoCandidate, "the newest"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newUpgradeCloud(t)
			if c.probe != "" {
				f.noStart["24.2.0"] = c.probe
			}
			in := upgradeInput()
			in.Policy = PolicyDriver
			_, _, err := runUpgrade(t, f, in)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != c.typ || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("error %v, want %s saying %q", err, c.typ, c.says)
			}
			if got := f.envs("cinder"); !slices.Equal(got, []string{"cinder-prod"}) {
				t.Errorf("cinder envs %v", got)
			}
		})
	}
}

func TestUpgradeBadInputTouchesNothing(t *testing.T) {
	for name, c := range map[string]struct {
		edit func(*UpgradeInput)
		typ  string
		says string
	}{
		"target not newer":      {func(in *UpgradeInput) { in.Target = "24.1.0" }, ErrTypeNotNewer, "24.1.0"},
		"target equal":          {func(in *UpgradeInput) { in.Target = "24.2.0" }, ErrTypeNotNewer, "24.2.0"},
		"target unpublished":    {func(in *UpgradeInput) { in.Target = "26.9.0" }, ErrTypeNoCandidate, "26.9.0"},
		"already latest":        {func(in *UpgradeInput) { in.Component.Version = "28.0.0" }, ErrTypeNotNewer, "28.0.0"},
		"unknown component":     {func(in *UpgradeInput) { in.Component.Name = "nova" }, ErrTypeUnknownComponent, "nova"},
		"malformed index":       {func(in *UpgradeInput) { in.Index = "series:\n  - name: caracal\n    deliverables: [cinder]\n" }, ErrTypeInvalidIndex, "malformed release index"},
		"unknown policy":        {func(in *UpgradeInput) { in.Policy = "newest" }, ErrTypeInvalidUpgrade, "newest"},
		"current not a version": {func(in *UpgradeInput) { in.Component.Version = "2024.2-eol" }, ErrTypeInvalidUpgrade, "2024.2-eol"},
		"bad error format":      {func(in *UpgradeInput) { in.Component.ErrorFormat = "driver {driver} broke" }, ErrTypeInvalidUpgrade, "{constraint}"},
		"too many attempts":     {func(in *UpgradeInput) { in.Attempts = 50 }, ErrTypeInvalidUpgrade, "attempts 50"},
		"version mismatch":      {func(in *UpgradeInput) { in.Component.Version = "24.1.0" }, ErrTypeInvalidUpgrade, "runs 24.2.0, not 24.1.0"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newUpgradeCloud(t)
			in := upgradeInput()
			c.edit(&in)
			_, _, err := runUpgrade(t, f, in)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != c.typ || !appErr.NonRetryable() || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("error %v, want non-retryable %s saying %q", err, c.typ, c.says)
			}
			if len(f.clouds.deploys) > 0 || len(f.clouds.sweeps) > 0 {
				t.Errorf("bad input deployed %v, destroyed %v", f.clouds.deploys, f.clouds.sweeps)
			}
		})
	}
}

func TestUpgradeOfComponentNotRunning(t *testing.T) {
	f := newUpgradeCloud(t)
	for _, name := range []string{"cinder", "cinder-volume"} {
		if err := f.rt.Destroy(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := runUpgrade(t, f, upgradeInput())
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeUnknownComponent || !strings.Contains(err.Error(), "no env of cinder runs on fog-north") {
		t.Fatalf("error %v", err)
	}
	if len(f.clouds.deploys) > 0 {
		t.Errorf("deployed %v", f.clouds.deploys)
	}
}
