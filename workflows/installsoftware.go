package workflows

import (
	"errors"
	"fmt"
	"net"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/repo"
)

// Error types of an install's own failures.
const (
	ErrTypeInstallFailed  = "InstallFailed"
	ErrTypeInstallTimeout = "InstallTimeout"
	// ErrTypeNodeUnavailable: no worker of the network node took an
	// activity within nodeWait.
	ErrTypeNodeUnavailable = "NodeUnavailable"
)

// Install defaults.
const (
	DefaultInstallTimeout  = 10 * time.Minute
	DefaultInstallAttempts = 3
	// gatewayCheckEvery re-ensures the gateway pair while waiting, so a
	// network node that restarted serves the VM's report again.
	gatewayCheckEvery = 20 * time.Second
	retryBackoff      = 5 * time.Second
)

// InstallInput asks one VM of a tenant network to install, update or
// uninstall a package.
type InstallInput struct {
	Tenant  string   `json:"tenant"`  // tenant network id
	VM      string   `json:"vm"`      // the VM's name
	Address string   `json:"address"` // the VM's address in the tenant network
	Package repo.Ref `json:"package"` // no version: every version (uninstall only)
	// Action is repo.ActionInstall (""), ActionUpdate or ActionUninstall;
	// Strategy how an update goes (repo.StrategyInPlace or StrategyReplace).
	Action   string `json:"action,omitempty"`
	Strategy string `json:"strategy,omitempty"`
	// Node is the network node whose gateways serve the tenant network.
	Node string `json:"node,omitempty"`
	// Netns and Listen place the tenant gateway (see gateway.PairConfig).
	Netns  string `json:"netns,omitempty"`
	Listen string `json:"listen,omitempty"`
	// Timeout bounds each wait for the agent's report; Attempts bounds
	// installs that fail transiently (download, checksum in transit).
	Timeout  time.Duration `json:"timeout,omitempty"`
	Attempts int           `json:"attempts,omitempty"`
}

// InstallState is what Status returns and the workflow's result.
type InstallState struct {
	ID          string        `json:"id"`
	Phase       string        `json:"phase"` // gateway, instructing, waiting, retrying, installed
	Attempt     int           `json:"attempt"`
	Instruction string        `json:"instruction,omitempty"`
	Gateway     gateway.Pair  `json:"gateway"`
	Package     repo.Package  `json:"package"`
	Reports     []repo.Report `json:"reports,omitempty"`
	Error       string        `json:"error,omitempty"`
}

// InstallSoftware makes sure the tenant network's gateway pair runs, posts
// the instruction for the VM, and waits for the VM agent's report; a
// transient failure is retried with a new instruction.
func InstallSoftware(ctx workflow.Context, in InstallInput) (InstallState, error) {
	s, err := newInstall(ctx, in)
	if err != nil {
		return InstallState{}, err
	}
	return s.run(ctx)
}

type install struct {
	in      InstallInput
	state   InstallState
	reports workflow.ReceiveChannel
}

// CheckInstall rejects bad input before anything is touched.
func CheckInstall(in InstallInput) error {
	var errs []error
	if err := repo.ValidTenant(in.Tenant); err != nil {
		errs = append(errs, err)
	}
	if err := repo.ValidTenant(in.VM); err != nil {
		errs = append(errs, fmt.Errorf("vm: %w", err))
	}
	if net.ParseIP(in.Address) == nil {
		errs = append(errs, fmt.Errorf("address %q is not an IP address", in.Address))
	}
	if err := repo.CheckAction(in.Action, in.Strategy); err != nil {
		errs = append(errs, err)
	}
	if in.Action == repo.ActionUninstall {
		errs = append(errs, in.Package.ValidateAnyVersion())
	} else {
		errs = append(errs, in.Package.Validate())
	}
	if in.Timeout < 0 || in.Attempts < 0 {
		errs = append(errs, errors.New("timeout and attempts cannot be negative"))
	}
	return errors.Join(errs...)
}

