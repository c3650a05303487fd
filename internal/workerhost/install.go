package workerhost

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/repo"
)

// InstallConfig makes a worker a network node: it runs the tenant
// networks' gateway pairs and posts install instructions to the software
// repository. Its activities poll drift.node.<Node>.
type InstallConfig struct {
	Node      string  // network node id
	Repo      string  // the repository's URL on the management network
	Token     string  // the repository's admin token
	Secret    []byte  // shared by the management gateway and the repository
	SocketDir string  // where the gateways' unix sockets live
	RPS       float64 // per-tenant rate limit (gateway.DefaultRPS when 0)
	VMRPS     float64 // per-VM rate limit (gateway.DefaultVMRPS when 0)
	CacheDir  string  // the management gateway's blob cache ("" : none)
	Logger    *slog.Logger
}

// ServeManagement serves the management gateway's listener for management
// use (admin requests pass with their token, never as a tenant) on addr
// until ctx ends, and returns the address it bound.
func ServeManagement(ctx context.Context, addr string, cfg InstallConfig) (string, error) {
	mgmt, err := gateway.NewManagement(gateway.ManagementOptions{Repo: cfg.Repo, Secret: cfg.Secret, Logger: cfg.Logger})
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("management gateway: %w", err)
	}
	srv := &http.Server{Handler: mgmt.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go srv.Serve(ln)
	return ln.Addr().String(), nil
}

// newInstall builds the node's gateways and the repository client.
func newInstall(cfg InstallConfig) (*activities.Install, error) {
	if cfg.Node == "" || cfg.Repo == "" || cfg.Token == "" || cfg.SocketDir == "" {
		return nil, errors.New("a network node needs its id, the repository URL, its admin token and a socket dir")
	}
	mgmt, err := gateway.NewManagement(gateway.ManagementOptions{Repo: cfg.Repo, Secret: cfg.Secret, RPS: cfg.RPS, VMRPS: cfg.VMRPS,
		CacheDir: cfg.CacheDir, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	node, err := gateway.NewNode(cfg.SocketDir, mgmt, cfg.Logger)
	if err != nil {
		return nil, err
	}
	return &activities.Install{Node: node, Repo: &repo.Client{URL: cfg.Repo, Token: cfg.Token, HTTP: &http.Client{Timeout: 30 * time.Second}}}, nil
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
	ic := &InstallConfig{Node: cfg.NetworkNode, Repo: cfg.Repo, Token: token, Secret: []byte(secret),
		SocketDir: filepath.Join(cfg.DataDir, "gateways"), Logger: logger}
	if cfg.GatewayCache {
		ic.CacheDir = filepath.Join(cfg.DataDir, "gateway-cache")
	}
	return ic, nil
}

// SigningKeyEnv holds the repository's signing key (PEM) in production,
// where no key file is wanted on disk.
const SigningKeyEnv = "DRIFT_REPO_SIGNING_KEY"

// LoadSigningKey reads the repository's Ed25519 key from $DRIFT_REPO_SIGNING_KEY,
// else from file, which is created (0600, public key beside it as
// file.pub) when missing.
func LoadSigningKey(file string) (ed25519.PrivateKey, error) {
	if pemKey := os.Getenv(SigningKeyEnv); pemKey != "" {
		k, err := repo.ParsePrivateKey([]byte(pemKey))
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", SigningKeyEnv, err)
		}
		return k, nil
	}
	if file == "" {
		return nil, fmt.Errorf("no signing key: give a key file or $%s", SigningKeyEnv)
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return repo.GenerateKey(file)
	}
	if err != nil {
		return nil, err
	}
	k, err := repo.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return k, nil
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
