package repo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func signedRepo(t *testing.T, dir string, key ed25519.PrivateKey, register RegisterFunc) (*Server, *Client, string) {
	t.Helper()
	srv, err := New(Options{Dir: dir, AdminToken: "admin", Secret: secret, SigningKey: key, Register: register})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return srv, &Client{URL: hs.URL, Token: "admin"}, hs.URL
}

// Every entry carries the repository's signature over what decides what a
// VM runs; changing any of it breaks the signature.
func TestEntriesAreSigned(t *testing.T) {
	repoKey := newKey(t)
	_, c, _ := signedRepo(t, t.TempDir(), repoKey, nil)
	blob := []byte("tool")
	p, err := c.Push(context.Background(), Ref{Name: "tool", Version: "1.0.0", Platform: "linux/amd64"}, digest(blob), bytes.NewReader(blob),
		PushOptions{Public: true, Hook: "install.sh", Health: "check.sh"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Signatures) != 1 || p.Signatures[0].By != ByRepository || p.Signatures[0].KeyID != KeyID(pub(repoKey)) {
		t.Fatalf("signatures %+v", p.Signatures)
	}
	if err := Verify(p, []ed25519.PublicKey{pub(repoKey)}); err != nil {
		t.Fatal(err)
	}
	other := newKey(t)
	if err := Verify(p, []ed25519.PublicKey{pub(other)}); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("untrusted key: %v", err)
	}
	for name, tamper := range map[string]func(*Package){
		"sha256":   func(p *Package) { p.SHA256 = strings.Repeat("0", 64) },
		"size":     func(p *Package) { p.Size++ },
		"hook":     func(p *Package) { p.Hook = "evil.sh" },
		"health":   func(p *Package) { p.Health = "" },
		"version":  func(p *Package) { p.Version = "1.0.1" },
		"platform": func(p *Package) { p.Platform = "linux/arm64" },
		"sig": func(p *Package) {
			p.Signatures = []Signature{{KeyID: p.Signatures[0].KeyID, By: ByRepository, Sig: "AAAA"}}
		},
		"none": func(p *Package) { p.Signatures = nil },
	} {
		q := p
		q.Signatures = append([]Signature(nil), p.Signatures...)
		tamper(&q)
		if err := Verify(q, []ed25519.PublicKey{pub(repoKey)}); !errors.Is(err, ErrUntrusted) {
			t.Errorf("tampered %s verified: %v", name, err)
		}
	}
}

// A publisher's signature is checked on upload and kept beside the
// repository's; one that does not cover the upload is refused and leaves
// nothing.
func TestPublisherSignature(t *testing.T) {
	srv, c, _ := signedRepo(t, t.TempDir(), newKey(t), nil)
	publisher := newKey(t)
	blob := []byte("signed by its publisher")
	ref := Ref{Name: "tool", Version: "2.0.0", Platform: "linux/amd64"}
	p, err := c.Push(context.Background(), ref, digest(blob), bytes.NewReader(blob), PushOptions{Public: true, Hook: "install.sh", Publisher: publisher, Size: int64(len(blob))})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Signatures) != 2 || p.Signatures[0].By != ByPublisher {
		t.Fatalf("signatures %+v", p.Signatures)
	}
	if err := Verify(p, []ed25519.PublicKey{pub(publisher)}); err != nil {
		t.Fatalf("publisher's key alone: %v", err)
	}
	// Signed for another size (or hook): refused, nothing stored.
	ref.Version = "2.0.1"
	_, err = c.Push(context.Background(), ref, digest(blob), bytes.NewReader(blob), PushOptions{Public: true, Publisher: publisher, Size: 1})
	if statusOf(err) != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("wrong publisher signature: %v", err)
	}
	if _, err := srv.Store().Get(ref); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused upload indexed: %v", err)
	}
	if tmp, _ := os.ReadDir(filepath.Join(srv.store.dir, "tmp")); len(tmp) != 0 {
		t.Fatalf("left in tmp: %v", tmp)
	}
	if _, err := c.Push(context.Background(), ref, digest(blob), bytes.NewReader(blob), PushOptions{Public: true, Publisher: publisher}); statusOf(err) != http.StatusUnprocessableEntity {
		t.Fatalf("publisher signature without size: %v", err)
	}
}

