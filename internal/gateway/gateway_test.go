package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/internal/repo"
)

var secret = []byte("shared")

// upstream records the headers the repository receives.
type upstream struct {
	mu   sync.Mutex
	last http.Header
	path string
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.last, u.path = r.Header.Clone(), r.URL.Path
	u.mu.Unlock()
	io.WriteString(w, "ok")
}

// pairOnLoopback runs a gateway pair for acme on loopback (never the
// metadata address in this namespace) in front of a recording upstream.
func pairOnLoopback(t *testing.T, rps float64, burst int) (*Node, Pair, *upstream) {
	t.Helper()
	up := &upstream{}
	hs := httptest.NewServer(up)
	t.Cleanup(hs.Close)
	mgmt, err := NewManagement(ManagementOptions{Repo: hs.URL, Secret: secret, RPS: rps, Burst: burst})
	if err != nil {
		t.Fatal(err)
	}
	node, err := NewNode(t.TempDir(), mgmt, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	p, err := node.Ensure(PairConfig{Tenant: "acme", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	return node, p, up
}

func do(t *testing.T, method, url string, hdr map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(""))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestTenantIdentityIsReplacedAndSigned(t *testing.T) {
	_, p, up := pairOnLoopback(t, 0, 0)
	forged := map[string]string{
		repo.HeaderTenant: "globex", repo.HeaderClient: "10.9.9.9", repo.HeaderSignature: "ff",
		"X-Drift-Anything": "x", "X-Forwarded-For": "10.9.9.9", "Forwarded": "for=10.9.9.9", "Authorization": "Bearer admin",
	}
	if code := do(t, "GET", "http://"+p.Address+"/v1/packages/x/1/linux/amd64/blob", forged); code != 200 {
		t.Fatalf("status %d", code)
	}
	h := up.last
	if h.Get(repo.HeaderTenant) != "acme" || h.Get(repo.HeaderClient) != "127.0.0.1" {
		t.Fatalf("identity %q %q", h.Get(repo.HeaderTenant), h.Get(repo.HeaderClient))
	}
	if h.Get(repo.HeaderSignature) != repo.Sign(secret, "acme", "127.0.0.1") {
		t.Fatalf("signature %q", h.Get(repo.HeaderSignature))
	}
	for _, k := range []string{"X-Drift-Anything", "X-Forwarded-For", "Forwarded", "Authorization"} {
		if h.Get(k) != "" {
			t.Errorf("%s reached the repository: %q", k, h.Get(k))
		}
	}
}

func TestOnlyTheInstallAPICrosses(t *testing.T) {
	_, p, up := pairOnLoopback(t, 0, 0)
	base := "http://" + p.Address
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/packages", 200}, {"GET", "/v1/packages/x/1/linux/amd64", 200}, {"GET", "/v1/instructions", 200}, {"POST", "/v1/reports", 200}, {"POST", "/v1/register", 200},
		{"PUT", "/v1/packages/x/1/linux/amd64", 403}, {"DELETE", "/v1/packages/x/1/linux/amd64", 403}, {"PUT", "/v1/instructions", 403},
		{"DELETE", "/v1/instructions", 403}, {"GET", "/", 403}, {"GET", "/v1/reports", 403}, {"GET", "/v1/packages/..%2F..%2Fx/1/linux/amd64", 403},
	} {
		up.path = ""
		if got := do(t, c.method, base+c.path, nil); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, got, c.want)
		}
		if c.want == 403 && up.path != "" {
			t.Errorf("%s %s reached the repository", c.method, c.path)
		}
	}
}

// The socket says who the tenant is: a request on acme's socket that names
// another tenant is refused.
func TestSocketBindsTheTenant(t *testing.T) {
	_, p, _ := pairOnLoopback(t, 0, 0)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", p.Socket)
	}}}
	req, _ := http.NewRequest("GET", "http://x/v1/packages", nil)
	req.Header.Set(repo.HeaderTenant, "globex")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestRateLimitPerTenant(t *testing.T) {
	_, p, _ := pairOnLoopback(t, 0.001, 3)
	codes := map[int]int{}
	for i := 0; i < 5; i++ {
		codes[do(t, "GET", "http://"+p.Address+"/v1/packages", nil)]++
	}
	if codes[200] != 3 || codes[429] != 2 {
		t.Fatalf("statuses %v, want 3×200 then 2×429", codes)
	}
}

func TestEnsureIsIdempotentAndGuardsLinkLocal(t *testing.T) {
	node, p, _ := pairOnLoopback(t, 0, 0)
	again, err := node.Ensure(PairConfig{Tenant: "acme", Listen: "127.0.0.1:0"})
	if err != nil || again.Started || again.Address != p.Address {
		t.Fatalf("second ensure %+v %v", again, err)
	}
	// In the host's namespace the metadata address is refused before any
	// socket is opened.
	_, err = node.Ensure(PairConfig{Tenant: "globex", Listen: MetadataListen})
	if !errors.Is(err, netns.ErrHostLinkLocal) {
		t.Fatalf("metadata address in the host namespace: %v", err)
	}
	if _, err := node.Ensure(PairConfig{Tenant: "../x"}); !errors.Is(err, repo.ErrInvalid) {
		t.Fatalf("bad tenant: %v", err)
	}
	if got := node.Pairs(); len(got) != 1 {
		t.Fatalf("pairs %v", got)
	}
}

func TestAdminHandlerNeverClaimsATenant(t *testing.T) {
	up := &upstream{}
	hs := httptest.NewServer(up)
	defer hs.Close()
	mgmt, _ := NewManagement(ManagementOptions{Repo: hs.URL, Secret: secret})
	gw := httptest.NewServer(mgmt.AdminHandler())
	defer gw.Close()
	do(t, "PUT", gw.URL+"/v1/packages/x/1/linux/amd64", map[string]string{"Authorization": "Bearer admin", repo.HeaderTenant: "acme", repo.HeaderSignature: "x"})
	if up.last.Get("Authorization") != "Bearer admin" || up.last.Get(repo.HeaderTenant) != "" || up.last.Get(repo.HeaderSignature) != "" {
		t.Fatalf("upstream headers %v", up.last)
	}
}
