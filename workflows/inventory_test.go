package workflows

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/repo"
)

// invTest drives an inventory through updates and signals at set times,
// with rollouts (InstallFleet children) and the node faked.
type invTest struct {
	t        *testing.T
	env      *testsuite.TestWorkflowEnvironment
	mu       sync.Mutex
	fleets   []FleetInput
	ensures  []gateway.PairConfig
	nodeDown bool
	at       time.Duration
}

func newInvTest(t *testing.T) *invTest {
	var s testsuite.WorkflowTestSuite
	it := &invTest{t: t, env: s.NewTestWorkflowEnvironment()}
	it.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: names.InventoryID("acme")})
	it.env.RegisterActivity(&activities.Install{})
	it.env.RegisterWorkflow(InstallFleet)
	it.env.OnWorkflow(InstallFleet, mock.Anything, mock.Anything).Return(
		func(ctx workflow.Context, in FleetInput) (FleetProgress, error) {
			it.mu.Lock()
			it.fleets = append(it.fleets, in)
			it.mu.Unlock()
			return FleetProgress{Phase: "done"}, nil
		})
	it.env.OnActivity(installActs.EnsureGateway, mock.Anything, mock.Anything).Return(
		func(_ context.Context, cfg gateway.PairConfig) (gateway.Pair, error) {
			it.mu.Lock()
			defer it.mu.Unlock()
			it.ensures = append(it.ensures, cfg)
			if it.nodeDown {
				return gateway.Pair{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
			}
			return gateway.Pair{PairConfig: cfg, Address: "169.254.169.254:8080"}, nil
		})
	return it
}

// then runs fn a minute after the previous step.
func (it *invTest) then(fn func()) {
	it.at += time.Minute
	it.env.RegisterDelayedCallback(fn, it.at)
}

// update sends an update and checks whether it was refused (want "" for
// accepted and completed, else a text the error must contain).
func (it *invTest) update(name string, want string, out any, args ...any) {
	id := fmt.Sprint(name, it.at)
	it.then(func() {
		it.env.UpdateWorkflow(name, id, &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) {
				if want == "" || !strings.Contains(err.Error(), want) {
					it.t.Errorf("%s %v refused: %v (want %q)", name, args, err, want)
				}
			},
			OnComplete: func(v any, err error) {
				if err != nil && (want == "" || !strings.Contains(err.Error(), want)) {
					it.t.Errorf("%s %v failed: %v", name, args, err)
				}
				if err == nil && want != "" {
					it.t.Errorf("%s %v accepted, want %q", name, args, want)
				}
				if out != nil && err == nil {
					*(out.(*any)) = v
				}
			},
		}, args...)
	})
}

func (it *invTest) view() InventoryView {
	v, err := it.env.QueryWorkflow(names.ProgressQuery)
	if err != nil {
		it.t.Fatal(err)
	}
	var view InventoryView
	if err := v.Get(&view); err != nil {
		it.t.Fatal(err)
	}
	return view
}

// run starts the inventory and cancels it after the last step.
func (it *invTest) run(in InventoryInput) error {
	it.then(it.env.CancelWorkflow)
	it.env.ExecuteWorkflow(Inventory, in)
	return it.env.GetWorkflowError()
}

func vmReg(name, addr, labels string, have ...repo.Installed) VMRegistration {
	reg := VMRegistration{Name: name, Address: addr, Labels: map[string]string{}, Installed: have}
	for _, kv := range strings.Split(labels, ",") {
		k, v, _ := strings.Cut(kv, "=")
		reg.Labels[k] = v
	}
	return reg
}

