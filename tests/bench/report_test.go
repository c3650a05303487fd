package bench

import (
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/edgedrift/drift/internal/predict"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// report collects what one bench run measured and renders it as Markdown.
type report struct {
	Started  time.Time
	Command  string
	Machine  machine
	Sections map[string]time.Duration // wall time per section
	CPU      map[string]cpuUse        // how busy the machine was per section

	Prediction []predictionPoint
	Held       *held
	Handovers  []series // docker warm, docker cold, process warm, process cold
	Overhead   *overhead
	Leftovers  []string // what was found left over, per place
	Moves      int      // counted moves per handover series
	Warmup     int
}

type machine struct {
	Cores     int
	CPU       string
	Memory    string
	Go        string
	Docker    string
	Server    string // go.temporal.io/server version
	SDK       string // go.temporal.io/sdk version
	OS        string
	CacheSize int
}

func describeMachine(docker string) machine {
	m := machine{Cores: goruntime.NumCPU(), Go: goruntime.Version(), OS: goruntime.GOOS + "/" + goruntime.GOARCH, Docker: docker, CacheSize: 10000}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb float64
				fmt.Sscanf(strings.TrimSpace(rest), "%f", &kb)
				m.Memory = fmt.Sprintf("%.0f GiB RAM", kb/1024/1024)
			}
		}
	}
	// Test binaries carry no dependency list; go.mod says what was built.
	if b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "go.mod")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "go.temporal.io/server" {
				m.Server = f[1]
			}
			if len(f) >= 2 && f[0] == "go.temporal.io/sdk" {
				m.SDK = f[1]
			}
		}
	}
	return m
}

func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	default:
		return fmt.Sprintf("%.0f ms", v)
	}
}

func yesNo(b bool) string {
	if b {
		return "**met**"
	}
	return "**not met**"
}

// oneIn writes a ratio r ≤ 1 as "1/x".
func oneIn(r float64) string {
	if r <= 0 {
		return "0"
	}
	return fmt.Sprintf("1/%.1f", 1/r)
}

func (r *report) series(kind, mode string) (series, bool) {
	for _, s := range r.Handovers {
		if s.Runtime == kind && s.Mode == mode {
			return s, true
		}
	}
	return series{}, false
}

// handoverRatio is warm over cold client-observed latency at p.
func (r *report) handoverRatio(kind string, p float64) (float64, bool) {
	w, ok1 := r.series(kind, "warm")
	c, ok2 := r.series(kind, "cold")
	if !ok1 || !ok2 || len(w.Moves) == 0 || len(c.Moves) == 0 {
		return 0, false
	}
	return float64(harness.Percentile(w.clients(), p)) / float64(harness.Percentile(c.clients(), p)), true
}

