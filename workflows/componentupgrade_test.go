package workflows

import (
	"context"
	"errors"
	"fmt"
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
// the real cloud and upgrade activities on its runtimetest runtime (tasks,
// kept envs, the stable endpoint), and the scripted outcomes of what needs
// a registry or HTTP (loading a driver, sampling data, verifying an env).
type upgradeCloud struct {
	clouds   *testClouds
	rt       *runtimetest.Instant
	mu       sync.Mutex
	noStart  map[string]string                  // version → start-up error of the related service
	verifies []bool                             // outcomes of successive verifications; then pass
	tasks    map[string]runtime.TaskResult      // "<version> <command>" → how the task ends; else exit 0
	samples  int                                // SampleData calls
	verified []activities.EnvVerifyRequest      // VerifyEnv requests, in order
	onTask   func(version, command string)      // runs in every task
	routes   []string                           // instance the endpoint was routed to, in order
	events   []string                           // tasks, routes, keeps and restores, in order
	deployed map[string]map[string]runtime.Spec // env → instance → spec
}

func newUpgradeCloud(t *testing.T) *upgradeCloud {
	clouds := newTestClouds(t, exampleTopology, 0)
	f := &upgradeCloud{clouds: clouds, rt: clouds.runtimes["fog-north"], noStart: map[string]string{},
		tasks: map[string]runtime.TaskResult{}, deployed: map[string]map[string]runtime.Spec{}}
	// The running env: cinder 24.2.0 and its volume service, plus another
	// component that must never be touched.
	for name, service := range map[string]string{"cinder-prod": "cinder", "cinder-volume-prod": "cinder-volume"} {
		clouds.seed("fog-north", name, runtime.Spec{Image: "registry.test/cinder:24.2.0", Port: 8080, Labels: map[string]string{
			activities.LabelComponent: "cinder", activities.LabelEnv: "cinder-prod", activities.LabelVersion: "24.2.0", activities.LabelService: service}})
	}
	clouds.seed("fog-north", "glance-prod", runtime.Spec{Image: "registry.test/glance:29.0.0", Port: 8080,
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
		env := spec.Labels[activities.LabelEnv]
		if f.deployed[env] == nil {
			f.deployed[env] = map[string]runtime.Spec{}
		}
		f.deployed[env][name] = spec
		return nil
	}
	f.rt.OnRun = func(_ context.Context, name string, spec runtime.Spec) (runtime.TaskResult, error) {
		version := imageVersion(spec.Image)
		command := strings.Join(spec.Command[1:], " ")
		if f.onTask != nil {
			f.onTask(version, command)
		}
		f.mu.Lock()
		f.events = append(f.events, "task "+version+" "+command)
		res, ok := f.tasks[version+" "+command]
		f.mu.Unlock()
		if !ok {
			res = runtime.TaskResult{Output: "cinder " + version + ": ok"}
		}
		return res, nil
	}
	return f
}

// imageVersion is the release in an env image's tag (…-drivers:<tag>-acme-…).
func imageVersion(image string) string {
	_, tag, _ := strings.Cut(image, "-drivers:")
	v, _, _ := strings.Cut(tag, "-acme")
	return v
}

// upgradeActivities are the upgrade's activities on fog-north's runtime,
// with the endpoint switches and kept envs logged as events.
type upgradeActivities struct {
	*activities.Upgrade
	f *upgradeCloud
}

func (a *upgradeActivities) RouteEndpoint(ctx context.Context, req activities.RouteRequest) (runtime.Route, error) {
	a.f.mu.Lock()
	a.f.routes = append(a.f.routes, req.Instance)
	a.f.events = append(a.f.events, "route "+req.Instance)
	a.f.mu.Unlock()
	return a.Upgrade.RouteEndpoint(ctx, req)
}

func (a *upgradeActivities) KeepEnv(ctx context.Context, sel map[string]string) (int, error) {
	a.f.mu.Lock()
	a.f.events = append(a.f.events, "keep "+sel[activities.LabelEnv])
	a.f.mu.Unlock()
	return a.Upgrade.KeepEnv(ctx, sel)
}

func (a *upgradeActivities) RestoreEnv(ctx context.Context, sel map[string]string) (map[string]runtime.Endpoint, error) {
	a.f.mu.Lock()
	a.f.events = append(a.f.events, "restore "+sel[activities.LabelEnv])
	a.f.mu.Unlock()
	return a.Upgrade.RestoreEnv(ctx, sel)
}

func (f *upgradeCloud) install(env *testsuite.TestWorkflowEnvironment) {
	f.clouds.install(env)
	env.RegisterActivity(&upgradeActivities{Upgrade: &activities.Upgrade{Runtime: f.rt, Router: f.rt}, f: f})
	env.OnActivity(upgradeActs.LoadDriver, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.LoadDriverRequest) (string, error) {
			return req.To + "@sha256:0123456789012345678901234567890123456789012345678901234567890123", nil
		})
	env.OnActivity(upgradeActs.SampleData, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.SampleRequest) (activities.DataSample, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.samples++
			return activities.DataSample{List: req.List, Count: 100, Volumes: []activities.VolumeDigest{{ID: "vol-1", SHA256: "aa"}}}, nil
		})
	env.OnActivity(upgradeActs.VerifyEnv, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.EnvVerifyRequest) (activities.Verification, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.verified = append(f.verified, req)
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

// endpoint is the instance the stable endpoint of cinder sends to.
func (f *upgradeCloud) endpoint(t *testing.T) string {
	t.Helper()
	routes, err := f.rt.Routes(context.Background(), map[string]string{activities.LabelComponent: "cinder"})
	if err != nil || len(routes) != 1 {
		t.Fatalf("routes %v %v", routes, err)
	}
	return routes[0].Instance
}

func (f *upgradeCloud) taskEvents() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// upgradeInput upgrades the cinder of upgradeCloud without data (the
// shape of the upgrades before data).
func upgradeInput() UpgradeInput {
	return UpgradeInput{
		Cloud:     "fog-north",
		Component: ComponentSpec{Name: "cinder", Repository: "registry.test/cinder", Version: "24.2.0", Port: 8080, Health: "/healthz", Env: map[string]string{"ROLE": "api"}},
		Related:   RelatedSpec{Name: "cinder-volume", Env: map[string]string{"ROLE": "volume"}, Health: "/healthz", Verify: "/verify"},
		Driver:    DriverSpec{Name: "acme", Version: "2.0.0", Image: "registry.test/drivers/acme:2.0.0"},
		Policy:    PolicyPlatform,
		Index:     string(examples.Releases),
		Backoff:   10 * time.Second,
		Drain:     5 * time.Second,
	}
}

// dataInput is upgradeInput with the component's data, its tool and a
// rollback window.
func dataInput() UpgradeInput {
	in := upgradeInput()
	in.Component.Data = DataSpec{Volume: "cinder-data", Path: "/var/lib/component", Manage: []string{"/usr/bin/component"}, List: "/v1/volumes"}
	in.Window = time.Hour
	return in
}

// upgradeRunner is one test run of ComponentUpgrade.
type upgradeRunner struct {
	env *testsuite.TestWorkflowEnvironment
}

func newUpgradeRunner(f *upgradeCloud) *upgradeRunner {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	f.install(env)
	env.RegisterWorkflow(ComponentUpgrade)
	return &upgradeRunner{env: env}
}

// decide sends a Promote or Rollback update after delay of workflow time
// and records its outcome in *rejected (nil: accepted).
func (r *upgradeRunner) decide(delay time.Duration, update string, d Decision, rejected *error) {
	r.env.RegisterDelayedCallback(func() {
		r.env.UpdateWorkflow(update, "", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { *rejected = err },
			OnAccept:   func() {},
			OnComplete: func(any, error) {},
		}, d)
	}, delay)
}

func (r *upgradeRunner) run(t *testing.T, in UpgradeInput) (UpgradeProgress, UpgradeProgress, error) {
	t.Helper()
	r.env.ExecuteWorkflow(ComponentUpgrade, in)
	if !r.env.IsWorkflowCompleted() {
		t.Fatal("upgrade did not complete")
	}
	var res UpgradeProgress
	err := r.env.GetWorkflowResult(&res)
	v, qerr := r.env.QueryWorkflow(names.ProgressQuery)
	if qerr != nil {
		t.Fatal(qerr)
	}
	var prog UpgradeProgress
	if err := v.Get(&prog); err != nil {
		t.Fatal(err)
	}
	return res, prog, err
}

func runUpgrade(t *testing.T, f *upgradeCloud, in UpgradeInput) (UpgradeProgress, UpgradeProgress, error) {
	t.Helper()
	return newUpgradeRunner(f).run(t, in)
}

func statuses(as []Attempt) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Version+":"+a.Status)
	}
	return out
}

