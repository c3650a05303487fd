package upgrade

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/docker"
	"github.com/edgedrift/drift/internal/runtime/open"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// The worker is killed (SIGKILL) while the first hop's online data
// migrations run. The task's container runs on; a new worker finds it by
// name, waits for its end, and the upgrade completes: every volume is there
// with the checksum the migration computed from its data, the schema is
// contracted once, nothing else is left. The upgrade is driven through the
// drift CLI.
func TestWorkerKilledDuringMigration(t *testing.T) {
	harness.Docker(t)
	drift, driftWorker := harness.Binaries(t)
	stack, c := harness.Temporal(t, "")
	reg, repo := publish(t)
	dir := t.TempDir()
	topoFile := filepath.Join(dir, "topology.yaml")
	if err := os.WriteFile(topoFile, []byte(topologyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	rt, err := docker.New(runtime.Config{Kind: runtime.KindDocker}, "upgrade-fog")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // runs last: nothing of this cloud may be left
		if left, err := rt.List(context.Background(), nil); err != nil || len(left) > 0 {
			t.Errorf("left on upgrade-fog: %v (%v)", left, err)
		}
	})
	// The worker keeps the endpoints under its data dir; so does the test.
	router, err := open.Router("upgrade-fog", rt, dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{c: c, reg: reg, cloud: "upgrade-fog", rt: rt, router: router, repo: repo, drain: time.Second, serves: true}
	e := r.install(t, "cinder", repo, "24.2.0", r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", ""), true)
	vols := e.create(t, 100, "before")
	driverRef := r.driver(t, "3.0.0", ">= 25.0.0", "")

	worker := func() *harness.Proc {
		return harness.StartWorker(t, driftWorker, stack.Address(), "--topology", topoFile, "--all-clouds",
			"--data-dir", dir, "--registry", reg.Host())
	}
	w := worker()
	cli := func(args ...string) string {
		p := harness.Start(t, drift, append([]string{"--address", stack.Address(), "upgrade"}, args...)...)
		if exited, err := p.Wait(time.Minute); !exited || err != nil {
			t.Fatalf("drift upgrade %v: exited %v, %v\n%s", args, exited, err, p.Output())
		}
		return p.Output()
	}
	// Each batch of 50 rows waits 3 s: long enough to kill the worker inside.
	cli("run", "--cloud", "upgrade-fog", "--component", "cinder", "--repository", repo, "--version", "24.2.0",
		"--component-env", "ROLE=api,MIGRATION_BATCH_DELAY=3s", "--related", "cinder-volume", "--related-env", "ROLE=volume",
		"--driver", "acme", "--driver-version", "3.0.0", "--driver-image", driverRef,
		"--data-volume", dataVolume, "--data-path", demo.CinderData, "--manage", demo.CinderManage, "--data-list", demo.CinderVolumes,
		"--window", "0", "--drain", "1s", "--detach")

	deadline := time.Now().Add(3 * time.Minute)
	for migrating := false; !migrating; {
		if time.Now().After(deadline) {
			t.Fatalf("the online data migrations never ran: %+v", r.progress(t))
		}
		time.Sleep(100 * time.Millisecond)
		tasks, _ := rt.List(context.Background(), map[string]string{runtime.LabelTask: "true"})
		for _, in := range tasks {
			migrating = migrating || strings.Contains(in.Name, "online") && in.Ready
		}
	}
	time.Sleep(time.Second) // inside the migration's first pause
	if err := syscall.Kill(w.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.Wait(time.Minute)
	worker()

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var res workflows.UpgradeProgress
	if err := c.GetWorkflow(ctx, names.UpgradeID("upgrade-fog", "cinder"), "").Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.Phase != "done" || res.Serving.Version != "28.0.0" || len(res.Attempts) != 2 {
		t.Fatalf("result %+v", res)
	}
	if h := e.health(t); h.Version != "28.0.0" || h.Database.Schema != 5 || h.Database.Migrated != 5 || h.Database.Contracted != 5 {
		t.Errorf("endpoint serves %+v", h)
	}
	e.expectVolumes(t, vols)
	b, err := e.do(http.MethodGet, demo.CinderVolumes, nil)
	if err != nil {
		t.Fatal(err)
	}
	var listed []struct{ ID, Checksum string }
	json.Unmarshal(b, &listed)
	data := map[string]string{}
	for _, v := range vols {
		data[v.ID] = v.Data
	}
	for _, v := range listed {
		sum := sha256.Sum256([]byte(data[v.ID]))
		if v.Checksum != hex.EncodeToString(sum[:]) {
			t.Errorf("volume %s: checksum %q does not match its data", v.ID, v.Checksum)
		}
	}
	// The crash cut the first migration's activity: a later try finished it.
	tries := map[string]int32{}
	summaries := map[int64]string{}
	it := c.GetWorkflowHistory(ctx, res.ID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if p := ev.GetUserMetadata().GetSummary(); p != nil && ev.GetActivityTaskScheduledEventAttributes() != nil {
			var s string
			converter.GetDefaultDataConverter().FromPayload(p, &s)
			summaries[ev.GetEventId()] = s
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil {
			tries[summaries[a.GetScheduledEventId()]] = a.GetAttempt()
		}
	}
	if n := tries["attempt 1: db online_data_migrations of cinder 26.1.0"]; n < 2 {
		t.Errorf("the first hop's migration finished on try %d: the crash did not interrupt it (%v)", n, tries)
	}
	out := cli("status", "--cloud", "upgrade-fog", "--component", "cinder")
	for _, want := range []string{"upgrade/upgrade-fog/cinder: done (platform policy), cinder serving 28.0.0",
		"hop 1: 24.2.0 (caracal) → 26.1.0 (epoxy, SLURP): switched", "check upgrade check", "db contract: ok", "retired env cinder-prod"} {
		if !strings.Contains(out, want) {
			t.Errorf("drift upgrade status lacks %q:\n%s", want, out)
		}
	}
}
