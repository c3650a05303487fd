package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/agent"
	"github.com/edgedrift/drift/internal/fleet"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/internal/workerhost"
)

func newAgentCommand(g *globals) *cobra.Command {
	a := struct {
		gateway, prefix, name, source string
		trust, labels                 []string
		every                         time.Duration
		once, allowLL                 bool
	}{}
	cmd := &cobra.Command{
		Use:   "agent --gateway http://169.254.169.254:8080 --prefix DIR",
		Short: "Run the VM agent: install what the tenant gateway instructs",
		Long: `agent runs inside a tenant VM. With --name it registers the VM (name, labels,
what it has) in its tenant's inventory on first contact. It asks the tenant
gateway for its instructions; for each package it checks the signature against
its trusted keys (--trust) before fetching anything, downloads it, checks its
sha256, unpacks it beside the live version in PREFIX/<name>/<version>, runs
its install hook and health check, and only then points PREFIX/<name>/current
at it; a failure leaves the previous version live. Uninstalls remove exactly
the files the agent installed. Every result is reported back.

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
			trusted, trustErr := repo.LoadPublicKeys(a.trust...)
			labels, err := fleet.ParseLabels(a.labels)
			if err != nil {
				return err
			}
			ag := &agent.Agent{Gateway: a.gateway, Prefix: a.prefix, Trusted: trusted, Name: a.name, Labels: labels, Source: a.source,
				AllowLinkLocal: a.allowLL, Logger: logger}
			if err := ag.Check(); err != nil { // the gateway first: a link-local one is refused before anything else
				if errors.Is(err, agent.ErrNoTrust) && trustErr != nil {
					return fmt.Errorf("--trust: %w", trustErr)
				}
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
	fl.StringSliceVar(&a.trust, "trust", []string{filepath.Join(defaultDataDir(), workerhost.SigningKeyFile+".pub")},
		"public key files (PEM) whose signature a package needs: the repository's (drift dev writes <data-dir>/repo-signing.key.pub) or publishers'")
	fl.StringVar(&a.name, "name", "", "register this VM under this name in its tenant's inventory (empty: no registration)")
	fl.StringSliceVar(&a.labels, "label", nil, "a label key=value the VM registers with (repeat, or comma-separate)")
	fl.StringVar(&a.source, "source", "", "the local address connections start from (a VM with several)")
	return cmd
}