func hopStatuses(hs []HopState) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.From+"→"+h.To+":"+h.Status)
	}
	return out
}

func wantErrType(t *testing.T, err error, typ, says string) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != typ || !appErr.NonRetryable() || !strings.Contains(err.Error(), says) {
		t.Fatalf("error %v, want non-retryable %s saying %q", err, typ, says)
	}
	return appErr
}

// 24.2 → 28.0 is two verified hops (SLURP caracal → epoxy → gazpacho), each
// checked on the live data, migrated, verified with the data read before,
// and switched at the stable endpoint; the env upgraded from is kept,
// stopped, for the window, then the contract runs and it is retired.
func TestUpgradeWithDataRunsVerifiedHops(t *testing.T) {
	f := newUpgradeCloud(t)
	var keptDuringWindow []runtime.Instance
	r := newUpgradeRunner(f)
	r.env.RegisterDelayedCallback(func() {
		keptDuringWindow = runtimetest.List(t, f.rt, map[string]string{activities.LabelEnv: "cinder-prod"})
	}, 30*time.Minute)
	res, _, err := r.run(t, dataInput())
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != "done" || res.Target != "28.0.0" || res.Serving.Version != "28.0.0" || res.Retired != "cinder-prod" || res.Kept != nil {
		t.Fatalf("result %+v", res)
	}
	if got := hopStatuses(res.Hops); !slices.Equal(got, []string{"24.2.0→26.1.0:switched", "26.1.0→28.0.0:switched"}) {
		t.Errorf("hops %v", got)
	}
	for _, h := range res.Hops {
		var checks []string
		for _, c := range h.Checks {
			checks = append(checks, fmt.Sprintf("%s=%v", c.Name, c.OK))
		}
		if !slices.Equal(checks, []string{"path=true", "capacity=true", "upgrade check=true", "driver=true"}) || !h.Skip {
			t.Errorf("hop %d checks %v (skip %v)", h.N, checks, h.Skip)
		}
	}
	if got := statuses(res.Attempts); !slices.Equal(got, []string{"26.1.0:passed", "28.0.0:passed"}) {
		t.Errorf("attempts %v", got)
	}
	hop1, hop2 := res.Attempts[0].Env, res.Attempts[1].Env
	want := []string{
		"task 26.1.0 upgrade check", "route cinder-prod",
		"task 26.1.0 db sync", "task 26.1.0 db online_data_migrations", "route " + hop1.Instances[0], "keep cinder-prod",
		"task 28.0.0 upgrade check",
		"task 28.0.0 db sync", "task 28.0.0 db online_data_migrations", "route " + hop2.Instances[0],
		"task 28.0.0 db contract",
	}
	if got := f.taskEvents(); !slices.Equal(got, want) {
		t.Errorf("events\n%q\nwant\n%q", got, want)
	}
	if len(keptDuringWindow) != 2 || keptDuringWindow[0].Ready || keptDuringWindow[1].Ready {
		t.Errorf("old env during the window: %+v, want both instances kept and stopped", keptDuringWindow)
	}
	if got := f.envs("cinder"); !slices.Equal(got, []string{hop2.Name}) {
		t.Errorf("cinder envs %v, want only %s", got, hop2.Name)
	}
	if got := f.envs("glance"); !slices.Equal(got, []string{"glance-prod"}) {
		t.Errorf("glance touched: %v", got)
	}
	if f.endpoint(t) != hop2.Instances[0] || res.Endpoint == nil || res.Endpoint.Instance != hop2.Instances[0] {
		t.Errorf("endpoint sends to %s (%+v)", f.endpoint(t), res.Endpoint)
	}
	if f.samples != 1 || len(f.verified) != 2 || f.verified[1].Data == nil || f.verified[1].Data.Volumes[0].ID != "vol-1" {
		t.Errorf("data sampled %d times, verified %+v", f.samples, f.verified)
	}
	for _, specs := range f.deployed {
		for name, spec := range specs {
			if len(spec.Volumes) != 1 || spec.Volumes[0].Name != "cinder-data" || spec.Volumes[0].Path != "/var/lib/component" {
				t.Errorf("%s mounts %+v", name, spec.Volumes)
			}
		}
	}
	if res.Contract == nil || !res.Contract.OK {
		t.Errorf("contract %+v", res.Contract)
	}
}

