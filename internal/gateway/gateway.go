// Package gateway bridges tenant networks and the management network, as
// the metadata proxy pair on a cloud's network node does: a tenant gateway
// inside the tenant's network namespace (169.254.169.254:8080 and
// [fe80::a9fe:a9fe]:8080) forwards only the install API over a unix socket
// (a file, so it crosses namespaces without joining them) to the management
// gateway, which signs the tenant identity with HMAC-SHA256, rate-limits per
// VM and per tenant, serves package blobs from its cache by sha256 and
// forwards the rest to the software repository.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/internal/repo"
)

// Addresses the gateways listen on by default: loopback. The metadata
// address is used only inside a tenant namespace drift was given.
const (
	DefaultTenantListen     = "127.0.0.1:8080"
	MetadataListen          = "169.254.169.254:8080"
	DefaultManagementListen = "127.0.0.1:8081"
)

// MetadataIPv6 is the metadata address in IPv6 (Neutron's): the tenant
// gateway also listens on it, on every interface of the tenant namespace
// that holds it.
var MetadataIPv6 = net.ParseIP("fe80::a9fe:a9fe")

// installAPI says whether a tenant may send method+path through: reading
// packages and its instructions, posting reports. Nothing else crosses.
func installAPI(method, path string) bool {
	if strings.Contains(path, "..") || strings.Contains(path, "//") {
		return false
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		return path == "/v1/packages" || strings.HasPrefix(path, "/v1/packages/") || path == "/v1/instructions"
	case http.MethodPost:
		return path == "/v1/reports" || path == "/v1/register"
	}
	return false
}

// isBlob says whether path downloads a package blob.
func isBlob(method, path string) bool {
	return (method == http.MethodGet || method == http.MethodHead) && strings.HasPrefix(path, "/v1/packages/") && strings.HasSuffix(path, "/blob")
}

// copyBuffers are the proxies' copy buffers: larger than the default 32 KiB,
// so a package streams in fewer system calls.
type copyBuffers struct{ pool sync.Pool }

func newCopyBuffers() *copyBuffers {
	return &copyBuffers{pool: sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}}
}
func (b *copyBuffers) Get() []byte  { return *b.pool.Get().(*[]byte) }
func (b *copyBuffers) Put(p []byte) { b.pool.Put(&p) }

var proxyBuffers = newCopyBuffers()

// TenantHandler is the tenant gateway: it admits only the install API,
// drops every identity header the VM sent, adds the tenant network id and
// the VM's address, and forwards over the unix socket.
func TenantHandler(tenant, socket string, logger *slog.Logger) http.Handler {
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 256,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      64 << 10,
	}
	proxy := &httputil.ReverseProxy{
		Transport:  transport,
		BufferPool: proxyBuffers,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", "management", "management"
			repo.StripIdentity(pr.Out.Header)
			client, _, _ := net.SplitHostPort(pr.In.RemoteAddr)
			pr.Out.Header.Set(repo.HeaderTenant, tenant)
			pr.Out.Header.Set(repo.HeaderClient, netns.StripZone(client))
		},
		ErrorHandler: proxyError(logger),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !installAPI(r.Method, r.URL.Path) || r.URL.RawPath != "" {
			http.Error(w, "not an install API path", http.StatusForbidden)
			return
		}
		proxy.ServeHTTP(w, r)
	})
}

// Management is the management gateway in front of one repository.
type Management struct {
	repo   *url.URL
	secret []byte
	tenant limit
	vm     limit
	logger *slog.Logger
	proxy  *httputil.ReverseProxy
	http   *http.Client
	cache  *Cache // nil: blobs pass through

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

type limit struct {
	rps   rate.Limit
	burst int
}

// ManagementOptions configure the management gateway.
type ManagementOptions struct {
	Repo   string  // the repository's URL on the management network
	Secret []byte  // shared with the repository
	RPS    float64 // requests per second per tenant (DefaultRPS when 0)
	Burst  int     // (DefaultBurst when 0)
	// VMRPS and VMBurst limit each VM (tenant + address) of a tenant
	// (DefaultVMRPS and DefaultVMBurst when 0).
	VMRPS   float64
	VMBurst int
	// CacheDir keeps downloaded blobs by sha256 ("" : no cache), at most
	// CacheBytes of them (DefaultCacheBytes when 0).
	CacheDir   string
	CacheBytes int64
	Logger     *slog.Logger
}

// Default rate limits, per tenant and per VM.
const (
	DefaultRPS     = 200
	DefaultBurst   = 400
	DefaultVMRPS   = 20
	DefaultVMBurst = 40
	// maxLimiters bounds the limiters kept; full (idle) ones are dropped
	// beyond it.
	maxLimiters = 4096
)

// NewManagement builds the management gateway.
func NewManagement(o ManagementOptions) (*Management, error) {
	u, err := url.Parse(o.Repo)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New("management gateway: the repository URL must be http(s)://host:port")
	}
	if len(o.Secret) == 0 {
		return nil, errors.New("management gateway: the shared secret is required")
	}
	if o.RPS == 0 {
		o.RPS = DefaultRPS
	}
	if o.Burst == 0 {
		o.Burst = DefaultBurst
	}
	if o.VMRPS == 0 {
		o.VMRPS = DefaultVMRPS
	}
	if o.VMBurst == 0 {
		o.VMBurst = DefaultVMBurst
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	transport := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256, WriteBufferSize: 64 << 10, ReadBufferSize: 64 << 10}
	m := &Management{repo: u, secret: o.Secret, tenant: limit{rate.Limit(o.RPS), o.Burst}, vm: limit{rate.Limit(o.VMRPS), o.VMBurst},
		logger: o.Logger, limiters: map[string]*rate.Limiter{}, http: &http.Client{Transport: transport}}
	if o.CacheDir != "" {
		c, err := NewCache(o.CacheDir, o.CacheBytes)
		if err != nil {
			return nil, fmt.Errorf("management gateway cache: %w", err)
		}
		m.cache = c
	}
	m.proxy = &httputil.ReverseProxy{
		Transport:  transport,
		BufferPool: proxyBuffers,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = u.Host
		},
		ErrorHandler: proxyError(o.Logger),
	}
	return m, nil
}

