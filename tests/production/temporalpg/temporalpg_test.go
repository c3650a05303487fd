package temporalpg

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/tests/internal/proc"
)

// The Go constant and the tools module must name the same server, or BinDir
// and build.sh would disagree about the cache dir.
func TestVersionMatchesToolsModule(t *testing.T) {
	gomod, err := os.ReadFile(filepath.Join(filepath.Dir(BuildScript()), "tools", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "require go.temporal.io/server " + ServerVersion + "\n"; !strings.Contains(string(gomod), want) {
		t.Errorf("tools/go.mod lacks %q", strings.TrimSpace(want))
	}
	// The pin that keeps the server building alongside drift's registry.
	if want := "go.opentelemetry.io/otel/log v0.20.0"; !strings.Contains(string(gomod), want) {
		t.Errorf("tools/go.mod lacks %q", want)
	}
}

const queue = "temporalpg-test"

// greet is the trivial workflow: one activity, whose result it returns.
func greet(ctx workflow.Context, name string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var out string
	err := workflow.ExecuteActivity(ctx, greeting, name).Get(ctx, &out)
	return out, err
}

func greeting(_ context.Context, name string) (string, error) { return "hello " + name, nil }

// A bare cluster on PostgreSQL runs workflows, and both finished and running
// workflows survive a restart of the server, and of PostgreSQL under it.
func TestTemporalOnPostgresSurvivesRestart(t *testing.T) {
	c := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Bare: only the server's own namespace; `drift setup` has to make the rest.
	names, err := c.Namespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("namespaces of a bare cluster: %v", names)
	if !slices.Contains(names, SystemNamespace) || slices.Contains(names, "default") {
		t.Errorf("namespaces %v: want %s and no default", names, SystemNamespace)
	}

	const ns = "drift-test"
	if err := c.RegisterNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cl, err := c.Dial(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	w := worker.New(cl, queue, worker.Options{})
	w.RegisterWorkflow(greet)
	w.RegisterActivity(greeting)
	w.RegisterWorkflow(harness.WaitForGo)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	done, err := cl.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "greet", TaskQueue: queue}, greet, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := done.Get(ctx, &got); err != nil || got != "hello postgres" {
		t.Fatalf("greet: %q, %v", got, err)
	}
	waiting, err := cl.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "waiting", TaskQueue: queue}, harness.WaitForGo)
	if err != nil {
		t.Fatal(err)
	}
	waitForEvent(t, ctx, cl, "waiting", enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
	before := history(t, ctx, cl, "greet")

	// The server goes away (its port closes) and comes back on the same address.
	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", c.Address, time.Second); err == nil {
		conn.Close()
		t.Fatalf("frontend %s still answers after StopServer", c.Address)
	}
	if err := c.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	if after := history(t, ctx, cl, "greet"); !slices.Equal(after, before) {
		t.Errorf("history after restart\n%v\nwant\n%v", after, before)
	}
	if err := cl.SignalWorkflow(ctx, "waiting", "", "go", "restart"); err != nil {
		t.Fatal(err)
	}
	if err := waiting.Get(ctx, &got); err != nil || got != "released by restart" {
		t.Fatalf("waiting after restart: %q, %v", got, err)
	}

	// PostgreSQL restarts under a stopped server; the data is on disk.
	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.Postgres.Stop(); err != nil {
		t.Fatal(err)
	}
	if c.Postgres.Running() || c.Check() == nil {
		t.Fatal("postgres still running after Stop")
	}
	if err := c.Postgres.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	if after := history(t, ctx, cl, "greet"); !slices.Equal(after, before) {
		t.Errorf("history after PostgreSQL restart\n%v\nwant\n%v", after, before)
	}
	if got := history(t, ctx, cl, "waiting"); got[len(got)-1] != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED.String() {
		t.Errorf("waiting's history ends with %s", got[len(got)-1])
	}

	// Stop (which t.Cleanup also calls) leaves no process of either.
	w.Stop()
	cl.Close()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if left, err := proc.In(c.Dir); err != nil || len(left) > 0 {
		t.Fatalf("processes left in %s: %v (%v)", c.Dir, left, err)
	}
	if c.ServerRunning() || c.Postgres.Running() {
		t.Error("a component reports running after Stop")
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// history is the event types of a workflow's history, read from the server.
func history(t *testing.T, ctx context.Context, cl client.Client, id string) []string {
	t.Helper()
	var out []string
	it := cl.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		out = append(out, e.GetEventType().String())
	}
	if len(out) == 0 {
		t.Fatalf("history of %s is empty", id)
	}
	return out
}

func waitForEvent(t *testing.T, ctx context.Context, cl client.Client, id string, want enumspb.EventType) {
	t.Helper()
	for {
		if slices.Contains(history(t, ctx, cl, id), want.String()) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: no %s", id, want)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// A start that fails half-way stops what it started and says why.
func TestFailedStartLeavesNothing(t *testing.T) {
	if _, err := FindBinaries(t.Logf); err != nil {
		harness.RequireHeavy(t, err.Error())
	}
	dir := t.TempDir()
	// 200ms is too short for initdb, so the start fails half-way.
	c, err := New(context.Background(), WithDir(dir), WithStartTimeout(200*time.Millisecond))
	if err == nil {
		c.Stop()
		t.Skip("the cluster came up within 200ms; nothing to test")
	}
	t.Logf("error, as wanted: %.300s", err)
	if !strings.Contains(err.Error(), "component logs") || errors.Is(err, ErrUnavailable) {
		t.Errorf("the error lacks the component logs or blames the machine: %v", err)
	}
	if left, perr := proc.In(dir); perr != nil || len(left) > 0 {
		t.Errorf("processes left in %s: %v (%v)", dir, left, perr)
	}
}
