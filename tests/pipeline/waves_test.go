package pipeline

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// wavesSpecFor: fog-north (Docker) is the canary, analysed on its health
// path; the fog tier (fog-south, a process) waits for approval and is
// analysed on / (every request must mostly succeed); the edges labelled
// ring=last (processes) come last.
func wavesSpecFor(t *testing.T, repo string) pipelinespec.Spec {
	spec := exampleSpec(t, repo)
	last := map[string]string{"ring": "last"}
	spec.Deploy.Targets = []pipelinespec.Target{
		{Cloud: dockerCloud, Verify: pipelinespec.VerifyHTTP},
		{Cloud: "fog-south", Verify: pipelinespec.VerifyHTTP},
		{Cloud: "edge-latin", Verify: pipelinespec.VerifyHTTP, Labels: last},
		{Cloud: "edge-bastille", Verify: pipelinespec.VerifyHTTP, Labels: last},
	}
	spec.Deploy.Waves = []pipelinespec.Wave{
		{Name: "canary", Targets: []string{dockerCloud}, Bake: 2 * time.Second,
			Analysis: &pipelinespec.Analysis{Path: "/healthz", Interval: 100 * time.Millisecond, SuccessRatio: 1, MaxLatency: 2 * time.Second}},
		{Name: "fog", Tier: "fog", Approval: true, Bake: 4 * time.Second,
			Analysis: &pipelinespec.Analysis{Path: "/", Interval: 100 * time.Millisecond, SuccessRatio: 0.95}},
		{Name: "edges", Labels: last, MaxParallel: 1, Bake: time.Second},
	}
	spec.Deploy.ApprovalTimeout = 5 * time.Minute
	spec.Image.Platforms = []string{"linux/amd64"} // loong64 is not what this test is about
	return spec
}

