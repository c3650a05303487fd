package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/internal/repo"
)

// Node runs the gateway pairs of one network node: one tenant gateway and
// one unix socket per tenant network, all served by one management gateway.
type Node struct {
	dir    string // sockets live here (0700)
	mgmt   *Management
	logger *slog.Logger

	mu    sync.Mutex
	pairs map[string]*pair
}

// PairConfig places a tenant network's gateway.
type PairConfig struct {
	Tenant string `json:"tenant"` // tenant network id
	// Netns is the tenant network's namespace ("" = the node's own, where
	// the gateway stays on loopback).
	Netns string `json:"netns,omitempty"`
	// Listen is the tenant gateway's address: MetadataListen inside a
	// namespace, DefaultTenantListen otherwise, when empty.
	Listen string `json:"listen,omitempty"`
}

// Pair says where a tenant network's gateway pair listens.
type Pair struct {
	PairConfig
	Address string `json:"address"` // tenant gateway's bound address
	Socket  string `json:"socket"`
	Started bool   `json:"started"` // false: it was running already
}

type pair struct {
	info          Pair
	tenant, sock  *http.Server
	tenantLn, uds net.Listener
}

// NewNode prepares a node whose sockets live in dir.
func NewNode(dir string, mgmt *Management, logger *slog.Logger) (*Node, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Node{dir: dir, mgmt: mgmt, logger: logger, pairs: map[string]*pair{}}, nil
}

func (c *PairConfig) defaults() error {
	if err := repo.ValidTenant(c.Tenant); err != nil {
		return err
	}
	if c.Netns != "" {
		if _, err := netns.Path(c.Netns); err != nil {
			return err
		}
	}
	if c.Listen == "" {
		c.Listen = DefaultTenantListen
		if c.Netns != "" {
			c.Listen = MetadataListen
		}
	}
	_, _, err := net.SplitHostPort(c.Listen)
	return err
}

// Ensure starts the tenant network's pair unless it runs already with the
// same placement; a pair placed differently is replaced.
func (n *Node) Ensure(cfg PairConfig) (Pair, error) {
	if err := cfg.defaults(); err != nil {
		return Pair{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.pairs[cfg.Tenant]; ok {
		if p.info.PairConfig == cfg {
			info := p.info
			info.Started = false
			return info, nil
		}
		p.close()
		delete(n.pairs, cfg.Tenant)
	}
	p, err := n.start(cfg)
	if err != nil {
		return Pair{}, err
	}
	n.pairs[cfg.Tenant] = p
	n.logger.Info("gateway pair up", "tenant", cfg.Tenant, "netns", cfg.Netns, "listen", p.info.Address, "socket", p.info.Socket)
	return p.info, nil
}

func (n *Node) start(cfg PairConfig) (*pair, error) {
	sock := filepath.Join(n.dir, cfg.Tenant+".sock")
	os.Remove(sock) // a socket file left by a previous process
	uds, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("management gateway socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		uds.Close()
		return nil, err
	}
	// netns.Listen refuses a link-local address in the host's namespace.
	tln, err := netns.Listen(cfg.Netns, cfg.Listen)
	if err != nil {
		uds.Close()
		return nil, fmt.Errorf("tenant gateway of %s: %w", cfg.Tenant, err)
	}
	p := &pair{
		info:     Pair{PairConfig: cfg, Address: tln.Addr().String(), Socket: sock, Started: true},
		sock:     &http.Server{Handler: n.mgmt.TenantSocketHandler(cfg.Tenant), ReadHeaderTimeout: 10 * time.Second},
		tenant:   &http.Server{Handler: TenantHandler(cfg.Tenant, sock, n.logger), ReadHeaderTimeout: 10 * time.Second},
		tenantLn: tln, uds: uds,
	}
	go p.sock.Serve(uds)
	go p.tenant.Serve(tln)
	return p, nil
}

func (p *pair) close() {
	p.tenant.Close()
	p.sock.Close()
	os.Remove(p.info.Socket)
}

// Stop removes a tenant network's pair; a missing one is no error.
func (n *Node) Stop(tenant string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.pairs[tenant]; ok {
		p.close()
		delete(n.pairs, tenant)
	}
}

// Pairs lists the running pairs.
func (n *Node) Pairs() []Pair {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Pair
	for _, p := range n.pairs {
		out = append(out, p.info)
	}
	return out
}

// Close stops every pair.
func (n *Node) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for t, p := range n.pairs {
		p.close()
		delete(n.pairs, t)
	}
}
