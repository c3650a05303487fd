package install

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// greeter is the fleet tests' package: its health check fails on a VM
// whose agent runs with GREETER_BROKEN set, or when the version says bad.
func greeter(version string) []entry {
	return []entry{
		{"bin/greeter", "#!/bin/sh\necho greeter " + version + "\n"},
		{"install.sh", "#!/bin/sh\necho installing " + version + "\n"},
		{"health.sh", "#!/bin/sh\n[ -z \"$GREETER_BROKEN\" ] && ! sh bin/greeter | grep -q bad\n"},
	}
}

func greeterRef(version string) repo.Ref {
	return repo.Ref{Name: "greeter", Version: version, Platform: "linux/amd64"}
}

// pushGreeter publishes greeter's versions for acme.
func (nd *node) pushGreeter(t *testing.T, versions ...string) {
	t.Helper()
	for _, v := range versions {
		nd.push(t, greeterRef(v), repo.PushOptions{Tenants: []string{"acme"}, Hook: "install.sh", Health: "health.sh"}, greeter(v)...)
	}
}

// placeGateway puts acme's gateway pair in the tenant namespace.
func placeGateway(t *testing.T, c client.Client, n *network, nd *node) gateway.Pair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pair, err := drift.New(c).PlaceGateway(ctx, "acme", workflows.Placement{Node: nd.Node, Netns: n.Tenant})
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// waitInventory waits (bounded) until acme's inventory satisfies ok.
func waitInventory(t *testing.T, c client.Client, what string, ok func(workflows.InventoryView) bool) workflows.InventoryView {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		v, err := drift.New(c).Inventory(context.Background(), "acme")
		if err == nil && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("inventory never showed %s: %+v %v", what, v, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// registered waits until every VM of vms has registered.
func registered(t *testing.T, c client.Client, vms ...vm) workflows.InventoryView {
	t.Helper()
	return waitInventory(t, c, "every VM registered", func(v workflows.InventoryView) bool {
		for _, want := range vms {
			if !slices.ContainsFunc(v.VMs, func(r workflows.VMRecord) bool { return r.Name == want.Name && r.Address == want.Addr }) {
				return false
			}
		}
		return true
	})
}

// rollout runs r on acme's VMs and returns its report and error.
func rollout(t *testing.T, c client.Client, r workflows.Rollout) (workflows.FleetProgress, error) {
	t.Helper()
	return rolloutWithin(t, c, r, 5*time.Minute)
}

// rolloutWithin is rollout bounded by d.
func rolloutWithin(t *testing.T, c client.Client, r workflows.Rollout, d time.Duration) (workflows.FleetProgress, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if r.Platform == "" {
		r.Platform = "linux/amd64"
	}
	cl := drift.New(c)
	run, err := cl.StartRollout(ctx, "acme", r)
	if err != nil {
		t.Fatal(err)
	}
	return drift.Follow[workflows.FleetProgress](ctx, cl, run, time.Second, nil)
}

// live is the version PREFIX/greeter/current points at ("" without one).
func live(prefix string) string {
	v, _ := os.Readlink(filepath.Join(prefix, "greeter", "current"))
	return v
}

// Five VMs in their namespaces register through the gateways; agents on
// two of them fail the health check on purpose. With one failure allowed
// and one VM at a time, the rollout stops after the second failure and the
// three VMs after it are never touched; with two allowed, it goes on and
// reports the failures. The inventory ends with what each VM has.
func TestFleetStopsAtTheErrorBudget(t *testing.T) {
	n := newNetwork(t)
	n.addVMs(t, 4)
	_, c := harness.Temporal(t, "")
	nd := startRepo(t, n, c, 1<<20)
	startWorker(t, c, nd)
	nd.pushGreeter(t, "1.0.0", "1.1.0")
	placeGateway(t, c, n, nd)
	prefixes := map[string]string{}
	for i, v := range n.VMs {
		var env []string
		if i < 2 {
			env = []string{"GREETER_BROKEN=1"}
		}
		_, prefixes[v.Name] = startAgent(t, nd, v, env, "--label", "role=web")
	}
	registered(t, c, n.VMs...)

	p, err := rollout(t, c, workflows.Rollout{Rollout: "one-allowed", Selector: "role=web", Package: "greeter", Version: "^1.0", MaxConcurrency: "1", MaxErrors: "1"})
	if !isType(err, workflows.ErrTypeErrorBudget) {
		t.Fatalf("want ErrorBudgetExceeded, got %v", err)
	}
	k := p.Counts
	if p.Phase != "stopped" || p.Package.Version != "1.1.0" || k.Failed != 2 || k.Skipped != 3 || k.Succeeded != 0 {
		t.Fatalf("report %+v", p)
	}
	if !strings.Contains(p.VMs[0].Error, "health check health.sh") || p.VMs[2].Status != workflows.VMSkipped {
		t.Fatalf("per-VM report %+v", p.VMs)
	}
	for _, v := range n.VMs {
		if entries, _ := os.ReadDir(filepath.Join(prefixes[v.Name], "greeter")); len(entries) != 0 {
			t.Errorf("%s has %v after the stopped rollout", v.Name, entries)
		}
	}
	recordHistory(t, c, p.ID)

	p, err = rollout(t, c, workflows.Rollout{Rollout: "two-allowed", Selector: "role=web", Package: "greeter", Version: "1.0.0", MaxConcurrency: "2", MaxErrors: "40%"})
	if err != nil || p.Phase != "done" || p.Counts.Succeeded != 3 || p.Counts.Failed != 2 || p.ErrorBudget != 2 {
		t.Fatalf("%v: %+v", err, p.Counts)
	}
	for _, v := range n.VMs[2:] {
		if got := live(prefixes[v.Name]); got != "1.0.0" {
			t.Errorf("%s: live %q", v.Name, got)
		}
	}
	v := waitInventory(t, c, "what the VMs have", func(v workflows.InventoryView) bool {
		have := 0
		for _, vm := range v.VMs {
			if len(vm.Installed) == 1 && vm.Installed[0].Version == "1.0.0" {
				have++
			}
		}
		return have == 3 && len(v.Rollouts) == 2 && v.Rollouts[1].Phase == "done"
	})
	if v.Rollouts[0].Phase != "stopped" || !slices.Equal(v.Rollouts[1].Failed, []string{"vm-1", "vm-2"}) {
		t.Fatalf("rollouts %+v", v.Rollouts)
	}
}

// One VM through every step of a package's life: install; update in place
// (the old version goes); an update whose health check fails (the live
// version stays live, the new one leaves nothing); update by replacing;
// uninstall, which removes exactly what was installed.
func TestUpdateAndUninstall(t *testing.T) {
	n := newNetwork(t)
	_, c := harness.Temporal(t, "")
	nd := startRepo(t, n, c, 1<<20)
	startWorker(t, c, nd)
	nd.pushGreeter(t, "1.0.0", "1.1.0", "1.2.0-bad")
	placeGateway(t, c, n, nd)
	v := n.VMs[0]
	_, prefix := startAgent(t, nd, v, nil, "--label", "app=greeter")
	registered(t, c, v)
	step := func(name, action, strategy, version string) workflows.FleetProgress {
		t.Helper()
		p, err := rollout(t, c, workflows.Rollout{Rollout: name, Selector: "app=greeter", Package: "greeter", Version: version, Action: action, Strategy: strategy})
		if err != nil && !isType(err, workflows.ErrTypeErrorBudget) {
			t.Fatalf("%s: %v", name, err)
		}
		return p
	}
	onDisk := func() []string {
		entries, _ := os.ReadDir(filepath.Join(prefix, "greeter"))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}

	if p := step("install", repo.ActionInstall, "", "1.0.0"); p.Counts.Succeeded != 1 || live(prefix) != "1.0.0" {
		t.Fatalf("install: %+v, live %q", p.VMs, live(prefix))
	}
	if p := step("update", repo.ActionUpdate, repo.StrategyInPlace, "~1.1"); p.Counts.Succeeded != 1 || p.VMs[0].Current != "1.1.0" || !slices.Equal(onDisk(), []string{"1.1.0", "current"}) {
		t.Fatalf("update in place: %+v, on disk %v", p.VMs, onDisk())
	}
	p := step("unhealthy", repo.ActionUpdate, repo.StrategyInPlace, "1.2.0-bad")
	if p.Counts.Failed != 1 || !strings.Contains(p.VMs[0].Error, "1.1.0 stays live") || live(prefix) != "1.1.0" || !slices.Equal(onDisk(), []string{"1.1.0", "current"}) {
		t.Fatalf("A/B with a failing health check: %+v, live %q, on disk %v", p.VMs, live(prefix), onDisk())
	}
	recordHistory(t, c, p.VMs[0].Workflow)
	out, err := os.ReadFile(filepath.Join(prefix, "greeter", "current", "bin", "greeter"))
	if err != nil || !strings.Contains(string(out), "greeter 1.1.0") {
		t.Fatalf("live program %q %v", out, err)
	}
	if p := step("replace", repo.ActionUpdate, repo.StrategyReplace, "1.0.0"); p.Counts.Succeeded != 1 || !slices.Equal(onDisk(), []string{"1.0.0", "current"}) {
		t.Fatalf("replace: %+v, on disk %v", p.VMs, onDisk())
	}
	waitInventory(t, c, "vm-1 has greeter 1.0.0", func(v workflows.InventoryView) bool {
		return len(v.VMs) == 1 && len(v.VMs[0].Installed) == 1 && v.VMs[0].Installed[0].Version == "1.0.0"
	})
	mine := filepath.Join(prefix, "greeter", "1.0.0", "notes.txt")
	if err := os.WriteFile(mine, []byte("not the package's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := step("uninstall", repo.ActionUninstall, "", ""); p.Counts.Succeeded != 1 || live(prefix) != "" {
		t.Fatalf("uninstall: %+v", p.VMs)
	}
	if got := filesUnder(t, filepath.Join(prefix, "greeter")); !slices.Equal(got, []string{"1.0.0/notes.txt"}) {
		t.Fatalf("after uninstall: %v", got)
	}
	waitInventory(t, c, "nothing installed on vm-1", func(v workflows.InventoryView) bool {
		return len(v.VMs) == 1 && len(v.VMs[0].Installed) == 0
	})
}

// recordHistory writes workflow id's history to $DRIFT_RECORD_HISTORY, for
// the replay test in workflows/ (make record-histories).
func recordHistory(t *testing.T, c client.Client, id string) {
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, context.Background(), c, id, path)
	}
}

func isType(err error, typ string) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == typ
}
