package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/topology"
)

func newTopologyCommand(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Inspect and check a cloud topology file",
		Long:  "Without -f, the commands read the example topology drift dev uses.",
	}
	cmd.PersistentFlags().StringVarP(&file, "file", "f", "", "topology YAML file (default: the embedded example)")

	show := &cobra.Command{
		Use:   "show",
		Short: "List the clouds and the region table",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			topo, err := loadTopology(file)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), topo, func(w io.Writer) { printTopology(w, topo) })
		},
	}
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check a topology and report every problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			topo, err := loadTopology(file)
			if err != nil {
				return err
			}
			res := map[string]any{"valid": true, "name": topo.Name(), "clouds": len(topo.Clouds()), "regions": len(topo.RegionNames())}
			return g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				fmt.Fprintf(w, "topology %q is valid: %d clouds, %d regions\n", topo.Name(), len(topo.Clouds()), len(topo.RegionNames()))
			})
		},
	}
	var policy, region string
	neighbours := &cobra.Command{
		Use:   "neighbours [CLOUD]",
		Short: "Show the neighbours a policy picks for a cloud (or a region's first cloud)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topo, err := loadTopology(file)
			if err != nil {
				return err
			}
			p, err := topology.ParsePolicy(policy)
			if err != nil {
				return err
			}
			var cloud string
			switch {
			case len(args) == 1 && region == "":
				cloud = args[0]
			case len(args) == 0 && region != "":
				first, err := topo.FirstCloud(region)
				if err != nil {
					return err
				}
				cloud = first.ID
			default:
				return fmt.Errorf("give either a cloud id or --region")
			}
			ns, err := topo.Neighbours(cloud, p)
			if err != nil {
				return err
			}
			res := struct {
				Cloud      string               `json:"cloud"`
				Policy     string               `json:"policy"`
				Neighbours []topology.Neighbour `json:"neighbours"`
			}{cloud, p.String(), ns}
			return g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				fmt.Fprintf(w, "neighbours of %s by %s:\n", cloud, p)
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "CLOUD\tTIER\tDISTANCE")
				for _, n := range ns {
					fmt.Fprintf(tw, "%s\t%s\t%g\n", n.Cloud.ID, n.Cloud.Tier, n.Distance)
				}
				tw.Flush()
			})
		},
	}
	neighbours.Flags().StringVar(&policy, "policy", "adjacency", `neighbour policy: adjacency, distance<=MAX[,latency|geo], nearest:N[,latency|geo]`)
	neighbours.Flags().StringVar(&region, "region", "", "start from the first cloud of this region")
	cmd.AddCommand(show, validate, neighbours)
	return cmd
}

func printTopology(w io.Writer, topo *topology.Topology) {
	fmt.Fprintf(w, "topology %q\n\n", topo.Name())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLOUD\tTIER\tPARENT\tCAPACITY\tRUNTIME\tUPLINK")
	for _, c := range topo.Clouds() {
		rt := c.Runtime.Kind
		if rt == "" {
			rt = "(default)"
		}
		capacity := "unlimited"
		if c.Capacity > 0 {
			capacity = fmt.Sprint(c.Capacity)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Tier, dash(c.Parent), capacity, rt, dash(durationText(c.Uplink)))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tFIRST CLOUD")
	for _, r := range topo.RegionNames() {
		c, _ := topo.FirstCloud(r)
		fmt.Fprintf(tw, "%s\t%s\n", r, c.ID)
	}
	tw.Flush()
}
