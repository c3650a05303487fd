package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/agent"
)

func newAgentCommand(g *globals) *cobra.Command {
	a := struct {
		gateway, prefix string
		every           time.Duration
		once, allowLL   bool
	}{}
	cmd := &cobra.Command{
		Use:   "agent --gateway http://169.254.169.254:8080 --prefix DIR",
		Short: "Run the VM agent: install what the tenant gateway instructs",
		Long: `agent runs inside a tenant VM. It asks the tenant gateway for its install
instructions, downloads each package, checks its sha256, unpacks it into
PREFIX/<name>/<version>, runs its install hook and reports the result.

A link-local gateway address (169.254.169.254) is refused in the host's own
network namespace, where it belongs to the machine's provider; inside a
network namespace it is allowed, and --allow-link-local allows it in a real
VM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := g.logger()
			if err != nil {
				return err
			}
			ag := &agent.Agent{Gateway: a.gateway, Prefix: a.prefix, AllowLinkLocal: a.allowLL, Logger: logger}
			if err := ag.Check(); err != nil {
				return err
			}
			if a.once {
				n, err := ag.Once(cmd.Context())
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "agent: %d instruction(s) handled\n", n)
				}
				return err
			}
			return ag.Run(cmd.Context(), a.every)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&a.gateway, "gateway", "", "the tenant gateway's URL, e.g. http://169.254.169.254:8080")
	fl.StringVar(&a.prefix, "prefix", "/opt/drift", "install prefix")
	fl.DurationVar(&a.every, "every", 2*time.Second, "how often to ask for instructions")
	fl.BoolVar(&a.once, "once", false, "handle the open instructions once and exit")
	fl.BoolVar(&a.allowLL, "allow-link-local", false, "allow a link-local gateway outside a network namespace (a real VM only)")
	return cmd
}
