package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

func newSetupCommand(g *globals) *cobra.Command {
	var retention time.Duration
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Make a Temporal namespace ready for drift: the namespace and drift's search attributes",
		Long: `setup registers the namespace (--namespace) when it is missing and adds drift's
search attributes DriftUser, DriftApp, DriftCloud and DriftKind (Keyword), then
waits until both are visible. It is idempotent: on a ready namespace it only
checks. What it is not allowed to change (a hosted cluster) is reported with
what to ask for. drift-worker refuses to start on a namespace that is not set up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.temporal.Dial(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer c.Close()
			steps, err := g.temporal.Setup(cmd.Context(), c, retention)
			perr := g.print(cmd.OutOrStdout(), steps, func(w io.Writer) {
				for _, s := range steps {
					fmt.Fprintf(w, "%-40s %s %s\n", s.What, s.Status, s.Detail)
				}
			})
			if err != nil {
				return err
			}
			if perr == nil && !g.json {
				fmt.Fprintf(cmd.OutOrStdout(), "namespace %s on %s is ready for drift\n", g.temporal.Namespace, g.temporal.Address)
			}
			return perr
		},
	}
	cmd.Flags().DurationVar(&retention, "retention", 7*24*time.Hour, "history retention of a namespace setup registers")
	return cmd
}
