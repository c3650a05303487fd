package workflows

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/fleet"
	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/repo"
)

// ErrTypeVMConflict refuses a registration that would take another VM's
// name or address.
const ErrTypeVMConflict = "VMConflict"

// Inventory bounds.
const (
	// DefaultInventoryHistory is how many events an inventory's run keeps
	// before it continues as new.
	DefaultInventoryHistory = 4000
	// inventoryGatewayEvery re-ensures the tenant's gateway pair, so a
	// network node that restarted serves the tenant's agents again.
	inventoryGatewayEvery = time.Minute
	// keptRollouts is how many ended rollouts the inventory remembers.
	keptRollouts = 50
	// keptRefusals is how many refused registrations it shows.
	keptRefusals = 20
)

// VMRecord is one VM of a tenant.
type VMRecord struct {
	Name      string            `json:"name"`
	Address   string            `json:"address"`
	Labels    map[string]string `json:"labels,omitempty"`
	Declared  bool              `json:"declared,omitempty"`  // added by the admin, not (only) by its agent
	Installed []repo.Installed  `json:"installed,omitempty"` // as its agent last said
	Joined    time.Time         `json:"joined"`
	Seen      time.Time         `json:"seen"`
}

// current is the VM's live version of a package ("" when it has none).
func (vm VMRecord) current(pkg string) string {
	for _, in := range vm.Installed {
		if in.Name == pkg {
			return in.Version
		}
	}
	return ""
}

// VMRegistration adds a VM or refreshes it: from its agent (through the
// gateways, which sign the address) or declared by the admin.
type VMRegistration struct {
	Name      string            `json:"name"`
	Address   string            `json:"address"`
	Labels    map[string]string `json:"labels,omitempty"`
	Installed []repo.Installed  `json:"installed,omitempty"`
	Declared  bool              `json:"declared,omitempty"`
}

// VMInstalled is what a VM's agent has, sent with each of its reports.
type VMInstalled struct {
	Address   string           `json:"address"`
	Installed []repo.Installed `json:"installed"`
}

// Desire sets a package's desired state (keep it at Version on every VM
// Selector picks, now and when VMs join) or, with Remove, drops it
// (nothing is uninstalled).
type Desire struct {
	Rollout
	Remove bool `json:"remove,omitempty"`
}

// Refusal is a registration from an agent the inventory did not take.
type Refusal struct {
	At      time.Time `json:"at"`
	Name    string    `json:"name"`
	Address string    `json:"address"`
	Reason  string    `json:"reason"`
}

// RolloutRecord is a rollout the inventory started.
type RolloutRecord struct {
	ID       string   `json:"id"`
	Package  string   `json:"package"`
	Version  string   `json:"version"`
	Action   string   `json:"action"`
	Selector string   `json:"selector"`
	Desired  bool     `json:"desired,omitempty"`
	VMs      []string `json:"vms"`
	Phase    string   `json:"phase"` // running until the rollout says how it ended
	Failed   []string `json:"failed,omitempty"`
}

// InventoryState is a tenant's inventory: what the workflow keeps and
// carries across continue-as-new.
type InventoryState struct {
	Tenant       string          `json:"tenant"`
	Gateway      *Placement      `json:"gateway,omitempty"`
	Pair         gateway.Pair    `json:"pair"`
	GatewayError string          `json:"gatewayError,omitempty"`
	VMs          []VMRecord      `json:"vms"`               // by name
	Desired      []Rollout       `json:"desired,omitempty"` // by package
	Rollouts     []RolloutRecord `json:"rollouts,omitempty"`
	Refused      []Refusal       `json:"refused,omitempty"` // the latest agent registrations not taken
	Seq          int             `json:"seq"`
}

// DriftRow says how one VM stands against one desired package.
type DriftRow struct {
	VM      string `json:"vm"`
	Package string `json:"package"`
	Want    string `json:"want"`
	Have    string `json:"have,omitempty"`
	Drift   string `json:"drift,omitempty"`   // "" when the VM complies
	Rollout string `json:"rollout,omitempty"` // a rollout under way for it
}

// InventoryView is what the Progress query answers: the state and the
// drift of every VM a desired state selects.
type InventoryView struct {
	InventoryState
	Drift []DriftRow `json:"drift,omitempty"`
}

