package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/workerhost"
)

func newDevCommand(g *globals) *cobra.Command {
	var cfg workerhost.DevConfig
	var topologyFile string
	var runDemo string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run Temporal, its Web UI, the image registry and an all-clouds worker in one process",
		Long: `dev runs drift's development stack: an embedded Temporal server persisted in
SQLite under --data-dir (restarting keeps every workflow's history), the
Temporal Web UI, the center cloud's image registry and a worker that polls
the drift queue and every cloud's queue. It runs until interrupted.

Clouds without a runtime in the topology run instances as local processes,
unless --fog-runtime or --edge-kubeconfig say otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var err error
			if cfg.Logger, err = g.logger(); err != nil {
				return err
			}
			if cfg.Topology, err = loadTopology(topologyFile); err != nil {
				return err
			}
			cfg.Namespace = g.temporal.Namespace
			if runDemo != "" && runDemo != demoPipelineWalk && runDemo != demoPort {
				return fmt.Errorf("--demo=%s: want --demo (the pipeline and a mobility walk) or --demo=port", runDemo)
			}
			return runDev(ctx, g, cfg, runDemo, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.DataDir, "data-dir", defaultDataDir(), "where Temporal's SQLite file, registry blobs and process instances live")
	fl.IntVar(&cfg.Port, "port", 7233, "Temporal gRPC port")
	fl.IntVar(&cfg.UIPort, "ui-port", 8233, "Web UI port")
	fl.IntVar(&cfg.RegistryPort, "registry-port", 5000, "image registry port")
	fl.IntVar(&cfg.APIPort, "api-port", 8234, "session HTTP API port (as drift api serves it)")
	fl.IntVar(&cfg.RepoPort, "repo-port", 8700, "software repository port (loopback)")
	fl.IntVar(&cfg.GatewayPort, "gateway-port", 8081, "management gateway port for management use (loopback)")
	fl.StringVarP(&topologyFile, "topology", "t", "", "topology file (default: the embedded example)")
	fl.StringVar(&cfg.FogRuntime, "fog-runtime", "auto", "runtime of fog clouds without one in the topology: auto (Docker when an engine answers), docker or process")
	fl.StringVar(&runDemo, "demo", "", "--demo: release the example app through the pipeline (git → image → fog-north, edge-latin) and walk a mobility session with its image; --demo=port: port the example module to loong64 and run it under qemu")
	fl.Lookup("demo").NoOptDefVal = demoPipelineWalk
	fl.StringVar(&cfg.EdgeKubeconfig, "edge-kubeconfig", "", "run edge clouds without a runtime in the topology on this Kubernetes cluster (namespace drift-<cloud>)")
	return cmd
}

// The demos drift dev can run.
const (
	demoPipelineWalk = "walk"
	demoPort         = "port"
)

func runDev(ctx context.Context, g *globals, cfg workerhost.DevConfig, runDemo string, out io.Writer) error {
	d, err := workerhost.StartDev(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Stop()
	clouds := cfg.Topology.Clouds()
	info := map[string]any{
		"api": d.APIURL, "apiTokenFile": d.APITokenFile, "repo": d.RepoURL, "gateway": d.GatewayURL,
		"temporal": d.Stack.Address(), "namespace": d.Stack.Namespace(), "ui": d.Stack.UIURL(),
		"registry": d.Stack.RegistryHost(), "dataDir": cfg.DataDir, "topology": cfg.Topology.Name(), "runtimes": d.RuntimeKinds(),
	}
	if err := g.print(out, info, func(w io.Writer) {
		fmt.Fprintf(w, "drift dev is up (data in %s)\n", cfg.DataDir)
		fmt.Fprintf(w, "  Temporal   %s (namespace %s)\n", d.Stack.Address(), d.Stack.Namespace())
		fmt.Fprintf(w, "  Web UI     %s\n", d.Stack.UIURL())
		fmt.Fprintf(w, "  registry   %s\n", d.Stack.RegistryHost())
		fmt.Fprintf(w, "  API        %s (bearer token in %s)\n", d.APIURL, d.APITokenFile)
		fmt.Fprintf(w, "  repository %s (admin token in %s)\n", d.RepoURL, filepath.Join(cfg.DataDir, "repo-token"))
		fmt.Fprintf(w, "  gateway    %s (management use); network node %q runs tenant gateway pairs\n", d.GatewayURL, d.Node)
		fmt.Fprintf(w, "  worker     queues %s and %s.<cloud> for %d clouds of %q\n", names.TaskQueue, names.TaskQueue, len(clouds), cfg.Topology.Name())
		for _, cl := range clouds {
			fmt.Fprintf(w, "             %-18s %s\n", cl.ID, d.Workers.Runtimes[cl.ID].Kind())
		}
	}); err != nil {
		return err
	}
	switch runDemo {
	case demoPipelineWalk:
		if err := walkDemo(ctx, client.New(d.Client), cfg.Topology, cfg.DataDir, out); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		fmt.Fprintf(out, "\nOpen %s to see the pipeline's steps, the session's history, its handovers and every activity.\n", d.Stack.UIURL())
	case demoPort:
		if err := portDemo(ctx, client.New(d.Client), cfg.DataDir, out); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		fmt.Fprintf(out, "\nOpen %s to see the port's steps and activities.\n", d.Stack.UIURL())
	}
	fmt.Fprintln(out, "Press Ctrl-C to stop.")
	<-ctx.Done()
	fmt.Fprintln(out, "drift dev: stopping")
	return nil
}
