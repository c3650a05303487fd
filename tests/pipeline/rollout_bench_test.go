package pipeline

import (
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"

	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// rolloutEdges is how many bench edge clouds (instant runtime) a rollout
// takes besides the two real fog sites.
const rolloutEdges = 100

// rolloutTopology: the center, fog-north (Docker), fog-south (processes)
// and rolloutEdges edges under them.
func rolloutTopology(t *testing.T) *topology.Topology {
	var b strings.Builder
	b.WriteString("name: rollout-bench\nclouds:\n  - {id: center, tier: center}\n  - {id: fog-north, tier: fog, parent: center}\n  - {id: fog-south, tier: fog, parent: center}\n")
	for i := range rolloutEdges {
		fmt.Fprintf(&b, "  - {id: %s, tier: edge, parent: fog-north}\n", benchEdge(i))
	}
	b.WriteString("regions:\n  north: fog-north\n")
	topo, err := topology.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func benchEdge(i int) string { return fmt.Sprintf("edge-%03d", i) }

// TestRolloutBench (make bench-pipeline, DRIFT_BENCH=1) rolls a release out
// to 102 targets twice, from nothing each time: once as a bare parallel
// deploy (a spec without waves) and once in three waves, and compares the
// deploy step's time and the history's size.
func TestRolloutBench(t *testing.T) {
	if os.Getenv("DRIFT_BENCH") != "1" {
		t.Skip("set DRIFT_BENCH=1 (make bench-pipeline) to run the measurements")
	}
	harness.Docker(t)
	_, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	topo := rolloutTopology(t)
	instants := map[string]runtime.Runtime{}
	for i := range rolloutEdges {
		instants[benchEdge(i)] = runtimetest.NewInstant(benchEdge(i))
	}
	ws := harness.Workers(t, c, topo, reg.Host(), func(cl topology.Cloud) runtime.Config {
		if cl.ID == dockerCloud {
			return runtime.Config{Kind: runtime.KindDocker}
		}
		return runtime.Config{Kind: runtime.KindProcess}
	}, func(o *workerhost.WorkerOptions) { o.Runtimes = instants })
	t.Cleanup(func() { destroyPipelineInstances(t, ws, "hello") })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	load0, started := harness.LoadAvg(), time.Now()
	files, err := demo.HelloFiles()
	if err != nil {
		t.Fatal(err)
	}
	bare, err := demo.GitRepo(ctx, t.TempDir(), "hello", files)
	if err != nil {
		t.Fatal(err)
	}
	spec := exampleSpec(t, "file://"+bare)
	spec.Image.Platforms = []string{"linux/amd64"}
	spec.Deploy.Targets = []pipelinespec.Target{{Cloud: dockerCloud, Verify: "http"}, {Cloud: "fog-south", Verify: "http"}}
	for i := range rolloutEdges {
		ring := "rest"
		if i < 10 {
			ring = "first"
		}
		spec.Deploy.Targets = append(spec.Deploy.Targets, pipelinespec.Target{Cloud: benchEdge(i), Verify: pipelinespec.VerifyReady, Labels: map[string]string{"ring": ring}})
	}
	waved := spec
	waved.Deploy.Waves = []pipelinespec.Wave{
		{Name: "fog", Tier: "fog"},
		{Name: "first-edges", Labels: map[string]string{"ring": "first"}, MaxParallel: 10},
		{Name: "edges", Tier: "edge", MaxParallel: 25},
	}
	// The first run builds; the measured ones reuse its image, so their
	// time is the rollout's. Every measured run deploys from nothing.
	rolloutRun(t, ctx, c, topo, spec, "build")
	type measured struct {
		name          string
		took, deploy  time.Duration
		events, bytes int
		waveEvents    []int // each wave's child's history (waves only)
		pr            workflows.PipelineProgress
	}
	var runs []measured
	for _, m := range []struct {
		name string
		spec pipelinespec.Spec
	}{{"bare", spec}, {"waves", waved}, {"bare2", spec}, {"waves2", waved}} {
		destroyPipelineInstances(t, ws, "hello")
		t0 := time.Now()
		pr := rolloutRun(t, ctx, c, topo, m.spec, m.name)
		took := time.Since(t0)
		if !pr.Reused || len(pr.Endpoints()) != len(spec.Deploy.Targets) {
			t.Fatalf("%s: reused %v, %d endpoints", m.name, pr.Reused, len(pr.Endpoints()))
		}
		d, _ := pr.StepByName(workflows.StepDeploy)
		events, bytes := historySize(t, ctx, c, pr.ID)
		var waveEvents []int
		for _, w := range pr.Waves {
			n, _ := historySize(t, ctx, c, pr.ID+"/wave/"+w.Name+"/release")
			waveEvents = append(waveEvents, n)
		}
		runs = append(runs, measured{m.name, took, d.Duration(time.Time{}), events, bytes, waveEvents, pr})
	}
	load1 := harness.LoadAvg()

	targets := len(spec.Deploy.Targets)
	bareDeploy := (runs[0].deploy + runs[2].deploy) / 2
	wavesDeploy := (runs[1].deploy + runs[3].deploy) / 2
	overhead := float64(wavesDeploy-bareDeploy) / float64(time.Millisecond) / float64(targets)
	var b strings.Builder
	fmt.Fprintf(&b, "# Pipeline rollout benchmark: %d targets in waves\n\nWritten by `make bench-pipeline` (TestRolloutBench) from one measured run.\n\n", targets)
	fmt.Fprintf(&b, "- **Date:** %s\n- **Machine:** %d cores, %s; load average %s at the start, %s at the end (shared machine: other builds and tests ran alongside)\n- **Run time:** %s in the test\n\n",
		started.UTC().Format("2006-01-02 15:04 UTC"), goruntime.NumCPU(), goruntime.Version(), load0, load1, time.Since(started).Round(time.Second))
	fmt.Fprintf(&b, "Setup: the embedded Temporal server, one in-process worker polling the central queue and each of the %d clouds' queues; fog-north runs Docker, fog-south processes (both verified over HTTP), %d edges run the instant runtime (verified by their runtime's readiness). The example app's image is built once; every measured run reuses it and deploys to every target from nothing. **bare** is a spec without waves (every target at once); **waves** is the same spec with three waves: the fog tier, then 10 edges labelled ring=first (maxParallel 10), then the other edges (maxParallel 25), no bake. Overhead per target = (waves' deploy step − bare's deploy step) / %d, from the mean of two runs each.\n\n", targets+1, rolloutEdges, targets)
	fmt.Fprintf(&b, "| run | end to end | deploy + verify step | the run's history: events | bytes | its waves' child workflows: events each |\n|---|---|---|---|---|---|\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %s |\n", r.name, ms(r.took), ms(r.deploy), r.events, r.bytes, dashIfNone(r.waveEvents))
	}
	fmt.Fprintf(&b, "\nOrchestration overhead of waves: **%.1f ms per target** (deploy step %s in waves vs %s bare, mean of two).", overhead, ms(wavesDeploy), ms(bareDeploy))
	if overhead < 0 {
		fmt.Fprintf(&b, " Negative: the waves finished sooner. The bare deploy schedules every target's status read, deploy and check at once, and on this machine (one worker process, an embedded server, the load above) that burst waits in the queues longer than waves of bounded parallelism take; the waves' own cost (a semaphore and one more round of workflow tasks per wave) does not show beside it.")
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "| wave (run waves) | targets | maxParallel | time | child's history events | per target |\n|---|---|---|---|---|---|\n")
	for i, w := range runs[1].pr.Waves {
		n := runs[1].waveEvents[i]
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %d | %.1f |\n", w.Name, len(w.Targets), waved.Deploy.Waves[i].MaxParallel, ms(w.Ended.Sub(w.Started)), n, float64(n)/float64(len(w.Targets)))
	}
	fmt.Fprintf(&b, "\nWithout waves the run's one history holds every target's status read, deploy and check (%d events for %d targets). With waves each wave runs in a child workflow (`PipelineWave`): the run's own history holds %d events, a few per wave, whatever the number of targets, and each child holds its own wave's targets. A tier of thousands of targets is best split into several waves (by label) to keep each child's history small too. The run's history bytes shrink less (%d vs %d): each child's start carries the run's spec, topology and every target's progress.\n",
		runs[0].events, targets, runs[1].events, runs[1].bytes, runs[0].bytes)
	t.Log("\n" + b.String())
	if path := os.Getenv("DRIFT_BENCH_REPORT"); path != "" {
		path = strings.TrimSuffix(path, ".md") + "-rollout.md"
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// rolloutRun runs the pipeline and waits for its result, asking again when
// the wait itself times out (the shared machine can be slow to answer a
// long poll with a hundred and more workers polling).
func rolloutRun(t *testing.T, ctx context.Context, c client.Client, topo *topology.Topology, spec pipelinespec.Spec, name string) workflows.PipelineProgress {
	t.Helper()
	wr, err := drift.New(c).StartPipeline(ctx, workflows.PipelineInput{Run: name, Spec: spec, Topology: topo})
	if err != nil {
		t.Fatal(err)
	}
	for {
		var pr workflows.PipelineProgress
		err := c.GetWorkflow(ctx, wr.GetID(), "").Get(ctx, &pr)
		if err != nil && ctx.Err() == nil && strings.Contains(err.Error(), "deadline exceeded") {
			t.Logf("%s: waiting again after %v", name, err)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", wr.GetID(), err)
		}
		return pr
	}
}

// dashIfNone lists ns, or says "-" when there are none.
func dashIfNone(ns []int) string {
	if len(ns) == 0 {
		return "-"
	}
	return strings.Trim(fmt.Sprint(ns), "[]")
}

// historySize counts a workflow's events and their encoded bytes.
func historySize(t *testing.T, ctx context.Context, c client.Client, id string) (events, bytes int) {
	t.Helper()
	it := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events++
		bytes += proto.Size(ev)
	}
	return events, bytes
}