// InventoryInput starts a tenant's inventory, or continues it.
type InventoryInput struct {
	Tenant     string          `json:"tenant"`
	State      *InventoryState `json:"state,omitempty"`
	MaxHistory int             `json:"maxHistory,omitempty"` // DefaultInventoryHistory when 0
}

// Inventory keeps a tenant's VMs (registered by their agents, by signal,
// so a fleet of them may register at once; or declared by the admin, by
// update, which answers),
// their labels and packages, and the desired state of packages; it places
// the tenant's gateway pair and starts rollouts (InstallFleet children) for
// the VMs a selector picks, and for VMs that join or drift from a desired
// state. Handlers only enqueue; the main loop changes state in order. It
// runs until cancelled, continuing as new as its history grows.
func Inventory(ctx workflow.Context, in InventoryInput) error {
	if err := repo.ValidTenant(in.Tenant); err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidInstall, err)
	}
	s := &inventory{in: in, st: InventoryState{Tenant: in.Tenant}}
	if in.State != nil {
		s.st = *in.State
	}
	if s.in.MaxHistory == 0 {
		s.in.MaxHistory = DefaultInventoryHistory
	}
	if err := s.registerHandlers(ctx); err != nil {
		return err
	}
	return s.run(ctx)
}

type inventory struct {
	in      InventoryInput
	st      InventoryState
	ops     []*invOp
	signals []workflow.ReceiveChannel
}

// invOp is one change, applied by the main loop in arrival order.
type invOp struct {
	apply func(ctx workflow.Context)
	done  bool
}

func (s *inventory) enqueue(apply func(ctx workflow.Context)) *invOp {
	o := &invOp{apply: apply}
	s.ops = append(s.ops, o)
	return o
}

// call has the main loop run fn and returns what it returned.
func call[T any](ctx workflow.Context, s *inventory, fn func(workflow.Context) (T, error)) (T, error) {
	var out T
	var fnErr error
	o := s.enqueue(func(ctx workflow.Context) { out, fnErr = fn(ctx) })
	if err := workflow.Await(ctx, func() bool { return o.done }); err != nil {
		return out, err
	}
	return out, fnErr
}

func (s *inventory) run(ctx workflow.Context) error {
	var tick workflow.Future
	if s.st.Gateway != nil {
		s.ensure(ctx)
	}
	for {
		for len(s.ops) > 0 {
			o := s.ops[0]
			s.ops = s.ops[1:]
			o.apply(ctx)
			o.done = true
		}
		s.publish(ctx)
		if s.shouldContinueAsNew(ctx) {
			next := s.in
			state := s.st
			next.State = &state
			return workflow.NewContinueAsNewError(ctx, Inventory, next)
		}
		if s.st.Gateway != nil && tick == nil {
			tick = workflow.NewTimer(ctx, inventoryGatewayEvery)
		}
		if err := workflow.Await(ctx, func() bool {
			return len(s.ops) > 0 || tick != nil && tick.IsReady() || s.shouldContinueAsNew(ctx)
		}); err != nil {
			return err
		}
		if tick != nil && tick.IsReady() {
			tick = nil
			s.ensure(ctx)
		}
	}
}

func (s *inventory) shouldContinueAsNew(ctx workflow.Context) bool {
	for _, ch := range s.signals {
		if ch.Len() > 0 {
			return false
		}
	}
	info := workflow.GetInfo(ctx)
	return len(s.ops) == 0 && workflow.AllHandlersFinished(ctx) &&
		(info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > s.in.MaxHistory)
}

