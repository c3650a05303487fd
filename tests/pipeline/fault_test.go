package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/process"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

func TestMain(m *testing.M) { harness.Main(m) }

// The drift-worker process is SIGKILLed twice during one run: while the
// build runs and while the targets deploy. A new worker finishes the run,
// and each target holds exactly one instance, run by one process.
func TestWorkerKilledDuringBuildAndDeploy(t *testing.T) {
	_, driftWorker := harness.Binaries(t)
	stack, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	dataDir := t.TempDir()
	topoFile := filepath.Join(harness.RepoRoot(), "deploy", "examples", "topology.yaml")
	worker := func() *harness.Proc {
		return harness.StartWorker(t, driftWorker, stack.Address(), "--topology", topoFile, "--all-clouds",
			"--data-dir", dataDir, "--registry", reg.Host())
	}
	kill := func(w *harness.Proc) {
		t.Helper()
		if err := syscall.Kill(w.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		w.Wait(time.Minute)
	}
	t.Cleanup(func() { destroyProcessRelease(t, dataDir) })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	files, err := demo.HelloFiles()
	if err != nil {
		t.Fatal(err)
	}
	bare, err := demo.GitRepo(ctx, t.TempDir(), "hello", files)
	if err != nil {
		t.Fatal(err)
	}
	spec := exampleSpec(t, "file://"+bare)
	// A slow first build attempt (its sleep outlives the killed worker unless
	// the retry reaps it) and slow-to-be-ready instances, so both steps
	// can be interrupted.
	mark := filepath.Join(t.TempDir(), "slept")
	slow := "if [ ! -e " + mark + " ]; then touch " + mark + "; sleep 120; fi"
	spec.Build.Commands = append([]string{slow}, spec.Build.Commands...)
	spec.Deploy.Env = map[string]string{"READY_AFTER": "3s"}
	spec.Deploy.App.Env = spec.Deploy.Env
	for i := range spec.Deploy.Targets {
		spec.Deploy.Targets[i].Verify = "http" // every cloud runs processes here
	}

	w := worker()
	wr, err := drift.New(c).StartPipeline(ctx, workflows.PipelineInput{Run: "fault", Spec: spec, Topology: harness.ExampleTopology(t)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, c, "build running", func(pr workflows.PipelineProgress) bool {
		s, _ := pr.StepByName(workflows.StepBuild)
		return s.Status == workflows.StepRunning
	})
	time.Sleep(time.Second) // inside the sleep
	kill(w)
	w = worker()
	waitFor(t, ctx, c, "a target deploying", func(pr workflows.PipelineProgress) bool {
		return pr.Targets[0].Status == workflows.TargetDeploying || pr.Targets[1].Status == workflows.TargetDeploying
	})
	time.Sleep(time.Second) // instances started, not ready yet
	kill(w)
	worker()

	pr, err := drift.Follow[workflows.PipelineProgress](ctx, drift.New(c), wr, 0, nil)
	if err != nil {
		t.Fatalf("run after two crashes: %v", err)
	}
	if len(pr.Endpoints()) != 2 {
		t.Fatalf("endpoints %v", pr.Endpoints())
	}
	build, _ := pr.StepByName(workflows.StepBuild)
	log, _ := os.ReadFile(build.Log.File)
	if n := strings.Count(string(log), "[linux/amd64] $ "+slow); n != 2 {
		t.Errorf("the build started %d times, want 2 (killed, then again):\n%s", n, log)
	}
	for _, cloud := range []string{dockerCloud, kubeCloud} {
		rt := processRuntime(t, dataDir, cloud)
		if in, err := rt.List(ctx, nil); err != nil || len(in) != 1 {
			t.Errorf("%s holds %v (%v), want exactly one instance", cloud, in, err)
		}
		if n := harness.ProcessesUnder(t, filepath.Join(dataDir, "process", cloud)); n != 1 {
			t.Errorf("%d processes run for %s, want 1", n, cloud)
		}
		code, _, _ := harness.HTTPGet(t, pr.Endpoints()[cloud].URL+"/healthz")
		if code != 200 {
			t.Errorf("%s endpoint answered %d", cloud, code)
		}
	}
	if !strings.Contains(string(log), "left running by an earlier attempt") || sleeping(t) {
		t.Errorf("the killed attempt's sleep was not reaped:\n%s", log)
	}
	destroyProcessRelease(t, dataDir)
	if n := harness.ProcessesUnder(t, dataDir); n != 0 {
		t.Errorf("%d instance processes still run", n)
	}
}

func waitFor(t *testing.T, ctx context.Context, c client.Client, what string, ok func(workflows.PipelineProgress) bool) {
	t.Helper()
	for ctx.Err() == nil {
		if pr, err := drift.New(c).PipelineProgress(ctx, "hello", "fault"); err == nil && ok(pr) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("never saw %s", what)
}

func processRuntime(t *testing.T, dataDir, cloud string) *process.Runtime {
	t.Helper()
	rt, err := process.New(runtime.Config{Kind: runtime.KindProcess, Dir: filepath.Join(dataDir, "process", cloud)}, cloud)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func destroyProcessRelease(t *testing.T, dataDir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, cloud := range []string{dockerCloud, kubeCloud} {
		if err := processRuntime(t, dataDir, cloud).Destroy(ctx, workflows.PipelineInstance("hello")); err != nil {
			t.Errorf("destroy on %s: %v", cloud, err)
		}
	}
}

// sleeping reports whether the first build attempt's `sleep 120` still
// runs in the run's checkout.
func sleeping(t *testing.T) bool {
	t.Helper()
	procs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range procs {
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if strings.HasPrefix(string(b), "sleep\x00120") && strings.Contains(cwd, "/pipeline/runs/hello/fault/") {
			return true
		}
	}
	return false
}
