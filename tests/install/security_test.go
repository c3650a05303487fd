package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

const gw = "http://169.254.169.254:8080"

// Every attack is refused with its status, nothing is installed and nothing
// is written outside the repository's store or the VM's prefix.
func TestSecurity(t *testing.T) {
	n := newNetwork(t)
	_, c := harness.Temporal(t, "")
	const maxBlob = 64 << 10
	nd := startRepo(t, n, c, maxBlob)
	ws := startWorker(t, c, nd)
	mine := repo.Ref{Name: "acme-tool", Version: "1.0", Platform: "linux/amd64"}
	theirs := repo.Ref{Name: "globex-tool", Version: "1.0", Platform: "linux/amd64"}
	nd.push(t, mine, repo.PushOptions{Tenants: []string{"acme"}}, entry{"README", "acme's tool"})
	nd.push(t, theirs, repo.PushOptions{Tenants: []string{"globex"}}, entry{"README", "globex's secret tool"})
	if _, err := ws.Install.Node.Ensure(gateway.PairConfig{Tenant: "acme", Netns: n.Tenant}); err != nil {
		t.Fatal(err)
	}
	vm := httpIn(n.VM)
	store := filepath.Join(nd.Dir, "store")
	blobsBefore := filesUnder(t, filepath.Join(store, "blobs"))
	outside := filesUnder(t, filepath.Dir(store))

	status := func(t *testing.T, hc *http.Client, method, url string, body io.Reader, hdr map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	blobURL := func(base string, r repo.Ref) string {
		return base + "/v1/packages/" + r.Name + "/" + r.Version + "/" + r.Platform + "/blob"
	}

	t.Run("forged identity headers", func(t *testing.T) {
		// Even a correct signature for another tenant is dropped by the
		// tenant gateway: the VM stays acme.
		forged := map[string]string{
			repo.HeaderTenant: "globex", repo.HeaderClient: "10.9.9.9",
			repo.HeaderSignature: repo.Sign(nd.Secret, "globex", "10.9.9.9"),
			"X-Forwarded-For":    "10.9.9.9", "Authorization": "Bearer " + nd.Token,
		}
		if code, body := status(t, vm, "GET", blobURL(gw, theirs), nil, forged); code != http.StatusNotFound {
			t.Fatalf("forged globex download: %d %s", code, body)
		}
		code, body := status(t, vm, "GET", gw+"/v1/packages", nil, forged)
		if code != 200 || strings.Contains(body, "globex-tool") || !strings.Contains(body, "acme-tool") {
			t.Fatalf("forged list: %d %s", code, body)
		}
		// The admin token does not cross the gateway either.
		if code, _ := status(t, vm, "DELETE", gw+"/v1/packages/acme-tool/1.0/linux/amd64", nil, forged); code != http.StatusForbidden {
			t.Fatalf("delete through the gateway: %d", code)
		}
		for _, p := range []struct{ method, path string }{{"PUT", "/v1/packages/x/1/linux/amd64"}, {"PUT", "/v1/instructions"}, {"GET", "/debug"}} {
			if code, _ := status(t, vm, p.method, gw+p.path, strings.NewReader("{}"), nil); code != http.StatusForbidden {
				t.Errorf("%s %s through the gateway: %d, want 403", p.method, p.path, code)
			}
		}
	})

	t.Run("another tenant's private package", func(t *testing.T) {
		for _, u := range []string{blobURL(gw, theirs), strings.TrimSuffix(blobURL(gw, theirs), "/blob")} {
			if code, body := status(t, vm, "GET", u, nil, nil); code != http.StatusNotFound || strings.Contains(body, "secret") {
				t.Fatalf("GET %s: %d %s", u, code, body)
			}
		}
		if code, body := status(t, vm, "GET", blobURL(gw, mine), nil, nil); code != 200 || body == "" {
			t.Fatalf("own package: %d", code)
		}
		// The workflow refuses it before any instruction exists.
		run, err := drift.New(c).StartInstall(context.Background(), workflows.InstallInput{Tenant: "acme", VM: "vm-x", Address: n.VMAddr, Package: theirs, Node: nd.Node, Netns: n.Tenant})
		if err != nil {
			t.Fatal(err)
		}
		expectFailure(t, context.Background(), run, "UnknownPackage")
	})

	t.Run("bad signature", func(t *testing.T) {
		// Straight to the repository on the management network, as a
		// compromised host there would.
		host := http.DefaultClient
		for name, hdr := range map[string]map[string]string{
			"wrong secret":   {repo.HeaderTenant: "globex", repo.HeaderClient: n.VMAddr, repo.HeaderSignature: repo.Sign([]byte("guess"), "globex", n.VMAddr)},
			"other client":   {repo.HeaderTenant: "globex", repo.HeaderClient: "10.1.1.1", repo.HeaderSignature: repo.Sign(nd.Secret, "globex", n.VMAddr)},
			"no signature":   {repo.HeaderTenant: "globex", repo.HeaderClient: n.VMAddr},
			"garbage":        {repo.HeaderTenant: "globex", repo.HeaderSignature: "zz"},
			"token + tenant": {repo.HeaderTenant: "globex", "Authorization": "Bearer " + nd.Token},
			"nothing":        {},
		} {
			if code, _ := status(t, host, "GET", blobURL(nd.RepoURL, theirs), nil, hdr); code != http.StatusUnauthorized {
				t.Errorf("%s: %d, want 401", name, code)
			}
		}
	})

	t.Run("path traversal in a name", func(t *testing.T) {
		admin := map[string]string{"Authorization": "Bearer " + nd.Token}
		blob, sum := tarGz(t, entry{"x", "x"})
		for _, name := range []string{"..%2F..%2Fevil", "..%2Fblobs", "%2E%2E", ".hidden", "a%00b", "UPPER"} {
			code, body := status(t, http.DefaultClient, "PUT", nd.RepoURL+"/v1/packages/"+name+"/1.0/linux/amd64?public=true&sha256="+sum, bytes.NewReader(blob), admin)
			if code != http.StatusBadRequest && code != http.StatusNotFound && code != http.StatusMovedPermanently {
				t.Errorf("upload %q: %d %s", name, code, body)
			}
			if code == http.StatusCreated {
				t.Fatalf("upload %q accepted", name)
			}
		}
		if code, _ := status(t, http.DefaultClient, "PUT", nd.RepoURL+"/v1/packages/ok/1.0/linux/amd64?public=true&hook=..%2F..%2Fbin%2Fsh&sha256="+sum, bytes.NewReader(blob), admin); code != http.StatusBadRequest {
			t.Errorf("hook outside the package: %d", code)
		}
		if code, _ := status(t, vm, "GET", gw+"/v1/packages/..%2F..%2Fetc/1.0/linux/amd64/blob", nil, nil); code != http.StatusForbidden {
			t.Errorf("traversal through the gateway: %d", code)
		}
	})

	t.Run("registrations", func(t *testing.T) {
		// Names from the VM reach the inventory's validator, never a 5xx.
		for _, body := range []string{`{"name":"vm-ü"}`, `{"name":"../vm"}`, `{"name":"` + strings.Repeat("v", 300) + `"}`,
			`{"name":"vm-a","labels":{"Role":"web"}}`, `{"name":"vm-a","labels":{"role":"a b"}}`, `{"name":"vm-\u0000"}`, `not json`} {
			if code, msg := status(t, vm, "POST", gw+"/v1/register", strings.NewReader(body), nil); code != http.StatusBadRequest {
				t.Errorf("register %.40s: %d %s", body, code, msg)
			}
		}
		if code, msg := status(t, vm, "POST", gw+"/v1/register", strings.NewReader(`{"name":"vm-a","labels":{"role":"web"}}`), nil); code != http.StatusOK {
			t.Fatalf("register: %d %s", code, msg)
		}
		// The same address under another name: only the admin may do
		// that; the inventory shows the refusal.
		if code, msg := status(t, vm, "POST", gw+"/v1/register", strings.NewReader(`{"name":"vm-b"}`), nil); code != http.StatusOK {
			t.Fatalf("another name from the same address: %d %s", code, msg)
		}
		v := waitInventory(t, c, "vm-b refused", func(v workflows.InventoryView) bool { return len(v.Refused) == 1 })
		if len(v.VMs) != 1 || v.VMs[0].Name != "vm-a" || v.Refused[0].Name != "vm-b" || !strings.Contains(v.Refused[0].Reason, "is VM vm-a") {
			t.Fatalf("inventory %+v", v)
		}
	})

	t.Run("oversized upload", func(t *testing.T) {
		big := bytes.Repeat([]byte("x"), maxBlob+1)
		sum := sha256.Sum256(big)
		_, err := nd.Admin.Push(context.Background(), repo.Ref{Name: "big", Version: "1", Platform: "linux/amd64"}, hex.EncodeToString(sum[:]), bytes.NewReader(big), repo.PushOptions{Public: true})
		if se := (*repo.StatusError)(nil); !errors.As(err, &se) || se.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("oversized upload: %v, want 413", err)
		}
		// Without a Content-Length the stream is cut at the limit.
		_, err = nd.Admin.Push(context.Background(), repo.Ref{Name: "big", Version: "2", Platform: "linux/amd64"}, hex.EncodeToString(sum[:]), io.MultiReader(bytes.NewReader(big)), repo.PushOptions{Public: true})
		if se := (*repo.StatusError)(nil); !errors.As(err, &se) || se.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("oversized streamed upload: %v, want 413", err)
		}
	})

	t.Run("corrupted upload", func(t *testing.T) {
		blob, _ := tarGz(t, entry{"x", "x"})
		wrong := strings.Repeat("0", 64)
		_, err := nd.Admin.Push(context.Background(), repo.Ref{Name: "corrupt", Version: "1", Platform: "linux/amd64"}, wrong, bytes.NewReader(blob), repo.PushOptions{Public: true})
		if se := (*repo.StatusError)(nil); !errors.As(err, &se) || se.Status != http.StatusUnprocessableEntity {
			t.Fatalf("sha256 mismatch on upload: %v, want 422", err)
		}
	})

	// Nothing the refused uploads carried reached the store or beside it.
	if got := filesUnder(t, filepath.Join(store, "blobs")); !slices.Equal(got, blobsBefore) {
		t.Errorf("blobs changed: %v → %v", blobsBefore, got)
	}
	if got := filesUnder(t, filepath.Dir(store)); !slices.Equal(got, outside) {
		t.Errorf("files beside the store changed: %v → %v", outside, got)
	}
	if tmp := filesUnder(t, filepath.Join(store, "tmp")); len(tmp) != 0 {
		t.Errorf("uploads left in tmp: %v", tmp)
	}

	t.Run("corrupted blob is not installed", func(t *testing.T) {
		ref := repo.Ref{Name: "flipped", Version: "1.0", Platform: "linux/amd64"}
		p := nd.push(t, ref, repo.PushOptions{Public: true}, entry{"bin/tool", "good"})
		corrupt(t, filepath.Join(store, "blobs", p.SHA256))
		prefix := filepath.Join(t.TempDir(), "prefix")
		st := installOnce(t, c, n, nd, ref, prefix)
		if len(st.Reports) != 1 || st.Reports[0].OK || !strings.Contains(st.Reports[0].Error, "sha256 mismatch") {
			t.Fatalf("reports %+v", st.Reports)
		}
		expectNothingInstalled(t, prefix)
	})

	t.Run("archive escaping the prefix is not installed", func(t *testing.T) {
		ref := repo.Ref{Name: "escape", Version: "1.0", Platform: "linux/amd64"}
		nd.push(t, ref, repo.PushOptions{Public: true}, entry{"ok.txt", "fine"}, entry{"../../escaped.txt", "gotcha"})
		root := t.TempDir()
		prefix := filepath.Join(root, "a", "prefix")
		st := installOnce(t, c, n, nd, ref, prefix)
		if len(st.Reports) != 1 || st.Reports[0].OK || !strings.Contains(st.Reports[0].Error, "leaves the install dir") {
			t.Fatalf("reports %+v", st.Reports)
		}
		expectNothingInstalled(t, prefix)
		for _, f := range filesUnder(t, root) {
			if !strings.HasPrefix(f, "a/prefix/.drift/report-") {
				t.Errorf("written: %s", f)
			}
		}
	})
}

// installOnce runs an install with one attempt and the agent in the VM,
// and returns the failed install's state.
func installOnce(t *testing.T, tc client.Client, n *network, nd *node, ref repo.Ref, prefix string) workflows.InstallState {
	t.Helper()
	harness.Binaries(t) // built before the install waits
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := drift.New(tc).StartInstall(ctx, workflows.InstallInput{Tenant: "acme", VM: "vm-" + ref.Name, Address: n.VMAddr, Package: ref,
		Node: nd.Node, Netns: n.Tenant, Attempts: 1, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	waitPhase(t, tc, run.GetID(), "waiting")
	runAgent(t, n, nd, prefix)
	var appErr *temporal.ApplicationError
	if err := run.Get(ctx, nil); !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeInstallFailed {
		t.Fatalf("want InstallFailed, got %v", err)
	}
	st, err := drift.New(tc).InstallStatus(ctx, run.GetID())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func corrupt(t *testing.T, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// expectNothingInstalled: the prefix holds only the agent's own state.
func expectNothingInstalled(t *testing.T, prefix string) {
	t.Helper()
	for _, f := range filesUnder(t, prefix) {
		if !strings.HasPrefix(f, ".drift/report-") {
			t.Errorf("installed anyway: %s", f)
		}
	}
}