func (s *inventory) registerHandlers(ctx workflow.Context) error {
	if err := setProgressQuery(ctx, func() (InventoryView, error) { return s.view(), nil }); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, names.DeclareUpdate,
		func(ctx workflow.Context, reg VMRegistration) (VMRecord, error) {
			return call(ctx, s, func(ctx workflow.Context) (VMRecord, error) { return s.register(ctx, reg) })
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, reg VMRegistration) error { return s.checkRegistration(reg) }},
	); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, names.ForgetUpdate,
		func(ctx workflow.Context, name string) error {
			_, err := call(ctx, s, func(workflow.Context) (any, error) {
				s.st.VMs = slices.DeleteFunc(s.st.VMs, func(vm VMRecord) bool { return vm.Name == name })
				return nil, nil
			})
			return err
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, name string) error {
			if s.vm(name) < 0 {
				return invalid(activities.ErrTypeInvalidInstall, "tenant %s has no VM %q", s.st.Tenant, name)
			}
			return nil
		}},
	); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, names.GatewayUpdate,
		func(ctx workflow.Context, p Placement) (gateway.Pair, error) {
			return call(ctx, s, func(ctx workflow.Context) (gateway.Pair, error) {
				s.st.Gateway = &p
				err := s.ensure(ctx)
				return s.st.Pair, err
			})
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, p Placement) error { return checkPlacement(p) }},
	); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, names.RolloutUpdate,
		func(ctx workflow.Context, r Rollout) (string, error) {
			return call(ctx, s, func(ctx workflow.Context) (string, error) { return s.rollout(ctx, r, s.targets(r, nil, false)) })
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, r Rollout) error { return s.checkRollout(r) }},
	); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, names.DesireUpdate,
		func(ctx workflow.Context, d Desire) (string, error) {
			return call(ctx, s, func(ctx workflow.Context) (string, error) { return s.desire(ctx, d) })
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, d Desire) error { return checkDesire(d) }},
	); err != nil {
		return err
	}
	registrations := workflow.GetSignalChannel(ctx, names.RegisterSignal)
	installed := workflow.GetSignalChannel(ctx, names.InstalledSignal)
	ended := workflow.GetSignalChannel(ctx, names.RolloutEndedSignal)
	s.signals = []workflow.ReceiveChannel{registrations, installed, ended}
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(registrations, func(c workflow.ReceiveChannel, _ bool) {
				var reg VMRegistration
				c.Receive(ctx, &reg)
				reg.Declared = false // only the admin's update declares
				s.enqueue(func(ctx workflow.Context) { s.registerFromAgent(ctx, reg) })
			})
			sel.AddReceive(installed, func(c workflow.ReceiveChannel, _ bool) {
				var in VMInstalled
				c.Receive(ctx, &in)
				s.enqueue(func(ctx workflow.Context) { s.installed(ctx, in) })
			})
			sel.AddReceive(ended, func(c workflow.ReceiveChannel, _ bool) {
				var e RolloutEnded
				c.Receive(ctx, &e)
				s.enqueue(func(workflow.Context) { s.ended(e) })
			})
			sel.Select(ctx)
		}
	})
	return nil
}

// vm is the index of the named VM, or -1.
func (s *inventory) vm(name string) int {
	return slices.IndexFunc(s.st.VMs, func(vm VMRecord) bool { return vm.Name == name })
}

// checkRegistration refuses bad names, addresses and labels, and a VM that
// would take another's name or address (an agent cannot move a VM; the
// admin can, by declaring it).
func (s *inventory) checkRegistration(reg VMRegistration) error {
	if err := CheckRegistration(reg); err != nil {
		return invalid(activities.ErrTypeInvalidInstall, "%v", err)
	}
	for _, vm := range s.st.VMs {
		switch {
		case vm.Name == reg.Name && vm.Address != reg.Address && !reg.Declared:
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("VM %s of tenant %s is at %s, not %s: forget it first (drift inventory rm %s %s)",
				vm.Name, s.st.Tenant, vm.Address, reg.Address, s.st.Tenant, vm.Name), ErrTypeVMConflict, nil)
		case vm.Name != reg.Name && vm.Address == reg.Address:
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s is VM %s of tenant %s already, not %s: forget it first (drift inventory rm %s %s)",
				reg.Address, vm.Name, s.st.Tenant, reg.Name, s.st.Tenant, vm.Name), ErrTypeVMConflict, nil)
		}
	}
	return nil
}

// CheckRegistration refuses a registration with a bad name, address or
// labels.
func CheckRegistration(reg VMRegistration) error {
	if err := errors.Join(repo.ValidTenant(reg.Name), checkAddress(reg.Address), fleet.ValidLabels(reg.Labels)); err != nil {
		return fmt.Errorf("registration of %q: %w", reg.Name, err)
	}
	return nil
}

