package main

import (
	"context"
	"fmt"
	"io"
	"strings"

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
transient failures.`,
	}
	cmd.AddCommand(newInstallRunCommand(g), newInstallStatusCommand(g))
	cmd.AddCommand(newStopCommands(g, "TENANT VM PACKAGE", cobra.ExactArgs(3), func(args []string) (string, error) {
		return names.InstallID(args[0], args[1], args[2]), nil
	})...)
	return cmd
}

func newInstallRunCommand(g *globals) *cobra.Command {
	var in workflows.InstallInput
	var pkg string
	var wait bool
	cmd := &cobra.Command{
		Use:   "run --tenant T --vm V --address IP --package NAME@VERSION [--platform linux/amd64]",
		Short: "Start an install (or find the running one) and wait for its result",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, version, ok := strings.Cut(pkg, "@")
			if !ok {
				return fmt.Errorf("--package %q: want NAME@VERSION", pkg)
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
	fl.StringVar(&in.VM, "vm", "", "the VM's name")
	fl.StringVar(&in.Address, "address", "", "the VM's address in the tenant network")
	fl.StringVar(&pkg, "package", "", "NAME@VERSION")
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