// VMs register; a rollout picks those its selector matches, by name, and
// runs as a child fleet workflow with the tenant's gateway placement.
func TestInventoryRollsOutToSelectedVMs(t *testing.T) {
	it := newInvTest(t)
	it.update(names.GatewayUpdate, "", nil, Placement{Node: "n1", Netns: "drift-acme"})
	it.update(names.DeclareUpdate, "", nil, vmReg("vm-2", "10.0.0.3", "role=web"))
	it.update(names.DeclareUpdate, "", nil, vmReg("vm-1", "10.0.0.2", "role=web,zone=a"))
	it.update(names.DeclareUpdate, "", nil, vmReg("db-1", "10.0.0.9", "role=db"))
	var id any
	it.update(names.RolloutUpdate, "", &id, Rollout{Rollout: "r1", Selector: "role=web", Package: "hello", Version: "^1", Platform: "linux/amd64", MaxErrors: "1"})
	it.then(func() {
		if id != "fleet/acme/r1" || len(it.fleets) != 1 {
			t.Fatalf("rollout %v, %d fleets", id, len(it.fleets))
		}
		f := it.fleets[0]
		if len(f.Targets) != 2 || f.Targets[0].VM != "vm-1" || f.Targets[1].Address != "10.0.0.3" || f.Node != "n1" || f.Netns != "drift-acme" || f.MaxErrors != "1" {
			t.Fatalf("fleet input %+v", f)
		}
		v := it.view()
		if len(v.VMs) != 3 || v.VMs[0].Name != "db-1" || len(v.Rollouts) != 1 || v.Rollouts[0].Phase != "running" || v.Pair.Address != "169.254.169.254:8080" {
			t.Fatalf("view %+v", v)
		}
		it.env.SignalWorkflow(names.RolloutEndedSignal, RolloutEnded{ID: "fleet/acme/r1", Phase: "stopped", VMs: []VMProgress{{VM: "vm-1", Status: VMFailed}, {VM: "vm-2", Status: VMSucceeded}}})
		it.env.SignalWorkflow(names.InstalledSignal, VMInstalled{Address: "10.0.0.3", Installed: []repo.Installed{{Name: "hello", Version: "1.4.0"}}})
	})
	it.then(func() {
		v := it.view()
		if v.Rollouts[0].Phase != "stopped" || len(v.Rollouts[0].Failed) != 1 || v.VMs[2].current("hello") != "1.4.0" {
			t.Fatalf("after the end: %+v %+v", v.Rollouts, v.VMs[2])
		}
	})
	if err := it.run(InventoryInput{Tenant: "acme"}); !temporal.IsCanceledError(err) {
		t.Fatal(err)
	}
}

// What no registration may do, and rollouts that cannot start, are refused
// before they enter the history.
func TestInventoryRefusals(t *testing.T) {
	it := newInvTest(t)
	it.update(names.DeclareUpdate, "", nil, vmReg("vm-1", "10.0.0.2", "role=web"))
	it.update(names.DeclareUpdate, "is at 10.0.0.2, not 10.0.0.7", nil, vmReg("vm-1", "10.0.0.7", "role=web"))
	it.update(names.DeclareUpdate, "is VM vm-1 of tenant acme already", nil, vmReg("vm-9", "10.0.0.2", "role=web"))
	it.update(names.DeclareUpdate, "label key", nil, vmReg("vm-3", "10.0.0.4", "Role=web"))
	it.update(names.DeclareUpdate, "not an IP address", nil, vmReg("vm-3", "somewhere", "role=web"))
	it.update(names.DeclareUpdate, "invalid tenant", nil, vmReg(strings.Repeat("v", 70), "10.0.0.4", "role=web"))
	it.update(names.RolloutUpdate, "no VM of tenant acme matches", nil, Rollout{Rollout: "r1", Selector: "role=db", Package: "hello", Version: "1.0.0", Platform: "linux/amd64"})
	it.update(names.RolloutUpdate, "", nil, Rollout{Rollout: "r1", Package: "hello", Version: "1.0.0", Platform: "linux/amd64"})
	it.update(names.RolloutUpdate, "rollout fleet/acme/r1 exists", nil, Rollout{Rollout: "r1", Package: "hello", Version: "1.0.0", Platform: "linux/amd64"})
	it.update(names.RolloutUpdate, "version", nil, Rollout{Rollout: "r2", Package: "hello", Platform: "linux/amd64"})
	it.update(names.ForgetUpdate, "has no VM", nil, "vm-7")
	it.update(names.GatewayUpdate, "network namespace", nil, Placement{Netns: "../x"})
	// The admin may move a VM by declaring it.
	it.update(names.DeclareUpdate, "", nil, VMRegistration{Name: "vm-1", Address: "10.0.0.7", Labels: map[string]string{"role": "web"}, Declared: true})
	it.update(names.ForgetUpdate, "", nil, "vm-1")
	it.then(func() {
		if v := it.view(); len(v.VMs) != 0 || len(it.fleets) != 1 {
			t.Fatalf("VMs %+v, %d fleets", v.VMs, len(it.fleets))
		}
	})
	if err := it.run(InventoryInput{Tenant: "acme"}); !temporal.IsCanceledError(err) {
		t.Fatal(err)
	}
}