// A target's upgrade check that fails (exit 2, as cinder-status) stops the
// upgrade before any side effect: nothing deployed, migrated or routed.
func TestUpgradePrecheckFailureTouchesNothing(t *testing.T) {
	for name, c := range map[string]struct {
		edit      func(*upgradeCloud)
		typ, says string
	}{
		"data the target cannot migrate": {func(f *upgradeCloud) {
			f.tasks["26.1.0 upgrade check"] = runtime.TaskResult{ExitCode: 2, Output: "Check: Volume names  Result: Failure  Details: 1 volume(s) without a name"}
		}, ErrTypeUpgradeCheckFailed, "upgrade check: exit 2: Check: Volume names"},
		"driver refuses the release": {func(f *upgradeCloud) {
			f.tasks["26.1.0 upgrade check"] = runtime.TaskResult{ExitCode: 2, Output: "Check: Drivers  Result: Failure  Details: driver acme 2.0.0 requires cinder >= 27.0.0, running 26.1.0"}
		}, ErrTypeDriverUnsupported, "driver acme 2.0.0 requires cinder >= 27.0.0"},
		"no room for a second env": {func(f *upgradeCloud) { f.clouds.clouds["fog-north"].Capacity = 4 }, ErrTypeNoCapacity, "1 free for 2 instances"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newUpgradeCloud(t)
			c.edit(f)
			_, prog, err := runUpgrade(t, f, dataInput())
			appErr := wantErrType(t, err, c.typ, c.says)
			var report UpgradeProgress
			if err := appErr.Details(&report); err != nil || len(report.Hops) != 2 || len(report.Hops[0].Checks) < 2 {
				t.Fatalf("report %+v (%v)", report, err)
			}
			if len(f.clouds.deploys) > 0 || len(f.clouds.sweeps) > 0 || len(f.routes) > 0 {
				t.Errorf("deployed %v, destroyed %v, routed %v", f.clouds.deploys, f.clouds.sweeps, f.routes)
			}
			if got := f.taskEvents(); len(got) > 1 || len(got) == 1 && got[0] != "task 26.1.0 upgrade check" {
				t.Errorf("tasks beyond the check: %v", got)
			}
			if prog.Phase != "failed" || prog.Serving.Name != "cinder-prod" || prog.Hops[0].Status != HopFailed {
				t.Errorf("progress %+v", prog)
			}
		})
	}
}

