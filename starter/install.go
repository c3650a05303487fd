package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/workflows"
)

func newInstallCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install software into tenant VMs through the gateway pair",
		Long: `An install (workflow install/<tenant>/<vm>/<package>) makes sure the tenant
network's gateway pair runs on the network node, posts an instruction for the
VM, and waits for the report of the VM's agent (drift agent), retrying
transient failures.

A fleet install (--select) goes to every VM of the tenant's inventory whose
labels match: one rollout (workflow fleet/<tenant>/<rollout>) resolves the
version once (exact, ^1.2, ~1.2, >= 1.2, < 2 or latest), installs on at most
--max-concurrency VMs at once, one child workflow per VM, and stops starting
new ones once more than --max-errors VMs have failed.`,
	}
	cmd.AddCommand(newInstallRunCommand(g), newInstallStatusCommand(g), newInstallReportCommand(g))
	cmd.AddCommand(newStopCommands(g, "TENANT VM PACKAGE", cobra.ExactArgs(3), func(args []string) (string, error) {
		return names.InstallID(args[0], args[1], args[2]), nil
	})...)
	return cmd
}

func newInstallRunCommand(g *globals) *cobra.Command {
	var in workflows.InstallInput
	var r workflows.Rollout
	var pkg string
	var wait bool
	cmd := &cobra.Command{
		Use: "run --tenant T (--select 'role=web' | --vm V --address IP) --package NAME@VERSION",
		Example: `  drift install run --tenant acme --select 'role=web' --package hello@^1.2 --max-concurrency 20% --max-errors 1
  drift install run --tenant acme --select 'role=web' --package hello --action uninstall
  drift install run --tenant acme --vm vm-1 --address 10.0.0.2 --package hello@1.0.0`,
		Short: "Install, update or uninstall a package on the VMs a selector picks, or on one VM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, version, ok := strings.Cut(pkg, "@")
			if !ok && in.Action != repo.ActionUninstall {
				return fmt.Errorf("--package %q: want NAME@VERSION (a version, a range like ^1.2, or latest)", pkg)
			}
			if cmd.Flags().Changed("select") {
				r.Package, r.Version, r.Platform, r.Action, r.Strategy = name, version, in.Package.Platform, in.Action, in.Strategy
				r.Timeout, r.Attempts = in.Timeout, in.Attempts
				return runFleet(cmd, g, in, r, wait)
			}
			in.Package.Name, in.Package.Version = name, version
			if err := workflows.CheckInstall(in); err != nil {
				return err
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				wr, err := c.StartInstall(ctx, in)
				if err != nil {
					return err
				}
				if !wait {
					return g.print(cmd.OutOrStdout(), map[string]string{"id": wr.GetID(), "runId": wr.GetRunID()}, func(w io.Writer) {
						fmt.Fprintf(w, "started %s\n", wr.GetID())
					})
				}
				var st workflows.InstallState
				if err := wr.Get(ctx, &st); err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), st, func(w io.Writer) { printInstall(w, st) })
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&in.Tenant, "tenant", "", "tenant network id")
	fl.StringVar(&r.Selector, "select", "", "install on every VM of the tenant's inventory whose labels match: role=web,zone!=b,canary ('*': all)")
	fl.StringVar(&r.Rollout, "rollout", "", "the rollout's name (default r-<time>); starting a rollout of that name again finds it")
	fl.StringVar(&r.MaxConcurrency, "max-concurrency", workflows.DefaultMaxConcurrency, "VMs worked on at once: N or P% of the selected")
	fl.StringVar(&r.MaxErrors, "max-errors", workflows.DefaultMaxErrors, "failed VMs tolerated before the rollout stops: N or P%")
	fl.StringVar(&in.VM, "vm", "", "one VM's name (without --select)")
	fl.StringVar(&in.Address, "address", "", "that VM's address in the tenant network")
	fl.StringVar(&pkg, "package", "", "NAME@VERSION; with --select VERSION may be a range (^1.2, ~1.2, '>= 1.2, < 2') or latest; an uninstall may name no version (all)")
	fl.StringVar(&in.Action, "action", repo.ActionInstall, "install (beside the live version), update (then remove the others) or uninstall")
	fl.StringVar(&in.Strategy, "strategy", repo.StrategyInPlace, "update strategy: in-place (A/B: the old version stays live if the new one's hook or health check fails) or replace (uninstall first)")
	fl.StringVar(&in.Package.Platform, "platform", "linux/amd64", "os/arch of the package")
	fl.StringVar(&in.Node, "node", config.DefaultNetworkNode, "network node whose gateways serve the tenant network (queue drift.node.<id>)")
	fl.StringVar(&in.Netns, "netns", "", "the tenant network's namespace on the node (the gateway listens on 169.254.169.254:8080 there); empty: loopback")
	fl.StringVar(&in.Listen, "listen", "", "the tenant gateway's address (default 169.254.169.254:8080 in --netns, 127.0.0.1:8080 otherwise)")
	fl.DurationVar(&in.Timeout, "timeout", workflows.DefaultInstallTimeout, "how long to wait for the agent's report, per attempt")
	fl.IntVar(&in.Attempts, "attempts", workflows.DefaultInstallAttempts, "attempts when the agent fails transiently")
	fl.BoolVar(&wait, "wait", true, "wait for the result")
	return cmd
}

func newInstallStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status TENANT VM PACKAGE",
		Short: "Show an install's phase, attempts and reports",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				st, err := c.InstallStatus(ctx, names.InstallID(args[0], args[1], args[2]))
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), st, func(w io.Writer) { printInstall(w, st) })
			})
		},
	}
}

// runFleet starts a rollout through the tenant's inventory (placing the
// tenant's gateway first when --node, --netns or --listen say where) and
// follows it.
func runFleet(cmd *cobra.Command, g *globals, in workflows.InstallInput, r workflows.Rollout, wait bool) error {
	if err := repo.ValidTenant(in.Tenant); err != nil {
		return fmt.Errorf("--tenant: %w", err)
	}
	if err := workflows.CheckRollout(withDefaultName(r)); err != nil {
		return err
	}
	return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
		if fl := cmd.Flags(); fl.Changed("node") || fl.Changed("netns") || fl.Changed("listen") {
			if _, err := c.PlaceGateway(ctx, in.Tenant, workflows.Placement{Node: in.Node, Netns: in.Netns, Listen: in.Listen}); err != nil {
				return err
			}
		}
		run, err := c.StartRollout(ctx, in.Tenant, r)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if !wait {
			return g.print(out, map[string]string{"id": run.GetID()}, func(w io.Writer) { fmt.Fprintf(w, "started %s\n", run.GetID()) })
		}
		p, err := followFleet(ctx, c, run, out, !g.json)
		if perr := g.print(out, p, func(w io.Writer) { printFleet(w, p) }); perr != nil {
			return perr
		}
		if err != nil && p.ID != "" {
			return fmt.Errorf("%s %s", p.ID, p.Phase) // the report above says why
		}
		return err
	})
}

// withDefaultName gives an unnamed rollout a placeholder name for checking.
func withDefaultName(r workflows.Rollout) workflows.Rollout {
	if r.Rollout == "" {
		r.Rollout = "r"
	}
	return r
}

// followFleet prints each VM as its status changes, then returns the
// rollout's result.
func followFleet(ctx context.Context, c *client.Client, run client.Run, out io.Writer, live bool) (workflows.FleetProgress, error) {
	seen := map[string]string{}
	var each func(workflows.FleetProgress)
	if live {
		fmt.Fprintf(out, "%s\n", run.GetID())
		each = func(p workflows.FleetProgress) {
			for _, vm := range p.VMs {
				if seen[vm.VM] != vm.Status {
					seen[vm.VM] = vm.Status
					fmt.Fprintf(out, "  %-20s %s\n", vm.VM, vm.Status)
				}
			}
		}
	}
	p, err := client.Follow(ctx, c, run, 500*time.Millisecond, each)
	if each != nil {
		each(p)
	}
	return p, err
}

func printFleet(w io.Writer, p workflows.FleetProgress) {
	k := p.Counts
	fmt.Fprintf(w, "%s: %s — %s %s on %d VMs (%s): %d succeeded, %d failed, %d skipped, %d running, %d pending (at most %d at once, %d failures allowed)\n",
		p.ID, p.Phase, p.Action, p.Package.Ref, k.Total, p.Selector, k.Succeeded, k.Failed, k.Skipped, k.Running, k.Pending, p.Concurrency, p.ErrorBudget)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  VM\tADDRESS\tSTATUS\tLIVE\tERROR")
	for _, vm := range p.VMs {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", vm.VM, vm.Address, vm.Status, dash(vm.Current), oneLine(vm.Error))
	}
	tw.Flush()
	if p.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", p.Error)
	}
}

func newInstallReportCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "report TENANT ROLLOUT",
		Short: "Show a fleet rollout's progress and per-VM report",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				p, err := c.RolloutProgress(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), p, func(w io.Writer) { printFleet(w, p) })
			})
		},
	}
}

func printInstall(w io.Writer, st workflows.InstallState) {
	fmt.Fprintf(w, "%s: %s (attempt %d)\n", st.ID, st.Phase, st.Attempt)
	if st.Gateway.Address != "" {
		fmt.Fprintf(w, "  gateway  %s (netns %q) ↔ %s\n", st.Gateway.Address, st.Gateway.Netns, st.Gateway.Socket)
	}
	if st.Package.SHA256 != "" {
		fmt.Fprintf(w, "  package  %s sha256 %s\n", st.Package.Ref, st.Package.SHA256)
	}
	for _, r := range st.Reports {
		fmt.Fprintf(w, "  report   %s: %s\n", r.InstructionID, reportLine(r))
	}
	if st.Error != "" {
		fmt.Fprintf(w, "  error    %s\n", st.Error)
	}
}

func reportLine(r repo.Report) string {
	if r.OK {
		return fmt.Sprintf("installed in %s (%d files)", r.Dir, r.Files)
	}
	return "failed: " + r.Error
}
