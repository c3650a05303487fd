// Command drift-worker polls drift's task queues on any Temporal cluster:
// the central `drift` queue (workflows and central activities) and the
// `drift.cloud.<id>` queues of the clouds it runs next to.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/runtime/proxy"
	"github.com/edgedrift/drift/internal/workerhost"
)

func main() {
	proxy.Main() // when started as a stable endpoint's proxy
	var cfg workerhost.WorkerConfig
	var logLevel, logFormat string
	fs := pflag.NewFlagSet("drift-worker", pflag.ContinueOnError)
	cfg.Temporal.BindFlags(fs)
	fs.StringVarP(&cfg.TopologyFile, "topology", "t", os.Getenv("DRIFT_TOPOLOGY"), "topology file (env DRIFT_TOPOLOGY); needed for cloud queues")
	fs.StringSliceVar(&cfg.Clouds, "clouds", nil, "clouds whose queues to poll, e.g. fog-1,edge-2")
	fs.BoolVar(&cfg.AllClouds, "all-clouds", false, "poll the queue of every cloud in the topology")
	fs.BoolVar(&cfg.NoCentral, "no-central", false, "do not poll the central drift queue (a site worker)")
	fs.StringVar(&cfg.DataDir, "data-dir", config.EnvOr("DRIFT_DATA_DIR", "/var/lib/drift"), "state of process-runtime instances (env DRIFT_DATA_DIR)")
	fs.StringVar(&cfg.Registry, "registry", config.EnvOr("DRIFT_REGISTRY", "127.0.0.1:5000"), "center cloud's image registry host:port (env DRIFT_REGISTRY)")
	cfg.RegistryLogin.BindFlags(fs)
	fs.StringVar(&cfg.SigningKey, "signing-key-file", os.Getenv("DRIFT_SIGNING_KEY_FILE"), "PEM ECDSA P-256 private key the pipeline signs images with (env DRIFT_SIGNING_KEY_FILE, or the PEM itself in DRIFT_SIGNING_KEY)")
	fs.StringVar(&cfg.TrustPolicy, "trust-policy", os.Getenv("DRIFT_TRUST_POLICY"), "YAML trust policy (keys, repos, refs, requireTests) every deploy on this worker's clouds must pass (env DRIFT_TRUST_POLICY)")
	fs.StringVar(&cfg.NetworkNode, "network-node", os.Getenv("DRIFT_NETWORK_NODE"), "be this network node: run tenant gateway pairs, poll drift.node.<id> (env DRIFT_NETWORK_NODE)")
	fs.StringVar(&cfg.Repo, "repo", config.EnvOr("DRIFT_REPO", "http://127.0.0.1:8700"), "software repository URL on the management network (env DRIFT_REPO)")
	fs.StringVar(&cfg.RepoTokenFile, "repo-token-file", os.Getenv("DRIFT_REPO_TOKEN_FILE"), "file holding the repository's admin token (env DRIFT_REPO_TOKEN_FILE)")
	fs.StringVar(&cfg.GatewaySecretFile, "gateway-secret-file", os.Getenv("DRIFT_GATEWAY_SECRET_FILE"), "file holding the secret shared by the management gateway and the repository (env DRIFT_GATEWAY_SECRET_FILE)")
	fs.StringVar(&cfg.GatewayListen, "gateway-listen", "127.0.0.1:8081", "with --network-node: the management gateway's address for management use; empty disables")
	fs.BoolVar(&cfg.GatewayCache, "gateway-cache", true, "with --network-node: keep package blobs by sha256 under <data-dir>/gateway-cache, so a fleet install crosses the management network once per package")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "127.0.0.1:9090", "address of Prometheus /metrics, /healthz (liveness) and /readyz (readiness), unauthenticated; empty disables")
	fs.StringVar(&cfg.Identity, "identity", os.Getenv("DRIFT_IDENTITY"), "worker identity in pollers and histories (env DRIFT_IDENTITY; default: what it polls, e.g. fog-1+fog-2, @ host)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "json", "json or text")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			return
		}
		os.Exit(2)
	}
	logger, err := newLogger(logLevel, logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "drift-worker:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := workerhost.RunWorker(ctx, cfg, logger); err != nil {
		logger.Error("worker failed", "err", err)
		os.Exit(1)
	}
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}