// A warning (exit 1) is reported and the upgrade goes on.
func TestUpgradeCheckWarningGoesOn(t *testing.T) {
	f := newUpgradeCloud(t)
	f.tasks["26.1.0 upgrade check"] = runtime.TaskResult{ExitCode: 1, Output: "Check: Volume data  Result: Warning  Details: 1 data file(s) belong to no volume"}
	res, _, err := runUpgrade(t, f, dataInput())
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Hops[0].Checks[2]; !c.OK || !c.Warning || !strings.Contains(c.Detail, "Warning") {
		t.Errorf("check %+v", c)
	}
}

// The second hop fails every attempt: the first hop's release keeps
// serving with the data, the window still allows a rollback, and after it
// the contract runs with the release that serves.
func TestUpgradeFailedHopKeepsTheLastGoodVersion(t *testing.T) {
	f := newUpgradeCloud(t)
	in := dataInput()
	in.Attempts = 2
	f.verifies = []bool{true, false, false}
	res, prog, err := runUpgrade(t, f, in)
	appErr := wantErrType(t, err, ErrTypeUpgradeFailed, "stays at 26.1.0")
	var report UpgradeProgress
	if err := appErr.Details(&report); err != nil {
		t.Fatal(err)
	}
	if got := hopStatuses(prog.Hops); !slices.Equal(got, []string{"24.2.0→26.1.0:switched", "26.1.0→28.0.0:failed"}) {
		t.Errorf("hops %v", got)
	}
	if got := statuses(prog.Attempts); !slices.Equal(got, []string{"26.1.0:passed", "28.0.0:failed", "28.0.0:failed"}) {
		t.Errorf("attempts %v", got)
	}
	hop1 := prog.Attempts[0].Env
	if prog.Serving.Name != hop1.Name || prog.Retired != "cinder-prod" || res.Phase != "" {
		t.Errorf("serving %s, retired %s", prog.Serving.Name, prog.Retired)
	}
	if got := f.envs("cinder"); !slices.Equal(got, []string{hop1.Name}) {
		t.Errorf("cinder envs %v", got)
	}
	if f.endpoint(t) != hop1.Instances[0] {
		t.Errorf("endpoint sends to %s", f.endpoint(t))
	}
	if ev := f.taskEvents(); ev[len(ev)-1] != "task 26.1.0 db contract" {
		t.Errorf("last event %q, want the contract with 26.1.0", ev[len(ev)-1])
	}
}