func checkAddress(addr string) error {
	if net.ParseIP(addr) == nil {
		return fmt.Errorf("address %q is not an IP address", addr)
	}
	return nil
}

var nodePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func checkPlacement(p Placement) error {
	var errs []error
	if p.Node != "" && !nodePattern.MatchString(p.Node) {
		errs = append(errs, fmt.Errorf("network node %q: letters, digits and . _ -", p.Node))
	}
	if p.Netns != "" && !nodePattern.MatchString(p.Netns) {
		errs = append(errs, fmt.Errorf("network namespace %q: letters, digits and . _ -", p.Netns))
	}
	if p.Listen != "" {
		if _, _, err := net.SplitHostPort(p.Listen); err != nil {
			errs = append(errs, fmt.Errorf("listen %q: %v", p.Listen, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return invalid(activities.ErrTypeInvalidInstall, "%v", err)
	}
	return nil
}

// checkRollout refuses a bad rollout, a name in use, and one no VM fits.
func (s *inventory) checkRollout(r Rollout) error {
	if err := CheckRollout(r); err != nil {
		return invalid(activities.ErrTypeInvalidInstall, "%v", err)
	}
	id := names.FleetID(s.st.Tenant, r.Rollout)
	if slices.ContainsFunc(s.st.Rollouts, func(rec RolloutRecord) bool { return rec.ID == id }) {
		return invalid(activities.ErrTypeInvalidInstall, "rollout %s exists: name the new one differently", id)
	}
	if len(s.targets(r, nil, false)) == 0 {
		return invalid(ErrTypeNoTargets, "no VM of tenant %s matches %q (the inventory has %d VMs): start agents with "+
			"`drift agent --name VM --label k=v` or declare VMs with `drift inventory add`", s.st.Tenant, r.Selector, len(s.st.VMs))
	}
	return nil
}

func checkDesire(d Desire) error {
	if d.Remove {
		if err := (repo.Ref{Name: d.Package, Platform: d.Platform}).ValidateAnyVersion(); err != nil {
			return invalid(activities.ErrTypeInvalidInstall, "%v", err)
		}
		return nil
	}
	d.Rollout.Rollout, d.Action, d.Strategy = "desired", repo.ActionUpdate, repo.StrategyInPlace
	if err := CheckRollout(d.Rollout); err != nil {
		return invalid(activities.ErrTypeInvalidInstall, "%v", err)
	}
	return nil
}

// targets are the VMs r's selector picks, by name: only those named in
// only (nil: all), and with drifting only those whose version of the
// package does not fit r's and that no running rollout covers.
func (s *inventory) targets(r Rollout, only []string, drifting bool) []Target {
	sel, _ := fleet.ParseSelector(r.Selector)
	want, _ := fleet.ParseConstraint(r.Version)
	var out []Target
	for _, vm := range s.st.VMs {
		if !sel.Matches(vm.Labels) || only != nil && !slices.Contains(only, vm.Name) {
			continue
		}
		if drifting && (fleet.Drift(want, vm.current(r.Package)) == "" || s.pending(vm.Name, r.Package) != "") {
			continue
		}
		out = append(out, Target{VM: vm.Name, Address: vm.Address})
	}
	return out
}

// pending is the running rollout that covers vm's package, if any.
func (s *inventory) pending(vm, pkg string) string {
	for _, r := range s.st.Rollouts {
		if r.Phase == "running" && r.Package == pkg && slices.Contains(r.VMs, vm) {
			return r.ID
		}
	}
	return ""
}

// register adds or refreshes a VM; one that joins, or whose labels change,
// gets what the desired states ask of it.
func (s *inventory) register(ctx workflow.Context, reg VMRegistration) (VMRecord, error) {
	if err := s.checkRegistration(reg); err != nil { // the state may have changed since validation
		return VMRecord{}, err
	}
	now := workflow.Now(ctx)
	i := s.vm(reg.Name)
	if i < 0 {
		s.st.VMs = append(s.st.VMs, VMRecord{Name: reg.Name, Joined: now})
		slices.SortFunc(s.st.VMs, func(a, b VMRecord) int { return strings.Compare(a.Name, b.Name) })
		i = s.vm(reg.Name)
	}
	vm := &s.st.VMs[i]
	joined := vm.Address == ""
	relabelled := false
	if reg.Declared || len(reg.Labels) > 0 {
		relabelled = fleet.LabelString(vm.Labels) != fleet.LabelString(reg.Labels)
		vm.Labels = reg.Labels
	}
	vm.Address = reg.Address
	vm.Declared = vm.Declared || reg.Declared
	if !reg.Declared {
		vm.Installed, vm.Seen = reg.Installed, now
	}
	rec := *vm
	if joined || relabelled {
		name := reg.Name
		s.enqueue(func(ctx workflow.Context) { s.reconcile(ctx, []string{name}) })
	}
	return rec, nil
}

// registerFromAgent registers a VM its agent announced; what the inventory
// cannot take is kept among the refusals, for `drift inventory show`.
func (s *inventory) registerFromAgent(ctx workflow.Context, reg VMRegistration) {
	if _, err := s.register(ctx, reg); err != nil {
		reason := err.Error()
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) {
			reason = appErr.Message()
		}
		s.st.Refused = append(s.st.Refused, Refusal{At: workflow.Now(ctx), Name: reg.Name, Address: reg.Address, Reason: reason})
		if n := len(s.st.Refused); n > keptRefusals {
			s.st.Refused = slices.Clone(s.st.Refused[n-keptRefusals:])
		}
	}
}

// installed takes what a VM's agent has now as the VM's truth.
func (s *inventory) installed(ctx workflow.Context, in VMInstalled) {
	for i := range s.st.VMs {
		if s.st.VMs[i].Address == in.Address {
			s.st.VMs[i].Installed, s.st.VMs[i].Seen = in.Installed, workflow.Now(ctx)
		}
	}
}

// ended records how a rollout ended.
func (s *inventory) ended(e RolloutEnded) {
	for i := range s.st.Rollouts {
		r := &s.st.Rollouts[i]
		if r.ID != e.ID {
			continue
		}
		r.Phase, r.Failed = e.Phase, nil
		for _, vm := range e.VMs {
			if vm.Status == VMFailed {
				r.Failed = append(r.Failed, vm.VM)
			}
		}
	}
}

// desire sets or drops a package's desired state; a set one is rolled out
// at once to the VMs that drift from it.
func (s *inventory) desire(ctx workflow.Context, d Desire) (string, error) {
	s.st.Desired = slices.DeleteFunc(s.st.Desired, func(r Rollout) bool { return r.Package == d.Package && r.Platform == d.Platform })
	if d.Remove {
		return "", nil
	}
	r := d.Rollout
	r.Action, r.Strategy, r.Desired = repo.ActionUpdate, repo.StrategyInPlace, true
	s.st.Desired = append(s.st.Desired, r)
	slices.SortFunc(s.st.Desired, func(a, b Rollout) int { return strings.Compare(a.Package+a.Platform, b.Package+b.Platform) })
	return s.rolloutDesired(ctx, r, nil)
}

// reconcile rolls every desired state out to the named VMs that drift.
func (s *inventory) reconcile(ctx workflow.Context, only []string) {
	for _, d := range slices.Clone(s.st.Desired) {
		if _, err := s.rolloutDesired(ctx, d, only); err != nil {
			workflow.GetLogger(ctx).Warn("desired state not rolled out", "package", d.Package, "err", err)
		}
	}
}

var notInName = regexp.MustCompile(`[^a-z0-9-]+`)

// rolloutDesired starts a rollout of desired state d to the VMs (of only;
// nil: all) that drift from it; "" when none does.
func (s *inventory) rolloutDesired(ctx workflow.Context, d Rollout, only []string) (string, error) {
	targets := s.targets(d, only, true)
	if len(targets) == 0 {
		return "", nil
	}
	s.st.Seq++
	pkg := notInName.ReplaceAllString(d.Package, "-")
	d.Rollout = fmt.Sprintf("desired-%.40s-%d", pkg, s.st.Seq)
	return s.rollout(ctx, d, targets)
}

// rollout starts an InstallFleet child for targets and records it; the
// child outlives this run (continue-as-new) and reports its end by signal.
func (s *inventory) rollout(ctx workflow.Context, r Rollout, targets []Target) (string, error) {
	id := names.FleetID(s.st.Tenant, r.Rollout)
	if len(targets) == 0 {
		return "", invalid(ErrTypeNoTargets, "no VM of tenant %s matches %q any more", s.st.Tenant, r.Selector)
	}
	placement := Placement{}
	if s.st.Gateway != nil {
		placement = *s.st.Gateway
	}
	sel, _ := fleet.ParseSelector(r.Selector)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            id,
		TaskQueue:             names.TaskQueue,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		StaticSummary:         fmt.Sprintf("%s %s@%s on %d VMs of %s (%s)", actionOf(r.Action), r.Package, dashIfEmpty(r.Version), len(targets), s.st.Tenant, sel),
		TypedSearchAttributes: temporal.NewSearchAttributes(names.KindKey.ValueSet(names.KindFleet)),
	})
	child := workflow.ExecuteChildWorkflow(cctx, InstallFleet, FleetInput{Tenant: s.st.Tenant, Rollout: r, Placement: placement, Targets: targets})
	if err := child.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		return "", invalid(activities.ErrTypeInvalidInstall, "rollout %s not started: %v", id, RootMessage(err))
	}
	rec := RolloutRecord{ID: id, Package: r.Package, Version: r.Version, Action: actionOf(r.Action), Selector: sel.String(), Desired: r.Desired, Phase: "running"}
	for _, t := range targets {
		rec.VMs = append(rec.VMs, t.VM)
	}
	s.st.Rollouts = append(s.st.Rollouts, rec)
	for len(s.st.Rollouts) > keptRollouts {
		i := slices.IndexFunc(s.st.Rollouts, func(r RolloutRecord) bool { return r.Phase != "running" })
		if i < 0 {
			break
		}
		s.st.Rollouts = slices.Delete(s.st.Rollouts, i, i+1)
	}
	return id, nil
}

