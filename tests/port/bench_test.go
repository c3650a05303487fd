package port

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// TestPortBench times porting the seed's program to loong64 step by step,
// first with an empty module and build cache on the worker, then again
// with both warm, and writes the table to DRIFT_BENCH_REPORT.
func TestPortBench(t *testing.T) {
	if os.Getenv("DRIFT_BENCH") != "1" {
		t.Skip("DRIFT_BENCH=1 runs the benchmark (make bench-port)")
	}
	requireTool(t, "qemu-loongarch64-static")
	dir := makeProgram(t)
	// The worker's go commands inherit this process's environment: give
	// them caches of their own, empty at first.
	caches := t.TempDir()
	t.Setenv("GOMODCACHE", filepath.Join(caches, "mod"))
	t.Setenv("GOCACHE", filepath.Join(caches, "build"))
	t.Cleanup(func() { runErr("", nil, "go", "clean", "-modcache") }) // its files are read-only
	c, _ := startPorting(t)

	type runResult struct {
		report workflows.PortReport
		total  time.Duration
		load   string
	}
	port := func(name string, in workflows.PortInput) (runResult, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 70*time.Minute)
		defer cancel()
		start := time.Now()
		wr, err := drift.New(c).StartPort(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		r, err := drift.Follow[workflows.PortReport](ctx, drift.New(c), wr, 0, nil)
		return runResult{report: r, total: time.Since(start), load: harness.LoadAvg()}, err
	}
	seed := func(name string) runResult {
		res, err := port(name, workflows.PortInput{Repo: dir})
		if err != nil || res.report.Status != workflows.PortDone {
			t.Fatalf("%s port: %v (%s)", name, err, res.report.Status)
		}
		return res
	}
	cold := seed("cold")
	warm := seed("warm")
	if fixesOf(cold.report) != fixesOf(warm.report) {
		t.Fatalf("the runs fixed different things:\ncold %s\nwarm %s", fixesOf(cold.report), fixesOf(warm.report))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Port benchmark\n\nWritten by `make bench-port` from one measured run.\n\n")
	fmt.Fprintf(&b, "- **Date:** %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- **Machine:** %d cores, %s/%s, %s; shared with other engineers' builds and tests (load average after each run below)\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, "- **Command:** `%s`\n", os.Getenv("DRIFT_BENCH_COMMAND"))
	fmt.Fprintf(&b, "- **Case:** the seed's program (bolt v1.3.1, gopsutil 2019-03-23 host/mem/cpu/disk/net, x/sys 2018-09-09) ported to linux/loong64 by `PortToArch` on the embedded Temporal server and registry; the program runs under qemu-loongarch64-static against its host build (`verify`), its tests run under qemu, the image is pushed.\n")
	fmt.Fprintf(&b, "- **Cold:** the worker's GOMODCACHE and GOCACHE start empty (every module version comes from the Go module proxy, the standard library is compiled for amd64 and loong64). **Warm:** the same port again right after, with both caches as the cold run left them.\n\n")
	fmt.Fprintf(&b, "| step | cold | warm | warm/cold |\n|---|---|---|---|\n")
	warmSteps := map[string]time.Duration{}
	for _, s := range warm.report.Steps {
		warmSteps[s.Step] = s.Elapsed
	}
	for _, s := range cold.report.Steps {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s.Step, round(s.Elapsed), round(warmSteps[s.Step]), ratio(warmSteps[s.Step], s.Elapsed))
	}
	fmt.Fprintf(&b, "| **total (client)** | **%s** | **%s** | **%s** |\n\n", round(cold.total), round(warm.total), ratio(warm.total, cold.total))
	fmt.Fprintf(&b, "Load average after the cold run: %s; after the warm run: %s.\n\n", cold.load, warm.load)
	fmt.Fprintf(&b, "Run-time verification (`verify`: the host build, two host runs and one run under qemu, plus the cgo/no-cgo listing that finds stubs) costs %s cold and %s warm: %s of the warm port.\n\n",
		round(stepTime(cold.report, "verify")), round(stepTime(warm.report, "verify")), percent(stepTime(warm.report, "verify"), warm.total))
	fmt.Fprintf(&b, "What the port did (the same in both runs, checked):\n\n")
	for _, m := range cold.report.Modules {
		detail := ""
		switch m.Fix {
		case workflows.FixUpgrade:
			detail = fmt.Sprintf("%s → %s after trying %s", m.Version, m.Upgrade.Version, strings.Join(m.Upgrade.Tried, ", "))
		case workflows.FixPatch:
			var files []string
			for _, f := range m.Patch.Files {
				files = append(files, fmt.Sprintf("%s from %s (%s)", filepath.Base(f.Name), f.From, f.Donor))
			}
			detail = strings.Join(files, ", ")
		}
		fmt.Fprintf(&b, "- `%s`: %s, %s — %s\n", m.Path, strings.Join(causes(m), ", "), m.Fix, detail)
	}
	write := func() {
		t.Log("\n" + b.String())
		if path := os.Getenv("DRIFT_BENCH_REPORT"); path != "" {
			if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write()

	// bolt's whole suite under qemu, which CI does not run (over 15
	// minutes on this machine): warm, with a generous limit per test
	// binary, the program's own tests beside it.
	limit := 30 * time.Minute
	bolt, err := port("bolt", workflows.PortInput{Repo: dir, TestModules: []string{"github.com/boltdb/bolt"}, TestTimeout: limit, SkipImage: true})
	fmt.Fprintf(&b, "\n## bolt's own suite under qemu\n\nThe same port (warm) with `--test-module github.com/boltdb/bolt --test-timeout %s`: %s in total, test step %s; load average after: %s.\n\n| package | status | duration |\n|---|---|---|\n",
		limit, round(bolt.total), round(stepTime(bolt.report, "test")), bolt.load)
	for _, tr := range bolt.report.Tests {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", tr.Package, tr.Status, round(tr.Elapsed))
	}
	if err != nil {
		fmt.Fprintf(&b, "\nThe port ended %s: %s\n", bolt.report.Status, bolt.report.Step)
	}
	write()
	expectBoltTestsPassed(t, bolt.report.Tests)
}

func stepTime(r workflows.PortReport, step string) time.Duration {
	for _, s := range r.Steps {
		if s.Step == step {
			return s.Elapsed
		}
	}
	return 0
}

func percent(a, b time.Duration) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(a)/float64(b))
}

// fixesOf sums up what a port changed, to compare runs.
func fixesOf(r workflows.PortReport) string {
	var s []string
	for _, m := range r.Modules {
		fix := m.Path + " " + m.Fix
		if m.Upgrade != nil {
			fix += " " + m.Upgrade.Version
		}
		if m.Patch != nil {
			for _, f := range m.Patch.Files {
				fix += " " + f.Name
			}
		}
		s = append(s, fix)
	}
	return strings.Join(s, "; ")
}

func causes(m workflows.ModuleReport) []string {
	var s []string
	for _, c := range m.Causes {
		s = append(s, string(c))
	}
	return s
}

func round(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func ratio(a, b time.Duration) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}
