package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/port"
	"github.com/edgedrift/drift/workflows"
)

func newPortCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "port",
		Short: "Port Go modules to another arch (default loong64)",
		Long: `A port diagnoses why a Go module does not build for linux/<arch>, fixes each
failing dependency (upgrade, else a patched local copy + replace, else it asks
a human), cross-builds, runs the tests under qemu and pushes an arch image.`,
	}
	cmd.AddCommand(newPortRunCommand(g), newPortReportCommand(g))
	cmd.AddCommand(newStopCommands(g, "<git-url|path (loong64)|workflow-id>", cobra.ExactArgs(1), func(args []string) (string, error) {
		if strings.HasPrefix(args[0], "port/") {
			return args[0], nil
		}
		return names.PortID(args[0], ""), nil
	})...)
	return cmd
}

// checkArch refuses an empty or unknown GOARCH before anything starts.
func checkArch(arch string) error {
	if arch == "" {
		return fmt.Errorf("--arch is empty: give a GOARCH such as %s", names.DefaultPortArch)
	}
	if !port.KnownArch(arch) {
		return fmt.Errorf("--arch %q is not a GOARCH the Go toolchain knows (e.g. loong64, riscv64, arm64)", arch)
	}
	return nil
}

func newPortRunCommand(g *globals) *cobra.Command {
	var in workflows.PortInput
	var detach bool
	var smoke []string
	var svc workflows.PortService
	cmd := &cobra.Command{
		Use:   "run <git-url|path> [--arch loong64]",
		Short: "Port a module and follow it until it ends",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkArch(in.Arch); err != nil {
				return err
			}
			in.Repo = args[0]
			for _, sm := range smoke {
				in.Smoke = append(in.Smoke, activities.PortSmoke{Args: strings.Fields(sm)})
			}
			if svc != (workflows.PortService{}) {
				in.Service = &svc
			}
			if st, err := os.Stat(in.Repo); err == nil && st.IsDir() {
				abs, err := filepath.Abs(in.Repo)
				if err != nil {
					return err
				}
				in.Repo = abs
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				r, err := c.StartPort(ctx, in)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if detach {
					return g.print(out, map[string]string{"id": r.GetID(), "runId": r.GetRunID()}, func(w io.Writer) {
						fmt.Fprintf(w, "started %s; follow it with: drift port report %s\n", r.GetID(), r.GetID())
					})
				}
				last := ""
				progress := func(rep workflows.PortReport) {
					if !g.json && rep.Step != last {
						last = rep.Step
						fmt.Fprintf(cmd.ErrOrStderr(), "%s  %s\n", time.Now().Format("15:04:05"), rep.Step)
					}
				}
				rep, err := client.Follow(ctx, c, r, 500*time.Millisecond, progress)
				if rep.ID == "" { // failed before it had a report: the error says why
					return err
				}
				if perr := g.print(out, rep, func(w io.Writer) { printPortReport(w, rep) }); perr != nil {
					return perr
				}
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Arch, "arch", names.DefaultPortArch, "target GOARCH (any the Go toolchain supports)")
	f.StringVar(&in.Ref, "ref", "", "git branch, tag or commit")
	f.StringSliceVar(&in.Packages, "pkg", nil, "packages to build (default ./...)")
	f.StringSliceVar(&in.TestModules, "test-module", nil, "dependency modules whose tests also run under qemu")
	f.BoolVar(&in.SkipTests, "skip-tests", false, "do not run tests under qemu (the program itself still runs)")
	f.StringArrayVar(&smoke, "smoke", nil, "arguments of a run of each command, compared with the host build (repeatable; default: no arguments)")
	f.DurationVar(&in.RunTimeout, "run-timeout", 0, "time limit of a run on the host (emulated runs get ten times the host's time more; default 10s)")
	f.DurationVar(&in.TestTimeout, "test-timeout", 0, "time limit of each package's tests under qemu (default 10m)")
	f.IntVar(&in.TestParallel, "test-parallel", 0, "test packages run at once (default: the worker's cores)")
	f.StringVar(&svc.Cloud, "cloud", "", "deploy the ported service on this cloud (its topology arch must be the port's)")
	f.IntVar(&svc.Port, "service-port", 0, "the service's HTTP port (default: from the module's compose file)")
	f.StringVar(&svc.Health, "health", "", "the service's health path (default /)")
	f.BoolVar(&in.SkipImage, "skip-image", false, "do not build and push an image")
	f.StringVar(&in.Image, "image", "", "image repository in the center registry (default port/<name>)")
	f.BoolVar(&detach, "detach", false, "start the port and return")
	return cmd
}

func newPortReportCommand(g *globals) *cobra.Command {
	var arch string
	cmd := &cobra.Command{
		Use:     "report <git-url|path|workflow-id>",
		Aliases: []string{"status"},
		Short:   "Show a port's report (live while it runs)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkArch(arch); err != nil {
				return err
			}
			id := args[0]
			if !strings.HasPrefix(id, "port/") {
				id = names.PortID(args[0], arch)
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				rep, err := c.PortReport(ctx, id)
				if rep.ID == "" && err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), rep, func(w io.Writer) { printPortReport(w, rep) })
			})
		},
	}
	cmd.Flags().StringVar(&arch, "arch", names.DefaultPortArch, "target GOARCH of the port")
	return cmd
}

