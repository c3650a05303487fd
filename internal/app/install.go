package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
	mgmt, err := gateway.NewManagement(gateway.ManagementOptions{Repo: cfg.Repo, Secret: cfg.Secret, RPS: cfg.RPS, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	node, err := gateway.NewNode(cfg.SocketDir, mgmt, cfg.Logger)
	if err != nil {
		return nil, err
	}
	return &activities.Install{Node: node, Repo: &repo.Client{URL: cfg.Repo, Token: cfg.Token, HTTP: &http.Client{Timeout: 30 * time.Second}}}, nil
}
