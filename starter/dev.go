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
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
)

func newDevCommand(g *globals) *cobra.Command {
	var cfg workerhost.DevConfig
	var topologyFile string
	var runDemo, demoListen string
	var temporalAddress string
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
			if runDemo != "" && runDemo != demoPipelineWalk && runDemo != demoPort && runDemo != demoUpgrade && runDemo != demoInstall {
				return fmt.Errorf("--demo=%s: want --demo (the pipeline and a mobility walk), --demo=port, --demo=upgrade or --demo=install", runDemo)
			}
			if runDemo == demoUpgrade && demoUpgradeCloud(cfg.Topology) == "" {
				return fmt.Errorf("--demo=upgrade runs on a fog cloud; topology %q has none", cfg.Topology.Name())
			}
			if temporalAddress != "" {
				cfg.Temporal = g.temporal
				cfg.Temporal.Address = temporalAddress
			}
			return runDev(ctx, g, cfg, runDemo, demoListen, cmd.OutOrStdout())
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
	fl.StringVar(&runDemo, "demo", "", "--demo: release the example app through the pipeline (git → image → fog-north, edge-latin) and walk a mobility session with its image; --demo=port: port the example module to loong64 and run it under qemu; --demo=upgrade: upgrade the example block-storage component with data from 24.2.0 to 28.0.0 in verified hops behind its stable endpoint; --demo=install: agents on loopback, a signed package and fleet installs with an error budget")
	fl.Lookup("demo").NoOptDefVal = demoPipelineWalk
	fl.StringVar(&cfg.TrustPolicy, "trust-policy", "", "make every cloud verify images against this trust policy before deploying (the pipeline signs with the key pair drift dev keeps in <data-dir>/keys)")
	fl.StringVar(&demoListen, "demo-listen", defaultDemoListen, "--demo=install: the demo tenant's gateway on loopback")
	fl.StringVar(&cfg.EdgeKubeconfig, "edge-kubeconfig", "", "run edge clouds without a runtime in the topology on this Kubernetes cluster (namespace drift-<cloud>)")
	fl.StringVar(&temporalAddress, "temporal-address", "", "use this existing Temporal cluster (and --namespace, TLS, API key flags) instead of the embedded server; its namespace is set up as drift setup does")
	fl.BoolVar(&cfg.NoWorker, "no-worker", false, "run no worker: drift-worker processes of their own poll the queues")
	return cmd
}

// The demos drift dev can run.
const (
	demoPipelineWalk = "walk"
	demoPort         = "port"
	demoUpgrade      = "upgrade"
	demoInstall      = "install"
)

// demoUpgradeCloud is where the upgrade demo runs: the topology's first
// fog cloud ("" when it has none).
func demoUpgradeCloud(topo *topology.Topology) string {
	for _, cl := range topo.Clouds() {
		if cl.Tier == topology.Fog {
			return cl.ID
		}
	}
	return ""
}

func runDev(ctx context.Context, g *globals, cfg workerhost.DevConfig, runDemo, demoListen string, out io.Writer) error {
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
		if d.Workers == nil {
			fmt.Fprintf(w, "  worker     none (--no-worker): start drift-worker for %s and the clouds' queues\n", names.TaskQueue)
			return
		}
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
	case demoUpgrade:
		cloud := demoUpgradeCloud(cfg.Topology)
		if err := upgradeDemo(ctx, client.New(d.Client), d.Workers.Runtimes[cloud], d.Workers.Routers[cloud], cloud, d.Stack.RegistryHost(), out); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		fmt.Fprintf(out, "\nOpen %s to see the upgrade's hops, checks and activities.\n", d.Stack.UIURL())
	case demoInstall:
		token, err := workerhost.ReadSecret(filepath.Join(cfg.DataDir, "repo-token"))
		if err != nil {
			return err
		}
		o := installDemo{repo: &repo.Client{URL: d.RepoURL, Token: token}, dataDir: cfg.DataDir, listen: demoListen, agents: 4}
		if err := o.run(ctx, client.New(d.Client), out); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		fmt.Fprintf(out, "\nOpen %s to see the inventory, the rollouts and one install per VM.\n", d.Stack.UIURL())
	}
	fmt.Fprintln(out, "Press Ctrl-C to stop.")
	<-ctx.Done()
	fmt.Fprintln(out, "drift dev: stopping")
	return nil
}
