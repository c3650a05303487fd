package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/repo"
)

// testRepo serves a repository for the test and returns its admin client.
func testRepo(t *testing.T) *repo.Client {
	t.Helper()
	srv, err := repo.New(repo.Options{Dir: t.TempDir(), AdminToken: "admin", Secret: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return &repo.Client{URL: hs.URL, Token: "admin"}
}

// push uploads content as ref, visible to tenants.
func push(t *testing.T, rc *repo.Client, ref repo.Ref, content string, tenants ...string) {
	t.Helper()
	sum := sha256.Sum256([]byte(content))
	if _, err := rc.Push(context.Background(), ref, hex.EncodeToString(sum[:]), strings.NewReader(content), repo.PushOptions{Tenants: tenants}); err != nil {
		t.Fatal(err)
	}
}

// Refusals no retry can fix come back as typed non-retryable errors.
func TestInstallErrorsAreClassified(t *testing.T) {
	rc := testRepo(t)
	ref := repo.Ref{Name: "tool", Version: "1", Platform: "linux/amd64"}
	push(t, rc, ref, "x", "acme")
	sum := sha256.Sum256([]byte("x"))
	mgmt, _ := gateway.NewManagement(gateway.ManagementOptions{Repo: rc.URL, Secret: []byte("s")})
	node, _ := gateway.NewNode(t.TempDir(), mgmt, nil)
	defer node.Close()
	a := &Install{Node: node, Repo: rc}
	ctx := context.Background()

	in := repo.Instruction{ID: "w#1", WorkflowID: "w", Tenant: "globex", Client: "10.0.0.2", Package: repo.Package{Ref: ref}}
	_, err := a.PostInstruction(ctx, in)
	expectType(t, err, ErrTypeUnknownPackage)
	in.Tenant = "Not A Tenant"
	_, err = a.PostInstruction(ctx, in)
	expectType(t, err, ErrTypeInvalidInstall)
	in.Tenant = "acme"
	if got, err := a.PostInstruction(ctx, in); err != nil || got.Package.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("post: %+v %v", got, err)
	}
	_, err = a.EnsureGateway(ctx, gateway.PairConfig{Tenant: "../x"})
	expectType(t, err, ErrTypeInvalidInstall)
}

func expectType(t *testing.T, err error, typ string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != typ || !appErr.NonRetryable() {
		t.Fatalf("want non-retryable %s, got %v", typ, err)
	}
}

// A rollout's version is chosen among those the tenant may see.
func TestResolvePackage(t *testing.T) {
	rc := testRepo(t)
	for _, v := range []struct{ version, tenant string }{{"1.0.0", "acme"}, {"1.4.0", "acme"}, {"1.9.0", "globex"}, {"2.0.0", "acme"}} {
		push(t, rc, repo.Ref{Name: "tool", Version: v.version, Platform: "linux/amd64"}, v.version, v.tenant)
	}
	a := &Install{Repo: rc}
	for constraint, want := range map[string]string{"^1.2": "1.4.0", "latest": "2.0.0", "1.0.0": "1.0.0", "~1.0": "1.0.0"} {
		p, err := a.ResolvePackage(context.Background(), Resolve{Tenant: "acme", Name: "tool", Version: constraint, Platform: "linux/amd64"})
		if err != nil || p.Version != want || p.SHA256 == "" {
			t.Errorf("%s: %s %v, want %s", constraint, p.Version, err, want)
		}
	}
	_, err := a.ResolvePackage(context.Background(), Resolve{Tenant: "acme", Name: "tool", Version: "1.9.0", Platform: "linux/amd64"})
	expectType(t, err, ErrTypeUnknownPackage)
	_, err = a.ResolvePackage(context.Background(), Resolve{Tenant: "acme", Name: "tool", Version: ">= x", Platform: "linux/amd64"})
	expectType(t, err, ErrTypeInvalidInstall)
}