// A desired state is rolled out to the VMs that drift from it, and to each
// VM that joins (or is relabelled into it) later; VMs that comply, or that
// a running rollout covers, are left alone. The view shows each VM's drift.
func TestDesiredStateReachesVMsThatJoinLater(t *testing.T) {
	it := newInvTest(t)
	old := repo.Installed{Name: "hello", Version: "1.0.0"}
	fine := repo.Installed{Name: "hello", Version: "1.3.0"}
	it.update(names.DeclareUpdate, "", nil, vmReg("vm-1", "10.0.0.2", "role=web", old))
	it.update(names.DeclareUpdate, "", nil, vmReg("vm-2", "10.0.0.3", "role=web", fine))
	var id any
	it.update(names.DesireUpdate, "", &id, Desire{Rollout: Rollout{Package: "hello", Version: "^1.2", Platform: "linux/amd64", Selector: "role=web"}})
	it.then(func() {
		if len(it.fleets) != 1 || len(it.fleets[0].Targets) != 1 || it.fleets[0].Targets[0].VM != "vm-1" || it.fleets[0].Action != repo.ActionUpdate || !it.fleets[0].Desired {
			t.Fatalf("desired rollout %v: %+v", id, it.fleets)
		}
		v := it.view()
		if len(v.Drift) != 2 || v.Drift[0].Drift != "has 1.0.0, want ^1.2" || v.Drift[0].Rollout != id || v.Drift[1].Drift != "" {
			t.Fatalf("drift %+v", v.Drift)
		}
	})
	// vm-1 registers again (agent restart) while its rollout runs: no
	// second rollout.
	it.update(names.DeclareUpdate, "", nil, vmReg("vm-1", "10.0.0.2", "role=db", old))
	it.update(names.DeclareUpdate, "", nil, vmReg("vm-1", "10.0.0.2", "role=web", old))
	it.then(func() {
		if len(it.fleets) != 1 {
			t.Fatalf("%d fleets while one covers vm-1", len(it.fleets))
		}
		it.env.SignalWorkflow(names.InstalledSignal, VMInstalled{Address: "10.0.0.2", Installed: []repo.Installed{fine}})
		it.env.SignalWorkflow(names.RolloutEndedSignal, RolloutEnded{ID: id.(string), Phase: "done"})
	})
	it.update(names.DeclareUpdate, "", nil, vmReg("vm-4", "10.0.0.5", "role=web"))
	it.update(names.DeclareUpdate, "", nil, vmReg("db-1", "10.0.0.9", "role=db"))
	it.then(func() {
		if len(it.fleets) != 2 || len(it.fleets[1].Targets) != 1 || it.fleets[1].Targets[0].VM != "vm-4" || it.fleets[1].Version != "^1.2" {
			t.Fatalf("the VM that joined: %+v", it.fleets)
		}
		v := it.view()
		byVM := map[string]DriftRow{}
		for _, d := range v.Drift {
			byVM[d.VM] = d
		}
		if len(v.Drift) != 3 || byVM["vm-1"].Drift != "" || byVM["vm-4"].Drift != "missing (want ^1.2)" || byVM["vm-4"].Rollout == "" {
			t.Fatalf("drift %+v", v.Drift)
		}
	})
	it.update(names.DesireUpdate, "", nil, Desire{Rollout: Rollout{Package: "hello", Platform: "linux/amd64"}, Remove: true})
	it.update(names.DeclareUpdate, "", nil, vmReg("vm-5", "10.0.0.6", "role=web"))
	it.then(func() {
		if v := it.view(); len(v.Desired) != 0 || len(v.Drift) != 0 || len(it.fleets) != 2 {
			t.Fatalf("after removing the desired state: %+v, %d fleets", v.Desired, len(it.fleets))
		}
	})
	if err := it.run(InventoryInput{Tenant: "acme"}); !temporal.IsCanceledError(err) {
		t.Fatal(err)
	}
}

