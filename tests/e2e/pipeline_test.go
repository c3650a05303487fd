package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// The drift CLI drives pipelines against `drift dev`: a run that waits for
// approval is approved with `drift pipeline approve`, `run` exits 0 with the
// result as JSON; a failing run exits non-zero and names its step; `status`
// and `logs` read what happened.
func TestPipelineCommands(t *testing.T) {
	drift, _ := harness.Binaries(t)
	dataDir := t.TempDir()
	port := harness.FreePort(t)
	dev := harness.Start(t, drift, "dev", "--data-dir", dataDir, "--port", fmt.Sprint(port),
		"--ui-port", fmt.Sprint(harness.FreePort(t)), "--registry-port", fmt.Sprint(harness.FreePort(t)),
		"--api-port", fmt.Sprint(harness.FreePort(t)), "--fog-runtime", "process")
	t.Cleanup(func() { destroyRelease(t, dataDir) })
	dev.WaitFor(t, "Press Ctrl-C to stop.", 2*time.Minute)
	address := fmt.Sprintf("127.0.0.1:%d", port)
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(drift, append([]string{"--address", address}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	files, err := demo.HelloFiles()
	if err != nil {
		t.Fatal(err)
	}
	bare, err := demo.GitRepo(ctx, t.TempDir(), "hello", files)
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "examples", "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	gated := strings.Replace(string(example), "    - cloud: edge-latin\n", "    - cloud: edge-latin\n      approval: true\n", 1)
	specFile := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(specFile, []byte(gated), 0o644); err != nil {
		t.Fatal(err)
	}

	run := harness.Start(t, drift, "--address", address, "--json", "pipeline", "run", "-f", specFile, "--repo", bare, "--run", "cli1")
	for {
		if out, err := cli("pipeline", "status", "hello", "cli1"); err == nil && strings.Contains(out, "approval  waiting") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("never waiting for approval:\n%s", run.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := mustCLI(t, cli, "pipeline", "approve", "hello", "cli1", "--who", "e2e", "--why", "ship it"); !strings.Contains(out, "approved pipeline/hello/cli1 as e2e") {
		t.Errorf("approve said %q", out)
	}
	if exited, err := run.Wait(3 * time.Minute); !exited || err != nil {
		t.Fatalf("pipeline run: exited=%v err=%v\n%s", exited, err, run.Output())
	}
	var pr workflows.PipelineProgress
	if err := json.Unmarshal([]byte(run.Output()), &pr); err != nil {
		t.Fatalf("--json output: %v\n%s", err, run.Output())
	}
	if pr.Status != workflows.RunSucceeded || pr.Approval.Who != "e2e" || len(pr.Endpoints()) != 2 {
		t.Fatalf("run result %+v", pr)
	}
	if out := mustCLI(t, cli, "pipeline", "logs", "hello", "cli1", "test", "--data-dir", dataDir); !strings.Contains(out, "ok  \texample.com/hello") {
		t.Errorf("test log:\n%s", out)
	}

	// A failing test: non-zero exit naming the step, the test output shown.
	failing := strings.Replace(string(example), "go test -count=1 ./...", `"echo '--- FAIL: TestNothing'; exit 1"`, 1)
	os.WriteFile(specFile, []byte(failing), 0o644)
	out, err := cli("pipeline", "run", "-f", specFile, "--repo", bare, "--run", "cli2")
	if err == nil || !strings.Contains(out, "failed at test") || !strings.Contains(out, "drift pipeline resume hello cli2") {
		t.Errorf("failing run: %v\n%s", err, out)
	}
	if out := mustCLI(t, cli, "pipeline", "logs", "hello", "cli2", "test", "--data-dir", dataDir); !strings.Contains(out, "--- FAIL: TestNothing") {
		t.Errorf("failed test log:\n%s", out)
	}
	destroyRelease(t, dataDir)
	if n := harness.ProcessesUnder(t, dataDir); n != 0 {
		t.Errorf("%d instance processes still run under the data dir", n)
	}
}

func mustCLI(t *testing.T, cli func(...string) (string, error), args ...string) string {
	t.Helper()
	out, err := cli(args...)
	if err != nil {
		t.Fatalf("drift %v: %v\n%s", args, err, out)
	}
	return out
}
