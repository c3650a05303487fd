package image

import (
	"context"
	"errors"
	goruntime "runtime"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgedrift/drift/internal/registry"
)

// A plugin layered over a release keeps the release's files and config and
// adds the plugin's files on top.
func TestLayerStacksPluginOverRelease(t *testing.T) {
	ctx := context.Background()
	reg, err := registry.Start(ctx, t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	pf := v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}
	push := func(ref string, files []File, cfg Config) {
		img, err := Build(pf, files, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Push(ctx, ref, img); err != nil {
			t.Fatal(err)
		}
	}
	base, plugin := reg.Host()+"/cinder:25.0.0", reg.Host()+"/drivers/acme:2.0.0"
	push(base, []File{{Path: "/usr/bin/component", Mode: 0o755, Data: []byte("bin")}}, Config{Entrypoint: []string{"/usr/bin/component"}})
	push(plugin, []File{{Path: "/etc/component/drivers/acme.json", Mode: 0o644, Data: []byte("{}")}}, Config{})

	ref, err := Layer(ctx, base, plugin, reg.Host()+"/cinder-drivers:25.0.0-acme-2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := ParseReference(ref)
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	cf, _ := img.ConfigFile()
	if len(layers) != 2 || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/usr/bin/component" {
		t.Fatalf("layered image: %d layers, entrypoint %v", len(layers), cf.Config.Entrypoint)
	}
	if _, err := Layer(ctx, base, reg.Host()+"/drivers/none:1", reg.Host()+"/x:y"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing plugin: %v, want ErrNotFound", err)
	}
}
