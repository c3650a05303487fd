package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
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
	// Addresses6 are its IPv6 metadata addresses, one per interface of the
	// tenant namespace holding fe80::a9fe:a9fe ("[fe80::a9fe:a9fe%br0]:8080").
	Addresses6 []string `json:"addresses6,omitempty"`
	Socket     string   `json:"socket"`
	Started    bool     `json:"started"` // false: it was running already
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
			p.listen6() // the namespace may hold the IPv6 address by now
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
	go p.sock.Serve(sendfileListener{uds})
	go p.tenant.Serve(tln)
	p.listen6()
	return p, nil
}

// listen6 serves the tenant gateway on [fe80::a9fe:a9fe%<if>] too, for each
// interface of the tenant namespace that holds that address and has no
// listener yet. Only inside a namespace: in the host's, link-local
// addresses belong to the machine's provider.
func (p *pair) listen6() {
	if p.info.Netns == "" {
		return
	}
	_, port, _ := net.SplitHostPort(p.info.Address)
	zones, err := netns.Holding(p.info.Netns, MetadataIPv6)
	if err != nil {
		return
	}
	for _, zone := range zones {
		addr := net.JoinHostPort(MetadataIPv6.String()+"%"+zone, port)
		if slices.Contains(p.info.Addresses6, addr) {
			continue
		}
		ln, err := netns.Listen(p.info.Netns, addr)
		if err != nil {
			continue // still tentative (DAD); the next Ensure tries again
		}
		p.info.Addresses6 = append(p.info.Addresses6, addr)
		go p.tenant.Serve(ln)
	}
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

// Cache is the blob cache of the node's management gateway (nil: none).
func (n *Node) Cache() *Cache { return n.mgmt.Cache() }
