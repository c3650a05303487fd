// Package bench measures mobility sessions on real parts: handover switch
// time on the Docker and process runtimes, orchestration overhead against a
// no-op Update, the pre-deploy prediction, and the memory one worker spends
// per open session. `make bench` runs the measurements (DRIFT_BENCH=1) and
// writes docs/bench/mobility.md; plain `go test` runs only quick checks of
// the bench's own parts.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/devstack"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/tests/harness"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(serverEnv); dir != "" {
		os.Exit(serveTemporal(dir))
	}
	os.Exit(m.Run())
}

// Settings of the bench run, each overridable from the environment.
func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v > 0 {
		return v
	}
	return def
}

// dial connects a client that logs only warnings: the SDK's default logger
// would print every handover of thousands of moves.
func dial(t testing.TB, address string) client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := config.Temporal{Address: address, Namespace: "default"}.Dial(ctx, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// startTemporal starts the embedded server in this process and dials it.
func startTemporal(t testing.TB) (*devstack.Stack, client.Client) {
	t.Helper()
	stack, _ := harness.Temporal(t, "")
	return stack, dial(t, stack.Address())
}

// TestMobilityBench is `make bench`: every measurement in one run, the
// results table printed and, when DRIFT_BENCH_REPORT names a file, written
// there (docs/bench/mobility.md). Goals that are not met are reported, not
// failed; the run fails only when a measurement cannot be made or an
// invariant breaks (a warm move that deploys, something left behind).
func TestMobilityBench(t *testing.T) {
	requireBench(t)
	rep := &report{
		Started:  time.Now(),
		Command:  os.Getenv("DRIFT_BENCH_COMMAND"),
		Sections: map[string]time.Duration{},
		CPU:      map[string]cpuUse{},
		Moves:    envInt("DRIFT_BENCH_MOVES", 100),
		Warmup:   5,
	}
	if rep.Command == "" {
		rep.Command = "DRIFT_BENCH=1 go test " + strings.Join(os.Args[1:], " ") + " ./tests/bench"
	}
	section := func(name string, f func(t *testing.T)) {
		start, cpu := time.Now(), readCPU()
		t.Run(name, f)
		rep.Sections[name] = time.Since(start)
		rep.CPU[name] = cpu.until(readCPU(), goruntime.NumCPU())
	}

	section("prediction", func(t *testing.T) {
		points, err := measurePrediction()
		if err != nil {
			t.Fatal(err)
		}
		rep.Prediction = points
	})

	section("sessions held", func(t *testing.T) {
		var levels []int
		for _, f := range strings.Split(os.Getenv("DRIFT_BENCH_SESSIONS"), ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
				levels = append(levels, n)
			}
		}
		if len(levels) == 0 {
			levels = []int{1000, 10000}
		}
		h := measureHeld(t, levels, 5000, 10*time.Minute)
		rep.Held = &h
	})

	// Handovers and overhead share one embedded server and one worker
	// process serving every cloud of benchTopology.
	docker := harness.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	if v, err := docker.ServerVersion(ctx); err == nil {
		rep.Machine = describeMachine(v.Version)
	} else {
		rep.Machine = describeMachine("unknown")
	}
	_, c := startTemporal(t)
	reg := harness.Registry(t)
	img := harness.HelloImage(t, reg, "v1")
	e := startEnv(t, c, parseTopology(t, benchTopology), instantClouds, reg.Host(), img, t.TempDir())
	t.Cleanup(func() { sweep(t, e) }) // runs before the workers stop

	section("handover", func(t *testing.T) {
		for _, kind := range []string{runtime.KindDocker, runtime.KindProcess} {
			t.Run(kind, func(t *testing.T) {
				warm, cold, err := e.measureHandovers(ctx, kind, rep.Warmup, rep.Moves)
				rep.Handovers = append(rep.Handovers, warm, cold)
				if err != nil {
					t.Fatal(err)
				}
				checkSeries(t, warm, cold, rep.Warmup)
			})
		}
	})

	section("overhead", func(t *testing.T) {
		o, err := e.measureOverhead(ctx, 8, envInt("DRIFT_BENCH_UPDATES", 50), envInt("DRIFT_BENCH_ROUNDS", 6))
		if err != nil {
			t.Fatal(err)
		}
		rep.Overhead = &o
	})

	// Nothing of the bench may be left on its clouds: no container (asked of
	// the engine by the bench clouds' labels), no process instance, no
	// instant record. Other drift containers on the engine are not ours.
	for _, id := range []string{"fog-a", "fog-b", "edge-a", "edge-b"} {
		found, err := e.ws.Runtimes[id].List(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("%s instances left on %s: %d", e.ws.Runtimes[id].Kind(), id, len(found)))
		if len(found) > 0 {
			t.Errorf("%s: %d instances left", id, len(found))
		}
	}
	for _, id := range instantClouds {
		if n := e.instants[id].Len(); n > 0 {
			t.Errorf("%s: %d instant instances left", id, n)
		}
	}

	md := rep.Markdown()
	fmt.Printf("\n%s\n", md)
	if path := os.Getenv("DRIFT_BENCH_REPORT"); path != "" {
		if t.Failed() {
			t.Logf("not writing %s: the run failed", path)
			return
		}
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
}

// checkSeries states what must hold of a handover measurement whatever the
// timings: every counted move was of its row's mode and the sessions'
// reports agree with what the client saw.
func checkSeries(t *testing.T, warm, cold series, warmup int) {
	t.Helper()
	for _, s := range []series{warm, cold} {
		if s.Mismatched > 0 {
			t.Errorf("%s %s: %d of %d moves were not %s", s.Runtime, s.Mode, s.Mismatched, len(s.Moves), s.Mode)
		}
		if want := len(s.Moves) + warmup; s.Report.Handovers != want {
			t.Errorf("%s %s: session reports %d handovers, want %d", s.Runtime, s.Mode, s.Report.Handovers, want)
		}
	}
	if warm.Report.Cold != 0 || cold.Report.Warm != 0 {
		t.Errorf("%s: warm session had %d cold handovers, cold session %d warm ones", warm.Runtime, warm.Report.Cold, cold.Report.Warm)
	}
}

// sweep destroys anything a bench session left on any cloud (and fails the
// test for it), so even a failed run leaves no container or process.
func sweep(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for cloud, rt := range e.ws.Runtimes {
		found, err := rt.List(ctx, nil)
		if err != nil {
			t.Errorf("sweep %s: %v", cloud, err)
			continue
		}
		for _, in := range found {
			t.Errorf("left on %s: %s", cloud, in.Name)
			_ = rt.Destroy(ctx, in.Name)
		}
	}
}
