// Package gateway bridges tenant networks and the management network, as
// the metadata proxy pair on a cloud's network node does: a tenant gateway
// inside the tenant's network namespace forwards only the install API over
// a unix socket (a file, so it crosses namespaces without joining them) to
// the management gateway, which signs the tenant identity with HMAC-SHA256
// and forwards to the software repository, rate-limited per tenant.
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/time/rate"

	"github.com/edgedrift/drift/internal/repo"
)

// Addresses the gateways listen on by default: loopback. The metadata
// address is used only inside a tenant namespace drift was given.
const (
	DefaultTenantListen     = "127.0.0.1:8080"
	MetadataListen          = "169.254.169.254:8080"
	DefaultManagementListen = "127.0.0.1:8081"
)

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
		return path == "/v1/reports"
	}
	return false
}

// TenantHandler is the tenant gateway: it admits only the install API,
// drops every identity header the VM sent, adds the tenant network id and
// the VM's address, and forwards over the unix socket.
func TenantHandler(tenant, socket string, logger *slog.Logger) http.Handler {
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 256,
	}
	proxy := &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", "management", "management"
			repo.StripIdentity(pr.Out.Header)
			client, _, _ := net.SplitHostPort(pr.In.RemoteAddr)
			pr.Out.Header.Set(repo.HeaderTenant, tenant)
			pr.Out.Header.Set(repo.HeaderClient, client)
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
	rps    rate.Limit
	burst  int
	logger *slog.Logger
	proxy  *httputil.ReverseProxy

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// ManagementOptions configure the management gateway.
type ManagementOptions struct {
	Repo   string  // the repository's URL on the management network
	Secret []byte  // shared with the repository
	RPS    float64 // requests per second per tenant (DefaultRPS when 0)
	Burst  int     // (DefaultBurst when 0)
	Logger *slog.Logger
}

// Default per-tenant rate limit.
const (
	DefaultRPS   = 200
	DefaultBurst = 400
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
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	m := &Management{repo: u, secret: o.Secret, rps: rate.Limit(o.RPS), burst: o.Burst, logger: o.Logger, limiters: map[string]*rate.Limiter{}}
	m.proxy = &httputil.ReverseProxy{
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256},
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = u.Host
		},
		ErrorHandler: proxyError(o.Logger),
	}
	return m, nil
}

func (m *Management) limiter(tenant string) *rate.Limiter {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.limiters[tenant]
	if !ok {
		l = rate.NewLimiter(m.rps, m.burst)
		m.limiters[tenant] = l
	}
	return l
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
		if !m.limiter(tenant).Allow() {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "rate limit of tenant "+tenant, http.StatusTooManyRequests)
			return
		}
		client := r.Header.Get(repo.HeaderClient)
		repo.StripIdentity(r.Header)
		r.Header.Set(repo.HeaderTenant, tenant)
		r.Header.Set(repo.HeaderClient, client)
		r.Header.Set(repo.HeaderSignature, repo.Sign(m.secret, tenant, client))
		m.proxy.ServeHTTP(w, r)
	})
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
