package workflows

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/repo"
)

var testPkg = repo.Ref{Name: "hello", Version: "1.0.0", Platform: "linux/amd64"}

func installInput() InstallInput {
	return InstallInput{Tenant: "acme", VM: "vm-1", Address: "10.0.0.2", Package: testPkg, Node: "n1", Netns: "drift-acme", Timeout: 10 * time.Minute}
}

// fakeNode records what the install activities were asked.
type fakeNode struct {
	mu           sync.Mutex
	ensures      int
	posted       []string // instruction ids
	withdrawn    []string
	postErr      error
	pairs        []gateway.PairConfig
	instructions []repo.Instruction
}

func (f *fakeNode) install(env *testsuite.TestWorkflowEnvironment) {
	env.RegisterActivity(&activities.Install{})
	env.OnActivity(installActs.EnsureGateway, mock.Anything, mock.Anything).Return(
		func(_ context.Context, cfg gateway.PairConfig) (gateway.Pair, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.ensures++
			f.pairs = append(f.pairs, cfg)
			return gateway.Pair{PairConfig: cfg, Address: "169.254.169.254:8080", Socket: "/run/acme.sock"}, nil
		})
	env.OnActivity(installActs.PostInstruction, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in repo.Instruction) (repo.Instruction, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.postErr != nil {
				return repo.Instruction{}, f.postErr
			}
			f.posted = append(f.posted, in.ID)
			f.instructions = append(f.instructions, in)
			in.Package.SHA256 = "abc"
			return in, nil
		})
	env.OnActivity(installActs.WithdrawInstruction, mock.Anything, mock.Anything).Return(
		func(_ context.Context, id string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.withdrawn = append(f.withdrawn, id)
			return nil
		})
}

func newInstallEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *fakeNode) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: names.InstallID("acme", "vm-1", "hello")})
	f := &fakeNode{}
	f.install(env)
	return env, f
}

// report signals the agent's report for attempt at d (workflow time).
func report(env *testsuite.TestWorkflowEnvironment, d time.Duration, attempt int, rep repo.Report) {
	env.RegisterDelayedCallback(func() {
		rep.InstructionID = names.InstallID("acme", "vm-1", "hello") + "#" + string(rune('0'+attempt))
		env.SignalWorkflow(names.ReportSignal, rep)
	}, d)
}

func failureType(t *testing.T, env *testsuite.TestWorkflowEnvironment) (string, InstallState) {
	t.Helper()
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("want an application error, got %v", err)
	}
	var st InstallState
	if appErr.HasDetails() {
		appErr.Details(&st)
	}
	return appErr.Type(), st
}

func TestInstallSucceeds(t *testing.T) {
	env, f := newInstallEnv(t)
	report(env, time.Minute, 1, repo.Report{OK: true, Dir: "/opt/hello/1.0.0", Files: 2})
	env.ExecuteWorkflow(InstallSoftware, installInput())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var st InstallState
	env.GetWorkflowResult(&st)
	if st.Phase != "installed" || st.Attempt != 1 || st.Package.SHA256 != "abc" || len(st.Reports) != 1 || st.Gateway.Address != "169.254.169.254:8080" {
		t.Fatalf("state %+v", st)
	}
	in := f.instructions[0]
	if in.ID != "install/acme/vm-1/hello#1" || in.WorkflowID != "install/acme/vm-1/hello" || in.Client != "10.0.0.2" || in.Tenant != "acme" || in.Package.Ref != testPkg {
		t.Fatalf("instruction %+v", in)
	}
	if f.pairs[0] != (gateway.PairConfig{Tenant: "acme", Netns: "drift-acme"}) {
		t.Fatalf("pair %+v", f.pairs[0])
	}
	if len(f.withdrawn) != 0 {
		t.Fatalf("withdrew %v after success", f.withdrawn)
	}
}

