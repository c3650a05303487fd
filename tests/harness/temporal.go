package harness

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/devstack"
)

// Temporal starts a real Temporal server (the dev stack without UI and
// registry) on free loopback ports with its SQLite file in dir ("" = a new
// temp dir), and returns the stack and a connected client. Both stop when
// the test ends.
func Temporal(t testing.TB, dir string) (*devstack.Stack, client.Client) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stack, err := devstack.Start(ctx, devstack.Options{DataDir: dir, UIPort: -1, RegistryPort: -1, Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Stop)
	c, err := config.Temporal{Address: stack.Address(), Namespace: stack.Namespace()}.Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return stack, c
}

// WaitForGo is a workflow that blocks until signalled "go", so a test can
// crash or restart the server or worker underneath it.
func WaitForGo(ctx workflow.Context) (string, error) {
	var who string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &who)
	return "released by " + who, nil
}

// RecordHistory writes a workflow's history as JSON for the replay test
// (make record-histories sets DRIFT_RECORD_HISTORY to the file).
func RecordHistory(t testing.TB, ctx context.Context, c client.Client, id, path string) {
	t.Helper()
	var h historypb.History
	it := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Clean(path), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
