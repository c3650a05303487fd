package upgrade

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/docker"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// The worker is killed (SIGKILL) while the new env is being verified, after
// it started and before the switch. A new worker finishes the same attempt:
// the new env's containers are the ones made before the crash, the old env
// is retired exactly once, and no other env is left. The upgrade is driven
// through the drift CLI.
func TestWorkerKilledBeforeSwitch(t *testing.T) {
	d := harness.Docker(t)
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
	r := &rig{c: c, reg: reg, cloud: "upgrade-fog", rt: rt, repo: repo}
	old := r.env(t, "cinder", repo, "24.2.0", r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", ""),
		map[string]map[string]string{"cinder-prod": {"ROLE": "api"}, "cinder-volume-prod": {"ROLE": "volume"}})
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
	// Verification takes 4 s, long enough to kill the worker in the middle.
	cli("run", "--cloud", "upgrade-fog", "--component", "cinder", "--repository", repo, "--version", "24.2.0",
		"--component-env", "ROLE=api", "--related", "cinder-volume", "--related-env", "ROLE=volume,VERIFY_DELAY=4s",
		"--driver", "acme", "--driver-version", "3.0.0", "--driver-image", driverRef, "--detach")

	var p workflows.UpgradeProgress
	deadline := time.Now().Add(2 * time.Minute)
	for p.Phase != "attempt 1" || len(p.Attempts) == 0 || p.Attempts[0].Status != workflows.AttemptVerifying {
		if time.Now().After(deadline) {
			t.Fatalf("never verifying: %+v", p)
		}
		time.Sleep(100 * time.Millisecond)
		out := cli("status", "--cloud", "upgrade-fog", "--component", "cinder", "--json")
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
	}
	started := map[string]string{}
	for _, name := range p.Attempts[0].Env.Instances {
		started[name] = inspect(t, d, name).ID
	}
	time.Sleep(time.Second) // inside the 4 s verification
	if err := syscall.Kill(w.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.Wait(time.Minute)
	worker()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var res workflows.UpgradeProgress
	if err := c.GetWorkflow(ctx, names.UpgradeID("upgrade-fog", "cinder"), "").Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.Phase != "done" || len(res.Attempts) != 1 || res.Serving.Version != "28.0.0" {
		t.Fatalf("result %+v", res)
	}
	for name, id := range started {
		if got := inspect(t, d, name).ID; got != id {
			t.Errorf("%s was recreated after the crash (%s → %s)", name, id, got)
		}
	}
	if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs[res.Serving.Name]) != 2 {
		t.Errorf("cinder envs %v, want %s alone", envs, res.Serving.Name)
	}
	for _, name := range old {
		if st, err := rt.Status(ctx, name); err != nil || st.Exists {
			t.Errorf("old env instance %s: exists %v (%v)", name, st.Exists, err)
		}
	}
	// The switch happened once: one destroy (the old env's retirement), one
	// verification completed.
	counts, names := map[string]int{}, map[int64]string{}
	verifyTries := 0
	it := c.GetWorkflowHistory(ctx, res.ID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			counts[a.GetActivityType().GetName()]++
			names[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && names[a.GetScheduledEventId()] == "VerifyEnv" {
			verifyTries = int(a.GetAttempt())
		}
	}
	if counts["DestroyOwned"] != 1 || counts["VerifyEnv"] != 1 {
		t.Errorf("activities scheduled %v, want one DestroyOwned and one VerifyEnv", counts)
	}
	if verifyTries < 2 {
		t.Errorf("the verification finished on try %d: the crash did not interrupt it", verifyTries)
	}
	out := cli("status", "--cloud", "upgrade-fog", "--component", "cinder")
	for _, want := range []string{"upgrade/upgrade-fog/cinder: done (platform policy), cinder serving 28.0.0", "retired env cinder-prod", "passed"} {
		if !strings.Contains(out, want) {
			t.Errorf("drift upgrade status lacks %q:\n%s", want, out)
		}
	}
}