// Rollback within the window starts the kept env again, switches the
// endpoint back and retires the new env; no contract runs.
func TestUpgradeRollbackWithinTheWindow(t *testing.T) {
	f := newUpgradeCloud(t)
	r := newUpgradeRunner(f)
	var early, empty, late error
	r.decide(time.Second, names.RollbackUpdate, Decision{Who: "bob"}, &early) // still checking
	r.decide(50*time.Minute, names.RollbackUpdate, Decision{Who: " "}, &empty)
	r.decide(55*time.Minute, names.RollbackUpdate, Decision{Who: "bob", Why: "volume service errors"}, &late)
	res, _, err := r.run(t, dataInput())
	if err != nil {
		t.Fatal(err)
	}
	if early == nil || empty == nil || late != nil {
		t.Fatalf("rollbacks: before the window %v, without who %v, within %v", early, empty, late)
	}
	if res.Phase != phaseRolledBack || res.Serving.Name != "cinder-prod" || res.Rollback == nil || res.Rollback.Who != "bob" || res.Kept != nil {
		t.Fatalf("result %+v", res)
	}
	if got := f.envs("cinder"); !slices.Equal(got, []string{"cinder-prod"}) {
		t.Errorf("cinder envs %v", got)
	}
	for _, in := range runtimetest.List(t, f.rt, map[string]string{activities.LabelEnv: "cinder-prod"}) {
		if !in.Ready {
			t.Errorf("%s not started again", in.Name)
		}
	}
	if f.endpoint(t) != "cinder-prod" {
		t.Errorf("endpoint sends to %s", f.endpoint(t))
	}
	ev := f.taskEvents()
	if slices.Contains(ev, "task 28.0.0 db contract") || ev[len(ev)-2] != "restore cinder-prod" || ev[len(ev)-1] != "route cinder-prod" {
		t.Errorf("events %v", ev)
	}
}