// runWaves starts a run, approves the fog wave's gate by Update when it
// opens, and follows the run to its end.
func runWaves(t *testing.T, ctx context.Context, c client.Client, topo *topology.Topology, spec pipelinespec.Spec, run string) (workflows.PipelineProgress, error) {
	t.Helper()
	d := drift.New(c)
	wr, err := d.StartPipeline(ctx, workflows.PipelineInput{Run: run, Spec: spec, Topology: topo})
	if err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		pr, err := d.PipelineProgress(ctx, spec.App, run)
		if err == nil && pr.Status != workflows.RunRunning {
			break
		}
		// A query before the first workflow task answers an error: ask again.
		if a := pr.Waves; err == nil && a[1].Approval.Status == workflows.ApprovalWaiting {
			if pr.Waves[0].Status != workflows.WaveDone || pr.Waves[2].Status != workflows.WavePending {
				t.Errorf("%s: at the fog gate, waves %+v", run, pr.Waves)
			}
			if err := d.Decide(ctx, spec.App, run, true, workflows.ApprovalDecision{Who: "ops", Why: "canary is fine"}); err != nil {
				t.Fatalf("approve %s: %v", run, err)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return drift.Follow[workflows.PipelineProgress](ctx, d, wr, 0, nil)
}

// A three-wave rollout on Docker and processes. v1 rolls out everywhere
// (after an approval between waves). v2 answers 500 to every third
// request of /: the canary's health analysis passes, the fog wave's
// analysis fails, and every target goes back to v1 — the edges are never
// touched. Then the rollback command puts v1's targets back to nothing,
// and undeploy --target removes what is left.
func TestWavesRollTheFleetBackWhenAnAnalysisFails(t *testing.T) {
	harness.Docker(t)
	stack, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	topo := harness.ExampleTopology(t)
	ws := harness.Workers(t, c, topo, reg.Host(), func(cl topology.Cloud) runtime.Config {
		if cl.ID == dockerCloud {
			return runtime.Config{Kind: runtime.KindDocker}
		}
		return runtime.Config{Kind: runtime.KindProcess}
	})
	t.Cleanup(func() { destroyPipelineInstances(t, ws, "hello") })
	harness.PrebuildBinaries()
	files, err := demo.HelloFiles()
	if err != nil {
		t.Fatal(err)
	}
	bare, err := demo.GitRepo(context.Background(), t.TempDir(), "hello", files)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	spec := wavesSpecFor(t, "file://"+bare)

	v1, err := runWaves(t, ctx, c, topo, spec, "v1")
	if err != nil {
		t.Fatalf("v1: %v", err)
	}
	for _, tp := range v1.Targets {
		if tp.Status != workflows.TargetDone || tp.Before != "" || tp.After != v1.Image {
			t.Errorf("v1 target %+v", tp)
		}
	}
	if a := v1.Waves[1].Approval; a.Who != "ops" || a.Status != workflows.ApprovalGranted {
		t.Errorf("v1's fog gate %+v", a)
	}
	edgeURLs := map[string]string{}
	for _, tp := range v1.Targets {
		edgeURLs[tp.Cloud] = tp.Endpoint.URL
	}

	bad := spec
	bad.Build.Commands = []string{strings.Replace(spec.Build.Commands[0], "-X main.version=pipeline", "-X main.version=pipeline -X main.failEvery=3", 1)}
	if bad.Build.Commands[0] == spec.Build.Commands[0] {
		t.Fatal("could not add the failEvery flag to the build")
	}
	v2, err := runWaves(t, ctx, c, topo, bad, "v2")
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeRolledBack || !strings.Contains(ae.Message(), "wave fog failed") || !strings.Contains(ae.Message(), "answered 500") {
		t.Fatalf("v2: %v, want RolledBack at the fog wave's analysis", err)
	}
	if v2.Image == v1.Image {
		t.Fatal("v2 built the same image as v1")
	}
	t.Logf("v2 failed as it should: %s", ae.Message())
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, v2.ID, path)
	}
	wantWave := map[string]workflows.WaveStatus{"canary": workflows.WaveRolledBack, "fog": workflows.WaveRolledBack, "edges": workflows.WavePending}
	for _, w := range v2.Waves {
		if w.Status != wantWave[w.Name] {
			t.Errorf("v2 wave %s is %s, want %s", w.Name, w.Status, wantWave[w.Name])
		}
	}
	if an := v2.Waves[0].Analysis; len(an) != 1 || !an[0].Passed || an[0].Requests < 10 {
		t.Errorf("canary analysis %+v", an)
	}
	if an := v2.Waves[1].Analysis; len(an) != 1 || an[0].Passed || an[0].Failures == 0 || an[0].SuccessRatio() > 0.8 {
		t.Errorf("fog analysis %+v, want about a third of failures", an)
	}
	for _, tp := range v2.Targets {
		st, serr := ws.Runtimes[tp.Cloud].Status(ctx, tp.Instance)
		if serr != nil || !st.Ready || st.Image != v1.Image {
			t.Errorf("%s runs %+v (%v), want v1 %s", tp.Cloud, st, serr, v1.Image)
		}
		if tp.Before != v1.Image || tp.After != v1.Image {
			t.Errorf("v2 target %s: before %q after %q, want v1 both", tp.Cloud, tp.Before, tp.After)
		}
		for range 6 { // v1 answers every request
			if code, _, _ := harness.HTTPGet(t, st.Endpoint.URL+"/"); code != 200 {
				t.Errorf("%s answers %d after the rollback", tp.Cloud, code)
			}
		}
	}
	for _, cloud := range []string{"edge-latin", "edge-bastille"} {
		if got := actsOn(t, ctx, c, v2.ID, cloud); strings.Contains(got, "DeployInstance") || strings.Contains(got, "DestroyInstance") {
			t.Errorf("v2 touched %s of wave 3: %s", cloud, got)
		}
		if st, _ := ws.Runtimes[cloud].Status(ctx, workflows.PipelineInstance("hello")); st.Endpoint.URL != edgeURLs[cloud] {
			t.Errorf("%s was replaced: %s, v1 left %s", cloud, st.Endpoint.URL, edgeURLs[cloud])
		}
	}

	// The CLI: rolling back the newest run (v2) has nothing left to do; v1
	// goes back to nothing everywhere; undeploy --target is idempotent.
	driftBin, _ := harness.Binaries(t)
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, driftBin, append(args, "--address", stack.Address(), "--namespace", stack.Namespace())...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("drift %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("drift %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	if out := cli("pipeline", "rollback", "hello"); !strings.Contains(out, names.PipelineID("hello", "v2")+" rolled back") || !strings.Contains(out, "edge-latin untouched") {
		t.Errorf("rollback of the newest run:\n%s", out)
	}
	if out := cli("pipeline", "undeploy", "hello", "--target", "edge-bastille"); !strings.Contains(out, "removed from edge-bastille") {
		t.Errorf("undeploy --target:\n%s", out)
	}
	out := cli("pipeline", "rollback", "hello", "v1")
	for _, tp := range v1.Targets {
		if !strings.Contains(out, tp.Cloud+" runs nothing of hello") {
			t.Errorf("rollback of v1 does not say %s runs nothing:\n%s", tp.Cloud, out)
		}
		if st, err := ws.Runtimes[tp.Cloud].Status(ctx, tp.Instance); err != nil || st.Exists {
			t.Errorf("%s still runs %+v (%v)", tp.Cloud, st, err)
		}
	}
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, names.RollbackID("hello", "v1"), filepath.Join(filepath.Dir(path), "pipeline-rollback-run.json"))
	}
}

// actsOn lists the activity types a workflow scheduled on a cloud's queue.
func actsOn(t *testing.T, ctx context.Context, c client.Client, id, cloud string) string {
	t.Helper()
	var types []string
	it := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetTaskQueue().GetName() == names.CloudQueue(cloud) {
			types = append(types, a.GetActivityType().GetName())
		}
	}
	return strings.Join(types, " ")
}
