package pipeline

import (
	"context"
	"errors"
	"os"
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
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// recoveryEnv: fog-north on Docker, every other cloud runs processes; both
// targets are verified over HTTP.
func recoveryEnv(t *testing.T) (client.Client, *topology.Topology, *workerhost.Workers, pipelinespec.Spec, string) {
	harness.Docker(t)
	_, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	topo := harness.ExampleTopology(t)
	ws := harness.Workers(t, c, topo, reg.Host(), func(cl topology.Cloud) runtime.Config {
		if cl.ID == dockerCloud {
			return runtime.Config{Kind: runtime.KindDocker}
		}
		return runtime.Config{Kind: runtime.KindProcess}
	})
	t.Cleanup(func() { destroyPipelineInstances(t, ws, "hello") })
	files, err := demo.HelloFiles()
	if err != nil {
		t.Fatal(err)
	}
	repoDir := t.TempDir()
	bare, err := demo.GitRepo(context.Background(), repoDir, "hello", files)
	if err != nil {
		t.Fatal(err)
	}
	spec := exampleSpec(t, "file://"+bare)
	for i := range spec.Deploy.Targets {
		spec.Deploy.Targets[i].Verify = pipelinespec.VerifyHTTP
	}
	return c, topo, ws, spec, filepath.Join(repoDir, "work")
}

// A release whose health check answers 403 passes the runtime's readiness
// (any status below 500) but not verification: every target is put back
// to the image it ran before, and serves it again.
func TestFailedVerificationRollsBackToThePreviousImage(t *testing.T) {
	c, topo, ws, spec, work := recoveryEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	v1 := run(t, ctx, c, topo, spec, "v1")

	mainGo := filepath.Join(work, "main.go")
	src, err := os.ReadFile(mainGo)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(src), `w.Write([]byte("ok\n"))`, `http.Error(w, "no", http.StatusForbidden)`, 1)
	if broken == string(src) {
		t.Fatal("could not break the health check")
	}
	os.WriteFile(mainGo, []byte(broken), 0o644)
	if err := demo.CommitAndPush(ctx, work, "break healthz"); err != nil {
		t.Fatal(err)
	}
	bad := spec
	bad.Test.Commands = nil // the app's own test would catch it; this release skips tests
	bad.Deploy.RolloutTimeout = 5 * time.Second
	wr, err := drift.New(c).StartPipeline(ctx, workflows.PipelineInput{Run: "v2", Spec: bad, Topology: topo})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := drift.Follow[workflows.PipelineProgress](ctx, drift.New(c), wr, 0, nil)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeRolledBack {
		t.Fatalf("v2: %v, want RolledBack", err)
	}
	if pr.Image == v1.Image {
		t.Fatal("v2 built the same image as v1")
	}
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, pr.ID, path)
	}
	for _, tp := range pr.Targets {
		if tp.Status != workflows.TargetRolledBack || tp.Previous != v1.Image {
			t.Errorf("target %+v, want rolled back to %s", tp, v1.Image)
		}
		if !strings.Contains(err.Error(), tp.Cloud) {
			t.Errorf("the error does not name %s: %v", tp.Cloud, err)
		}
		st, serr := ws.Runtimes[tp.Cloud].Status(ctx, tp.Instance)
		if serr != nil || !st.Ready || st.Image != v1.Image {
			t.Errorf("%s runs %+v (%v), want v1 %s", tp.Cloud, st, serr, v1.Image)
		}
		if code, _, _ := harness.HTTPGet(t, tp.Endpoint.URL+"/healthz"); code != 200 {
			t.Errorf("%s answers %d after the rollback", tp.Cloud, code)
		}
		if in, lerr := ws.Runtimes[tp.Cloud].List(ctx, map[string]string{runtime.LabelWorkflow: runtime.LabelValue("pipeline/hello")}); lerr != nil || len(in) != 1 {
			t.Errorf("%s holds %d instances of the app (%v), want 1", tp.Cloud, len(in), lerr)
		}
	}
}

// A run whose test failed for a reason outside the source (here: a
// fixture file missing) is resumed once that is fixed: it runs from the
// test step on, without cloning or building again.
func TestResumeFromTheFailedStep(t *testing.T) {
	c, topo, _, spec, _ := recoveryEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	fixture := filepath.Join(t.TempDir(), "fixture")
	spec.Test.Commands = append(spec.Test.Commands, "test -e "+fixture)
	wr, err := drift.New(c).StartPipeline(ctx, workflows.PipelineInput{Run: "r1", Spec: spec, Topology: topo})
	if err != nil {
		t.Fatal(err)
	}
	failed, err := drift.Follow[workflows.PipelineProgress](ctx, drift.New(c), wr, 0, nil)
	if err == nil || failed.Step != workflows.StepTest {
		t.Fatalf("first run: %v at %s", err, failed.Step)
	}
	if _, err := drift.New(c).StartPipeline(ctx, workflows.PipelineInput{Run: "r1", Spec: spec, Topology: topo}); err == nil {
		t.Fatal("a failed run's ID was taken by a new run, not a resume")
	}

	os.WriteFile(fixture, nil, 0o644)
	resumed, err := drift.New(c).ResumePipeline(ctx, spec.App, "r1")
	if err != nil {
		t.Fatal(err)
	}
	pr, err := drift.Follow[workflows.PipelineProgress](ctx, drift.New(c), resumed, 0, nil)
	if err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	if pr.Resumed != 1 || pr.Commit != failed.Commit || len(pr.Endpoints()) != 2 {
		t.Fatalf("resumed run %+v", pr)
	}
	build, _ := pr.StepByName(workflows.StepBuild)
	firstBuild, _ := failed.StepByName(workflows.StepBuild)
	if !build.Ended.Equal(firstBuild.Ended) {
		t.Errorf("the build ran again: ended %v, first run's ended %v", build.Ended, firstBuild.Ended)
	}
	log, _ := os.ReadFile(build.Log.File)
	if n := strings.Count(string(log), "[linux/amd64] $ go build"); n != 1 {
		t.Errorf("the build log shows %d amd64 builds, want 1", n)
	}
	if _, err := drift.New(c).ResumePipeline(ctx, spec.App, "r1"); err == nil || !strings.Contains(err.Error(), "only a failed run") {
		t.Errorf("resuming a succeeded run: %v", err)
	}
	// Both executions are kept under the run's ID.
	for runID, want := range map[string]enums.WorkflowExecutionStatus{
		wr.GetRunID(): enums.WORKFLOW_EXECUTION_STATUS_FAILED, resumed.GetRunID(): enums.WORKFLOW_EXECUTION_STATUS_COMPLETED,
	} {
		desc, err := c.DescribeWorkflowExecution(ctx, names.PipelineID(spec.App, "r1"), runID)
		if err != nil || desc.GetWorkflowExecutionInfo().GetStatus() != want {
			t.Errorf("execution %s: %v (%v), want %v", runID, desc.GetWorkflowExecutionInfo().GetStatus(), err, want)
		}
	}
}
