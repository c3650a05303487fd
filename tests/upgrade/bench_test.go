package upgrade

import (
	"context"
	"fmt"
	"maps"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// TestUpgradeBench times upgrades of the fixture cinder (24.2.0 → 28.0.0,
// platform policy, HTTP verification) on the Docker Engine, step by step
// from the workflow's history, next to a bare deploy of the same two
// instances through the runtime. make bench-upgrade runs it and writes
// docs/bench/upgrade.md.
func TestUpgradeBench(t *testing.T) {
	if os.Getenv("DRIFT_BENCH") != "1" {
		t.Skip("DRIFT_BENCH=1 runs the benchmark (make bench-upgrade)")
	}
	const rounds = 5
	begin := time.Now()
	load0 := harness.LoadAvg()
	r := newRig(t, "upgrade-fog", runtime.Config{Kind: runtime.KindDocker})
	oldDriver := r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", "")
	newDriver := r.driver(t, "3.0.0", ">= 25.0.0", "")
	roles := map[string]map[string]string{"cinder-prod": {"ROLE": "api"}, "cinder-volume-prod": {"ROLE": "volume"}}

	var bare, total []time.Duration
	steps := map[string][]time.Duration{}
	for i := 0; i < rounds; i++ {
		start := time.Now()
		r.env(t, "cinder", r.repo, "24.2.0", oldDriver, roles)
		bare = append(bare, time.Since(start))

		start = time.Now()
		res, err := r.run(t, r.cinderInput(workflows.PolicyPlatform, "3.0.0", newDriver))
		if err != nil || res.Serving.Version != "28.0.0" {
			t.Fatalf("round %d: %v (%+v)", i, err, res)
		}
		total = append(total, time.Since(start))
		for step, d := range stepTimes(t, r, res.ID) {
			steps[step] = append(steps[step], d)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for _, name := range res.Serving.Instances {
			if err := r.rt.Destroy(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
	}
	load1 := harness.LoadAvg()

	var b strings.Builder
	fmt.Fprintf(&b, "# Component upgrade benchmark\n\nWritten by `make bench-upgrade` from one measured run; the ratio compares numbers taken side by side in that run. The issue sets no speed goal: this is a measurement.\n\n")
	fmt.Fprintf(&b, "- **Date:** %s UTC\n- **Machine:** %d cores, %s/%s, %s; load average %s at the start, %s at the end (the machine is shared with other engineers' builds and tests: contended)\n",
		begin.UTC().Format("2006-01-02 15:04"), goruntime.NumCPU(), goruntime.GOOS, goruntime.GOARCH, goruntime.Version(), load0, load1)
	fmt.Fprintf(&b, "- **Command:** `%s`\n- **Run time:** %s in the test\n\n", os.Getenv("DRIFT_BENCH_COMMAND"), time.Since(begin).Round(time.Second))
	fmt.Fprintf(&b, "Each of %d rounds installs cinder 24.2.0 without any workflow: it layers driver acme 1.0.0 onto the release and starts the API and volume service, two containers, through the Docker runtime directly (the **bare deploy**), then runs `ComponentUpgrade` with the platform policy and driver acme 3.0.0: the release index says gazpacho 28.0.0, the driver is layered onto that release in the registry, the new env (two containers) starts beside the old, HTTP verification checks both services' health and creates and deletes a volume through the driver, the switch retires the old env. Steps are activity times from the workflow's history (scheduled → completed, retries included); the upgrade total is client-observed, start to result.\n\n", rounds)
	p50 := func(ds []time.Duration) time.Duration { return harness.Percentile(ds, 0.5).Round(time.Millisecond) }
	fmt.Fprintf(&b, "| step | rounds | p50 | max |\n|---|---|---|---|\n")
	for _, step := range slices.Sorted(maps.Keys(steps)) {
		fmt.Fprintf(&b, "| %s | %d | %s | %s |\n", step, len(steps[step]), p50(steps[step]), slices.Max(steps[step]).Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "| **whole upgrade (client)** | %d | %s | %s |\n", len(total), p50(total), slices.Max(total).Round(time.Millisecond))
	fmt.Fprintf(&b, "| bare deploy: driver layered + two instances (runtime, no workflow) | %d | %s | %s |\n\n", len(bare), p50(bare), slices.Max(bare).Round(time.Millisecond))
	fmt.Fprintf(&b, "Upgrade p50 / bare deploy p50 = **%.1f×**: an upgrade starts one env like the bare deploy does, and adds the release lookup, the driver layering, verification and retiring the old env, each a durable step.\n",
		float64(p50(total))/float64(p50(bare)))
	t.Log("\n" + b.String())
	if path := os.Getenv("DRIFT_BENCH_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stepTimes sums each activity type's scheduled → completed time in a run.
func stepTimes(t *testing.T, r *rig, id string) map[string]time.Duration {
	t.Helper()
	sched := map[int64]time.Time{}
	names := map[int64]string{}
	out := map[string]time.Duration{}
	it := r.c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			sched[ev.GetEventId()] = ev.GetEventTime().AsTime()
			names[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil {
			id := a.GetScheduledEventId()
			out[names[id]] += ev.GetEventTime().AsTime().Sub(sched[id])
		}
	}
	// Name the steps as a reader of the workflow knows them.
	named := map[string]time.Duration{}
	for k, v := range out {
		named[map[string]string{
			"ListInstances": "find the running env", "LoadDriver": "layer the driver onto the release",
			"DeployInstance": "start the new env (2 instances)", "VerifyEnv": "verify (health ×2, driver call)",
			"DestroyOwned": "retire the old env",
		}[k]] = v
	}
	return named
}
