package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/mecapi"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/workflows"
)

func newAPICommand(g *globals) *cobra.Command {
	var listen, topologyFile, policy, preDeploy, tokensFile string
	var callbackAllow []string
	cmd := &cobra.Command{
		Use:   "api --tokens FILE",
		Short: "Serve the application mobility HTTP API (ETSI MEC 021) for other services",
		Long: `api serves mobility sessions over HTTP under ` + mecapi.BasePath + ` after ETSI MEC 021
v2.2.1 (Application Mobility Service): register a session, move it (TRIGGERED,
then COMPLETED or FAILED), subscribe callbacks to hear of every move and of
pre-deployed neighbours, read its state, deregister it. Its OpenAPI document is
at ` + mecapi.BasePath + `/openapi.json.

It keeps nothing of its own: sessions, move records and subscriptions with
their delivery state live in Temporal, so any number of API processes serve
the same state and a restart loses nothing. A worker (drift dev or
drift-worker) must run the workflows.

Every request needs a bearer token from --tokens (hashes only; drift api token
add makes one); notifications go only to --callback-allow destinations.`,
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
			if tokensFile == "" {
				return errors.New("drift api needs --tokens FILE: make one with `drift api token add --tokens FILE --client NAME`")
			}
			tokens, err := mecapi.LoadTokens(tokensFile)
			if err != nil {
				return err
			}
			callbacks, err := mecapi.ParseCallbackAllow(callbackAllow)
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
			c, err := g.temporal.Dial(ctx, logger)
			if err != nil {
				ln.Close()
				return err
			}
			defer c.Close()
			api := mecapi.New(c, mecapi.Options{Topology: topo, Neighbours: p, PreDeploy: preDeploy, Tokens: tokens, Callbacks: callbacks, Logger: logger})
			base := "http://" + ln.Addr().String() + mecapi.BasePath
			if err := g.print(cmd.OutOrStdout(), map[string]any{"url": base, "topology": topo.Name()}, func(w io.Writer) {
				fmt.Fprintf(w, "drift api serving %s (topology %q, callbacks to %s); Ctrl-C stops it\n", base, topo.Name(), strings.Join(callbackAllow, ", "))
			}); err != nil {
				return err
			}
			return workerhost.ServeHTTP(ctx, ln, api)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8234", "address to serve the API on")
	f.StringVar(&tokensFile, "tokens", "", "bearer tokens file: lines of <client id> <scopes> sha256:<hash> (drift api token add)")
	f.StringSliceVar(&callbackAllow, "callback-allow", []string{"loopback"}, "where notifications may go: loopback, an address or CIDR range, a host name or *.domain, each with an optional :port (repeat or comma-separate)")
	f.StringVarP(&topologyFile, "topology", "t", "", "topology file new sessions run on (default: the embedded example)")
	f.StringVar(&policy, "policy", "adjacency", "neighbour policy of registrations that name none: adjacency, distance<=D, nearest:N")
	f.StringVar(&preDeploy, "pre-deploy", workflows.PreDeployNeighbours, "pre-deploy policy of registrations that name none: neighbours, predicted or none")
	cmd.AddCommand(newAPITokenCommand(g))
	return cmd
}

func newAPITokenCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage the API's bearer tokens"}
	var file, client string
	var scopes []string
	add := &cobra.Command{
		Use:   "add --tokens FILE --client NAME [--scopes read,write]",
		Short: "Make a bearer token, append its hash to the tokens file and print the token (shown only once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" || client == "" {
				return errors.New("--tokens and --client are required")
			}
			token, err := mecapi.AddToken(file, client, scopes)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), map[string]any{"client": client, "scopes": scopes, "token": token, "tokens": file}, func(w io.Writer) {
				fmt.Fprintln(w, token)
			})
		},
	}
	add.Flags().StringVar(&file, "tokens", "", "the tokens file (created 0600 when missing)")
	add.Flags().StringVar(&client, "client", "", "the client the token stands for (owner of its subscriptions)")
	add.Flags().StringSliceVar(&scopes, "scopes", []string{mecapi.ScopeRead, mecapi.ScopeWrite}, "read (GET) and/or write (everything else)")
	cmd.AddCommand(add)
	return cmd
}