func TestInstallRejectsBadInputBeforeActing(t *testing.T) {
	for name, mutate := range map[string]func(*InstallInput){
		"tenant":   func(in *InstallInput) { in.Tenant = "../x" },
		"vm":       func(in *InstallInput) { in.VM = "" },
		"address":  func(in *InstallInput) { in.Address = "somewhere" },
		"package":  func(in *InstallInput) { in.Package.Name = "../../etc" },
		"platform": func(in *InstallInput) { in.Package.Platform = "amd64" },
		"timeout":  func(in *InstallInput) { in.Timeout = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			env, f := newInstallEnv(t)
			in := installInput()
			mutate(&in)
			env.ExecuteWorkflow(InstallSoftware, in)
			if typ, _ := failureType(t, env); typ != activities.ErrTypeInvalidInstall {
				t.Fatalf("type %s", typ)
			}
			if f.ensures != 0 || len(f.posted) != 0 {
				t.Fatalf("acted on bad input: %d ensures, %v posted", f.ensures, f.posted)
			}
		})
	}
}

func TestInstallUnknownPackageIsFinal(t *testing.T) {
	env, f := newInstallEnv(t)
	f.postErr = temporal.NewNonRetryableApplicationError("not visible", activities.ErrTypeUnknownPackage, nil)
	env.ExecuteWorkflow(InstallSoftware, installInput())
	if typ, _ := failureType(t, env); typ != activities.ErrTypeUnknownPackage {
		t.Fatalf("type %s", typ)
	}
}

func TestInstallRetriesTransientFailure(t *testing.T) {
	env, f := newInstallEnv(t)
	report(env, time.Minute, 1, repo.Report{Transient: true, Error: "sha256 mismatch"})
	report(env, 3*time.Minute, 2, repo.Report{OK: true})
	env.ExecuteWorkflow(InstallSoftware, installInput())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var st InstallState
	env.GetWorkflowResult(&st)
	if st.Attempt != 2 || len(st.Reports) != 2 || f.posted[1] != "install/acme/vm-1/hello#2" {
		t.Fatalf("state %+v posted %v", st, f.posted)
	}
}

func TestInstallPermanentFailureIsNotRetried(t *testing.T) {
	env, f := newInstallEnv(t)
	report(env, time.Minute, 1, repo.Report{Error: "install hook install.sh: exit status 1"})
	env.ExecuteWorkflow(InstallSoftware, installInput())
	typ, st := failureType(t, env)
	if typ != ErrTypeInstallFailed || len(f.posted) != 1 || st.Phase != "failed" || len(st.Reports) != 1 {
		t.Fatalf("type %s posted %v state %+v", typ, f.posted, st)
	}
}

func TestInstallGivesUpAfterAttempts(t *testing.T) {
	env, f := newInstallEnv(t)
	in := installInput()
	in.Attempts = 2
	report(env, time.Minute, 1, repo.Report{Transient: true, Error: "connection reset"})
	report(env, 3*time.Minute, 2, repo.Report{Transient: true, Error: "connection reset"})
	env.ExecuteWorkflow(InstallSoftware, in)
	if typ, _ := failureType(t, env); typ != ErrTypeInstallFailed || len(f.posted) != 2 {
		t.Fatalf("type %s posted %v", typ, f.posted)
	}
}

// No report: the instruction is withdrawn and the install times out; the
// gateway pair is re-ensured while waiting.
func TestInstallTimesOut(t *testing.T) {
	env, f := newInstallEnv(t)
	in := installInput()
	in.Timeout = 2 * time.Minute
	env.ExecuteWorkflow(InstallSoftware, in)
	if typ, _ := failureType(t, env); typ != ErrTypeInstallTimeout {
		t.Fatalf("type %s", typ)
	}
	if len(f.withdrawn) != 1 || f.withdrawn[0] != "install/acme/vm-1/hello#1" {
		t.Fatalf("withdrawn %v", f.withdrawn)
	}
	if want := 1 + int(in.Timeout/gatewayCheckEvery) - 1; f.ensures < want {
		t.Fatalf("gateway ensured %d times while waiting, want at least %d", f.ensures, want)
	}
}

// A late report of an earlier attempt does not end the current one.
func TestInstallIgnoresStaleReport(t *testing.T) {
	env, f := newInstallEnv(t)
	report(env, time.Minute, 1, repo.Report{Transient: true, Error: "timeout"})
	report(env, 2*time.Minute, 1, repo.Report{OK: true}) // attempt 1 again, late
	report(env, 4*time.Minute, 2, repo.Report{Error: "disk full"})
	env.ExecuteWorkflow(InstallSoftware, installInput())
	typ, st := failureType(t, env)
	if typ != ErrTypeInstallFailed || len(st.Reports) != 3 || len(f.posted) != 2 {
		t.Fatalf("type %s reports %+v posted %v", typ, st.Reports, f.posted)
	}
}

