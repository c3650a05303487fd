package bench

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/runtime/runtimetest"
	"github.com/edgedrift/drift/tests/harness"
)

// These tests run under plain `go test`: quick checks that the bench's own
// parts measure what they claim.

// TestMeasurementsSmoke runs the handover and overhead measurements in
// miniature on the instant runtime against a real embedded server: warm
// moves are warm, cold ones deploy, the sessions' own reports agree, rates
// come out, and nothing is left behind.
func TestMeasurementsSmoke(t *testing.T) {
	_, c := startTemporal(t)
	reg := harness.Registry(t)
	e := startEnv(t, c, parseTopology(t, scaleTopology), []string{"center", "inst-a", "inst-b"}, reg.Host(), tinyImage(t, reg.Host()), t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	warm, cold, err := e.measureHandovers(ctx, runtimetest.KindInstant, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(warm.Moves) != 3 || len(cold.Moves) != 3 {
		t.Fatalf("%d warm and %d cold moves counted, want 3 each", len(warm.Moves), len(cold.Moves))
	}
	checkSeries(t, warm, cold, 1)
	for _, m := range append(warm.Moves, cold.Moves...) {
		if m.Client <= 0 || m.Client > time.Minute {
			t.Errorf("client latency %s", m.Client)
		}
	}
	for _, m := range cold.Moves {
		if m.Switch <= 0 {
			t.Errorf("a cold move reports switch time %s: its deploy took no workflow time?", m.Switch)
		}
	}
	// The cold session deployed on every move; the warm one twice (its
	// first cloud and the pre-deploy) and never again.
	da, _ := e.instants["inst-a"].Counts()
	db, _ := e.instants["inst-b"].Counts()
	if want := int64(1 + 4 + 2); da+db != want {
		t.Errorf("%d deploys, want %d", da+db, want)
	}

	o, err := e.measureOverhead(ctx, 2, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Noop) != 1 || o.Noop[0].Count != 6 || o.Mobility[0].Count != 6 || !(o.Ratio() > 0) {
		t.Errorf("overhead %+v", o)
	}
	for id, rt := range e.instants {
		if n := rt.Len(); n > 0 {
			t.Errorf("%s: %d instances left", id, n)
		}
	}
}

// BenchmarkWarmMove times one warm Move update at a time (one client) on the
// instant runtime: the latency floor of a handover.
func BenchmarkWarmMove(b *testing.B) {
	_, c := startTemporal(b)
	reg := harness.Registry(b)
	e := startEnv(b, c, parseTopology(b, scaleTopology), []string{"center", "inst-a", "inst-b"}, reg.Host(), tinyImage(b, reg.Host()), b.TempDir())
	ctx := context.Background()
	regions := pairs[runtimetest.KindInstant]
	if _, err := e.open(ctx, "bm", regions[0], "neighbours"); err != nil {
		b.Fatal(err)
	}
	if _, err := e.quiet(ctx, "bm"); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		m, _, err := e.move(ctx, "bm", regions[i%2])
		if err != nil || !m.Warm {
			b.Fatalf("move %d: warm=%v, %v", i, m.Warm, err)
		}
	}
	b.StopTimer()
	if _, err := e.exit(ctx, "bm"); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkNoopUpdate times one no-op Update at a time (one client): the
// floor BenchmarkWarmMove compares with.
func BenchmarkNoopUpdate(b *testing.B) {
	_, c := startTemporal(b)
	w := worker.New(c, noopQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(benchNoop, workflow.RegisterOptions{Name: noopWorkflow})
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	ctx := context.Background()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "bench-noop/bm", TaskQueue: noopQueue}, noopWorkflow, false)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: run.GetID(), UpdateName: noopUpdate, Args: []any{"ia"}, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err == nil {
			err = h.Get(ctx, nil)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := c.SignalWorkflow(ctx, run.GetID(), "", noopExit, nil); err != nil {
		b.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		b.Fatal(err)
	}
}
