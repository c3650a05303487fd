package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/app"
	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/devstack"
	"github.com/edgedrift/drift/internal/mecapi"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/docker"
	"github.com/edgedrift/drift/internal/topology"
)

type devFlags struct {
	dataDir        string
	port           int
	uiPort         int
	registryPort   int
	apiPort        int
	repoPort       int
	gatewayPort    int
	topologyFile   string
	fogRuntime     string
	edgeKubeconfig string
	demo           bool
}

func newDevCommand(g *globals) *cobra.Command {
	f := devFlags{}
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
			return runDev(ctx, g, f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", defaultDataDir(), "where Temporal's SQLite file, registry blobs and process instances live")
	fl.IntVar(&f.port, "port", 7233, "Temporal gRPC port")
	fl.IntVar(&f.uiPort, "ui-port", 8233, "Web UI port")
	fl.IntVar(&f.registryPort, "registry-port", 5000, "image registry port")
	fl.IntVar(&f.apiPort, "api-port", 8234, "session HTTP API port (as drift api serves it)")
	fl.IntVar(&f.repoPort, "repo-port", 8700, "software repository port (loopback)")
	fl.IntVar(&f.gatewayPort, "gateway-port", 8081, "management gateway port for management use (loopback)")
	fl.StringVarP(&f.topologyFile, "topology", "t", "", "topology file (default: the embedded example)")
	fl.StringVar(&f.fogRuntime, "fog-runtime", "auto", "runtime of fog clouds without one in the topology: auto (Docker when an engine answers), docker or process")
	fl.BoolVar(&f.demo, "demo", false, "release the example app through the pipeline (git → image → fog-north, edge-latin) and walk a mobility session with its image")
	fl.StringVar(&f.edgeKubeconfig, "edge-kubeconfig", "", "run edge clouds without a runtime in the topology on this Kubernetes cluster (namespace drift-<cloud>)")
	return cmd
}

func runDev(ctx context.Context, g *globals, f devFlags, out io.Writer) error {
	logger, err := g.logger()
	if err != nil {
		return err
	}
	topo, err := loadTopology(f.topologyFile)
	if err != nil {
		return err
	}
	runtimeFor, err := devRuntimes(ctx, f)
	if err != nil {
		return err
	}
	stack, err := devstack.Start(ctx, devstack.Options{
		DataDir: f.dataDir, Port: f.port, UIPort: f.uiPort, RegistryPort: f.registryPort,
		Namespace: g.temporal.Namespace, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer stack.Stop()

	t := config.Temporal{Address: stack.Address(), Namespace: stack.Namespace()}
	c, err := t.Dial(ctx, logger)
	if err != nil {
		return err
	}
	defer c.Close()
	var clouds []string
	for _, cl := range topo.Clouds() {
		clouds = append(clouds, cl.ID)
	}
	repoURL, nodeInstall, stopRepo, err := startDevRepo(ctx, f, c, logger)
	if err != nil {
		return err
	}
	defer stopRepo()
	ws, err := app.StartWorkers(c, app.WorkerOptions{
		Topology: topo, Clouds: clouds, Central: true, DataDir: f.dataDir, Registry: stack.RegistryHost(), RuntimeFor: runtimeFor,
		Install: nodeInstall, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer ws.Stop()
	gwAddr, err := app.ServeManagement(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(f.gatewayPort)), *nodeInstall)
	if err != nil {
		return err
	}
	gwURL := "http://" + gwAddr

	apiLn, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.apiPort)))
	if err != nil {
		return fmt.Errorf("session API: %w", err)
	}
	api := mecapi.New(c, mecapi.Options{Topology: topo, Logger: logger})
	defer api.Close()
	apiCtx, stopAPI := context.WithCancel(ctx)
	apiDone := make(chan error, 1)
	go func() { apiDone <- serveHTTP(apiCtx, apiLn, api) }()
	defer func() { stopAPI(); <-apiDone }()
	apiURL := "http://" + apiLn.Addr().String() + mecapi.BasePath

	info := map[string]any{
		"api": apiURL, "repo": repoURL, "gateway": gwURL,
		"temporal": stack.Address(), "namespace": stack.Namespace(), "ui": stack.UIURL(),
		"registry": stack.RegistryHost(), "dataDir": f.dataDir, "topology": topo.Name(), "runtimes": runtimeKinds(ws),
	}
	if err := g.print(out, info, func(w io.Writer) {
		fmt.Fprintf(w, "drift dev is up (data in %s)\n", f.dataDir)
		fmt.Fprintf(w, "  Temporal   %s (namespace %s)\n", stack.Address(), stack.Namespace())
		fmt.Fprintf(w, "  Web UI     %s\n", stack.UIURL())
		fmt.Fprintf(w, "  registry   %s\n", stack.RegistryHost())
		fmt.Fprintf(w, "  API        %s\n", apiURL)
		fmt.Fprintf(w, "  repository %s (admin token in %s)\n", repoURL, filepath.Join(f.dataDir, "repo-token"))
		fmt.Fprintf(w, "  gateway    %s (management use); network node %q runs tenant gateway pairs\n", gwURL, nodeInstall.Node)
		fmt.Fprintf(w, "  worker     queues %s and %s.<cloud> for %d clouds of %q\n", config.TaskQueue, config.TaskQueue, len(clouds), topo.Name())
		for _, cl := range clouds {
			fmt.Fprintf(w, "             %-18s %s\n", cl, ws.Runtimes[cl].Kind())
		}
	}); err != nil {
		return err
	}
	if f.demo {
		if err := runDemo(ctx, c, topo, f.dataDir, out); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		fmt.Fprintf(out, "\nOpen %s to see the pipeline's steps, the session's history, its handovers and every activity.\n", stack.UIURL())
	}
	fmt.Fprintln(out, "Press Ctrl-C to stop.")
	<-ctx.Done()
	fmt.Fprintln(out, "drift dev: stopping")
	return nil
}

// devRuntimes picks the runtime of clouds that name none: Docker for fog
// clouds when an engine answers (or when asked), the given cluster for edge
// clouds, processes otherwise.
func devRuntimes(ctx context.Context, f devFlags) (func(topology.Cloud) runtime.Config, error) {
	fog := runtime.Config{Kind: runtime.KindProcess}
	switch f.fogRuntime {
	case "process":
	case "docker":
		fog = runtime.Config{Kind: runtime.KindDocker}
	case "auto":
		if dockerAnswers(ctx) {
			fog = runtime.Config{Kind: runtime.KindDocker}
		}
	default:
		return nil, fmt.Errorf("--fog-runtime %q: want auto, docker or process", f.fogRuntime)
	}
	edge := runtime.Config{Kind: runtime.KindProcess}
	if f.edgeKubeconfig != "" {
		if _, err := os.Stat(f.edgeKubeconfig); err != nil {
			return nil, fmt.Errorf("--edge-kubeconfig: %w", err)
		}
		edge = runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: f.edgeKubeconfig}
	}
	return func(c topology.Cloud) runtime.Config {
		switch {
		case c.Runtime.Kind != "":
			return c.Runtime
		case c.Tier == topology.Fog:
			return fog
		case c.Tier == topology.Edge:
			return edge
		default:
			return runtime.Config{Kind: runtime.KindProcess}
		}
	}, nil
}