func printPortReport(w io.Writer, r workflows.PortReport) {
	fmt.Fprintf(w, "%s: %s (%s) for linux/%s: %s\n", r.ID, dash(r.Module), r.Repo, r.Arch, r.Status)
	if r.Status != workflows.PortDone && r.Status != workflows.PortRunning {
		fmt.Fprintf(w, "  %s\n", r.Step)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODULE\tVERSION\tPROBLEM\tFIX\tVERIFICATION")
	for _, m := range r.Modules {
		fix := m.Fix
		switch {
		case m.Fix == workflows.FixUpgrade:
			fix += " → " + m.Upgrade.Version
			if m.Final != "" && m.Final != m.Upgrade.Version {
				fix += " (go.mod ends at " + m.Final + ")"
			}
		case m.Fix == workflows.FixPatch:
			var files []string
			for _, f := range m.Patch.Files {
				files = append(files, filepath.Base(f.Name)+" from "+f.From)
			}
			fix += ": " + strings.Join(files, ", ")
			if m.Patch.Stat != "" {
				fix += " (" + m.Patch.Stat + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Path, m.Version, port.JoinCauses(m.Causes), fix, m.Verification)
	}
	tw.Flush()
	for _, m := range r.Modules {
		if m.Fix == workflows.FixHuman {
			fmt.Fprintf(w, "\n%s needs a human:\n  %s\n", m.Path, strings.Join(m.Errors, "\n  "))
		}
		if m.Advice != "" {
			fmt.Fprintf(w, "  advice: %s\n", m.Advice)
		}
	}
	if r.Change != nil {
		stat := r.Change.Stat
		if stat == "" {
			stat = "no changes"
		}
		fmt.Fprintf(w, "\nbranch %s at %s (%s); patch %s\n", r.Change.Branch, r.Change.Commit, stat, r.Change.Patch)
		if len(r.Change.Modules) > 0 {
			fmt.Fprintf(w, "go.mod changes (as it ends, after minimal version selection and tidying):\n")
			for _, c := range r.Change.Modules {
				line := fmt.Sprintf("  %s %s → %s", c.Path, dash(c.Before), dash(c.After))
				if c.Indirect {
					line += " (indirect)"
				}
				if c.Replace != "" {
					line += " => " + c.Replace
				}
				fmt.Fprintln(w, line)
			}
		}
	}
	for _, s := range r.Stubs {
		fmt.Fprintf(w, "stub without cgo: %s compiles %s instead of %s\n", s.Package, dash(strings.Join(s.StubFiles, ", ")), strings.Join(s.CgoFiles, ", "))
	}
	for _, t := range r.Tests {
		switch t.Status {
		case "", activities.TestQueued:
		case activities.TestSkipped:
			fmt.Fprintf(w, "test %-9s %s: %s\n", t.Status, t.Package, t.Note)
		default:
			fmt.Fprintf(w, "test %-9s %s %s\n", t.Status, t.Package, durationText(t.Elapsed))
			if t.Output != "" && !t.Passed {
				fmt.Fprintf(w, "%s\n", t.Output)
			}
		}
	}
	for _, b := range r.Binaries {
		fmt.Fprintf(w, "binary %s (%d bytes)\n", b.Path, b.Size)
	}
	if r.Image != "" {
		fmt.Fprintf(w, "image %s\n", r.Image)
	}
	if s := r.Service; s != nil {
		fmt.Fprintf(w, "service %s on %s at %s: %s\n", s.Instance, s.Cloud, dash(s.Endpoint.URL), dash(s.Verified))
	}
	if len(r.Checks) > 0 {
		fmt.Fprintln(w, "\nchecks:")
		for _, c := range r.Checks {
			mark := "ok  "
			if !c.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "  %s %s: %s\n", mark, c.Check, c.Result)
		}
	}
	for _, warning := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
	for _, s := range r.Steps {
		fmt.Fprintf(w, "  %-9s %s\n", s.Step, s.Elapsed.Round(time.Millisecond))
	}
}
