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
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/repo"
)

// fakeFleet stands in for the children and the node: each VM's install
// takes a minute and fails when its name is in fail.
type fakeFleet struct {
	mu        sync.Mutex
	fail      map[string]bool
	resolved  int
	inputs    []InstallInput
	ids       []string
	running   int
	maxActive int
	ended     []RolloutEnded
}

func newFleetEnv(t *testing.T, f *fakeFleet) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: names.FleetID("acme", "r1")})
	env.RegisterActivity(&activities.Install{})
	env.RegisterWorkflow(InstallSoftware)
	env.OnActivity(installActs.ResolvePackage, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.Resolve) (repo.Package, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.resolved++
			if r.Version == "^9" {
				return repo.Package{}, temporal.NewNonRetryableApplicationError("no version of hello matching ^9", activities.ErrTypeUnknownPackage, nil)
			}
			return repo.Package{Ref: repo.Ref{Name: r.Name, Version: "1.4.0", Platform: r.Platform}, SHA256: "abc"}, nil
		})
	env.OnWorkflow(InstallSoftware, mock.Anything, mock.Anything).Return(
		func(ctx workflow.Context, in InstallInput) (InstallState, error) {
			f.mu.Lock()
			f.inputs = append(f.inputs, in)
			f.ids = append(f.ids, workflow.GetInfo(ctx).WorkflowExecution.ID)
			f.running++
			f.maxActive = max(f.maxActive, f.running)
			f.mu.Unlock()
			workflow.Sleep(ctx, time.Minute)
			f.mu.Lock()
			defer f.mu.Unlock()
			f.running--
			if f.fail[in.VM] {
				return InstallState{}, temporal.NewNonRetryableApplicationError(in.VM+": health check failed", ErrTypeInstallFailed, nil)
			}
			return InstallState{Phase: "installed", Reports: []repo.Report{{OK: true, Current: in.Package.Version}}}, nil
		})
	env.OnSignalExternalWorkflow(mock.Anything, names.InventoryID("acme"), "", names.RolloutEndedSignal, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.ended = append(f.ended, arg.(RolloutEnded))
			return nil
		})
	return env
}

func fleetInput(n int) FleetInput {
	in := FleetInput{Tenant: "acme", Rollout: Rollout{Rollout: "r1", Selector: "role=web", Package: "hello", Version: "^1.2", Platform: "linux/amd64"},
		Placement: Placement{Node: "n1", Netns: "drift-acme"}}
	for i := 1; i <= n; i++ {
		in.Targets = append(in.Targets, Target{VM: fmt.Sprintf("vm-%d", i), Address: fmt.Sprintf("10.0.0.%d", i+1)})
	}
	return in
}

func fleetResult(t *testing.T, env *testsuite.TestWorkflowEnvironment) (FleetProgress, error) {
	t.Helper()
	var p FleetProgress
	err := env.GetWorkflowError()
	if err == nil {
		env.GetWorkflowResult(&p)
	} else {
		details(err, &p)
	}
	return p, err
}

func details(err error, into any) {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.HasDetails() {
		appErr.Details(into)
	}
}