// Markdown renders the report.
func (r *report) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	w("# Mobility benchmarks\n\n")
	w("Written by `make bench` from one measured run; every ratio below compares numbers taken side by side in that run.\n\n")
	w("- **Date:** %s\n", r.Started.UTC().Format("2006-01-02 15:04 MST"))
	w("- **Machine:** %d cores (%s), %s, %s\n", m.Cores, m.CPU, m.Memory, m.OS)
	w("- **Software:** %s; Temporal server %s embedded (SQLite, 1 history shard); Temporal Go SDK %s; Docker Engine %s\n", m.Go, m.Server, m.SDK, m.Docker)
	w("- **Command:** `%s`\n", r.Command)
	var total time.Duration
	var parts []string
	for _, name := range []string{"prediction", "sessions held", "handover", "overhead"} {
		if d, ok := r.Sections[name]; ok {
			total += d
			parts = append(parts, fmt.Sprintf("%s %s", name, d.Round(time.Second)))
		}
	}
	w("- **Run time:** %s", time.Since(r.Started).Round(time.Second))
	w(" in the test (%s; the rest is setup: server, registry, image build)", strings.Join(parts, ", "))
	if s := os.Getenv("DRIFT_BENCH_START"); s != "" {
		var ns int64
		if _, err := fmt.Sscanf(s, "%d", &ns); err == nil && ns > 0 {
			w("; %s since `make bench` started (Docker check and compile included)", time.Since(time.Unix(0, ns)).Round(time.Second))
		}
	}
	w("\n\n")

	// Summary of goals.
	w("## Goals\n\n| # | goal | measured | verdict |\n|---|---|---|---|\n")
	for _, kind := range []string{"docker", "process"} {
		if p50, ok := r.handoverRatio(kind, 0.5); ok {
			p99, _ := r.handoverRatio(kind, 0.99)
			w("| 1 | warm handover ≤ 1/20 of cold, %s runtime (client-observed p50) | warm/cold p50 %s (%.3f), p99 %s | %s |\n",
				kind, oneIn(p50), p50, oneIn(p99), yesNo(p50 <= 0.05))
		}
	}
	if o := r.Overhead; o != nil {
		w("| 2 | mobility events/s ≥ 80%% of no-op Update rate | %.0f/s vs %.0f/s = %.0f%% | %s |\n",
			o.total(o.Mobility).PerSec(), o.total(o.Noop).PerSec(), 100*o.Ratio(), yesNo(o.Ratio() >= 0.8))
	}
	for _, p := range r.Prediction {
		w("| 3 | predicted keeps ≥ 97%% of the hit rate at ≤ 60%% of the instance-seconds (%s) | %.1f%% of the hit rate at %.1f%% of the instance-seconds | %s |\n",
			p.Label, 100*p.Result.HitRatio(), 100*p.Result.CostRatio(), yesNo(p.Met()))
	}
	if h := r.Held; h != nil && len(h.Points) > 0 {
		var got, at []string
		for _, p := range h.Points {
			got = append(got, fmt.Sprintf("%.1f KiB at %d", h.perSession(p)/1024, p.Sessions))
			at = append(at, strconv.Itoa(p.Sessions))
		}
		levels := strings.Join(at, " and ")
		verdict := "**measured**"
		if h.Note != "" {
			verdict = "**measured at fewer sessions** (see 4)"
		}
		w("| 4 | memory per open session at %s sessions (report) | %s | %s |\n", levels, strings.Join(got, "; "), verdict)
	}
	w("\n")

	// 1. Handovers.
	if len(r.Handovers) > 0 {
		w("## 1. Handover switch time, warm vs cold\n\n")
		w("Topology built for the bench (`benchTopology` in tests/bench/env_test.go): two fog clouds on the Docker Engine and two edge clouds on the process runtime, each pair joined by a 1 ms link; neighbour policy `nearest:1`, so a cloud's one neighbour is its pair. ")
		w("Per runtime two sessions of the example app (`hello`, built and pushed to the embedded registry) move back and forth between the pair's regions, side by side, one move each in turn: the **warm** session pre-deploys to neighbours (`neighbours`), so its target is deployed and ready before every move; the **cold** session pre-deploys nothing (`none`), so every move deploys the app on the target cloud and then destroys it on the cloud left. ")
		w("Before every move both sessions are quiet (the `State` query shows nothing in flight and every instance ready). ")
		w("%d moves per row are counted after %d uncounted warm-up moves.\n\n", r.Moves, r.Warmup)
		w("| runtime | mode | moves | client p50 | client p99 | client mean | workflow SwitchTime p50 | SwitchTime p99 | runtime Deploy p50 / p99 | moves not of the row's mode |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, s := range r.Handovers {
			c := s.clients()
			var sum time.Duration
			for _, d := range c {
				sum += d
			}
			mean := time.Duration(0)
			if len(c) > 0 {
				mean = sum / time.Duration(len(c))
			}
			deploys := "none"
			if len(s.Deploys) > 0 {
				deploys = fmt.Sprintf("%s / %s (%d)", ms(harness.Percentile(s.Deploys, 0.5)), ms(harness.Percentile(s.Deploys, 0.99)), len(s.Deploys))
			}
			w("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %d |\n", s.Runtime, s.Mode, len(s.Moves),
				ms(harness.Percentile(c, 0.5)), ms(harness.Percentile(c, 0.99)), ms(mean),
				ms(harness.Percentile(s.switches(), 0.5)), ms(harness.Percentile(s.switches(), 0.99)), deploys, s.Mismatched)
		}
		w("\n")
		for _, kind := range []string{"docker", "process"} {
			if p50, ok := r.handoverRatio(kind, 0.5); ok {
				p99, _ := r.handoverRatio(kind, 0.99)
				w("- %s: warm/cold client latency p50 %.4f (%s), p99 %.4f (%s): goal ≤ 1/20 %s.", kind, p50, oneIn(p50), p99, oneIn(p99), yesNo(p50 <= 0.05))
				if warm, ok := r.series(kind, "warm"); ok && p50 > 0.04 && p50 < 0.0625 {
					cold, _ := r.series(kind, "cold")
					step := float64(time.Millisecond) / float64(harness.Percentile(cold.clients(), 0.5))
					w(" This is close to the threshold: with a warm p50 of %s, one millisecond more or less moves the ratio by %.4f, so the verdict can differ from run to run.", ms(harness.Percentile(warm.clients(), 0.5)), step)
				}
				w("\n")
			}
		}
		w("\n*Client* latency is the `Move` update as `session.Move` sees it: sent, run by the workflow, result back. ")
		w("*Workflow SwitchTime* is the session's own figure: workflow time from the workflow task that took the move in to the one that switched. ")
		w("A warm switch happens inside the workflow task that receives the move, so its SwitchTime is 0 by construction; a cold one spans the deploy activity. ")
		w("*Runtime Deploy* is the runtime's own `Deploy` call (create, start, wait until the health path answers), timed by a wrapper around the real runtime in the worker; the rest of a cold move is orchestration. ")
		w("The goal is judged on client latency, which is what a user waits for.\n\n")
		if c, ok := r.series(runtime.KindProcess, "cold"); ok && len(c.Deploys) > 0 {
			w("Where a cold process move goes: the process runtime's Deploy took %s at p50 and %s at p99. ", ms(harness.Percentile(c.Deploys, 0.5)), ms(harness.Percentile(c.Deploys, 0.99)))
			if p50 := harness.Percentile(c.Deploys, 0.5); p50 >= 100*time.Millisecond && p50 < 120*time.Millisecond {
				w("Its readiness probe (`runtime.WaitHTTP`) asks the health path at once and then every 100 ms; Deploy times just above 100 ms match a process that is not yet listening at the first ask and answers at the second. ")
				w("So a cold process move is about one probe period plus orchestration, while the warm path is the Update round trip alone, and the process runtime's ratio is bounded by the two.")
			}
			w("\n\n")
		}
	}

	// 2. Overhead.
	if o := r.Overhead; o != nil {
		w("## 2. Orchestration overhead\n\n")
		w("One worker process on the embedded server; the clouds `inst-a`/`inst-b` run the in-memory `Instant` runtime (internal/runtime/runtimetest: Deploy and Destroy return at once, passed through `workerhost.WorkerOptions.Runtimes`). ")
		w("%d sessions, each with its pair pre-deployed, make warm moves back and forth (no activity runs). ", o.Clients)
		w("The baseline is %d workflows whose Update handler returns at once (`benchNoop`, on a worker of its own queue in the same process). ", o.Clients)
		w("All are driven the same way: %d concurrent clients, one per workflow, each sending %d updates in a row and waiting for each result (`WaitForStage: Completed`). ", o.Clients, o.PerClient)
		w("Each of %d rounds runs no-op, no-op with upsert (a diagnostic: the no-op handler also upserts the `DriftCloud` search attribute, as sessions did on every switch before they throttled it to one write per 2 s; a warm Move burst now writes it about twice per client per round), then mobility, each after 5 uncounted updates per client; rates and the ratio are over all rounds' totals.\n\n", o.Rounds)
		w("| round | no-op rate | no-op + upsert rate | Move rate | Move / no-op | cores taken by other processes (no-op / upsert / Move) |\n|---|---|---|---|---|---|\n")
		for i := range o.Noop {
			n, u, mo := o.Noop[i], o.NoopUpsert[i], o.Mobility[i]
			w("| %d | %.0f/s (%d in %s) | %.0f/s (%d in %s) | %.0f/s (%d in %s) | %.0f%% | %.2f / %.2f / %.2f |\n", i+1,
				n.PerSec(), n.Count, n.Elapsed.Round(time.Millisecond), u.PerSec(), u.Count, u.Elapsed.Round(time.Millisecond),
				mo.PerSec(), mo.Count, mo.Elapsed.Round(time.Millisecond), 100*mo.PerSec()/n.PerSec(),
				n.CPU.Others(), u.CPU.Others(), mo.CPU.Others())
		}
		tn, tu, tm := o.total(o.Noop), o.total(o.NoopUpsert), o.total(o.Mobility)
		w("| all | **%.0f/s** | %.0f/s | **%.0f/s** | **%.0f%%** | |\n\n", tn.PerSec(), tu.PerSec(), tm.PerSec(), 100*o.Ratio())
		w("Goal: mobility events/s ≥ 80%% of the no-op Update rate — %s (%.0f%%). ", yesNo(o.Ratio() >= 0.8), 100*o.Ratio())
		gap, upsertGap := 1-o.Ratio(), 1-tu.PerSec()/tn.PerSec()
		w("Diagnostic: the no-op with upsert runs at %.0f%% of the no-op rate. ", 100*tu.PerSec()/tn.PerSec())
		if gap <= 0 {
			w("A warm Move kept pace with the no-op in this run.\n\n")
		} else {
			w("A warm Move lost %.0f points against the no-op; an upsert on every update would cost %.0f, which is why a session writes `DriftCloud` at most every %s (`workflows.CloudIndexInterval`).\n\n", 100*gap, 100*upsertGap, workflows.CloudIndexInterval)
		}
	}

	// 3. Prediction.
	if len(r.Prediction) > 0 {
		w("## 3. Prediction: `neighbours` vs `predicted` pre-deploys\n\n")
		w("`internal/predict` on the example topology (`deploy/examples/topology.yaml`): `Walks(topo, %d, %d, %d, DefaultWalkOptions())` — %d purposeful users, %d moves each — replayed by `Evaluate` online from a cold start (train fraction 0: every prediction is made before the move it predicts is seen). ", walkSeed, walkUsers, walkMoves, walkUsers, walkMoves)
		w("The settings are the ones internal/predict's tests found: adjacency with K 1, and distance<=5 with the defaults (coverage %.1f, min observations %d). ", predict.DefaultCoverage, predict.DefaultMinObservations)
		w("Instance-seconds are instance-steps × %s per step (the time a user is assumed to stay in a region); the serving instance, the same in both modes, is not counted.\n\n", stepDuration)
		w("| setting | mode | moves | warm hits | hit rate | instance-steps | instance-seconds | per move | deploys | cold fallbacks |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, p := range r.Prediction {
			for _, mr := range []predict.ModeResult{p.Result.Neighbours, p.Result.Predicted} {
				w("| %s | %s | %d | %d | %.4f | %d | %.0f | %.3f | %d | %d |\n", p.Label, mr.Mode, p.Result.Moves, mr.Hits, mr.HitRate, mr.InstanceSteps,
					float64(mr.InstanceSteps)*stepDuration.Seconds(), mr.PerStep, mr.Deploys, mr.Fallbacks)
			}
		}
		w("\n")
		for _, p := range r.Prediction {
			w("- %s: predicted keeps %.1f%% of the neighbours hit rate at %.1f%% of its instance-seconds: goal %s.\n", p.Label, 100*p.Result.HitRatio(), 100*p.Result.CostRatio(), yesNo(p.Met()))
		}
		w("\n")
	}

	// 4. Sessions held.
	if h := r.Held; h != nil {
		w("## 4. Sessions held by one worker\n\n")
		w("The Temporal server and registry run in a **separate process** (this test binary re-executed as a server), so the measuring process holds only the worker (central queue + one poller set per cloud), its client and the bench runtime. ")
		w("Sessions of `bench-scale` (clouds `inst-a`/`inst-b` on the `Instant` runtime) open with pre-deploy `none` through update-with-start (`session.Start`, %d concurrent callers), each returning once it serves; all of them stay open. ", h.Concurrency)
		w("Memory is read after three `runtime.GC()` + `debug.FreeOSMemory()`: *live* = `HeapAlloc` + `StackInuse` (each cached session keeps its workflow coroutines as goroutines). ")
		w("The baseline is read after %d warm-up sessions opened and exited, before the measured sessions; per session = (live − baseline live) / sessions. ", h.WarmupSessions)
		w("The SDK's sticky workflow cache is left at its **default size, %d** (`worker.SetStickyWorkflowCacheSize` not called); the SDK makes the shared cache hold size − 1 runs (`cache.New(cacheSize-1, …)` in internal_worker_cache.go), so %d sessions is at the limit: beyond it, the least recently used sessions are evicted and replay their history on their next task.\n\n", h.CacheSize, h.CacheSize)
		w("| open sessions | time to open them | worker heap | worker stacks | goroutines | worker RSS | **live per session** | server process RSS |\n|---|---|---|---|---|---|---|---|\n")
		bl := h.Baseline
		w("| 0 (baseline) | – | %s | %s | %d | %s | – | %s |\n", mib(bl.Worker.Heap), mib(bl.Worker.Stacks), bl.Worker.Goroutines, mib(bl.Worker.RSS), mib(bl.ServerRSS))
		for _, p := range h.Points {
			w("| %d | +%d in %s (%.0f/s) | %s | %s | %d | %s | **%.1f KiB** | %s |\n", p.Sessions, p.Opened, p.OpenTime.Round(time.Second), float64(p.Opened)/p.OpenTime.Seconds(),
				mib(p.Worker.Heap), mib(p.Worker.Stacks), p.Worker.Goroutines, mib(p.Worker.RSS), h.perSession(p)/1024, mib(p.ServerRSS))
		}
		w("\n")
		if len(h.Points) > 0 {
			p := h.Points[len(h.Points)-1]
			w("At %d sessions: %d more goroutines than the baseline (%.2f per session: a cached session keeps its main coroutine and its signal loop) and %.1f KiB of stack per session; the bench runtime's own record of the session's instance accounts for about %.2f KiB of the heap (measured on a throwaway `Instant` with 2000 records).", p.Sessions,
				p.Worker.Goroutines-bl.Worker.Goroutines, float64(p.Worker.Goroutines-bl.Worker.Goroutines)/float64(p.Sessions), (float64(p.Worker.Stacks)-float64(bl.Worker.Stacks))/float64(p.Sessions)/1024, h.InstantRecord/1024)
			w(" The server process's RSS is shown for context only (it includes SQLite's page cache).\n\n")
		}
		if h.Note != "" {
			w("Note: %s.\n\n", h.Note)
		}
	}

	if len(r.CPU) > 0 {
		w("## Machine load during the run\n\n")
		w("The machine is shared. Per section, the cores busy on the whole machine (of %d) and those used by the bench process itself (worker, in-process server, and the server process of section 4); the rest ran in other processes — the Docker daemon and the app's instances during the handovers, and any other work on the machine.\n\n", m.Cores)
		w("| section | wall time | cores busy | bench process | other processes |\n|---|---|---|---|---|\n")
		for _, name := range []string{"prediction", "sessions held", "handover", "overhead"} {
			if u, ok := r.CPU[name]; ok && r.Sections[name] >= time.Second { // shorter is below /proc's resolution
				w("| %s | %s | %.2f | %.2f | %.2f |\n", name, r.Sections[name].Round(time.Second), u.Busy, u.Self, u.Others())
			}
		}
		w("\n")
	}

	w("## Also\n\n")
	w("`go test -run '^$' -bench . ./tests/bench` runs two Go benchmarks on the embedded server and the instant runtime, one client at a time: `BenchmarkWarmMove` (a warm Move update) and `BenchmarkNoopUpdate` (a no-op update). They are not part of this table. ")
	w("Plain `go test ./tests/bench/...` (what CI runs) runs only quick checks of the bench's parts: the handover and overhead measurements in miniature against a real embedded server (the instant runtime and the percentile are tested where they live, in internal/runtime/runtimetest and tests/harness).\n\n")

	if len(r.Leftovers) > 0 {
		w("## Clean-up\n\n")
		for _, l := range r.Leftovers {
			w("- %s\n", l)
		}
		w("\n")
	}
	return b.String()
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