// ensure starts (or finds) the tenant's gateway pair and records how it
// went.
func (s *inventory) ensure(ctx workflow.Context) error {
	p := *s.st.Gateway
	node := firstNonEmpty(p.Node, config.DefaultNetworkNode)
	err := ensureGateway(ctx, node, gateway.PairConfig{Tenant: s.st.Tenant, Netns: p.Netns, Listen: p.Listen}, &s.st.Pair)
	s.st.GatewayError = ""
	if err != nil {
		s.st.GatewayError = RootMessage(err)
		workflow.GetLogger(ctx).Warn("gateway pair not ensured", "tenant", s.st.Tenant, "err", err)
	}
	return err
}

// view is the state with every VM's drift from the desired states.
func (s *inventory) view() InventoryView {
	v := InventoryView{InventoryState: s.st}
	v.VMs = slices.Clone(s.st.VMs)
	v.Rollouts = slices.Clone(s.st.Rollouts)
	for _, vm := range s.st.VMs {
		for _, d := range s.st.Desired {
			sel, _ := fleet.ParseSelector(d.Selector)
			if !sel.Matches(vm.Labels) {
				continue
			}
			want, _ := fleet.ParseConstraint(d.Version)
			have := vm.current(d.Package)
			v.Drift = append(v.Drift, DriftRow{VM: vm.Name, Package: d.Package, Want: d.Version, Have: have,
				Drift: fleet.Drift(want, have), Rollout: s.pending(vm.Name, d.Package)})
		}
	}
	return v
}

// publish shows the inventory in the UI.
func (s *inventory) publish(ctx workflow.Context) {
	v := s.view()
	drifting, running := 0, 0
	for _, d := range v.Drift {
		if d.Drift != "" {
			drifting++
		}
	}
	for _, r := range v.Rollouts {
		if r.Phase == "running" {
			running++
		}
	}
	gw := "not placed"
	if s.st.Gateway != nil {
		gw = dashIfEmpty(s.st.Pair.Address)
		if s.st.GatewayError != "" {
			gw += " (" + s.st.GatewayError + ")"
		}
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%d VMs** · %d desired packages, %d VM/package pairs drifting · %d rollouts running · gateway %s",
		len(v.VMs), len(v.Desired), drifting, running, gw))
}

func actionOf(action string) string { return firstNonEmpty(action, repo.ActionInstall) }