// The promotion gate holds each switch until Promote; without one in time
// the hop fails and the env it would have switched to goes.
func TestUpgradePromotionGate(t *testing.T) {
	t.Run("promoted", func(t *testing.T) {
		f := newUpgradeCloud(t)
		in := dataInput()
		in.Window, in.Gate, in.GateTimeout = 0, true, time.Hour
		r := newUpgradeRunner(f)
		var early, first, second error
		r.decide(10*time.Minute, names.PromoteUpdate, Decision{Who: "alice", Why: "26.1 looks fine"}, &first)
		r.decide(10*time.Minute+2*time.Second, names.PromoteUpdate, Decision{Who: "alice"}, &early) // draining, not at the gate
		r.decide(20*time.Minute, names.PromoteUpdate, Decision{Who: "alice", Why: "28.0 looks fine"}, &second)
		res, _, err := r.run(t, in)
		if err != nil {
			t.Fatal(err)
		}
		if early == nil || first != nil || second != nil || len(res.Promotions) != 2 || res.Serving.Version != "28.0.0" {
			t.Fatalf("promotions %v %v %v, result %+v", early, first, second, res.Promotions)
		}
		if sw := res.Hops[0].Switched; sw.Before(res.Promotions[0].When) {
			t.Errorf("switched at %s before the promotion at %s", sw, res.Promotions[0].When)
		}
	})
	t.Run("nobody promotes", func(t *testing.T) {
		f := newUpgradeCloud(t)
		in := dataInput()
		in.Gate, in.GateTimeout = true, 30*time.Minute
		_, prog, err := runUpgrade(t, f, in)
		wantErrType(t, err, ErrTypePromotionTimeout, "nobody promoted it within 30m0s")
		if got := f.envs("cinder"); !slices.Equal(got, []string{"cinder-prod"}) || prog.Serving.Name != "cinder-prod" {
			t.Errorf("cinder envs %v, serving %s", got, prog.Serving.Name)
		}
		if f.endpoint(t) != "cinder-prod" {
			t.Errorf("endpoint sends to %s", f.endpoint(t))
		}
	})
}

// A migration that fails fails the attempt; the redo migrates again (the
// tools are idempotent) in a fresh env.
func TestUpgradeMigrationFailureRedoes(t *testing.T) {
	f := newUpgradeCloud(t)
	in := dataInput()
	in.Window = 0
	failed := false
	f.onTask = func(version, command string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if version == "26.1.0" && command == "db online_data_migrations" && !failed {
			failed = true
			f.tasks["26.1.0 db online_data_migrations"] = runtime.TaskResult{ExitCode: 2, Output: "volume vol-1: no such file"}
		} else {
			delete(f.tasks, "26.1.0 db online_data_migrations")
		}
	}
	res, _, err := runUpgrade(t, f, in)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(res.Attempts); !slices.Equal(got, []string{"26.1.0:failed", "26.1.0:passed", "28.0.0:passed"}) {
		t.Fatalf("attempts %v", got)
	}
	a := res.Attempts[0]
	if !strings.Contains(a.Error, "db online_data_migrations exited 2") || len(a.Migration) != 2 || a.Migration[1].OK {
		t.Errorf("first attempt %+v", a)
	}
}

