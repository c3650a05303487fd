package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgedrift/drift/internal/config"
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
	MetricsAddr  string // "" disables the metrics endpoint
	// NetworkNode makes the worker that network node (gateway pairs and
	// install instructions, queue drift.node.<id>); "" makes it none.
	NetworkNode       string
	Repo              string // software repository URL
	RepoTokenFile     string // its admin token
	GatewaySecretFile string // the secret the management gateway signs with
	GatewayListen     string // the management gateway's listener for management use; "" disables
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

	metrics := NewMetrics()
	if cfg.MetricsAddr != "" {
		addr, err := metrics.Serve(ctx, cfg.MetricsAddr, logger)
		if err != nil {
			return err
		}
		logger.Info("metrics", "url", "http://"+addr+"/metrics")
	}
	opts, err := cfg.Temporal.ClientOptions(logger)
	if err != nil {
		return err
	}
	opts.MetricsHandler = metrics.Handler
	c, err := cfg.Temporal.DialWith(ctx, opts)
	if err != nil {
		return err
	}
	defer c.Close()

	var install *InstallConfig
	if cfg.NetworkNode != "" {
		if install, err = cfg.installConfig(logger); err != nil {
			return err
		}
	}
	ws, err := StartWorkers(c, WorkerOptions{Topology: topo, Clouds: clouds, Central: !cfg.NoCentral, DataDir: cfg.DataDir, Registry: cfg.Registry, Install: install, Logger: logger})
	if err != nil {
		return err
	}
	if install != nil && cfg.GatewayListen != "" {
		addr, err := ServeManagement(ctx, cfg.GatewayListen, *install)
		if err != nil {
			ws.Stop()
			return err
		}
		logger.Info("management gateway", "url", "http://"+addr)
	}
	logger.Info("worker polling", "address", cfg.Temporal.Address, "namespace", cfg.Temporal.Namespace, "central", !cfg.NoCentral, "clouds", clouds)
	<-ctx.Done()
	logger.Info("worker stopping: waiting for running activities")
	ws.Stop()
	return nil
}

func (cfg WorkerConfig) installConfig(logger *slog.Logger) (*InstallConfig, error) {
	token, err := ReadSecret(cfg.RepoTokenFile)
	if err != nil {
		return nil, fmt.Errorf("--repo-token-file: %w", err)
	}
	secret, err := ReadSecret(cfg.GatewaySecretFile)
	if err != nil {
		return nil, fmt.Errorf("--gateway-secret-file: %w", err)
	}
	return &InstallConfig{Node: cfg.NetworkNode, Repo: cfg.Repo, Token: token, Secret: []byte(secret),
		SocketDir: filepath.Join(cfg.DataDir, "gateways"), Logger: logger}, nil
}

// ReadSecret reads a token or secret from a file, without surrounding space.
func ReadSecret(file string) (string, error) {
	if file == "" {
		return "", errors.New("no file given")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return s, nil
}

// EnsureSecret returns the secret in file, writing a new random one (0600)
// when the file does not exist yet.
func EnsureSecret(file string) (string, error) {
	if s, err := ReadSecret(file); err == nil {
		return s, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	s := hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", err
	}
	return s, os.WriteFile(file, []byte(s+"\n"), 0o600)
}
