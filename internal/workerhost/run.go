package workerhost

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/release"
	"github.com/edgedrift/drift/internal/topology"
)

// WorkerConfig is what the drift-worker binary is started with.
type WorkerConfig struct {
	Temporal     config.Temporal
	TopologyFile string
	Clouds       []string // cloud queues to poll
	AllClouds    bool     // poll every cloud of the topology
	NoCentral    bool     // do not poll the `drift` queue (a site worker next to one cloud)
	DataDir      string
	Registry     string // center registry host:port
	// RegistryLogin is how to log in to Registry beyond the Docker config.
	RegistryLogin config.RegistryLogin
	// SigningKey is a PEM private key file the central pipeline signs with
	// ("" : the key in DRIFT_SIGNING_KEY, else none).
	SigningKey string
	// TrustPolicy is a YAML trust policy file every deploy on this worker's
	// clouds is verified against ("" : none).
	TrustPolicy string
	MetricsAddr string // "" disables the metrics endpoint
	Identity    string // how the worker shows in pollers and histories; "" : what it polls @ host
	// NetworkNode makes the worker that network node (gateway pairs and
	// install instructions, queue drift.node.<id>); "" makes it none.
	NetworkNode       string
	Repo              string // software repository URL
	RepoTokenFile     string // its admin token
	GatewaySecretFile string // the secret the management gateway signs with
	GatewayListen     string // the management gateway's listener for management use; "" disables
	GatewayCache      bool   // keep package blobs under DataDir/gateway-cache
}

// RunWorker connects, polls until ctx ends (SIGTERM in the binary), then
// stops gracefully: pollers stop and running activities finish first.
func RunWorker(ctx context.Context, cfg WorkerConfig, logger *slog.Logger) error {
	var topo *topology.Topology
	if cfg.TopologyFile != "" {
		t, err := topology.Load(cfg.TopologyFile)
		if err != nil {
			return err
		}
		topo = t
	}
	clouds := cfg.Clouds
	if cfg.AllClouds {
		if topo == nil {
			return fmt.Errorf("--all-clouds needs --topology")
		}
		clouds = nil
		for _, c := range topo.Clouds() {
			clouds = append(clouds, c.ID)
		}
	}
	if len(clouds) > 0 && topo == nil {
		return fmt.Errorf("--clouds needs --topology")
	}

	if err := cfg.RegistryLogin.Apply(cfg.Registry); err != nil {
		return err
	}
	signer, trust, err := cfg.trust()
	if err != nil {
		return err
	}
	metrics := NewMetrics()
	opts, err := cfg.Temporal.ClientOptions(logger)
	if err != nil {
		return err
	}
	opts.MetricsHandler = metrics.Handler
	opts.Identity = cfg.Identity
	if opts.Identity == "" {
		opts.Identity = defaultIdentity(!cfg.NoCentral, clouds, cfg.NetworkNode)
	}
	c, err := cfg.Temporal.DialWith(ctx, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := cfg.Temporal.CheckSetup(ctx, c); err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		addr, err := metrics.Serve(ctx, cfg.MetricsAddr, logger, readiness(cfg.Temporal, c, cfg.Registry))
		if err != nil {
			return err
		}
		logger.Info("metrics", "url", "http://"+addr+"/metrics", "health", "http://"+addr+"/healthz", "ready", "http://"+addr+"/readyz")
	}

	var install *InstallConfig
	if cfg.NetworkNode != "" {
		if install, err = cfg.installConfig(logger); err != nil {
			return err
		}
	}
	ws, err := StartWorkers(c, WorkerOptions{Topology: topo, Clouds: clouds, Central: !cfg.NoCentral, DataDir: cfg.DataDir,
		Registry: cfg.Registry, Install: install, Logger: logger, Metrics: metrics, Signer: signer, Trust: trust})
	if err != nil {
		return err
	}
	go metrics.watchPollers(ctx, c, polledQueues(!cfg.NoCentral, clouds), 15*time.Second)
	if install != nil && cfg.GatewayListen != "" {
		addr, err := ServeManagement(ctx, cfg.GatewayListen, *install)
		if err != nil {
			ws.Stop()
			return err
		}
		logger.Info("management gateway", "url", "http://"+addr)
	}
	logger.Info("worker polling", "address", cfg.Temporal.Address, "namespace", cfg.Temporal.Namespace, "identity", opts.Identity,
		"central", !cfg.NoCentral, "clouds", clouds, "registry", cfg.Registry)
	<-ctx.Done()
	logger.Info("worker stopping: waiting for running activities")
	ws.Stop()
	return nil
}

// trust reads the signing key and the trust policy the flags name.
func (cfg WorkerConfig) trust() (signer *release.Signer, policy *release.Policy, err error) {
	switch {
	case cfg.SigningKey != "":
		signer, err = release.LoadSigner(cfg.SigningKey)
	case os.Getenv("DRIFT_SIGNING_KEY") != "":
		signer, err = release.ParseSigner([]byte(os.Getenv("DRIFT_SIGNING_KEY")))
	}
	if err != nil {
		return nil, nil, err
	}
	if cfg.TrustPolicy != "" {
		policy, err = release.LoadPolicy(cfg.TrustPolicy)
	}
	return signer, policy, err
}

// polledQueues are the queues a worker polls, with their kind.
func polledQueues(central bool, clouds []string) map[string]enums.TaskQueueType {
	queues := map[string]enums.TaskQueueType{}
	if central {
		queues[names.TaskQueue] = enums.TASK_QUEUE_TYPE_WORKFLOW
	}
	for _, id := range clouds {
		queues[names.CloudQueue(id)] = enums.TASK_QUEUE_TYPE_ACTIVITY
	}
	return queues
}
