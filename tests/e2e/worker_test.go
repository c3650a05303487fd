package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/tests/harness"
)

// cloudRoundTrip deploys an instance on a cloud's queue, lists it, destroys
// it and lists again, all through the cloud's worker.
func cloudRoundTrip(ctx workflow.Context, cloud string, req activities.DeployRequest) ([]int, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           names.CloudQueue(cloud),
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var ep runtime.Endpoint
	if err := workflow.ExecuteActivity(ctx, "DeployInstance", req).Get(ctx, &ep); err != nil {
		return nil, err
	}
	var before, after []runtime.Instance
	sel := map[string]string{runtime.LabelCloud: cloud}
	if err := workflow.ExecuteActivity(ctx, "ListInstances", sel).Get(ctx, &before); err != nil {
		return nil, err
	}
	// Give the test a moment to call the endpoint before it goes away.
	workflow.GetSignalChannel(ctx, "checked").Receive(ctx, nil)
	if err := workflow.ExecuteActivity(ctx, "DestroyInstance", req.Name).Get(ctx, nil); err != nil {
		return nil, err
	}
	if err := workflow.ExecuteActivity(ctx, "ListInstances", sel).Get(ctx, &after); err != nil {
		return nil, err
	}
	return []int{len(before), len(after)}, nil
}

// The drift-worker binary polls a cloud's queue with that cloud's runtime,
// serves metrics, refuses bad input without retrying, and stops cleanly on
// SIGTERM.
func TestWorkerBinaryServesCloudQueue(t *testing.T) {
	_, driftWorker := harness.Binaries(t)
	stack, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	img := harness.HelloImage(t, reg, "v1")
	metricsPort := harness.FreePort(t)
	topo := filepath.Join(harness.RepoRoot(), "deploy", "examples", "topology.yaml")
	w := harness.Start(t, driftWorker, "--address", stack.Address(), "--topology", topo, "--clouds", "edge-latin",
		"--no-central", "--data-dir", t.TempDir(), "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", metricsPort), "--log-format", "text")
	w.WaitFor(t, "worker polling", time.Minute)

	tw := worker.New(c, "e2e-worker", worker.Options{})
	tw.RegisterWorkflow(cloudRoundTrip)
	if err := tw.Start(); err != nil {
		t.Fatal(err)
	}
	defer tw.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req := activities.DeployRequest{Name: "e2e-hello", Spec: runtime.Spec{
		Image: img, Port: 8080, Health: "/healthz",
		Env:    map[string]string{"DRIFT_CLOUD": "edge-latin"},
		Labels: map[string]string{runtime.LabelCloud: "edge-latin", runtime.LabelWorkflow: "e2e/worker"},
	}}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "e2e/worker", TaskQueue: "e2e-worker"}, cloudRoundTrip, "edge-latin", req)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the deploy, then call the instance through its endpoint.
	var ep runtime.Endpoint
	for ctx.Err() == nil && ep.URL == "" {
		it := c.GetWorkflowHistory(ctx, run.GetID(), "", false, 0)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			if done := ev.GetActivityTaskCompletedEventAttributes(); done != nil && ep.URL == "" {
				json.Unmarshal(done.GetResult().GetPayloads()[0].GetData(), &ep)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, _, body := harness.HTTPGet(t, ep.URL)
	var hello struct{ App, Cloud string }
	if err := json.Unmarshal([]byte(body), &hello); code != 200 || err != nil || hello.App != "hello" || hello.Cloud != "edge-latin" {
		t.Fatalf("instance answered %d %q", code, body)
	}
	if err := c.SignalWorkflow(ctx, run.GetID(), "", "checked", nil); err != nil {
		t.Fatal(err)
	}
	var counts []int
	if err := run.Get(ctx, &counts); err != nil {
		t.Fatal(err)
	}
	if counts[0] != 1 || counts[1] != 0 {
		t.Fatalf("instances before/after destroy = %v, want [1 0]", counts)
	}
	if _, err := http.Get(ep.URL); err == nil {
		t.Fatal("instance still answers after destroy")
	}

	// Bad input fails at once, without retries.
	bad := req
	bad.Name = "Not_A_Name"
	badRun, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "e2e/worker-bad", TaskQueue: "e2e-worker"}, cloudRoundTrip, "edge-latin", bad)
	if err != nil {
		t.Fatal(err)
	}
	err = badRun.Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != activities.ErrTypeInvalidSpec || !appErr.NonRetryable() {
		t.Fatalf("bad name: %v", err)
	}

	code, _, metrics := harness.HTTPGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if code != 200 || !strings.Contains(metrics, "drift_worker_") || !strings.Contains(metrics, "go_goroutines") {
		t.Fatalf("metrics: %d\n%.500s", code, metrics)
	}

	syscall.Kill(w.Cmd.Process.Pid, syscall.SIGTERM)
	if exited, err := w.Wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("worker after SIGTERM: exited=%v err=%v", exited, err)
	}
	if !strings.Contains(w.Output(), "worker stopping") {
		t.Fatalf("no graceful stop in log:\n%s", w.Output())
	}
}
