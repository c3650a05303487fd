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
	"github.com/edgedrift/drift/internal/fleet"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/workflows"
)

func newInventoryCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "A tenant's VMs, their labels and packages, desired state and drift",
		Long: `Each tenant has an inventory (workflow inventory/<tenant>): the VMs its agents
registered through the gateways (drift agent --name --label) or the admin
declared, their labels, what each has installed, the desired state of
packages, and the rollouts it started. A desired state keeps a package at a
version range on every VM a selector picks: VMs that drift get a rollout now,
and VMs that join later get one when they register.`,
	}
	cmd.AddCommand(newInventoryShowCommand(g), newInventoryAddCommand(g), newInventoryRemoveCommand(g),
		newInventoryGatewayCommand(g), newInventoryDesireCommand(g))
	return cmd
}

func newInventoryShowCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show TENANT",
		Short: "What is installed where, and how each VM drifts from the desired state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				v, err := c.Inventory(ctx, args[0])
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), v, func(w io.Writer) { printInventory(w, v) })
			})
		},
	}
}

func printInventory(w io.Writer, v workflows.InventoryView) {
	fmt.Fprintf(w, "tenant %s: %d VMs", v.Tenant, len(v.VMs))
	if v.Gateway != nil {
		fmt.Fprintf(w, " · gateway %s on node %s", dash(v.Pair.Address), firstOf(v.Gateway.Node, config.DefaultNetworkNode))
		if len(v.Pair.Addresses6) > 0 {
			fmt.Fprintf(w, " and %s", strings.Join(v.Pair.Addresses6, ", "))
		}
		if v.GatewayError != "" {
			fmt.Fprintf(w, " (%s)", v.GatewayError)
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tADDRESS\tLABELS\tINSTALLED")
	for _, vm := range v.VMs {
		var have []string
		for _, in := range vm.Installed {
			have = append(have, in.Name+"@"+dash(in.Version))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", vm.Name, vm.Address, dash(fleet.LabelString(vm.Labels)), dash(strings.Join(have, " ")))
	}
	tw.Flush()
	if len(v.Desired) > 0 {
		fmt.Fprintln(w, "\ndesired:")
		for _, d := range v.Desired {
			sel, _ := fleet.ParseSelector(d.Selector)
			fmt.Fprintf(w, "  %s@%s (%s) on %s\n", d.Package, d.Version, d.Platform, sel)
		}
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  VM\tPACKAGE\tWANT\tHAVE\tDRIFT\tROLLOUT")
		for _, d := range v.Drift {
			drift := d.Drift
			if drift == "" {
				drift = "none"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", d.VM, d.Package, d.Want, dash(d.Have), drift, dash(d.Rollout))
		}
		tw.Flush()
	}
	if len(v.Refused) > 0 {
		fmt.Fprintln(w, "\nrefused registrations:")
		for _, r := range v.Refused {
			fmt.Fprintf(w, "  %s %s from %s: %s\n", r.At.Format(time.RFC3339), r.Name, r.Address, r.Reason)
		}
	}
	if len(v.Rollouts) > 0 {
		fmt.Fprintln(w, "\nrollouts:")
		for _, r := range v.Rollouts {
			failed := ""
			if len(r.Failed) > 0 {
				failed = " — failed on " + strings.Join(r.Failed, ", ")
			}
			fmt.Fprintf(w, "  %s: %s — %s %s@%s on %d VMs (%s)%s\n", r.ID, r.Phase, r.Action, r.Package, dash(r.Version), len(r.VMs), r.Selector, failed)
		}
	}
}

func newInventoryAddCommand(g *globals) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "add TENANT VM ADDRESS [--label k=v]...",
		Short: "Declare a VM (or move or relabel one)",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant := args[0]
			reg := workflows.VMRegistration{Name: args[1], Address: args[2], Declared: true}
			var err error
			if reg.Labels, err = fleet.ParseLabels(labels); err != nil {
				return err
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				rec, err := c.Register(ctx, tenant, reg)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), rec, func(w io.Writer) {
					fmt.Fprintf(w, "%s: %s at %s (%s)\n", tenant, rec.Name, rec.Address, dash(fleet.LabelString(rec.Labels)))
				})
			})
		},
	}
	cmd.Flags().StringSliceVar(&labels, "label", nil, "a label key=value (repeat, or comma-separate)")
	return cmd
}

func newInventoryRemoveCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm TENANT VM",
		Short: "Forget a VM (nothing is uninstalled)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				if err := c.Forget(ctx, args[0], args[1]); err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), map[string]string{"forgot": args[1]}, func(w io.Writer) { fmt.Fprintf(w, "%s forgot %s\n", args[0], args[1]) })
			})
		},
	}
}

func newInventoryGatewayCommand(g *globals) *cobra.Command {
	var tenant string
	var p workflows.Placement
	cmd := &cobra.Command{
		Use:   "gateway --tenant T [--node N] [--netns NS] [--listen ADDR]",
		Short: "Place the tenant's gateway pair (its agents register and fetch through it); kept up from then on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				pair, err := c.PlaceGateway(ctx, tenant, p)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), pair, func(w io.Writer) {
					fmt.Fprintf(w, "tenant %s: gateway %s %s ↔ %s\n", tenant, pair.Address, strings.Join(pair.Addresses6, " "), pair.Socket)
				})
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&tenant, "tenant", "", "tenant network id")
	fl.StringVar(&p.Node, "node", config.DefaultNetworkNode, "network node whose gateways serve the tenant network")
	fl.StringVar(&p.Netns, "netns", "", "the tenant network's namespace on the node (169.254.169.254:8080 and [fe80::a9fe:a9fe]:8080 there); empty: loopback")
	fl.StringVar(&p.Listen, "listen", "", "the tenant gateway's address (default 169.254.169.254:8080 in --netns, 127.0.0.1:8080 otherwise)")
	return cmd
}

func newInventoryDesireCommand(g *globals) *cobra.Command {
	var tenant, pkg, remove string
	var d workflows.Desire
	cmd := &cobra.Command{
		Use: "desire --tenant T --select S --package NAME@RANGE | --tenant T --remove NAME",
		Example: `  drift inventory desire --tenant acme --select 'role=web' --package hello@^1.2 --max-errors 10%
  drift inventory desire --tenant acme --remove hello`,
		Short: "Keep a package at a version range on every VM a selector picks (and on VMs that join later)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if remove != "" {
				d.Package, d.Remove = remove, true
			} else {
				name, version, ok := strings.Cut(pkg, "@")
				if !ok {
					return fmt.Errorf("--package %q: want NAME@RANGE (^1.2, a version, or latest)", pkg)
				}
				d.Package, d.Version = name, version
			}
			if err := repo.ValidTenant(tenant); err != nil {
				return fmt.Errorf("--tenant: %w", err)
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				id, err := c.Desire(ctx, tenant, d)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), map[string]string{"rollout": id}, func(w io.Writer) {
					switch {
					case d.Remove:
						fmt.Fprintf(w, "%s: no desired state for %s any more (nothing uninstalled)\n", tenant, d.Package)
					case id == "":
						fmt.Fprintf(w, "%s: every selected VM has %s@%s already\n", tenant, d.Package, d.Version)
					default:
						fmt.Fprintf(w, "%s: rolling %s@%s out to the VMs that drift: %s (drift install report %s %s)\n",
							tenant, d.Package, d.Version, id, tenant, strings.TrimPrefix(id, "fleet/"+tenant+"/"))
					}
				})
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&tenant, "tenant", "", "tenant network id")
	fl.StringVar(&d.Selector, "select", "", "the VMs it applies to, by label ('*' or empty: all)")
	fl.StringVar(&pkg, "package", "", "NAME@RANGE")
	fl.StringVar(&d.Platform, "platform", "linux/amd64", "os/arch of the package")
	fl.StringVar(&d.MaxConcurrency, "max-concurrency", workflows.DefaultMaxConcurrency, "VMs worked on at once by each rollout: N or P%")
	fl.StringVar(&d.MaxErrors, "max-errors", workflows.DefaultMaxErrors, "failed VMs a rollout tolerates: N or P%")
	fl.StringVar(&remove, "remove", "", "drop the desired state of this package")
	return cmd
}