func newInstall(ctx workflow.Context, in InstallInput) (*install, error) {
	if err := CheckInstall(in); err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidInstall, err)
	}
	if in.Node == "" {
		in.Node = config.DefaultNetworkNode
	}
	if in.Timeout == 0 {
		in.Timeout = DefaultInstallTimeout
	}
	if in.Attempts == 0 {
		in.Attempts = DefaultInstallAttempts
	}
	s := &install{in: in, reports: workflow.GetSignalChannel(ctx, names.ReportSignal)}
	s.state.ID = workflow.GetInfo(ctx).WorkflowExecution.ID
	if err := setProgressQuery(ctx, func() (InstallState, error) { return s.state, nil }, names.LegacyInstallQuery); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *install) run(ctx workflow.Context) (InstallState, error) {
	pkg := s.in.Package
	for s.state.Attempt = 1; ; s.state.Attempt++ {
		s.phase(ctx, "gateway", fmt.Sprintf("attempt %d: gateway pair for tenant network %s on %s", s.state.Attempt, s.in.Tenant, s.in.Node))
		if err := s.ensureGateway(ctx); err != nil {
			return s.fail(err)
		}
		s.phase(ctx, "instructing", fmt.Sprintf("attempt %d: instruct %s (%s) to install %s", s.state.Attempt, s.in.VM, s.in.Address, pkg))
		instr := repo.Instruction{
			ID: fmt.Sprintf("%s#%d", s.state.ID, s.state.Attempt), WorkflowID: s.state.ID,
			Tenant: s.in.Tenant, Client: s.in.Address, Action: s.in.Action, Strategy: s.in.Strategy, Package: repo.Package{Ref: pkg},
		}
		actx := onNode(ctx, s.in.Node, "post instruction: "+s.in.VM+" "+s.verb()+" "+pkg.String())
		if err := workflow.ExecuteActivity(actx, installActs.PostInstruction, instr).Get(ctx, &instr); err != nil {
			return s.fail(nodeUnavailable(err, s.in.Node))
		}
		s.state.Instruction, s.state.Package = instr.ID, instr.Package
		s.phase(ctx, "waiting", fmt.Sprintf("attempt %d: waiting for %s's agent (up to %s)", s.state.Attempt, s.in.VM, s.in.Timeout))
		rep, ok, err := s.waitReport(ctx)
		if err != nil {
			// Cancelled or failed while the VM may still act: take the
			// instruction back, even from a cancelled workflow.
			dctx, _ := workflow.NewDisconnectedContext(ctx)
			s.withdraw(dctx)
			return s.fail(err)
		}
		if !ok {
			s.withdraw(ctx)
			return s.failWith(ErrTypeInstallTimeout, fmt.Sprintf("no report from %s (%s) within %s: is `drift agent` running in the VM, with --gateway %s?",
				s.in.VM, s.in.Address, s.in.Timeout, metadataURL(s.state.Gateway)))
		}
		if rep.OK {
			if s.in.Action == repo.ActionUninstall {
				s.phase(ctx, "uninstalled", fmt.Sprintf("%s removed %s (%d files)", s.in.VM, pkg, rep.Removed))
			} else {
				s.phase(ctx, "installed", fmt.Sprintf("%s %s %s: %s is live in %s (%d files)", s.in.VM, s.verb(), pkg, dashIfEmpty(rep.Current), rep.Dir, rep.Files))
			}
			return s.state, nil
		}
		if !rep.Transient || s.state.Attempt >= s.in.Attempts {
			return s.failWith(ErrTypeInstallFailed, fmt.Sprintf("%s could not %s %s (attempt %d): %s", s.in.VM, s.action(), pkg, s.state.Attempt, rep.Error))
		}
		s.phase(ctx, "retrying", fmt.Sprintf("attempt %d failed transiently: %s", s.state.Attempt, rep.Error))
		if err := workflow.Sleep(ctx, retryBackoff); err != nil {
			return s.fail(err)
		}
	}
}

func (s *install) action() string {
	if s.in.Action == "" {
		return repo.ActionInstall
	}
	return s.in.Action
}

// verb is the action as the UI says it ("installs", "updates to").
func (s *install) verb() string { return verbOf(s.action()) }

