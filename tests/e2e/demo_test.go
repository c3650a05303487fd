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

// `drift dev --demo` releases the example apps through the pipeline (their
// own git repositories → build + test → images → registry → fog-north and
// edge-latin) and walks a mobility session of each with the images it
// made: hello, and the two-service counter app, whose count is carried to
// every instance that serves it (it survives every handover).
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
		"pipeline pipeline/counter/demo-", "image counter-web, counter-store",
		"mobility session session/alice/counter",
		"counted to 3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	for _, service := range []string{"web", "store"} {
		if !regexp.MustCompile(`image of ` + service + `: 127\.0\.0\.1:\d+/counter-` + service + `@sha256:[0-9a-f]{64} built`).MatchString(out) {
			t.Errorf("no pipeline image of counter's %s in the demo output", service)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "counte") {
			t.Log(line)
		}
	}
	// The counter's state travels with its user: every move carries it
	// before the switch, and the walk reads the count it saw before.
	if n := strings.Count(out, "state carried"); n != 5 {
		t.Errorf("%d of the counter's 5 moves carried its state", n)
	}
	if n := strings.Count(out, ": survived the handover"); n != 5 {
		t.Errorf("the counter survived %d of 5 handovers", n)
	}
	if !strings.Contains(out, "counter survived every handover (5 of 5)") {
		t.Error("demo output lacks \"counter survived every handover (5 of 5)\"")
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

// destroyRelease removes what the demo's releases left running: the
// pipelines' instances on each target (process runtime, state in dataDir).
func destroyRelease(t *testing.T, dataDir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, cloud := range []string{"fog-north", "edge-latin"} {
		rt, err := process.New(runtime.Config{Kind: runtime.KindProcess, Dir: filepath.Join(dataDir, "process", cloud)}, cloud)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, app := range []string{"hello", "counter"} {
			if err := rt.Destroy(ctx, workflows.PipelineInstance(app)); err != nil {
				t.Errorf("destroy the release of %s on %s: %v", app, cloud, err)
			}
		}
	}
}
