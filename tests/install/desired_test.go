package install

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// A desired state (greeter ^1 on role=web) reaches the VMs there are; the
// network node's worker and the repository are SIGKILLed while its rollout
// runs and started again; the rollout ends, nothing the inventory held is
// lost, and a VM that joins afterwards gets the package too.
func TestDesiredStateSurvivesRestartsAndReachesNewVMs(t *testing.T) {
	n := newNetwork(t)
	n.addVMs(t, 2)
	stack, c := harness.Temporal(t, "")
	driftBin, driftWorker := harness.Binaries(t)
	dir := t.TempDir()
	nd := &node{Node: "node-" + n.id, Token: "admin-" + n.id, Secret: []byte("secret-" + n.id), Dir: dir,
		TokenFile: filepath.Join(dir, "token"), SecretFile: filepath.Join(dir, "secret"), KeyFile: filepath.Join(dir, "signing.key")}
	writeFile(t, nd.TokenFile, nd.Token)
	writeFile(t, nd.SecretFile, string(nd.Secret))
	if _, err := repo.GenerateKey(nd.KeyFile); err != nil {
		t.Fatal(err)
	}
	listen := net.JoinHostPort(n.RepoHost, "8700")
	nd.RepoURL = "http://" + listen
	nd.Admin = &repo.Client{URL: nd.RepoURL, Token: nd.Token}
	repository := func() *harness.Proc {
		p := harness.Start(t, driftBin, "--address", stack.Address(), "repo", "serve", "--netns", n.Mgmt, "--listen", listen, "--dir", filepath.Join(dir, "store"),
			"--token-file", nd.TokenFile, "--secret-file", nd.SecretFile, "--signing-key-file", nd.KeyFile)
		p.WaitFor(t, "repository serving", time.Minute)
		return p
	}
	data := t.TempDir()
	worker := func() *harness.Proc {
		return harness.StartWorker(t, driftWorker, stack.Address(), "--network-node", nd.Node, "--repo", nd.RepoURL,
			"--repo-token-file", nd.TokenFile, "--gateway-secret-file", nd.SecretFile, "--data-dir", data, "--gateway-listen", "")
	}
	repoProc, workerProc := repository(), worker()
	nd.pushGreeter(t, "1.0.0", "1.1.0")
	placeGateway(t, c, n, nd)
	prefixes := map[string]string{}
	for _, v := range n.VMs[:2] {
		_, prefixes[v.Name] = startAgent(t, nd, v, nil, "--label", "role=web")
	}
	registered(t, c, n.VMs[:2]...)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cl := drift.New(c)
	id, err := cl.Desire(ctx, "acme", workflows.Desire{Rollout: workflows.Rollout{Package: "greeter", Version: "^1", Platform: "linux/amd64",
		Selector: "role=web", MaxConcurrency: "1"}})
	if err != nil || id == "" {
		t.Fatalf("desire: %q %v", id, err)
	}
	// In the middle of the rollout: both processes die and come back.
	waitRollout(t, cl, id, func(p workflows.FleetProgress) bool { return p.Counts.Running+p.Counts.Succeeded > 0 })
	for _, p := range []*harness.Proc{workerProc, repoProc} {
		syscall.Kill(p.Cmd.Process.Pid, syscall.SIGKILL)
		p.Wait(time.Minute)
	}
	repository()
	worker()

	var p workflows.FleetProgress
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &p); err != nil || p.Counts.Succeeded != 2 {
		t.Fatalf("the rollout across the restarts: %v %+v", err, p.Counts)
	}
	for _, v := range n.VMs[:2] {
		if got := live(prefixes[v.Name]); got != "1.1.0" {
			t.Errorf("%s: live %q", v.Name, got)
		}
	}

	joiner := n.VMs[2]
	_, prefixes[joiner.Name] = startAgent(t, nd, joiner, nil, "--label", "role=web")
	v := waitInventory(t, c, "the VM that joined later has greeter ^1", func(v workflows.InventoryView) bool {
		ok := 0
		for _, d := range v.Drift {
			if d.Drift == "" {
				ok++
			}
		}
		return len(v.VMs) == 3 && len(v.Drift) == 3 && ok == 3
	})
	if got := live(prefixes[joiner.Name]); got != "1.1.0" {
		t.Fatalf("%s joined later: live %q", joiner.Name, got)
	}
	if len(v.Desired) != 1 || len(v.Rollouts) != 2 || v.Rollouts[1].VMs[0] != joiner.Name || v.Gateway == nil {
		t.Fatalf("inventory after the restarts: desired %+v rollouts %+v", v.Desired, v.Rollouts)
	}
	recordHistory(t, c, names.InventoryID("acme"))
}

// waitRollout waits (bounded) until the rollout's progress satisfies ok.
func waitRollout(t *testing.T, cl *drift.Client, id string, ok func(workflows.FleetProgress) bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		p, err := drift.Read[workflows.FleetProgress](context.Background(), cl, id)
		if err == nil && ok(p) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("rollout %s never got there", id)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
