package image

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/edgedrift/drift/internal/registry"
)

// A registry with TLS (a self-signed CA) and htpasswd users: drift pushes
// and resolves with the right password, and a wrong one fails with
// ErrUnauthorized naming the user and never the password.
func TestRegistryWithTLSAndPassword(t *testing.T) {
	ctx := context.Background()
	reg, ca, err := registry.StartSecure(ctx, t.TempDir(), map[string]string{"ci": "right-secret-123"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	img := mustBuild(t, amd64, files, config)
	ref := reg.Host() + "/auth/hello:v1"

	// No CA yet: drift cannot reach it (it never skips certificate checks).
	if _, err := Push(ctx, ref, img); err == nil {
		t.Fatal("push to a registry without credentials or trust succeeded")
	}
	if err := TrustCA(reg.Host(), ca); err != nil {
		t.Fatal(err)
	}
	_, err = Push(ctx, ref, img)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "no credentials") {
		t.Fatalf("anonymous push: want ErrUnauthorized naming the missing credentials, got %v", err)
	}

	SetCredentials(reg.Host(), "ci", "wrong-secret-456")
	_, err = Push(ctx, ref, img)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), `user "ci"`) {
		t.Fatalf("wrong password: want ErrUnauthorized naming user ci, got %v", err)
	}
	if strings.Contains(err.Error(), "wrong-secret-456") {
		t.Fatalf("the error carries the password: %v", err)
	}

	SetCredentials(reg.Host(), "ci", "right-secret-123")
	pinned, err := Push(ctx, ref, img)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(ctx, ref)
	if err != nil || got != pinned {
		t.Fatalf("resolve %s = %s, %v; pushed %s", ref, got, err, pinned)
	}
	if a, err := AuthFor(ref); err != nil || a.Username != "ci" || a.Password != "right-secret-123" {
		t.Fatalf("AuthFor = %q, %v", a.Username, err)
	}
}