// Entries indexed before the repository had a key are signed when it
// starts with one.
func TestStartSignsOlderEntries(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Options{Dir: dir, AdminToken: "admin", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	blob := []byte("old")
	ref := Ref{Name: "old", Version: "1", Platform: "linux/amd64"}
	if _, err := (&Client{URL: hs.URL, Token: "admin"}).Push(context.Background(), ref, digest(blob), bytes.NewReader(blob), PushOptions{Public: true}); err != nil {
		t.Fatal(err)
	}
	hs.Close()
	srv.Close()
	key := newKey(t)
	srv2, _, _ := signedRepo(t, dir, key, nil)
	p, err := srv2.Store().Get(ref)
	if err != nil || Verify(p, []ed25519.PublicKey{pub(key)}) != nil {
		t.Fatalf("old entry after restart with a key: %+v %v", p, err)
	}
}

// Versions are immutable: a removed version comes back only with the
// content it had.
func TestRemovedVersionKeepsItsContent(t *testing.T) {
	_, c, _ := signedRepo(t, t.TempDir(), newKey(t), nil)
	ctx := context.Background()
	ref := Ref{Name: "tool", Version: "1.0.0", Platform: "linux/amd64"}
	first, second := []byte("first"), []byte("second")
	if _, err := c.Push(ctx, ref, digest(first), bytes.NewReader(first), PushOptions{Public: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, ref); err != nil {
		t.Fatal(err)
	}
	_, err := c.Push(ctx, ref, digest(second), bytes.NewReader(second), PushOptions{Public: true})
	if statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "immutable") {
		t.Fatalf("other content under a removed version: %v", err)
	}
	if _, err := c.Push(ctx, ref, digest(first), bytes.NewReader(first), PushOptions{Public: true}); err != nil {
		t.Fatalf("the same content again: %v", err)
	}
	if _, err := c.Push(ctx, Ref{Name: "tool", Version: "latest", Platform: "linux/amd64"}, digest(first), bytes.NewReader(first), PushOptions{Public: true}); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("version latest: %v", err)
	}
}

// An uninstall needs no package in the repository (it may be gone); a bad
// action is refused.
func TestUninstallInstruction(t *testing.T) {
	_, c, _ := signedRepo(t, t.TempDir(), newKey(t), nil)
	ctx := context.Background()
	in := Instruction{ID: "w#1", WorkflowID: "w", Tenant: "acme", Client: "10.0.0.2", Action: ActionUninstall, Package: Package{Ref: Ref{Name: "gone", Platform: "linux/amd64"}}}
	got, err := c.PostInstruction(ctx, in)
	if err != nil || got.Action != ActionUninstall || got.Package.Name != "gone" {
		t.Fatalf("uninstall: %+v %v", got, err)
	}
	in.Action = "explode"
	if _, err := c.PostInstruction(ctx, in); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("bad action: %v", err)
	}
	in.Action, in.Package.Name = ActionUninstall, "../etc"
	if _, err := c.PostInstruction(ctx, in); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("bad name: %v", err)
	}
	in.Action, in.Package.Name = ActionInstall, "gone"
	if _, err := c.PostInstruction(ctx, in); statusOf(err) != http.StatusBadRequest && statusOf(err) != http.StatusNotFound {
		t.Fatalf("install of no version: %v", err)
	}
}

// A VM registers through the gateways: the identity is the signed one,
// whatever the body says; the inventory's refusals keep their meaning.
func TestRegister(t *testing.T) {
	var got []Registration
	answer := error(nil)
	_, _, url := signedRepo(t, t.TempDir(), newKey(t), func(_ context.Context, r Registration) error {
		got = append(got, r)
		return answer
	})
	body := `{"name":"vm-1","labels":{"role":"web"},"tenant":"globex","client":"10.9.9.9"}`
	if code, _, _ := asTenant(t, "POST", url+"/v1/register", "acme", "10.0.0.2", strings.NewReader(body)); code != http.StatusOK {
		t.Fatalf("register: %d", code)
	}
	if len(got) != 1 || got[0].Tenant != "acme" || got[0].Client != "10.0.0.2" || got[0].Labels["role"] != "web" {
		t.Fatalf("delivered %+v", got)
	}
	for _, c := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("vm-1 is at 10.0.0.3: %w", ErrConflict), http.StatusConflict},
		{fmt.Errorf("name: %w", ErrInvalid), http.StatusBadRequest},
		{fmt.Errorf("inventory/acme did not answer: %w", ErrUnavailable), http.StatusServiceUnavailable},
		{errors.New("boom"), http.StatusBadGateway},
	} {
		answer = c.err
		if code, _, _ := asTenant(t, "POST", url+"/v1/register", "acme", "10.0.0.2", strings.NewReader(body)); code != c.want {
			t.Errorf("%v: %d, want %d", c.err, code, c.want)
		}
	}
	req, _ := http.NewRequest("POST", url+"/v1/register", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("admin registered a VM: %d", resp.StatusCode)
	}
}

func TestKeyFiles(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys", "signing.key")
	key, err := GenerateKey(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode())
	}
	data, _ := os.ReadFile(file)
	back, err := ParsePrivateKey(data)
	if err != nil || !back.Equal(key) {
		t.Fatalf("parse: %v", err)
	}
	pubs, err := LoadPublicKeys(file + ".pub")
	if err != nil || len(pubs) != 1 || !pubs[0].Equal(pub(key)) {
		t.Fatalf("public: %v %v", pubs, err)
	}
	if _, err := GenerateKey(file); err == nil {
		t.Fatal("an existing key was overwritten")
	}
	if _, err := ParsePrivateKey([]byte("garbage")); err == nil {
		t.Fatal("garbage parsed")
	}
	if _, err := ParsePublicKeys(data); err == nil {
		t.Fatal("a private key passed as public")
	}
}