// Cache is the blob cache (nil when there is none).
func (m *Management) Cache() *Cache { return m.cache }

// allow takes a token of key's limiter, made with l on first use.
func (m *Management) allow(key string, l limit) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	lim, ok := m.limiters[key]
	if !ok {
		if len(m.limiters) >= maxLimiters {
			for k, old := range m.limiters {
				if old.Tokens() >= float64(old.Burst()) {
					delete(m.limiters, k)
				}
			}
		}
		lim = rate.NewLimiter(l.rps, l.burst)
		m.limiters[key] = lim
	}
	return lim.Allow()
}

// TenantSocketHandler serves the unix socket of one tenant network: the
// socket, not the header, says which tenant is calling, so a header that
// names another tenant is refused. The identity is signed for the
// repository.
func (m *Management) TenantSocketHandler(tenant string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !installAPI(r.Method, r.URL.Path) || r.URL.RawPath != "" {
			http.Error(w, "not an install API path", http.StatusForbidden)
			return
		}
		if got := r.Header.Get(repo.HeaderTenant); got != tenant {
			http.Error(w, "tenant does not match the gateway's network", http.StatusForbidden)
			return
		}
		client := r.Header.Get(repo.HeaderClient)
		if !m.allow("vm\x00"+tenant+"\x00"+client, m.vm) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "rate limit of VM "+client+" in tenant "+tenant, http.StatusTooManyRequests)
			return
		}
		if !m.allow("tenant\x00"+tenant, m.tenant) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "rate limit of tenant "+tenant, http.StatusTooManyRequests)
			return
		}
		repo.StripIdentity(r.Header)
		m.identify(r.Header, tenant, client)
		if m.cache != nil && isBlob(r.Method, r.URL.Path) {
			m.serveCached(w, r)
			return
		}
		m.proxy.ServeHTTP(w, r)
	})
}

// identify sets the signed identity headers the repository trusts.
func (m *Management) identify(h http.Header, tenant, client string) {
	h.Set(repo.HeaderTenant, tenant)
	h.Set(repo.HeaderClient, client)
	h.Set(repo.HeaderSignature, repo.Sign(m.secret, tenant, client))
}

// serveCached asks the repository, as the tenant, for the package's entry
// (so visibility is the repository's decision on every download) and
// serves the blob from the cache, filling it on a miss.
func (m *Management) serveCached(w http.ResponseWriter, r *http.Request) {
	var p repo.Package
	resp, err := m.upstream(r, strings.TrimSuffix(r.URL.Path, "/blob"))
	if err != nil {
		proxyError(m.logger)(w, r, err)
		return
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, io.LimitReader(resp.Body, 64<<10))
		return
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&p)
	resp.Body.Close()
	if err != nil {
		proxyError(m.logger)(w, r, err)
		return
	}
	f, err := m.cache.Open(p.SHA256, p.Size, func(ctx context.Context) (io.ReadCloser, error) {
		resp, err := m.upstream(r.WithContext(ctx), r.URL.Path)
		if err == nil && resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			err = fmt.Errorf("repository: %s", resp.Status)
		}
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	})
	if err != nil {
		m.logger.Warn("gateway cache: no blob", "path", r.URL.Path, "err", err)
		http.Error(w, "gateway cache: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer f.Close()
	w.Header().Set(repo.HeaderSHA256, p.SHA256)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, f)
}

// upstream GETs path from the repository with r's (already signed)
// identity headers.
func (m *Management) upstream(r *http.Request, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, m.repo.JoinPath(path).String(), nil)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{repo.HeaderTenant, repo.HeaderClient, repo.HeaderSignature} {
		req.Header.Set(k, r.Header.Get(k))
	}
	return m.http.Do(req)
}

// AdminHandler serves management use on :8081: requests pass to the
// repository with their admin token but can never claim a tenant.
func (m *Management) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		repo.StripIdentity(r.Header)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		m.proxy.ServeHTTP(w, r)
	})
}

func proxyError(logger *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		logger.Warn("gateway: upstream failed", "path", r.URL.Path, "err", err)
		http.Error(w, "upstream unavailable", http.StatusBadGateway)
	}
}