// The version is resolved once; every VM gets that exact version, at most
// MaxConcurrency at once, each in its own child workflow.
func TestFleetInstallsEveryVM(t *testing.T) {
	f := &fakeFleet{}
	env := newFleetEnv(t, f)
	in := fleetInput(5)
	in.MaxConcurrency = "40%"
	env.ExecuteWorkflow(InstallFleet, in)
	p, err := fleetResult(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if f.resolved != 1 || f.maxActive != 2 || len(f.inputs) != 5 {
		t.Fatalf("resolved %d times, %d at once, %d installs", f.resolved, f.maxActive, len(f.inputs))
	}
	for i, in := range f.inputs {
		if in.Package.Version != "1.4.0" || in.Node != "n1" || in.Netns != "drift-acme" || in.Action != repo.ActionInstall || f.ids[i] != names.FleetVMID("acme", "r1", in.VM) {
			t.Fatalf("child %d: %+v as %s", i, in, f.ids[i])
		}
	}
	if p.Phase != "done" || p.Counts.Succeeded != 5 || p.Package.Version != "1.4.0" || p.Wanted != "^1.2" || p.VMs[0].Current != "1.4.0" || p.Concurrency != 2 {
		t.Fatalf("progress %+v", p)
	}
	if len(f.ended) != 1 || f.ended[0].Phase != "done" || f.ended[0].ID != "fleet/acme/r1" {
		t.Fatalf("inventory told %+v", f.ended)
	}
}

// More failures than MaxErrors stop the rollout: no VM after that starts,
// those running finish, and the failure carries the per-VM report.
func TestFleetStopsWhenTheErrorBudgetIsSpent(t *testing.T) {
	f := &fakeFleet{fail: map[string]bool{"vm-1": true, "vm-2": true, "vm-4": true}}
	env := newFleetEnv(t, f)
	in := fleetInput(6)
	in.MaxConcurrency, in.MaxErrors = "1", "1"
	env.ExecuteWorkflow(InstallFleet, in)
	p, err := fleetResult(t, env)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeErrorBudget || !strings.Contains(err.Error(), "2 VMs failed, more than the 1 allowed") {
		t.Fatalf("want ErrorBudgetExceeded, got %v", err)
	}
	if len(f.inputs) != 2 || p.Phase != "stopped" || p.Counts.Failed != 2 || p.Counts.Skipped != 4 || p.VMs[5].Status != VMSkipped {
		t.Fatalf("%d installs started; progress %+v", len(f.inputs), p.Counts)
	}
	if !strings.Contains(p.VMs[0].Error, "health check failed") {
		t.Fatalf("vm-1's error: %q", p.VMs[0].Error)
	}
	if len(f.ended) != 1 || f.ended[0].Phase != "stopped" {
		t.Fatalf("inventory told %+v", f.ended)
	}
}

// Failures within the budget end the rollout as done, with the failures
// in its report; running VMs finish when the budget is spent.
func TestFleetFailuresWithinBudget(t *testing.T) {
	f := &fakeFleet{fail: map[string]bool{"vm-3": true}}
	env := newFleetEnv(t, f)
	in := fleetInput(4)
	in.MaxErrors = "25%"
	env.ExecuteWorkflow(InstallFleet, in)
	p, err := fleetResult(t, env)
	if err != nil || p.Phase != "done" || p.Counts.Failed != 1 || p.Counts.Succeeded != 3 || p.ErrorBudget != 1 {
		t.Fatalf("%v %+v", err, p.Counts)
	}

	f = &fakeFleet{fail: map[string]bool{"vm-1": true}}
	env = newFleetEnv(t, f)
	in = fleetInput(4) // all four at once, none allowed to fail
	env.ExecuteWorkflow(InstallFleet, in)
	p, err = fleetResult(t, env)
	if err == nil || len(f.inputs) != 4 || p.Counts.Succeeded != 3 || p.Counts.Skipped != 0 {
		t.Fatalf("running VMs finish: %v, %d started, %+v", err, len(f.inputs), p.Counts)
	}
}

// An uninstall resolves nothing: the version given (none: all) goes to
// every VM.
func TestFleetUninstall(t *testing.T) {
	f := &fakeFleet{}
	env := newFleetEnv(t, f)
	in := fleetInput(2)
	in.Action, in.Version = repo.ActionUninstall, ""
	env.ExecuteWorkflow(InstallFleet, in)
	if _, err := fleetResult(t, env); err != nil {
		t.Fatal(err)
	}
	if f.resolved != 0 || f.inputs[0].Action != repo.ActionUninstall || f.inputs[0].Package.Version != "" {
		t.Fatalf("resolved %d; child %+v", f.resolved, f.inputs[0])
	}
}

// A version nobody published fails the rollout before any VM is touched.
func TestFleetUnknownVersion(t *testing.T) {
	f := &fakeFleet{}
	env := newFleetEnv(t, f)
	in := fleetInput(2)
	in.Version = "^9"
	env.ExecuteWorkflow(InstallFleet, in)
	p, err := fleetResult(t, env)
	if !isType(err, activities.ErrTypeUnknownPackage) || len(f.inputs) != 0 || p.Phase != "failed" || len(f.ended) != 1 {
		t.Fatalf("%v: %d installs, %+v", err, len(f.inputs), p)
	}
}

func TestFleetRejectsBadInputBeforeActing(t *testing.T) {
	for name, mutate := range map[string]func(*FleetInput){
		"selector":          func(in *FleetInput) { in.Selector = "Role=web" },
		"concurrency":       func(in *FleetInput) { in.MaxConcurrency = "lots" },
		"errors":            func(in *FleetInput) { in.MaxErrors = "150%" },
		"version":           func(in *FleetInput) { in.Version = ">= x" },
		"no version":        func(in *FleetInput) { in.Version = "" },
		"uninstall a range": func(in *FleetInput) { in.Action, in.Version = repo.ActionUninstall, "^1" },
		"no targets":        func(in *FleetInput) { in.Targets = nil },
		"twice":             func(in *FleetInput) { in.Targets = append(in.Targets, in.Targets[0]) },
		"address":           func(in *FleetInput) { in.Targets[0].Address = "vm-1.local" },
		"vm name":           func(in *FleetInput) { in.Targets[0].VM = "../vm" },
		"rollout name":      func(in *FleetInput) { in.Rollout.Rollout = "Ünïcode" },
		"long rollout name": func(in *FleetInput) { in.Rollout.Rollout = strings.Repeat("r", 65) },
		"package":           func(in *FleetInput) { in.Package = "../../etc" },
	} {
		t.Run(name, func(t *testing.T) {
			f := &fakeFleet{}
			env := newFleetEnv(t, f)
			in := fleetInput(2)
			mutate(&in)
			env.ExecuteWorkflow(InstallFleet, in)
			if _, err := fleetResult(t, env); !isType(err, activities.ErrTypeInvalidInstall) {
				t.Fatalf("want InvalidInstall, got %v", err)
			}
			if f.resolved != 0 || len(f.inputs) != 0 {
				t.Fatalf("acted on bad input: %d resolves, %d installs", f.resolved, len(f.inputs))
			}
		})
	}
}

// The Progress query shows VMs move through their statuses while the
// rollout runs.
func TestFleetProgressQuery(t *testing.T) {
	f := &fakeFleet{}
	env := newFleetEnv(t, f)
	in := fleetInput(3)
	in.MaxConcurrency = "1"
	var seen []string
	for _, at := range []time.Duration{30 * time.Second, 90 * time.Second} {
		env.RegisterDelayedCallback(func() {
			v, err := env.QueryWorkflow(names.ProgressQuery)
			if err != nil {
				t.Error(err)
				return
			}
			var p FleetProgress
			v.Get(&p)
			var st []string
			for _, vm := range p.VMs {
				st = append(st, vm.Status)
			}
			seen = append(seen, strings.Join(st, ","))
		}, at)
	}
	env.ExecuteWorkflow(InstallFleet, in)
	if _, err := fleetResult(t, env); err != nil {
		t.Fatal(err)
	}
	want := []string{"running,pending,pending", "succeeded,running,pending"}
	if !slices.Equal(seen, want) {
		t.Fatalf("progress %v, want %v", seen, want)
	}
}
