package devstack_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/devstack"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/tests/harness"
)

func TestStackServesUIRegistryAndSearchAttributes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stack, err := devstack.Start(ctx, devstack.Options{DataDir: t.TempDir(), Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Stop()

	code, ctype, body := harness.HTTPGet(t, stack.UIURL()+"/")
	if code != 200 || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(strings.ToLower(body), "<html") {
		t.Fatalf("UI answered %q with %.200q", ctype, body)
	}
	if code, _, body := harness.HTTPGet(t, "http://"+stack.RegistryHost()+"/v2/"); code != 200 || strings.TrimSpace(body) != "{}" {
		t.Fatalf("registry /v2/ answered %q", body)
	}

	c := dial(t, ctx, stack)
	attrs, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: stack.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	for name := range names.SearchAttributes {
		if _, ok := attrs.GetCustomAttributes()[name]; !ok {
			t.Errorf("search attribute %s not registered (have %v)", name, attrs.GetCustomAttributes())
		}
	}
}

// drift dev --temporal-address: a stack on an existing cluster runs no
// server of its own, sets up its namespace there as drift setup does, and
// leaves the cluster running when it stops.
func TestStackOnAnExistingCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster, err := devstack.Start(ctx, devstack.Options{DataDir: t.TempDir(), UIPort: -1, RegistryPort: -1, Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Stop()
	stack, err := devstack.Start(ctx, devstack.Options{DataDir: t.TempDir(), UIPort: -1, Namespace: "drift-mixed",
		Temporal: config.Temporal{Address: cluster.Address()}, Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	if stack.Address() != cluster.Address() {
		t.Errorf("stack at %s, want the cluster's %s", stack.Address(), cluster.Address())
	}
	if code, _, _ := harness.HTTPGet(t, "http://"+stack.RegistryHost()+"/v2/"); code != 200 {
		t.Errorf("the stack's registry answered %d", code)
	}
	c := dial(t, ctx, stack)
	attrs, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "drift-mixed"})
	if err != nil {
		t.Fatal(err)
	}
	for name := range names.SearchAttributes {
		if _, ok := attrs.GetCustomAttributes()[name]; !ok {
			t.Errorf("search attribute %s not registered in drift-mixed (have %v)", name, attrs.GetCustomAttributes())
		}
	}
	stack.Stop()
	if _, err := dial(t, ctx, cluster).CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		t.Fatalf("the cluster stopped with the stack: %v", err)
	}
}

// A workflow started before the stack stops is still there, and finishes,
// after the stack restarts on the same data dir.
func TestRestartKeepsWorkflows(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	opts := devstack.Options{DataDir: dir, UIPort: -1, RegistryPort: -1, Logger: slog.Default()}

	first, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, ctx, first)
	w := worker.New(c, "restart-test", worker.Options{})
	w.RegisterWorkflow(harness.WaitForGo)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "restart/1", TaskQueue: "restart-test"}, harness.WaitForGo)
	if err != nil {
		t.Fatal(err)
	}
	waitForEvents(t, ctx, c, run.GetID(), 4) // started, task scheduled/started/completed
	w.Stop()
	c.Close()
	first.Stop()

	second, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Stop()
	c = dial(t, ctx, second)
	desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), "")
	if err != nil {
		t.Fatalf("workflow lost across restart: %v", err)
	}
	if desc.GetWorkflowExecutionInfo().GetExecution().GetRunId() != run.GetRunID() {
		t.Fatalf("different run after restart")
	}
	w = worker.New(c, "restart-test", worker.Options{})
	w.RegisterWorkflow(harness.WaitForGo)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := c.SignalWorkflow(ctx, run.GetID(), "", "go", "test"); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := c.GetWorkflow(ctx, run.GetID(), run.GetRunID()).Get(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got != "released by test" {
		t.Fatalf("result %q", got)
	}
}

func dial(t *testing.T, ctx context.Context, s *devstack.Stack) client.Client {
	t.Helper()
	c, err := config.Temporal{Address: s.Address(), Namespace: s.Namespace()}.Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func waitForEvents(t *testing.T, ctx context.Context, c client.Client, id string, n int) {
	t.Helper()
	for ctx.Err() == nil {
		count := 0
		it := c.GetWorkflowHistory(ctx, id, "", false, 0)
		for it.HasNext() {
			if _, err := it.Next(); err != nil {
				t.Fatal(err)
			}
			count++
		}
		if count >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("workflow %s never reached %d events", id, n)
}
