package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/process"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// `drift dev --demo` releases the example app through the pipeline (its own
// git repository → build + test → image → registry → fog-north and
// edge-latin) and walks a mobility session with the image it made.
func TestDevDemoReleasesThroughThePipeline(t *testing.T) {
	drift, _ := harness.Binaries(t)
	dataDir := t.TempDir()
	port, regPort := harness.FreePort(t), harness.FreePort(t)
	dev := harness.Start(t, drift, "dev", "--demo", "--data-dir", dataDir, "--port", fmt.Sprint(port),
		"--ui-port", fmt.Sprint(harness.FreePort(t)), "--registry-port", fmt.Sprint(regPort),
		"--api-port", fmt.Sprint(harness.FreePort(t)), "--fog-runtime", "process")
	t.Cleanup(func() { destroyRelease(t, dataDir) })
	dev.WaitFor(t, "Press Ctrl-C to stop.", 10*time.Minute)
	out := dev.Output()

	for _, want := range []string{
		"pipeline pipeline/hello/demo-",
		"  clone     done", "  build     done", "  test      done", "  package   done",
		"  image     done", "  push      done", "  deploy    done", "  verify    done",
		"→ fog-north          done", "→ edge-latin         done",
		"mobility session session/alice/hello",
		"exit: 5 handovers",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	image := regexp.MustCompile(`image (127\.0\.0\.1:\d+/hello@sha256:[0-9a-f]{64}) built`).FindStringSubmatch(out)
	if image == nil || !strings.Contains(image[1], fmt.Sprint(":", regPort, "/")) {
		t.Fatalf("no pipeline image in the demo output:\n%s", out)
	}
	release := regexp.MustCompile(`released on fog-north\s+(http://\S+)`).FindStringSubmatch(out)
	if release == nil {
		t.Fatalf("no fog-north release endpoint in the demo output:\n%s", out)
	}
	code, _, body := harness.HTTPGet(t, release[1]+"/")
	var got struct{ App, Cloud, Version string }
	if json.Unmarshal([]byte(body), &got); code != 200 || got.Cloud != "fog-north" || got.Version != "pipeline" {
		t.Errorf("release on fog-north answered %d %s", code, body)
	}

	// The session walked with the pipeline's image.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := config.Temporal{Address: fmt.Sprintf("127.0.0.1:%d", port), Namespace: "default"}.Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := c.QueryWorkflow(ctx, names.SessionID("alice", "hello"), "", names.ProgressQuery)
	if err != nil {
		t.Fatal(err)
	}
	var st workflows.SessionState
	if err := v.Get(&st); err != nil || st.Image != image[1] {
		t.Errorf("the session ran %q (%v), want the pipeline's %s", st.Image, err, image[1])
	}

	syscall.Kill(dev.Cmd.Process.Pid, syscall.SIGINT)
	if exited, err := dev.Wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("drift dev after SIGINT: exited=%v err=%v", exited, err)
	}
	destroyRelease(t, dataDir)
	if n := harness.ProcessesUnder(t, dataDir); n != 0 {
		t.Errorf("%d instance processes still run under the data dir", n)
	}
}

// destroyRelease removes what the demo's release left running: the
// pipeline's instance on each target (process runtime, state in dataDir).
func destroyRelease(t *testing.T, dataDir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, cloud := range []string{"fog-north", "edge-latin"} {
		rt, err := process.New(runtime.Config{Kind: runtime.KindProcess, Dir: filepath.Join(dataDir, "process", cloud)}, cloud)
		if err != nil {
			t.Error(err)
			continue
		}
		if err := rt.Destroy(ctx, workflows.PipelineInstance("hello")); err != nil {
			t.Errorf("destroy the release on %s: %v", cloud, err)
		}
	}
}