func (s *install) ensureGateway(ctx workflow.Context) error {
	return ensureGateway(ctx, s.in.Node, gateway.PairConfig{Tenant: s.in.Tenant, Netns: s.in.Netns, Listen: s.in.Listen}, &s.state.Gateway)
}

// ensureGateway starts a tenant network's gateway pair on node unless it
// runs; a node without a worker fails as NodeUnavailable.
func ensureGateway(ctx workflow.Context, node string, cfg gateway.PairConfig, pair *gateway.Pair) error {
	actx := onNode(ctx, node, "ensure gateway pair for tenant network "+cfg.Tenant)
	return nodeUnavailable(workflow.ExecuteActivity(actx, installActs.EnsureGateway, cfg).Get(ctx, pair), node)
}

// nodeUnavailable names what is missing when no worker of the network node
// took an activity within nodeWait.
func nodeUnavailable(err error, node string) error {
	var te *temporal.TimeoutError
	if !errors.As(err, &te) || te.TimeoutType() != enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START {
		return err
	}
	msg := fmt.Sprintf("no worker took the activity from queue %s within %s: run the network node's worker "+
		"(drift-worker --network-node %s --repo URL --repo-token-file F --gateway-secret-file F; drift dev is node %q)",
		names.NodeQueue(node), nodeWait, node, config.DefaultNetworkNode)
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeNodeUnavailable, nil)
}

// metadataURL is the gateway address a VM's agent uses.
func metadataURL(p gateway.Pair) string {
	if p.Address == "" {
		return "http://" + gateway.MetadataListen
	}
	return "http://" + p.Address
}

// waitReport waits for the report of the current instruction (older
// attempts' reports are recorded and ignored), re-ensuring the gateway pair
// now and then; ok is false on timeout.
func (s *install) waitReport(ctx workflow.Context) (repo.Report, bool, error) {
	deadline := workflow.Now(ctx).Add(s.in.Timeout)
	for {
		left := deadline.Sub(workflow.Now(ctx))
		if left <= 0 {
			return repo.Report{}, false, nil
		}
		tctx, cancel := workflow.WithCancel(ctx)
		timer := workflow.NewTimer(tctx, min(left, gatewayCheckEvery))
		var rep repo.Report
		got := false
		workflow.NewSelector(ctx).
			AddReceive(s.reports, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &rep); got = true }).
			AddFuture(timer, func(workflow.Future) {}).
			Select(ctx)
		cancel()
		if got {
			s.state.Reports = append(s.state.Reports, rep)
			if rep.InstructionID == s.state.Instruction {
				return rep, true, nil
			}
			continue
		}
		if deadline.Sub(workflow.Now(ctx)) > 0 {
			// A node without a worker now may have one before the
			// deadline: keep waiting for the report.
			if err := s.ensureGateway(ctx); err != nil && !isType(err, ErrTypeNodeUnavailable) {
				return repo.Report{}, false, err
			}
		}
	}
}

// withdraw removes an instruction nobody answered, so a VM that wakes up
// late does not install what the workflow gave up on.
func (s *install) withdraw(ctx workflow.Context) {
	actx := onNode(ctx, s.in.Node, "withdraw instruction "+s.state.Instruction)
	if err := workflow.ExecuteActivity(actx, installActs.WithdrawInstruction, s.state.Instruction).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("withdraw instruction failed", "instruction", s.state.Instruction, "err", err)
	}
}

func (s *install) phase(ctx workflow.Context, phase, details string) {
	s.state.Phase = phase
	workflow.SetCurrentDetails(ctx, details)
	workflow.GetLogger(ctx).Info(details)
}

// failWith ends the install with its own failure; the state travels in the
// error's details so `drift install status` shows the reports.
func (s *install) failWith(errType, msg string) (InstallState, error) {
	s.state.Phase, s.state.Error = "failed", msg
	return s.state, temporal.NewNonRetryableApplicationError(msg, errType, nil, s.state)
}

func (s *install) fail(err error) (InstallState, error) {
	s.state.Phase, s.state.Error = "failed", err.Error()
	return s.state, err
}
