package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/open"
	"github.com/edgedrift/drift/tests/harness"
)

// `drift dev --demo=upgrade` publishes the example component's releases
// and driver builds into the dev registry, installs cinder 24.2.0 with data
// on fog-north, and upgrades it to 28.0.0 in verified hops, printing the
// hops and their checks; the volumes made before read back through the
// same endpoint, and the rollback it suggests brings 24.2.0 back with them.
func TestDevDemoUpgrade(t *testing.T) {
	drift, _ := harness.Binaries(t)
	dataDir := t.TempDir()
	port := harness.FreePort(t)
	address := fmt.Sprintf("127.0.0.1:%d", port)
	dev := harness.Start(t, drift, "dev", "--demo=upgrade", "--data-dir", dataDir, "--port", fmt.Sprint(port),
		"--ui-port", fmt.Sprint(harness.FreePort(t)), "--registry-port", fmt.Sprint(harness.FreePort(t)),
		"--api-port", fmt.Sprint(harness.FreePort(t)), "--repo-port", fmt.Sprint(harness.FreePort(t)),
		"--gateway-port", fmt.Sprint(harness.FreePort(t)), "--fog-runtime", "process")
	t.Cleanup(func() { removeDemo(t, dataDir) })
	dev.WaitFor(t, "Press Ctrl-C to stop.", 15*time.Minute)
	out := dev.Output()
	for _, want := range []string{
		"cinder 24.2.0 → 28.0.0 in 2 hop(s):",
		"installed cinder 24.2.0 with driver acme 1.0.0 on fog-north (process); 20 volumes",
		"hop 1: 24.2.0 (caracal) → 26.1.0 (epoxy, SLURP): switched",
		"hop 2: 26.1.0 (epoxy) → 28.0.0 (gazpacho, SLURP): switched",
		"check upgrade check  ok      exit 0",
		"check driver         ok      no driver refuses cinder 28.0.0",
		"all 20 volumes made before the upgrade are listed and read back through",
		"drift upgrade rollback --cloud fog-north --component cinder",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	m := regexp.MustCompile(`read back through (http://\S+), now served by cinder 28\.0\.0`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no endpoint serving 28.0.0 in the demo output:\n%s", out)
	}
	e := &endpoint{url: m[1]}
	if v := e.health(t).Version; v != "28.0.0" {
		t.Fatalf("the endpoint serves %s after the demo", v)
	}

	// The rollback the demo suggests, through the CLI.
	after, err := e.consumer().Create(context.Background(), "after", "written by 28.0.0")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(drift, "upgrade", "rollback", "--cloud", "fog-north", "--component", "cinder", "--who", "demo-test", "--why", "try it", "--address", address)
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "rolled back by demo-test: try it") {
		t.Fatalf("drift upgrade rollback: %v\n%s", err, b)
	}
	if v := e.health(t).Version; v != "24.2.0" {
		t.Errorf("the endpoint serves %s after the rollback", v)
	}
	b, err := e.do(http.MethodGet, demo.CinderVolumes, nil)
	var listed []demo.Volume
	if err == nil {
		err = json.Unmarshal(b, &listed)
	}
	if err != nil || len(listed) != 21 {
		t.Errorf("after the rollback %d volumes are listed (%v), want the demo's 20 and %s", len(listed), err, after.ID)
	}
	e.expectVolumes(t, []volume{after})

	dev.Cmd.Process.Signal(syscall.SIGINT)
	if exited, err := dev.Wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("drift dev after SIGINT: exited=%v err=%v", exited, err)
	}
	removeDemo(t, dataDir)
	if n := harness.ProcessesUnder(t, dataDir); n != 0 {
		t.Errorf("%d instance processes still run under the data dir", n)
	}
}

// removeDemo removes what the demo left on fog-north (process runtime and
// proxies, state in dataDir): cinder's instances, endpoint and data.
func removeDemo(t *testing.T, dataDir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := open.Runtime("fog-north", runtime.Config{Kind: runtime.KindProcess}, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	router, err := open.Router("fog-north", rt, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.RemoveComponent(ctx, rt, router, "cinder"); err != nil {
		t.Error(err)
	}
}
