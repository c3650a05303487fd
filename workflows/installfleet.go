package workflows

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/fleet"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/repo"
)

// Error types of fleet rollouts.
const (
	ErrTypeErrorBudget = "ErrorBudgetExceeded"
	ErrTypeNoTargets   = "NoTargets"
)

// Fleet defaults, as AWS Systems Manager's: 50 VMs at once, stop at the
// first failure.
const (
	DefaultMaxConcurrency = "50"
	DefaultMaxErrors      = "0"
)

// Statuses of one VM in a rollout.
const (
	VMPending   = "pending"
	VMRunning   = "running"
	VMSucceeded = "succeeded"
	VMFailed    = "failed"
	VMSkipped   = "skipped" // the rollout stopped before this VM's turn
)

// Placement says which network node serves a tenant network and where its
// tenant gateway listens (see gateway.PairConfig).
type Placement struct {
	Node   string `json:"node,omitempty"`
	Netns  string `json:"netns,omitempty"`
	Listen string `json:"listen,omitempty"`
}

// Target is one VM of a rollout.
type Target struct {
	VM      string `json:"vm"`
	Address string `json:"address"`
}

// Rollout says what to do with a package on the VMs a selector picks; the
// inventory turns it into a FleetInput with the VMs it picked.
type Rollout struct {
	Rollout  string `json:"rollout"`            // name, part of the workflow ID
	Selector string `json:"selector,omitempty"` // "role=web,zone!=b"; "" or "*": every VM
	Package  string `json:"package"`            // name
	// Version is exact, a range ("^1.2") or "latest", resolved once per
	// rollout; an uninstall takes one version or none (every version).
	Version        string        `json:"version,omitempty"`
	Platform       string        `json:"platform"`
	Action         string        `json:"action,omitempty"`
	Strategy       string        `json:"strategy,omitempty"`
	MaxConcurrency string        `json:"maxConcurrency,omitempty"` // "N" or "P%"
	MaxErrors      string        `json:"maxErrors,omitempty"`      // "N" or "P%": more failures stop the rollout
	Timeout        time.Duration `json:"timeout,omitempty"`        // per VM and attempt
	Attempts       int           `json:"attempts,omitempty"`
	Desired        bool          `json:"desired,omitempty"` // made by the inventory to keep a desired state
}

// FleetInput is one rollout to chosen VMs of a tenant.
type FleetInput struct {
	Tenant string `json:"tenant"`
	Rollout
	Placement
	Targets []Target `json:"targets"`
}

// VMProgress is one VM's part in a rollout.
type VMProgress struct {
	VM       string `json:"vm"`
	Address  string `json:"address"`
	Status   string `json:"status"`
	Workflow string `json:"workflow,omitempty"` // its install's workflow ID
	Current  string `json:"current,omitempty"`  // the version live afterwards
	Error    string `json:"error,omitempty"`
}