// dockerAnswers reports whether the engine named by the environment answers.
func dockerAnswers(ctx context.Context) bool {
	rt, err := docker.New(runtime.Config{Kind: runtime.KindDocker}, "")
	if err != nil {
		return false
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = rt.List(ctx, nil)
	return err == nil
}

func runtimeKinds(ws *app.Workers) map[string]string {
	kinds := map[string]string{}
	for id, rt := range ws.Runtimes {
		kinds[id] = rt.Kind()
	}
	return kinds
}

// defaultDataDir is $DRIFT_DATA_DIR, else ~/.local/share/drift.
func defaultDataDir() string {
	if d := os.Getenv("DRIFT_DATA_DIR"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "drift")
	}
	return ".drift"
}

// demoRegions walk the example topology: warm moves to neighbours, cold
// ones across the city.
var demoRegions = []string{"quartier-latin", "montparnasse", "bastille", "montmartre", "la-defense", "quartier-latin"}

// runDemo releases the example app through the pipeline, then walks a
// session with the image the pipeline made.
func runDemo(ctx context.Context, c client.Client, topo *topology.Topology, dataDir string, out io.Writer) error {
	for _, r := range demoRegions {
		if _, err := topo.FirstCloud(r); err != nil {
			return fmt.Errorf("the demo walks the example topology: %w", err)
		}
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	pr, err := demo.Release(ctx, c, topo, abs, out)
	if err != nil {
		return err
	}
	_, err = demo.Walk(ctx, c, topo, pr.Image, "alice", demoRegions, out)
	return err
}
