package image

import (
	"context"
	"errors"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgedrift/drift/internal/registry"
)

var (
	amd64   = v1.Platform{OS: "linux", Architecture: "amd64"}
	loong64 = v1.Platform{OS: "linux", Architecture: "loong64"}
	files   = []File{{Path: "/app/hello", Mode: 0o755, Data: []byte("#!binary")}, {Path: "/etc/hello.conf", Mode: 0o644, Data: []byte("x=1")}}
	config  = Config{Entrypoint: []string{"/app/hello"}, Env: []string{"A=b"}, Ports: []int{8080}}
)

func TestBuildIsReproducible(t *testing.T) {
	a := digest(t, mustBuild(t, amd64, files, config))
	// Same input in another order: same digest.
	b := digest(t, mustBuild(t, amd64, []File{files[1], files[0]}, config))
	if a != b {
		t.Fatalf("same files gave %s and %s", a, b)
	}
	changed := append([]File(nil), files...)
	changed[0].Data = []byte("#!other")
	if c := digest(t, mustBuild(t, amd64, changed, config)); c == a {
		t.Fatal("different content gave the same digest")
	}
	if d := digest(t, mustBuild(t, loong64, files, config)); d == a {
		t.Fatal("different platform gave the same digest")
	}
}

func TestBuildRejectsEscapingPaths(t *testing.T) {
	for _, p := range []string{"../etc/passwd", "/a/../../b", "/"} {
		if _, err := Build(amd64, []File{{Path: p, Mode: 0o644}}, config); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
}

func TestPushIndexAndReadBack(t *testing.T) {
	ctx := context.Background()
	reg, err := registry.Start(ctx, t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	idx, err := Index(mustBuild(t, amd64, files, config), mustBuild(t, loong64, files, config))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := Push(ctx, reg.Host()+"/demo/hello:v1", idx)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if ref != reg.Host()+"/demo/hello@"+want.String() {
		t.Fatalf("push returned %q", ref)
	}

	r, err := ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	m, err := got.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, d := range m.Manifests {
		platforms = append(platforms, d.Platform.String())
	}
	if len(platforms) != 2 || platforms[0] != "linux/amd64" || platforms[1] != "linux/loong64" {
		t.Fatalf("index platforms = %v", platforms)
	}
	img, err := remote.Image(r, remote.WithPlatform(loong64))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "loong64" || cf.Config.Entrypoint[0] != "/app/hello" {
		t.Fatalf("config = %+v", cf.Config)
	}
	if _, ok := cf.Config.ExposedPorts["8080/tcp"]; !ok {
		t.Fatalf("exposed ports = %v", cf.Config.ExposedPorts)
	}
}

func TestParseReference(t *testing.T) {
	for ref, ok := range map[string]bool{
		"127.0.0.1:5000/hello:v1": true,
		"localhost:5000/a/b@sha256:0123456789012345678901234567890123456789012345678901234567890123": true,
		"registry.example/x:1":         true,
		"UPPER/case:1":                 false,
		"127.0.0.1:5000/hello:bad tag": false,
		"":                             false,
	} {
		if _, err := ParseReference(ref); (err == nil) != ok {
			t.Errorf("ParseReference(%q) err=%v, want ok=%v", ref, err, ok)
		}
	}
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.0.0.2": true, "localhost": true, "localhost:5000": true, "[::1]:5000": true, "[::1]": true,
		"10.0.0.1:5000": false, "registry.example": false, "[fd00::1]:5000": false,
	} {
		if IsLoopback(host) != want {
			t.Errorf("IsLoopback(%q) = %v", host, !want)
		}
	}
}

func mustBuild(t *testing.T, p v1.Platform, f []File, c Config) v1.Image {
	t.Helper()
	img, err := Build(p, f, c)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestResolveAndCopy(t *testing.T) {
	ctx := context.Background()
	src, err := registry.Start(ctx, t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	center, err := registry.Start(ctx, t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer center.Close()

	idx, err := Index(mustBuild(t, amd64, files, config), mustBuild(t, loong64, files, config))
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := Push(ctx, src.Host()+"/team/hello:v2", idx)
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := Resolve(ctx, src.Host()+"/team/hello:v2")
	if err != nil || resolved != pushed {
		t.Fatalf("Resolve = %q, %v; want %q", resolved, err, pushed)
	}
	if _, err := Resolve(ctx, src.Host()+"/team/missing:v1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing image: %v", err)
	}

	copied, err := Copy(ctx, pushed, center.Host())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if copied != center.Host()+"/team/hello@"+want.String() {
		t.Fatalf("Copy = %q", copied)
	}
	if again, err := Resolve(ctx, copied); err != nil || again != copied {
		t.Fatalf("copy not in center registry: %q %v", again, err)
	}
	if _, err := Copy(ctx, src.Host()+"/team/missing:v1", center.Host()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("copy of missing image: %v", err)
	}
}