// A cancelled install takes its instruction back, so the VM does not act
// on it later.
func TestInstallCancelledWithdrawsInstruction(t *testing.T) {
	env, f := newInstallEnv(t)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
	env.ExecuteWorkflow(InstallSoftware, installInput())
	if err := env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("want cancelled, got %v", err)
	}
	if len(f.withdrawn) != 1 || f.withdrawn[0] != f.posted[0] {
		t.Fatalf("withdrawn %v, posted %v", f.withdrawn, f.posted)
	}
}

// An uninstall names no version: the instruction carries the action and
// the workflow ends as uninstalled.
func TestInstallUninstall(t *testing.T) {
	env, f := newInstallEnv(t)
	in := installInput()
	in.Action, in.Package.Version = repo.ActionUninstall, ""
	report(env, time.Minute, 1, repo.Report{OK: true, Action: repo.ActionUninstall, Removed: 3})
	env.ExecuteWorkflow(InstallSoftware, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var st InstallState
	env.GetWorkflowResult(&st)
	if st.Phase != "uninstalled" || f.instructions[0].Action != repo.ActionUninstall || f.instructions[0].Package.Version != "" {
		t.Fatalf("state %+v instruction %+v", st, f.instructions[0])
	}
}

func TestInstallRejectsBadActions(t *testing.T) {
	for name, mutate := range map[string]func(*InstallInput){
		"action":                  func(in *InstallInput) { in.Action = "reinstall" },
		"strategy":                func(in *InstallInput) { in.Action, in.Strategy = repo.ActionUpdate, "sideways" },
		"install without version": func(in *InstallInput) { in.Package.Version = "" },
	} {
		t.Run(name, func(t *testing.T) {
			env, f := newInstallEnv(t)
			in := installInput()
			mutate(&in)
			env.ExecuteWorkflow(InstallSoftware, in)
			if typ, _ := failureType(t, env); typ != activities.ErrTypeInvalidInstall || f.ensures != 0 {
				t.Fatalf("type %s, %d ensures", typ, f.ensures)
			}
		})
	}
}

// No worker of the network node takes the first activity: the install
// fails, naming the queue and what to run.
func TestInstallNodeUnavailable(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Install{})
	env.OnActivity(installActs.EnsureGateway, mock.Anything, mock.Anything).Return(gateway.Pair{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil))
	env.ExecuteWorkflow(InstallSoftware, installInput())
	typ, _ := failureType(t, env)
	msg := env.GetWorkflowError().Error()
	if typ != ErrTypeNodeUnavailable || !strings.Contains(msg, "drift.node.n1") || !strings.Contains(msg, "drift-worker --network-node n1") {
		t.Fatalf("type %s: %s", typ, msg)
	}
}

// A node that goes away while the VM works does not fail the install: the
// report is still waited for.
func TestInstallWaitsThroughANodeOutage(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: names.InstallID("acme", "vm-1", "hello")})
	f := &fakeNode{}
	env.RegisterActivity(&activities.Install{})
	calls := 0
	env.OnActivity(installActs.EnsureGateway, mock.Anything, mock.Anything).Return(
		func(_ context.Context, cfg gateway.PairConfig) (gateway.Pair, error) {
			calls++
			if calls > 1 {
				return gateway.Pair{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
			}
			return gateway.Pair{PairConfig: cfg, Address: "169.254.169.254:8080"}, nil
		})
	env.OnActivity(installActs.PostInstruction, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in repo.Instruction) (repo.Instruction, error) {
			f.posted = append(f.posted, in.ID)
			return in, nil
		})
	report(env, 3*time.Minute, 1, repo.Report{OK: true, Current: "1.0.0"})
	env.ExecuteWorkflow(InstallSoftware, installInput())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if calls < 3 {
		t.Fatalf("gateway ensured %d times", calls)
	}
}
