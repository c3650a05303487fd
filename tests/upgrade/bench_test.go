package upgrade

import (
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// TestUpgradeBench times upgrades with data of the example cinder on the
// Docker Engine: 24.2.0 → 28.0.0 in two hops, with 100 and with 1,000
// volumes made through the stable endpoint, while a consumer uses the
// endpoint. It reports the whole upgrade, its migrations (db sync and online
// data migrations, from the workflow's history) and the switch interruption:
// the longest gap between two answered requests the consumer saw. make
// bench-upgrade runs it and writes docs/bench/upgrade.md.
func TestUpgradeBench(t *testing.T) {
	if os.Getenv("DRIFT_BENCH") != "1" {
		t.Skip("DRIFT_BENCH=1 runs the benchmark (make bench-upgrade)")
	}
	begin := time.Now()
	load0 := harness.LoadAvg()
	r := newRig(t, "upgrade-fog", runtime.Config{Kind: runtime.KindDocker})
	oldDriver := r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", "")
	newDriver := r.driver(t, "3.0.0", ">= 25.0.0", "")

	type round struct {
		volumes                       int
		total, sync, online, contract time.Duration
		gap                           time.Duration
		answered, failed              int
	}
	var rounds []round
	for _, c := range []struct{ volumes, rounds int }{{100, 3}, {1000, 2}} {
		for i := range c.rounds {
			t.Run(fmt.Sprintf("%d volumes #%d", c.volumes, i+1), func(t *testing.T) {
				e := r.install(t, "cinder", r.repo, "24.2.0", oldDriver, true)
				vols := e.create(t, c.volumes, "bench")
				w := e.watch(t, vols)
				in := r.cinderInput(workflows.PolicyPlatform, "3.0.0", newDriver)
				start := time.Now()
				res, err := r.run(t, in)
				total := time.Since(start)
				w.end()
				if err != nil || res.Serving.Version != "28.0.0" {
					t.Fatalf("%v (%+v)", err, res)
				}
				steps := taskTimes(t, r, res.ID)
				rounds = append(rounds, round{volumes: c.volumes, total: total, sync: steps["db sync"], online: steps["db online_data_migrations"],
					contract: steps["db contract"], gap: w.maxGap, answered: w.ok, failed: w.bad})
				if w.bad > 0 {
					t.Errorf("%d failed requests: %v", w.bad, w.errs[:min(10, len(w.errs))])
				}
			})
		}
	}
	load1 := harness.LoadAvg()

	var b strings.Builder
	fmt.Fprintf(&b, "# Component upgrade benchmark\n\nWritten by `make bench-upgrade` from one measured run. The issue sets no speed goal: this is a measurement.\n\n")
	fmt.Fprintf(&b, "- **Date:** %s UTC\n- **Machine:** %d cores, %s/%s, %s; load average %s at the start, %s at the end (the machine is shared with other engineers' builds and tests: contended)\n",
		begin.UTC().Format("2006-01-02 15:04"), goruntime.NumCPU(), goruntime.GOOS, goruntime.GOARCH, goruntime.Version(), load0, load1)
	fmt.Fprintf(&b, "- **Command:** `%s`\n- **Run time:** %s in the test\n\n", os.Getenv("DRIFT_BENCH_COMMAND"), time.Since(begin).Round(time.Second))
	fmt.Fprintf(&b, "Each round installs cinder 24.2.0 (API and volume service on the data volume, driver acme 1.0.0, behind its stable endpoint: a proxy process), makes N volumes through the endpoint, starts a consumer on the endpoint (reads a volume's data, every 10th request makes a volume, every 10th asks /healthz; 5 ms between requests) and runs `ComponentUpgrade` to gazpacho 28.0.0 with driver acme 3.0.0: two SLURP hops (24.2.0 → 26.1.0 → 28.0.0), each prechecked (the target's `upgrade check` on the live data), migrated (`db sync`, `db online_data_migrations`), started beside the serving env, verified (health, a volume through the driver, 20 volumes read back), switched at the endpoint after a 1 s drain; no rollback window, so the contract (`db contract`) runs and the old env goes at once. Migration steps are activity times from the workflow's history (scheduled → completed, both hops summed); the whole upgrade is client-observed, start to result; the interruption is the longest time between two answered requests of the consumer over the whole upgrade.\n\n")
	fmt.Fprintf(&b, "| volumes | round | whole upgrade | db sync | online data migrations | db contract | longest gap at the endpoint | requests answered | failed |\n|---|---|---|---|---|---|---|---|---|\n")
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	for i, rd := range rounds {
		fmt.Fprintf(&b, "| %d | %d | %s | %s | %s | %s | %s | %d | %d |\n", rd.volumes, i+1, ms(rd.total), ms(rd.sync), ms(rd.online), ms(rd.contract), ms(rd.gap), rd.answered, rd.failed)
	}
	for _, n := range []int{100, 1000} {
		var total, online, gap []time.Duration
		for _, rd := range rounds {
			if rd.volumes == n {
				total, online, gap = append(total, rd.total), append(online, rd.online), append(gap, rd.gap)
			}
		}
		if len(total) > 0 {
			fmt.Fprintf(&b, "\n**%d volumes:** whole upgrade %s p50, online data migrations %s p50, longest gap %s (max over rounds).",
				n, ms(harness.Percentile(total, 0.5)), ms(harness.Percentile(online, 0.5)), ms(slices.Max(gap)))
		}
	}
	fmt.Fprintln(&b)
	t.Log("\n" + b.String())
	if path := os.Getenv("DRIFT_BENCH_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// taskTimes sums the scheduled → completed time of an upgrade's one-shot
// tasks by tool command (the activity summary names it).
func taskTimes(t *testing.T, r *rig, id string) map[string]time.Duration {
	t.Helper()
	sched := map[int64]time.Time{}
	what := map[int64]string{}
	out := map[string]time.Duration{}
	it := r.c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == "RunTask" {
			var summary string
			if p := ev.GetUserMetadata().GetSummary(); p != nil {
				converter.GetDefaultDataConverter().FromPayload(p, &summary)
			}
			for _, cmd := range []string{"db sync", "db online_data_migrations", "db contract", "upgrade check"} {
				if strings.Contains(summary, cmd) {
					what[ev.GetEventId()] = cmd
				}
			}
			sched[ev.GetEventId()] = ev.GetEventTime().AsTime()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil {
			if cmd, ok := what[a.GetScheduledEventId()]; ok {
				out[cmd] += ev.GetEventTime().AsTime().Sub(sched[a.GetScheduledEventId()])
			}
		}
	}
	return out
}
