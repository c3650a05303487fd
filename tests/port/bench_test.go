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
	port := func(name string) runResult {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
		defer cancel()
		start := time.Now()
		wr, err := drift.New(c).StartPort(ctx, workflows.PortInput{Repo: dir})
		if err != nil {
			t.Fatal(err)
		}
		r, err := drift.Follow[workflows.PortReport](ctx, drift.New(c), wr, 0, nil)
		if err != nil || r.Status != workflows.PortDone {
			t.Fatalf("%s port: %v (%s)", name, err, r.Status)
		}
		return runResult{report: r, total: time.Since(start), load: harness.LoadAvg()}
	}
	cold := port("cold")
	warm := port("warm")
	if fixesOf(cold.report) != fixesOf(warm.report) {
		t.Fatalf("the runs fixed different things:\ncold %s\nwarm %s", fixesOf(cold.report), fixesOf(warm.report))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Port benchmark\n\nWritten by `make bench-port` from one measured run.\n\n")
	fmt.Fprintf(&b, "- **Date:** %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- **Machine:** %d cores, %s/%s, %s; shared with other engineers' builds and tests (load average after each run below)\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, "- **Command:** `%s`\n", os.Getenv("DRIFT_BENCH_COMMAND"))
	fmt.Fprintf(&b, "- **Case:** the seed's program (bolt v1.3.1, gopsutil 2019-03-23 host/mem/cpu/disk/net, x/sys 2018-09-09) ported to linux/loong64 by `PortToArch` on the embedded Temporal server and registry; its tests run under qemu-loongarch64-static, the image is pushed.\n")
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
	t.Log("\n" + b.String())
	if path := os.Getenv("DRIFT_BENCH_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
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