// Without data an upgrade still goes hop by hop through the stable endpoint;
// with no window the old env is retired once the last hop switched.
func TestUpgradeSucceedsFirstTry(t *testing.T) {
	f := newUpgradeCloud(t)
	res, _, err := runUpgrade(t, f, upgradeInput())
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != "done" || res.Series != "gazpacho" || res.Serving.Version != "28.0.0" || res.Retired != "cinder-prod" {
		t.Fatalf("result %+v", res)
	}
	if got := statuses(res.Attempts); !slices.Equal(got, []string{"26.1.0:passed", "28.0.0:passed"}) {
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
	if len(f.taskEvents()) != 4 || len(f.rt.Tasks()) != 0 || f.samples != 0 {
		t.Errorf("events %v: want routes and the keep, no tasks or samples", f.taskEvents())
	}
}

func TestUpgradeRedoesAfterFailedVerify(t *testing.T) {
	f := newUpgradeCloud(t)
	f.verifies = []bool{false}
	res, _, err := runUpgrade(t, f, upgradeInput())
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(res.Attempts); !slices.Equal(got, []string{"26.1.0:failed", "26.1.0:passed", "28.0.0:passed"}) {
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
	if got := f.envs("cinder"); !slices.Equal(got, []string{res.Serving.Name}) {
		t.Errorf("cinder envs %v", got)
	}
}

func TestUpgradeAllAttemptsFailKeepsOldEnv(t *testing.T) {
	f := newUpgradeCloud(t)
	f.verifies = []bool{false, false, false}
	_, prog, err := runUpgrade(t, f, upgradeInput())
	appErr := wantErrType(t, err, ErrTypeUpgradeFailed, "stays at 24.2.0")
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
	if f.endpoint(t) != "cinder-prod" {
		t.Errorf("endpoint sends to %s", f.endpoint(t))
	}
}

// A redo with the next candidate moves down the hop's own series.
func TestUpgradeNextCandidateOnRedo(t *testing.T) {
	f := newUpgradeCloud(t)
	f.verifies = []bool{false}
	in := upgradeInput()
	in.NextCandidate = true
	res, _, err := runUpgrade(t, f, in)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(res.Attempts); !slices.Equal(got, []string{"26.1.0:failed", "26.0.0:passed", "28.0.0:passed"}) {
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
	if res.Serving.Version != "26.0.0" || !slices.Equal(statuses(res.Attempts), []string{"26.0.0:passed"}) || len(res.Hops) != 1 {
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
			wantErrType(t, err, c.typ, c.says)
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
		"no path from current": {func(in *UpgradeInput) {
			in.Index = "series:\n- {name: a, deliverables: {cinder: [24.2.0]}}\n- {name: b, deliverables: {cinder: [25.0.0.0rc1]}}\n- {name: c, deliverables: {cinder: [26.0.0]}}\n"
		}, ErrTypeNoUpgradePath, "series b has no final release"},
		"relative data path":  {func(in *UpgradeInput) { in.Component.Data.Path = "var/lib" }, ErrTypeInvalidUpgrade, "absolute clean mount path"},
		"data without a tool": {func(in *UpgradeInput) { in.Component.Data.Manage = nil }, ErrTypeInvalidUpgrade, "the component's tool"},
		"tool without data":   {func(in *UpgradeInput) { in.Component.Data.Volume = "" }, ErrTypeInvalidUpgrade, "needs a volume"},
		"list not a path":     {func(in *UpgradeInput) { in.Component.Data.List = "v1/volumes?all" }, ErrTypeInvalidUpgrade, "must be a path"},
		"negative window":     {func(in *UpgradeInput) { in.Window = -time.Second }, ErrTypeInvalidUpgrade, "window -1s"},
		"gate for a year":     {func(in *UpgradeInput) { in.Gate, in.GateTimeout = true, 365*24*time.Hour }, ErrTypeInvalidUpgrade, "gate timeout 8760h"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newUpgradeCloud(t)
			in := dataInput()
			c.edit(&in)
			_, _, err := runUpgrade(t, f, in)
			wantErrType(t, err, c.typ, c.says)
			if len(f.clouds.deploys) > 0 || len(f.clouds.sweeps) > 0 || len(f.taskEvents()) > 0 {
				t.Errorf("bad input deployed %v, destroyed %v, did %v", f.clouds.deploys, f.clouds.sweeps, f.taskEvents())
			}
		})
	}
}

func TestUpgradeOfComponentNotRunning(t *testing.T) {
	f := newUpgradeCloud(t)
	for _, name := range []string{"cinder-prod", "cinder-volume-prod"} {
		if err := f.rt.Destroy(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := runUpgrade(t, f, upgradeInput())
	wantErrType(t, err, ErrTypeUnknownComponent, "no env of cinder runs on fog-north")
	if len(f.clouds.deploys) > 0 {
		t.Errorf("deployed %v", f.clouds.deploys)
	}
}
