package activities

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/registry"
)

func TestEnsureImageStocksTheCenterRegistry(t *testing.T) {
	ctx := context.Background()
	start := func() *registry.Server {
		r, err := registry.Start(ctx, t.TempDir(), "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	center, elsewhere := start(), start()
	img, err := image.Build(v1.Platform{OS: "linux", Architecture: "amd64"}, []image.File{{Path: "/app", Mode: 0o755, Data: []byte("x")}}, image.Config{Entrypoint: []string{"/app"}})
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := image.Push(ctx, elsewhere.Host()+"/team/app:v1", img)
	if err != nil {
		t.Fatal(err)
	}
	a := &Images{Center: center.Host()}

	got, err := a.EnsureImage(ctx, elsewhere.Host()+"/team/app:v1")
	digest := pushed[strings.Index(pushed, "@"):]
	if err != nil || got != center.Host()+"/team/app"+digest {
		t.Fatalf("EnsureImage = %q, %v; want it copied to the center registry", got, err)
	}
	if again, err := a.EnsureImage(ctx, got); err != nil || again != got {
		t.Fatalf("image already in the center: %q, %v", again, err)
	}
	if _, err := a.EnsureImage(ctx, "Not An Image"); errType(err) != ErrTypeInvalidImage {
		t.Fatalf("malformed reference: %v", err)
	}
	if _, err := a.EnsureImage(ctx, elsewhere.Host()+"/team/missing:v1"); errType(err) != ErrTypeUnknownImage {
		t.Fatalf("missing image: %v", err)
	}
}