// FleetCounts count the VMs of a rollout by status.
type FleetCounts struct {
	Total     int `json:"total"`
	Pending   int `json:"pending"`
	Running   int `json:"running"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
}

// FleetProgress is a rollout's live state and its result.
type FleetProgress struct {
	ID          string       `json:"id"`
	Tenant      string       `json:"tenant"`
	Phase       string       `json:"phase"` // resolving, running, stopping, done, stopped, failed
	Action      string       `json:"action"`
	Wanted      string       `json:"wanted"`  // the version as asked
	Package     repo.Package `json:"package"` // as resolved
	Selector    string       `json:"selector"`
	Concurrency int          `json:"concurrency"`
	ErrorBudget int          `json:"errorBudget"`
	Counts      FleetCounts  `json:"counts"`
	VMs         []VMProgress `json:"vms"`
	Error       string       `json:"error,omitempty"`
}

// RolloutEnded tells the inventory how a rollout ended.
type RolloutEnded struct {
	ID    string       `json:"id"`
	Phase string       `json:"phase"`
	VMs   []VMProgress `json:"vms"`
}

// CheckRollout rejects a bad rollout before anything is touched.
func CheckRollout(r Rollout) error {
	var errs []error
	if len(r.Rollout) > 64 || repo.ValidTenant(r.Rollout) != nil {
		errs = append(errs, fmt.Errorf("rollout name %q: lower-case letters, digits and -, at most 64", r.Rollout))
	}
	if _, err := fleet.ParseSelector(r.Selector); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, repo.CheckAction(r.Action, r.Strategy))
	errs = append(errs, repo.Ref{Name: r.Package, Platform: r.Platform}.ValidateAnyVersion())
	switch {
	case r.Action == repo.ActionUninstall && r.Version != "":
		if err := (repo.Ref{Name: r.Package, Version: r.Version, Platform: r.Platform}).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("an uninstall takes one version or none: %w", err))
		}
	case r.Action != repo.ActionUninstall:
		_, err := fleet.ParseConstraint(r.Version)
		errs = append(errs, err)
	}
	for _, b := range []string{r.MaxConcurrency, r.MaxErrors} {
		if b != "" {
			_, err := fleet.ParseBudget(b)
			errs = append(errs, err)
		}
	}
	if r.Timeout < 0 || r.Attempts < 0 {
		errs = append(errs, errors.New("timeout and attempts cannot be negative"))
	}
	return errors.Join(errs...)
}

// CheckFleet rejects a bad fleet input before anything is touched.
func CheckFleet(in FleetInput) error {
	errs := []error{repo.ValidTenant(in.Tenant), CheckRollout(in.Rollout)}
	if len(in.Targets) == 0 {
		errs = append(errs, errors.New("no VM to work on"))
	}
	seen := map[string]bool{}
	for _, t := range in.Targets {
		if err := repo.ValidTenant(t.VM); err != nil {
			errs = append(errs, fmt.Errorf("vm: %w", err))
		}
		if net.ParseIP(t.Address) == nil {
			errs = append(errs, fmt.Errorf("vm %s: address %q is not an IP address", t.VM, t.Address))
		}
		if seen[t.VM] {
			errs = append(errs, fmt.Errorf("vm %s twice", t.VM))
		}
		seen[t.VM] = true
	}
	return errors.Join(errs...)
}

// InstallFleet rolls a package out to a tenant's VMs: it resolves the
// version once, then runs one InstallSoftware child per VM, at most
// MaxConcurrency at once, and stops starting new ones once more than
// MaxErrors have failed (those running finish). Child workflows keep each
// VM's history out of this one, so it stays bounded for large fleets.
func InstallFleet(ctx workflow.Context, in FleetInput) (FleetProgress, error) {
	if err := CheckFleet(in); err != nil {
		return FleetProgress{}, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidInstall, err)
	}
	f := newFleet(ctx, in)
	if err := setProgressQuery(ctx, func() (FleetProgress, error) { return f.snapshot(), nil }); err != nil {
		return FleetProgress{}, err
	}
	return f.run(ctx)
}

type fleetRun struct {
	in      FleetInput
	p       FleetProgress
	running int
	failed  int
}

func newFleet(ctx workflow.Context, in FleetInput) *fleetRun {
	if in.Node == "" {
		in.Node = config.DefaultNetworkNode
	}
	if in.Action == "" {
		in.Action = repo.ActionInstall
	}
	conc, _ := fleet.ParseBudget(firstNonEmpty(in.MaxConcurrency, DefaultMaxConcurrency))
	errs, _ := fleet.ParseBudget(firstNonEmpty(in.MaxErrors, DefaultMaxErrors))
	sel, _ := fleet.ParseSelector(in.Selector)
	f := &fleetRun{in: in, p: FleetProgress{
		ID: workflow.GetInfo(ctx).WorkflowExecution.ID, Tenant: in.Tenant, Phase: "resolving", Action: in.Action,
		Wanted: in.Version, Selector: sel.String(), Package: repo.Package{Ref: repo.Ref{Name: in.Package, Version: in.Version, Platform: in.Platform}},
		Concurrency: conc.Concurrency(len(in.Targets)), ErrorBudget: errs.Errors(len(in.Targets)),
	}}
	for _, t := range in.Targets {
		f.p.VMs = append(f.p.VMs, VMProgress{VM: t.VM, Address: t.Address, Status: VMPending,
			Workflow: names.FleetVMID(in.Tenant, in.Rollout.Rollout, t.VM)})
	}
	return f
}

func (f *fleetRun) run(ctx workflow.Context) (FleetProgress, error) {
	if err := f.resolve(ctx); err != nil {
		return f.end(ctx, "failed", err)
	}
	f.p.Phase = "running"
	f.publish(ctx)
	sel := workflow.NewSelector(ctx)
	next := 0
	for {
		for f.running < f.p.Concurrency && next < len(f.p.VMs) && f.failed <= f.p.ErrorBudget {
			f.start(ctx, sel, next)
			next++
		}
		if f.failed > f.p.ErrorBudget && f.p.Phase == "running" {
			f.p.Phase = "stopping"
			for i := next; i < len(f.p.VMs); i++ {
				f.p.VMs[i].Status = VMSkipped
			}
			next = len(f.p.VMs)
			f.publish(ctx)
		}
		if f.running == 0 {
			break
		}
		sel.Select(ctx)
		f.publish(ctx)
	}
	if f.failed > f.p.ErrorBudget {
		return f.end(ctx, "stopped", fmt.Errorf("%s stopped: %d VMs failed, more than the %d allowed (--max-errors %s); %d skipped",
			f.p.ID, f.failed, f.p.ErrorBudget, firstNonEmpty(f.in.MaxErrors, DefaultMaxErrors), f.snapshot().Counts.Skipped))
	}
	return f.end(ctx, "done", nil)
}

// resolve pins the version once for the whole rollout; an uninstall takes
// the version as given (none: every version).
func (f *fleetRun) resolve(ctx workflow.Context) error {
	if f.in.Action == repo.ActionUninstall {
		return nil
	}
	actx := onNode(ctx, f.in.Node, fmt.Sprintf("resolve %s@%s for tenant %s", f.in.Package, f.in.Version, f.in.Tenant))
	r := activities.Resolve{Tenant: f.in.Tenant, Name: f.in.Package, Version: f.in.Version, Platform: f.in.Platform}
	return nodeUnavailable(workflow.ExecuteActivity(actx, installActs.ResolvePackage, r).Get(ctx, &f.p.Package), f.in.Node)
}

// start runs VM i's install as a child workflow; its end is handled when
// the selector picks it.
func (f *fleetRun) start(ctx workflow.Context, sel workflow.Selector, i int) {
	vm := &f.p.VMs[i]
	vm.Status = VMRunning
	f.running++
	ref := repo.Ref{Name: f.in.Package, Version: f.p.Package.Version, Platform: f.in.Platform}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            vm.Workflow,
		TaskQueue:             names.TaskQueue,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL, // a cancelled rollout withdraws its instructions
		StaticSummary:         fmt.Sprintf("%s %s %s (rollout %s)", vm.VM, verbOf(f.in.Action), ref, f.in.Rollout.Rollout),
		TypedSearchAttributes: temporal.NewSearchAttributes(names.KindKey.ValueSet(names.KindInstall)),
	})
	child := workflow.ExecuteChildWorkflow(cctx, InstallSoftware, InstallInput{
		Tenant: f.in.Tenant, VM: vm.VM, Address: vm.Address, Package: ref, Action: f.in.Action, Strategy: f.in.Strategy,
		Node: f.in.Node, Netns: f.in.Netns, Listen: f.in.Listen, Timeout: f.in.Timeout, Attempts: f.in.Attempts,
	})
	sel.AddFuture(child, func(fut workflow.Future) {
		var st InstallState
		err := fut.Get(ctx, &st)
		f.running--
		if err != nil {
			vm.Status, vm.Error = VMFailed, RootMessage(err)
			f.failed++
			return
		}
		vm.Status = VMSucceeded
		if n := len(st.Reports); n > 0 {
			vm.Current = st.Reports[n-1].Current
		}
	})
}

// end records how the rollout ended, tells the inventory, and returns.
func (f *fleetRun) end(ctx workflow.Context, phase string, err error) (FleetProgress, error) {
	f.p.Phase = phase
	var appErr *temporal.ApplicationError
	switch {
	case errors.As(err, &appErr):
		f.p.Error = appErr.Message()
	case err != nil:
		f.p.Error = RootMessage(err)
	}
	f.publish(ctx)
	ended := RolloutEnded{ID: f.p.ID, Phase: phase, VMs: f.p.VMs}
	if serr := workflow.SignalExternalWorkflow(ctx, names.InventoryID(f.in.Tenant), "", names.RolloutEndedSignal, ended).Get(ctx, nil); serr != nil {
		workflow.GetLogger(ctx).Warn("inventory not told of the rollout's end", "err", serr)
	}
	// A failure carries the per-VM report, so `drift install` prints it.
	switch {
	case phase == "stopped":
		return f.snapshot(), temporal.NewNonRetryableApplicationError(f.p.Error, ErrTypeErrorBudget, nil, f.snapshot())
	case errors.As(err, &appErr):
		return f.snapshot(), temporal.NewNonRetryableApplicationError(f.p.Error, appErr.Type(), nil, f.snapshot())
	}
	return f.snapshot(), err
}

func (f *fleetRun) snapshot() FleetProgress {
	p := f.p
	p.VMs = append([]VMProgress(nil), f.p.VMs...)
	p.Counts = FleetCounts{Total: len(p.VMs)}
	for _, vm := range p.VMs {
		switch vm.Status {
		case VMPending:
			p.Counts.Pending++
		case VMRunning:
			p.Counts.Running++
		case VMSucceeded:
			p.Counts.Succeeded++
		case VMFailed:
			p.Counts.Failed++
		case VMSkipped:
			p.Counts.Skipped++
		}
	}
	return p
}

// publish shows the rollout's progress in the UI.
func (f *fleetRun) publish(ctx workflow.Context) {
	p := f.snapshot()
	lines := []string{fmt.Sprintf("**%s** %s %s on %d VMs (%s): %d succeeded, %d failed, %d running, %d pending, %d skipped · at most %d at once, %d failures allowed",
		p.Phase, p.Action, p.Package.Ref, p.Counts.Total, p.Selector, p.Counts.Succeeded, p.Counts.Failed, p.Counts.Running, p.Counts.Pending, p.Counts.Skipped, p.Concurrency, p.ErrorBudget)}
	for _, vm := range p.VMs {
		if vm.Status == VMFailed {
			lines = append(lines, "- "+vm.VM+": "+vm.Error)
		}
	}
	workflow.SetCurrentDetails(ctx, strings.Join(lines, "\n\n"))
}

// verbOf says an action as the UI does ("installs", "updates to").
func verbOf(action string) string {
	switch action {
	case repo.ActionUpdate:
		return "updates to"
	case repo.ActionUninstall:
		return "uninstalls"
	}
	return "installs"
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