// The inventory continues as new with everything it keeps once its history
// is long.
func TestInventoryContinuesAsNewWithItsState(t *testing.T) {
	it := newInvTest(t)
	it.update(names.GatewayUpdate, "", nil, Placement{Node: "n1"})
	for i := 0; i < 6; i++ {
		it.update(names.DeclareUpdate, "", nil, vmReg(fmt.Sprintf("vm-%d", i), fmt.Sprintf("10.0.0.%d", i+2), "role=web"))
	}
	it.update(names.DesireUpdate, "", nil, Desire{Rollout: Rollout{Package: "hello", Version: "^1", Platform: "linux/amd64"}})
	it.then(func() {
		it.env.SignalWorkflow(names.InstalledSignal, VMInstalled{Address: "10.0.0.2", Installed: []repo.Installed{{Name: "hello", Version: "1.0.0"}}})
	})
	it.then(func() { it.env.SetContinueAsNewSuggested(true) }) // the gateway's next check wakes it
	err := it.run(InventoryInput{Tenant: "acme", MaxHistory: 60})
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("want continue-as-new, got %v", err)
	}
	var next InventoryInput
	if err := decodePayloads(can, &next); err != nil {
		t.Fatal(err)
	}
	st := next.State
	if next.Tenant != "acme" || next.MaxHistory != 60 || st == nil || st.Gateway == nil || st.Gateway.Node != "n1" || len(st.VMs) != 6 ||
		len(st.Desired) != 1 || len(st.Rollouts) != 1 || st.VMs[0].current("hello") != "1.0.0" {
		t.Fatalf("carried %+v %+v", next, st)
	}
}

// The gateway pair is ensured when placed and every minute after; a node
// without a worker is shown, not fatal.
func TestInventoryKeepsTheGatewayUp(t *testing.T) {
	it := newInvTest(t)
	it.update(names.GatewayUpdate, "", nil, Placement{Node: "n1", Netns: "drift-acme"})
	it.then(func() {})
	it.then(func() {})
	it.then(func() {
		if len(it.ensures) < 3 || it.ensures[0].Netns != "drift-acme" || it.ensures[0].Tenant != "acme" {
			t.Fatalf("ensures %+v", it.ensures)
		}
		it.mu.Lock()
		it.nodeDown = true
		it.mu.Unlock()
	})
	it.update(names.GatewayUpdate, "NodeUnavailable", nil, Placement{Node: "n1", Netns: "drift-acme"})
	it.then(func() {
		if v := it.view(); !strings.Contains(v.GatewayError, "drift-worker --network-node n1") {
			t.Fatalf("gateway error %q", v.GatewayError)
		}
	})
	if err := it.run(InventoryInput{Tenant: "acme"}); !temporal.IsCanceledError(err) {
		t.Fatal(err)
	}
}

// Agents register by signal, many at once; what the inventory cannot take
// (another VM's address, a bad name) is kept among its refusals, and a
// signal cannot declare.
func TestAgentsRegisterBySignal(t *testing.T) {
	it := newInvTest(t)
	it.then(func() {
		for i := 1; i <= 3; i++ {
			it.env.SignalWorkflow(names.RegisterSignal, vmReg(fmt.Sprintf("vm-%d", i), fmt.Sprintf("10.0.0.%d", i+1), "role=web"))
		}
		it.env.SignalWorkflow(names.RegisterSignal, vmReg("vm-9", "10.0.0.2", "role=web"))
		it.env.SignalWorkflow(names.RegisterSignal, VMRegistration{Name: "../vm", Address: "10.0.0.8"})
		it.env.SignalWorkflow(names.RegisterSignal, VMRegistration{Name: "vm-1", Address: "10.0.0.7", Declared: true})
	})
	it.then(func() {
		v := it.view()
		if len(v.VMs) != 3 || v.VMs[0].Address != "10.0.0.2" || v.VMs[0].Declared {
			t.Fatalf("VMs %+v", v.VMs)
		}
		if len(v.Refused) != 3 || v.Refused[0].Name != "vm-9" || !strings.Contains(v.Refused[0].Reason, "is VM vm-1") ||
			!strings.Contains(v.Refused[1].Reason, "invalid tenant") || !strings.Contains(v.Refused[2].Reason, "is at 10.0.0.2") {
			t.Fatalf("refused %+v", v.Refused)
		}
	})
	if err := it.run(InventoryInput{Tenant: "acme"}); !temporal.IsCanceledError(err) {
		t.Fatal(err)
	}
}
