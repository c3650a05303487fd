package workerhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	temporalclient "go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/devstack"
	"github.com/edgedrift/drift/internal/mecapi"
	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/internal/release"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/docker"
	"github.com/edgedrift/drift/internal/topology"
)

// DevConfig is what `drift dev` runs: the embedded Temporal server, its Web
// UI and the registry (devstack), a worker polling every queue, the session
// HTTP API, the software repository and the management gateway.
type DevConfig struct {
	DataDir        string
	Port           int // Temporal gRPC
	UIPort         int
	RegistryPort   int
	APIPort        int
	RepoPort       int
	GatewayPort    int
	Namespace      string
	Temporal       config.Temporal // an existing cluster instead of the embedded server, when its Address is set
	NoWorker       bool            // run no worker: workers of their own poll this stack
	Topology       *topology.Topology
	FogRuntime     string // auto, docker or process
	EdgeKubeconfig string
	// TrustPolicy makes every cloud verify images against it ("" : none);
	// the pipeline always signs with the key pair in <DataDir>/keys.
	TrustPolicy string
	Logger      *slog.Logger
}

// Dev is a running development stack.
type Dev struct {
	Stack   *devstack.Stack
	Client  temporalclient.Client
	Workers *Workers
	APIURL  string
	// APITokenFile holds a bearer token of the API (client "dev").
	APITokenFile string
	RepoURL      string
	GatewayURL   string
	Node         string // the network node the worker stands for

	stops []func() // in reverse order of start
}

