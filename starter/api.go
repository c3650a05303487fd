package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/mecapi"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/workflows"
)

func newAPICommand(g *globals) *cobra.Command {
	var listen, topologyFile, policy, preDeploy string
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Serve the application mobility HTTP API (MEC 021 style) for other services",
		Long: `api serves mobility sessions over HTTP under ` + mecapi.BasePath + `, in the spirit of
ETSI MEC 021 (Application Mobility Service): register a session, move it
(202 TRIGGERED, then COMPLETED or FAILED), subscribe a callback to hear of
moves, read its state, exit it. It talks to the Temporal cluster the global
flags name; a worker (drift dev or drift-worker) must run the sessions.

Move records and subscriptions are kept in this process's memory only; each
session's history in Temporal is the durable record. The API has no
authentication and callbacks may name any http(s) host: keep it on loopback
or behind an authenticating proxy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			logger, err := g.logger()
			if err != nil {
				return err
			}
			topo, err := loadTopology(topologyFile)
			if err != nil {
				return err
			}
			p, err := topology.ParsePolicy(policy)
			if err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			if err := workflows.CheckPreDeploy(preDeploy); err != nil {
				return fmt.Errorf("--pre-deploy: %w", err)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			if host, _, _ := net.SplitHostPort(ln.Addr().String()); !net.ParseIP(host).IsLoopback() {
				logger.Warn("the API has no authentication and listens beyond loopback", "listen", ln.Addr().String())
			}
			c, err := g.temporal.Dial(ctx, logger)
			if err != nil {
				ln.Close()
				return err
			}
			defer c.Close()
			api := mecapi.New(c, mecapi.Options{Topology: topo, Neighbours: p, PreDeploy: preDeploy, Logger: logger})
			defer api.Close()
			base := "http://" + ln.Addr().String() + mecapi.BasePath
			if err := g.print(cmd.OutOrStdout(), map[string]any{"url": base, "topology": topo.Name()}, func(w io.Writer) {
				fmt.Fprintf(w, "drift api serving %s (topology %q); Ctrl-C stops it\n", base, topo.Name())
			}); err != nil {
				return err
			}
			return workerhost.ServeHTTP(ctx, ln, api)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8234", "address to serve the API on")
	f.StringVarP(&topologyFile, "topology", "t", "", "topology file new sessions run on (default: the embedded example)")
	f.StringVar(&policy, "policy", "adjacency", "neighbour policy of registrations that name none: adjacency, distance<=D, nearest:N")
	f.StringVar(&preDeploy, "pre-deploy", workflows.PreDeployNeighbours, "pre-deploy policy of registrations that name none: neighbours, predicted or none")
	return cmd
}
