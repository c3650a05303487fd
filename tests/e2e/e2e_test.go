// Package e2e drives the built drift and drift-worker binaries as a user
// would: real processes, real Temporal, real signals.
package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// `drift dev` serves Temporal, the UI and the registry; after a SIGKILL and
// a restart on the same data dir, a workflow started before the kill is
// still running and completes.
func TestDevSurvivesKill(t *testing.T) {
	drift, _ := harness.Binaries(t)
	dataDir := t.TempDir()
	port, uiPort, regPort := harness.FreePort(t), harness.FreePort(t), harness.FreePort(t)
	args := []string{"dev", "--data-dir", dataDir, "--port", fmt.Sprint(port), "--ui-port", fmt.Sprint(uiPort),
		"--registry-port", fmt.Sprint(regPort), "--api-port", fmt.Sprint(harness.FreePort(t)), "--repo-port", fmt.Sprint(harness.FreePort(t)),
		"--gateway-port", fmt.Sprint(harness.FreePort(t)), "--fog-runtime", "process"}
	dev := harness.Start(t, drift, args...)
	dev.WaitFor(t, "drift dev is up", 2*time.Minute)

	if code, ctype, body := harness.HTTPGet(t, fmt.Sprintf("http://127.0.0.1:%d/", uiPort)); code != 200 || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, "<html") {
		t.Fatalf("UI: %d %s", code, ctype)
	}
	if code, _, body := harness.HTTPGet(t, fmt.Sprintf("http://127.0.0.1:%d/v2/", regPort)); code != 200 {
		t.Fatalf("registry /v2/: %d %s", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tc := config.Temporal{Address: fmt.Sprintf("127.0.0.1:%d", port), Namespace: "default"}
	c, err := tc.Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "e2e/kill", TaskQueue: "e2e"}, harness.WaitForGo)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	if err := syscall.Kill(-dev.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	dev.Wait(time.Minute)
	dev = harness.Start(t, drift, args...)
	dev.WaitFor(t, "drift dev is up", 2*time.Minute)

	c, err = tc.Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatalf("workflow lost across kill: %v", err)
	}
	if s := desc.GetWorkflowExecutionInfo().GetStatus().String(); s != "Running" {
		t.Fatalf("status after restart = %s", s)
	}
	w := worker.New(c, "e2e", worker.Options{})
	w.RegisterWorkflow(harness.WaitForGo)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := c.SignalWorkflow(ctx, run.GetID(), "", "go", "e2e"); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := c.GetWorkflow(ctx, run.GetID(), run.GetRunID()).Get(ctx, &got); err != nil || got != "released by e2e" {
		t.Fatalf("result %q, %v", got, err)
	}

	// Ctrl-C stops it cleanly.
	syscall.Kill(dev.Cmd.Process.Pid, syscall.SIGINT)
	if exited, err := dev.Wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("drift dev after SIGINT: exited=%v err=%v", exited, err)
	}
}
