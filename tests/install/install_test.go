package install

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/activities"
	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

var helloRef = repo.Ref{Name: "hello", Version: "1.0.0", Platform: "linux/amd64"}

// helloFiles: a program and a hook that leaves proof it ran.
var helloFiles = []entry{
	{"bin/hello", "#!/bin/sh\necho hello from the tenant VM\n"},
	{"install.sh", "#!/bin/sh\nset -e\necho \"installed $(pwd)\" > \"$DRIFT_PREFIX/hello.installed\"\necho hook ran\n"},
}

// A VM in its own namespace, which can reach only 169.254.169.254, installs
// a package from the repository in the management namespace through the
// InstallSoftware workflow, the gateway pair and `drift agent`; neither the
// VM nor the tenant namespace can reach the repository directly.
func TestInstallThroughGateways(t *testing.T) {
	harness.Binaries(t) // built before the install waits: a slow build must not eat its deadline
	n := newNetwork(t)
	_, c := harness.Temporal(t, "")
	nd := startRepo(t, n, c, 1<<20)
	startWorker(t, c, nd)
	nd.push(t, helloRef, repo.PushOptions{Tenants: []string{"acme"}, Hook: "install.sh"}, helloFiles...)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	in := workflows.InstallInput{Tenant: "acme", VM: "vm-1", Address: n.VMAddr, Package: helloRef, Node: nd.Node, Netns: n.Tenant, Timeout: 2 * time.Minute}
	run, err := drift.New(c).StartInstall(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if run.GetID() != "install/acme/vm-1/hello" {
		t.Fatalf("workflow id %s", run.GetID())
	}
	waitPhase(t, c, run.GetID(), "waiting")

	prefix := filepath.Join(t.TempDir(), "prefix")
	out := runAgent(t, n, nd, prefix)
	if !strings.Contains(out, "1 instruction(s) handled") {
		t.Fatalf("agent output:\n%s", out)
	}
	var st workflows.InstallState
	if err := run.Get(ctx, &st); err != nil {
		t.Fatal(err)
	}
	if st.Phase != "installed" || len(st.Reports) != 1 || !st.Reports[0].OK || st.Reports[0].Client != n.VMAddr || st.Reports[0].Tenant != "acme" {
		t.Fatalf("result %+v", st)
	}
	if st.Gateway.Address != "169.254.169.254:8080" || st.Gateway.Netns != n.Tenant {
		t.Fatalf("gateway %+v", st.Gateway)
	}
	if b, err := os.ReadFile(filepath.Join(prefix, "hello", "1.0.0", "bin", "hello")); err != nil || !strings.Contains(string(b), "hello from the tenant VM") {
		t.Fatalf("installed program: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(prefix, "hello.installed")); err != nil || !strings.Contains(string(b), filepath.Join(prefix, "hello", "1.0.0")) {
		t.Fatalf("hook proof: %q %v", b, err)
	}
	if open, _ := nd.Repo.Store().Instructions("acme", n.VMAddr); len(open) != 0 {
		t.Fatalf("instructions still open: %v", open)
	}

	// Isolation: the repository is unreachable from the VM and from the
	// tenant network; the gateway is the only way in.
	u, _ := url.Parse(nd.RepoURL)
	for _, ns := range []string{n.VM, n.Tenant} {
		dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := netns.Dialer(ns)(dctx, "tcp", u.Host)
		dcancel()
		if err == nil {
			conn.Close()
			t.Fatalf("%s reached the repository at %s directly", ns, u.Host)
		}
		if !errors.Is(err, syscall.ENETUNREACH) {
			t.Fatalf("%s → repository: %v, want network unreachable", ns, err)
		}
	}
	resp, err := httpIn(n.VM).Get("http://169.254.169.254:8080/v1/packages")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the VM cannot use its gateway: %v %v", resp, err)
	}
	resp.Body.Close()

	recordHistory(t, c, run.GetID())
}

// The worker of the network node dies (SIGKILL) while the workflow waits for
// the agent; a new worker brings the gateway pair back and the workflow
// completes on the agent's report.
func TestWorkerKilledWhileWaiting(t *testing.T) {
	n := newNetwork(t)
	stack, c := harness.Temporal(t, "")
	nd := startRepo(t, n, c, 1<<20)
	nd.push(t, helloRef, repo.PushOptions{Public: true, Hook: "install.sh"}, helloFiles...)
	driftBin, driftWorker := harness.Binaries(t)
	data := t.TempDir()
	mgmtAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	worker := func() *harness.Proc {
		return harness.StartWorker(t, driftWorker, stack.Address(), "--network-node", nd.Node, "--repo", nd.RepoURL,
			"--repo-token-file", nd.TokenFile, "--gateway-secret-file", nd.SecretFile, "--data-dir", data,
			"--gateway-listen", mgmtAddr)
	}
	w := worker()
	// The management gateway's own listener serves the admin, never a tenant.
	viaMgmt := &repo.Client{URL: "http://" + mgmtAddr, Token: nd.Token}
	if ps, err := viaMgmt.List(context.Background()); err != nil || len(ps) != 1 {
		t.Fatalf("list through the management gateway: %v %v", ps, err)
	}
	if _, err := (&repo.Client{URL: "http://" + mgmtAddr}).List(context.Background()); err == nil {
		t.Fatal("the management gateway let a request without the admin token through")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	run, err := drift.New(c).StartInstall(ctx, workflows.InstallInput{Tenant: "acme", VM: "vm-2", Address: n.VMAddr, Package: helloRef,
		Node: nd.Node, Netns: n.Tenant, Timeout: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	waitPhase(t, c, run.GetID(), "waiting")
	if err := syscall.Kill(w.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.Wait(time.Minute)

	// The agent starts while no gateway answers, and keeps asking.
	prefix := filepath.Join(t.TempDir(), "prefix")
	agent := harness.Start(t, "ip", append([]string{"netns", "exec", n.VM, driftBin}, nd.agentArgs(prefix, "--every", "500ms")...)...)
	time.Sleep(2 * time.Second)
	if len(processesIn(n.VM)) == 0 { // the leak check at the end sees what runs in the VM
		t.Fatalf("no process found in %s while the agent runs:\n%s", n.VM, agent.Output())
	}
	worker()

	var st workflows.InstallState
	if err := run.Get(ctx, &st); err != nil {
		t.Fatalf("install after the crash: %v\nagent:\n%s", err, agent.Output())
	}
	if st.Phase != "installed" || !st.Reports[len(st.Reports)-1].OK {
		t.Fatalf("result %+v", st)
	}
	if _, err := os.Stat(filepath.Join(prefix, "hello.installed")); err != nil {
		t.Fatal(err)
	}
}

// Bad input fails the workflow with a typed non-retryable error before any
// gateway or instruction exists; a package the tenant may not see is
// refused when the instruction is posted.
func TestInstallBadInput(t *testing.T) {
	n := newNetwork(t)
	_, c := harness.Temporal(t, "")
	nd := startRepo(t, n, c, 1<<20)
	ws := startWorker(t, c, nd)
	nd.push(t, helloRef, repo.PushOptions{Tenants: []string{"globex"}}, helloFiles...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	bad := workflows.InstallInput{Tenant: "acme", VM: "vm-1", Address: "not-an-ip", Package: helloRef, Node: nd.Node}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: names.InstallID("acme", "vm-1", "bad"), TaskQueue: "drift"}, workflows.InstallSoftware, bad)
	if err != nil {
		t.Fatal(err)
	}
	expectFailure(t, ctx, run, activities.ErrTypeInvalidInstall)
	if pairs := ws.Install.Node.Pairs(); len(pairs) != 0 {
		t.Fatalf("gateway pairs started for bad input: %v", pairs)
	}

	hidden := workflows.InstallInput{Tenant: "acme", VM: "vm-1", Address: n.VMAddr, Package: helloRef, Node: nd.Node, Netns: n.Tenant}
	run, err = drift.New(c).StartInstall(ctx, hidden)
	if err != nil {
		t.Fatal(err)
	}
	expectFailure(t, ctx, run, activities.ErrTypeUnknownPackage)
	if open, _ := nd.Repo.Store().Instructions("acme", n.VMAddr); len(open) != 0 {
		t.Fatalf("instruction posted for a package acme cannot see: %v", open)
	}
}

func expectFailure(t *testing.T, ctx context.Context, run client.WorkflowRun, errType string) {
	t.Helper()
	err := run.Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != errType {
		t.Fatalf("want a %s failure, got %v", errType, err)
	}
}