// StartDev brings the whole stack up; on error nothing it started is left.
func StartDev(ctx context.Context, cfg DevConfig) (_ *Dev, err error) {
	runtimeFor, err := devRuntimes(ctx, cfg.FogRuntime, cfg.EdgeKubeconfig)
	if err != nil {
		return nil, err
	}
	d := &Dev{}
	defer func() {
		if err != nil {
			d.Stop()
		}
	}()
	d.Stack, err = devstack.Start(ctx, devstack.Options{
		DataDir: cfg.DataDir, Port: cfg.Port, UIPort: cfg.UIPort, RegistryPort: cfg.RegistryPort,
		Namespace: cfg.Namespace, Temporal: cfg.Temporal, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	d.stops = append(d.stops, d.Stack.Stop)
	if d.Client, err = d.Stack.Temporal().Dial(ctx, cfg.Logger); err != nil {
		return nil, err
	}
	d.stops = append(d.stops, d.Client.Close)

	node, err := d.startRepo(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.NoWorker {
		var clouds []string
		for _, cl := range cfg.Topology.Clouds() {
			clouds = append(clouds, cl.ID)
		}
		signer, err := release.EnsureKeyPair(release.KeyFiles(cfg.DataDir))
		if err != nil {
			return nil, err
		}
		var trust *release.Policy
		if cfg.TrustPolicy != "" {
			if trust, err = release.LoadPolicy(cfg.TrustPolicy); err != nil {
				return nil, err
			}
		}
		d.Workers, err = StartWorkers(d.Client, WorkerOptions{
			Topology: cfg.Topology, Clouds: clouds, Central: true, DataDir: cfg.DataDir, Registry: d.Stack.RegistryHost(),
			RuntimeFor: runtimeFor, Install: node, Logger: cfg.Logger, Signer: signer, Trust: trust,
		})
		if err != nil {
			return nil, err
		}
		d.stops = append(d.stops, d.Workers.Stop)
	}
	sctx, cancel := context.WithCancel(ctx)
	d.stops = append(d.stops, cancel)
	gw, err := ServeManagement(sctx, loopback(cfg.GatewayPort), *node)
	if err != nil {
		return nil, err
	}
	d.GatewayURL = "http://" + gw

	apiLn, err := net.Listen("tcp", loopback(cfg.APIPort))
	if err != nil {
		return nil, fmt.Errorf("session API: %w", err)
	}
	tokens, err := DevAPITokens(cfg.DataDir)
	if err != nil {
		apiLn.Close()
		return nil, fmt.Errorf("session API: %w", err)
	}
	d.serve(ctx, apiLn, mecapi.New(d.Client, mecapi.Options{Topology: cfg.Topology, Tokens: tokens, Logger: cfg.Logger}))
	d.APIURL = "http://" + apiLn.Addr().String() + mecapi.BasePath
	d.APITokenFile = filepath.Join(cfg.DataDir, APITokenFile)
	return d, nil
}

// Files of drift dev's API credentials under the data dir: the tokens file
// (hashes) and one usable token for the "dev" client (mode 0600).
const (
	APITokensFile = "api-tokens"
	APITokenFile  = "api-token"
)

// DevAPITokens returns the tokens drift dev's API accepts, making a token
// for client "dev" (read and write) on first use.
func DevAPITokens(dataDir string) (*mecapi.Tokens, error) {
	tokensFile, tokenFile := filepath.Join(dataDir, APITokensFile), filepath.Join(dataDir, APITokenFile)
	if _, err := ReadSecret(tokenFile); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, err
		}
		token, err := mecapi.AddToken(tokensFile, "dev", []string{mecapi.ScopeRead, mecapi.ScopeWrite})
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return mecapi.LoadTokens(tokensFile)
}

// Stop stops everything StartDev started, last first.
func (d *Dev) Stop() {
	for i := len(d.stops) - 1; i >= 0; i-- {
		d.stops[i]()
	}
	d.stops = nil
}

// RuntimeKinds names each cloud's runtime kind (none without a worker).
func (d *Dev) RuntimeKinds() map[string]string {
	kinds := map[string]string{}
	if d.Workers == nil {
		return kinds
	}
	for id, rt := range d.Workers.Runtimes {
		kinds[id] = rt.Kind()
	}
	return kinds
}

// serve serves h on ln until Stop.
func (d *Dev) serve(ctx context.Context, ln net.Listener, h http.Handler) {
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ServeHTTP(sctx, ln, h) }()
	d.stops = append(d.stops, func() { cancel(); <-done })
}

// startRepo serves the software repository on loopback and returns the
// network node's install config that goes with it.
func (d *Dev) startRepo(ctx context.Context, cfg DevConfig) (*InstallConfig, error) {
	tokenFile, secretFile := filepath.Join(cfg.DataDir, "repo-token"), filepath.Join(cfg.DataDir, "gateway-secret")
	srv, ln, err := StartRepo(RepoConfig{Dir: filepath.Join(cfg.DataDir, "repo"), Listen: loopback(cfg.RepoPort),
		TokenFile: tokenFile, SecretFile: secretFile, SigningKeyFile: filepath.Join(cfg.DataDir, SigningKeyFile), MaxBlob: repo.DefaultMaxBlob}, client.New(d.Client))
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	d.stops = append(d.stops, func() { srv.Close() })
	d.serve(ctx, ln, srv)
	token, _ := ReadSecret(tokenFile)
	secret, _ := ReadSecret(secretFile)
	d.RepoURL = "http://" + ln.Addr().String()
	d.Node = config.DefaultNetworkNode
	return &InstallConfig{Node: d.Node, Repo: d.RepoURL, Token: token, Secret: []byte(secret),
		SocketDir: filepath.Join(cfg.DataDir, "gateways"), CacheDir: filepath.Join(cfg.DataDir, "gateway-cache"), Logger: cfg.Logger}, nil
}

// RepoConfig is where the software repository keeps its store and serves.
type RepoConfig struct {
	Dir        string // blobs and the bbolt index
	Netns      string // serve inside this network namespace ("" : the current one)
	Listen     string
	TokenFile  string // the admin token, created when missing
	SecretFile string // shared with the management gateway, created when missing
	// SigningKeyFile is the Ed25519 key index entries are signed with,
	// created when missing ($DRIFT_REPO_SIGNING_KEY overrides it); agents
	// trust SigningKeyFile.pub.
	SigningKeyFile string
	MaxBlob        int64
}

// SigningKeyFile is the repository's signing key in a data dir; agents
// trust SigningKeyFile + ".pub".
const SigningKeyFile = "repo-signing.key"

// StartRepo opens the repository and its listener; reports of tenant VMs
// are signalled to their install workflows through c.
func StartRepo(cfg RepoConfig, c *client.Client) (*repo.Server, net.Listener, error) {
	token, err := EnsureSecret(cfg.TokenFile)
	if err != nil {
		return nil, nil, err
	}
	secret, err := EnsureSecret(cfg.SecretFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := LoadSigningKey(cfg.SigningKeyFile)
	if err != nil {
		return nil, nil, err
	}
	srv, err := repo.New(repo.Options{Dir: cfg.Dir, AdminToken: token, Secret: []byte(secret), SigningKey: key, MaxBlob: cfg.MaxBlob,
		Report: c.Signaler(), Register: c.Registrar()})
	if err != nil {
		return nil, nil, err
	}
	ln, err := netns.Listen(cfg.Netns, cfg.Listen)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return srv, ln, nil
}

// devRuntimes picks the runtime of clouds that name none: Docker for fog
// clouds when an engine answers (or when asked), the given cluster for edge
// clouds, processes otherwise.
func devRuntimes(ctx context.Context, fogRuntime, edgeKubeconfig string) (func(topology.Cloud) runtime.Config, error) {
	fog := runtime.Config{Kind: runtime.KindProcess}
	switch fogRuntime {
	case "process":
	case "docker":
		fog = runtime.Config{Kind: runtime.KindDocker}
	case "auto", "":
		if dockerAnswers(ctx) {
			fog = runtime.Config{Kind: runtime.KindDocker}
		}
	default:
		return nil, fmt.Errorf("--fog-runtime %q: want auto, docker or process", fogRuntime)
	}
	edge := runtime.Config{Kind: runtime.KindProcess}
	if edgeKubeconfig != "" {
		if _, err := os.Stat(edgeKubeconfig); err != nil {
			return nil, fmt.Errorf("--edge-kubeconfig: %w", err)
		}
		edge = runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: edgeKubeconfig}
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

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
