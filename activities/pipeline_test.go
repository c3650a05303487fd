package activities

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/registry"
)

// scriptRepo makes a git repository whose "build" writes a script per
// platform: real git and real shell, no compiler.
func scriptRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(dir, "README"), []byte("tool\n"), 0o644)
	git("add", "-A")
	git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "one")
	return dir
}

func scriptSpec(t *testing.T, repo string) pipelinespec.Spec {
	t.Helper()
	s, err := pipelinespec.Parse([]byte(`
app: tool
repo: `+repo+`
ref: main
build:
  commands: ['mkdir -p out && printf "#!/bin/sh\necho $GOARCH\n" > out/tool']
test:
  commands: ['echo testing; test -e README']
artifacts: [out/tool]
image:
  name: 127.0.0.1:1/tool
  platforms: [linux/amd64, linux/loong64]
deploy:
  targets: [{cloud: fog-north}]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStepsAreReproducible(t *testing.T) {
	ctx := context.Background()
	p := &Pipeline{Center: "127.0.0.1:1", DataDir: t.TempDir()}
	spec := scriptSpec(t, scriptRepo(t))
	var pkgs []Package
	var digests []string
	for _, run := range []string{"r1", "r2"} {
		ref := RunRef{App: "tool", Run: run}
		co, err := p.Clone(ctx, ref, spec)
		if err != nil {
			t.Fatal(err)
		}
		if len(co.Commit) != 40 || len(co.Tree) != 40 || co.BuildKey != spec.BuildKey(co.Tree) {
			t.Fatalf("checkout %+v", co)
		}
		req := StepRequest{Ref: ref, Spec: spec, Checkout: co}
		if _, err := p.Build(ctx, req); err != nil {
			t.Fatal(err)
		}
		logs, err := p.Test(ctx, req)
		if err != nil || !strings.Contains(strings.Join(logs.Tail, "\n"), "testing") {
			t.Fatalf("test: %v, tail %v", err, logs.Tail)
		}
		if len(logs.Tests) != 2 || !logs.Tests[0].Passed || logs.Tests[0].Emulator != "" || !logs.Tests[1].Passed || logs.Tests[1].Emulator != "qemu-loongarch64-static" {
			t.Fatalf("test results %+v: want both platforms passed, loong64 under qemu", logs.Tests)
		}
		pkg, err := p.Package(ctx, ref, spec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(p.runDir(ref), "out")); !os.IsNotExist(err) {
			t.Error("built files kept after packaging")
		}
		digest, err := p.BuildImage(ctx, ImageRequest{Spec: spec, Package: pkg, Tree: co.Tree})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Cleanup(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(p.runDir(ref), "src")); !os.IsNotExist(err) {
			t.Error("checkout kept after Cleanup")
		}
		pkgs, digests = append(pkgs, pkg), append(digests, digest)
	}
	if pkgs[0].SHA256 != pkgs[1].SHA256 || digests[0] != digests[1] {
		t.Fatalf("two runs of one source: packages %s %s, images %s %s", pkgs[0].SHA256, pkgs[1].SHA256, digests[0], digests[1])
	}
	files, err := readPackage(pkgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := string(files["linux-loong64/tool"]); got != "#!/bin/sh\necho loong64\n" {
		t.Errorf("loong64 artifact %q: the build did not see GOARCH", got)
	}
	os.WriteFile(pkgs[0].Path, []byte("tampered"), 0o644)
	if _, err := readPackage(pkgs[0]); err == nil {
		t.Error("a tampered package was read")
	}
}

func TestStepFailuresAreTypedAndCarryTheOutput(t *testing.T) {
	ctx := context.Background()
	p := &Pipeline{Center: "127.0.0.1:1", DataDir: t.TempDir()}
	repo := scriptRepo(t)
	ref := RunRef{App: "tool", Run: "bad"}
	typeOf := func(err error) string {
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) && ae.NonRetryable() {
			return ae.Type()
		}
		return "retryable: " + err.Error()
	}

	spec := scriptSpec(t, repo)
	spec.Ref = "nope"
	if _, err := p.Clone(ctx, ref, spec); typeOf(err) != ErrTypeUnknownRef {
		t.Errorf("unknown ref: %v", err)
	}
	spec = scriptSpec(t, filepath.Join(t.TempDir(), "missing"))
	if _, err := p.Clone(ctx, ref, spec); typeOf(err) != ErrTypeUnreachableRepo {
		t.Errorf("missing repo: %v", err)
	}

	spec = scriptSpec(t, repo)
	co, err := p.Clone(ctx, ref, spec)
	if err != nil {
		t.Fatal(err)
	}
	spec.Test.Commands = []string{"echo '--- FAIL: TestTool'; exit 1"}
	_, err = p.Test(ctx, StepRequest{Ref: ref, Spec: spec, Checkout: co})
	var ae *temporal.ApplicationError
	var logs StepLogs
	if typeOf(err) != ErrTypeTestFailed || !strings.Contains(err.Error(), "--- FAIL: TestTool") || !errors.As(err, &ae) || ae.Details(&logs) != nil || len(logs.Tail) == 0 {
		t.Errorf("failing test: %v (logs %+v)", err, logs)
	}
	if b, err := ReadLog(p.DataDir, ref, "test"); err != nil || !strings.Contains(string(b), "--- FAIL: TestTool") {
		t.Errorf("test log: %v\n%s", err, b)
	}
	spec.Artifacts = []string{"out/missing"}
	if _, err := p.Build(ctx, StepRequest{Ref: ref, Spec: spec, Checkout: co}); typeOf(err) != ErrTypeNoArtifact {
		t.Errorf("missing artifact: %v", err)
	}
	spec.Build.Commands = []string{"exit 3"}
	if _, err := p.Build(ctx, StepRequest{Ref: ref, Spec: spec, Checkout: co}); typeOf(err) != ErrTypeBuildFailed {
		t.Errorf("failing build: %v", err)
	}
}

func TestRepositoryDefaultsToTheCenter(t *testing.T) {
	p := &Pipeline{Center: "center:5000"}
	for name, want := range map[string]string{
		"hello":                    "center:5000/hello",
		"team/hello":               "center:5000/team/hello",
		"127.0.0.1:5000/hello":     "127.0.0.1:5000/hello",
		"registry.example/x/hello": "registry.example/x/hello",
		"localhost/hello":          "localhost/hello",
	} {
		if got := p.repository(name); got != want {
			t.Errorf("%s → %s, want %s", name, got, want)
		}
	}
}

// A test that fails only on loong64 (run with the emulator named) stops the
// step, with amd64's pass and loong64's failure recorded.
func TestALoong64OnlyFailureStopsTheTests(t *testing.T) {
	ctx := context.Background()
	p := &Pipeline{Center: "127.0.0.1:1", DataDir: t.TempDir()}
	spec := scriptSpec(t, scriptRepo(t))
	spec.Test.Commands = []string{`echo "arch=$GOARCH emulator=$DRIFT_EMULATOR goflags=$GOFLAGS"; test "$GOARCH" != loong64`}
	ref := RunRef{App: "tool", Run: "l1"}
	co, err := p.Clone(ctx, ref, spec)
	if err != nil {
		t.Fatal(err)
	}
	logs, err := p.Test(ctx, StepRequest{Ref: ref, Spec: spec, Checkout: co})
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != ErrTypeTestFailed || !strings.Contains(ae.Message(), "test for linux/loong64") {
		t.Fatalf("want TestFailed for linux/loong64, got %v", err)
	}
	var details StepLogs
	if ae.Details(&details) != nil || len(details.Tests) != 2 || !details.Tests[0].Passed || details.Tests[1].Passed {
		t.Fatalf("results in the failure's details %+v", details.Tests)
	}
	if tail := strings.Join(logs.Tail, "\n"); !strings.Contains(tail, "arch=loong64 emulator=qemu-loongarch64-static goflags=-exec=qemu-loongarch64-static") {
		t.Errorf("loong64 tests did not run with the emulator:\n%s", tail)
	}
}

// image.base: scratch by default, drift's base of the host's CA bundle and
// tzdata, or an image from a registry (its platform's entry, config kept).
func TestImageBases(t *testing.T) {
	ctx := context.Background()
	reg, err := registry.Start(ctx, t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	p := &Pipeline{Center: reg.Host(), DataDir: t.TempDir()}
	spec := scriptSpec(t, scriptRepo(t))
	ref := RunRef{App: "tool", Run: "b1"}
	co, err := p.Clone(ctx, ref, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Build(ctx, StepRequest{Ref: ref, Spec: spec, Checkout: co}); err != nil {
		t.Fatal(err)
	}
	pkg, err := p.Package(ctx, ref, spec)
	if err != nil {
		t.Fatal(err)
	}
	layersOf := func(base string) ([]v1.Layer, *v1.ConfigFile, error) {
		s := spec
		s.Image.Base = base
		idx, err := imageOf(ctx, ImageRequest{Spec: s, Package: pkg})
		if err != nil {
			return nil, nil, err
		}
		m, _ := idx.IndexManifest()
		img, _ := idx.Image(m.Manifests[0].Digest)
		cf, _ := img.ConfigFile()
		ls, err := img.Layers()
		return ls, cf, err
	}
	if ls, _, err := layersOf(""); err != nil || len(ls) != 1 {
		t.Fatalf("scratch: %d layers, %v", len(ls), err)
	}
	ls, _, err := layersOf(pipelinespec.BaseDrift)
	if err != nil || len(ls) != 2 {
		t.Fatalf("drift base: %d layers, %v", len(ls), err)
	}
	files := layerFiles(t, ls[0])
	if !bytes.Contains(files["etc/ssl/certs/ca-certificates.crt"], []byte("BEGIN CERTIFICATE")) || len(files["usr/share/zoneinfo/Europe/Paris"]) == 0 {
		t.Errorf("drift base lacks the CA bundle or tzdata (%d files)", len(files))
	}

	var plats []v1.Image
	for _, arch := range []string{"amd64", "loong64"} {
		img, err := image.Build(v1.Platform{OS: "linux", Architecture: arch}, []image.File{{Path: "/etc/base", Mode: 0o644, Data: []byte(arch)}}, image.Config{Env: []string{"BASE=1"}, Entrypoint: []string{"/bin/base"}})
		if err != nil {
			t.Fatal(err)
		}
		plats = append(plats, img)
	}
	both, _ := image.Index(plats...)
	baseRef, err := image.Push(ctx, reg.Host()+"/base:1", both)
	if err != nil {
		t.Fatal(err)
	}
	ls, cf, err := layersOf(baseRef)
	if err != nil || len(ls) != 2 || string(layerFiles(t, ls[0])["etc/base"]) != "amd64" || !slices.Contains(cf.Config.Env, "BASE=1") || cf.Config.Entrypoint[0] != "/tool" {
		t.Fatalf("registry base: %d layers, config %+v, %v", len(ls), cf, err)
	}
	amd64Only, err := image.Push(ctx, reg.Host()+"/base:amd64", plats[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := layersOf(amd64Only); errType(err) != ErrTypeWrongPlatform {
		t.Errorf("a base without loong64: want WrongPlatform, got %v", err)
	}
	if _, _, err := layersOf(reg.Host() + "/nope:1"); errType(err) != ErrTypeUnknownImage {
		t.Errorf("a missing base: want UnknownImage, got %v", err)
	}
}

func layerFiles(t *testing.T, l v1.Layer) map[string][]byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			return out
		}
		out[h.Name], _ = io.ReadAll(tr)
	}
}

// A spec of several images (a compose project) builds once per platform,
// packages each image's artifacts under its service and makes one image
// per service, each with its own files and platforms.
func TestStepsMakeOneImagePerService(t *testing.T) {
	ctx := context.Background()
	p := &Pipeline{Center: "127.0.0.1:1", DataDir: t.TempDir()}
	repo := scriptRepo(t)
	compose := []byte("name: pair\nservices:\n  web:\n    build: .\n    ports: [\"8080:8080\"]\n  worker:\n    build: .\n    expose: [\"9000\"]\n")
	spec, err := pipelinespec.Parse([]byte(`
app: pair
repo: `+repo+`
ref: main
build:
  commands: ['mkdir -p out && echo "web $GOARCH" > out/web && echo "worker $GOARCH" > out/worker']
images:
  - {service: web, name: 127.0.0.1:1/pair-web, artifacts: [out/web], platforms: [linux/amd64, linux/loong64]}
  - {service: worker, name: 127.0.0.1:1/pair-worker, artifacts: [out/worker], platforms: [linux/amd64]}
deploy:
  compose: compose.yaml
  targets: [{cloud: fog-north}]
`), func(string) ([]byte, error) { return compose, nil })
	if err != nil {
		t.Fatal(err)
	}
	ref := RunRef{App: "pair", Run: "r1"}
	co, err := p.Clone(ctx, ref, spec)
	if err != nil {
		t.Fatal(err)
	}
	req := StepRequest{Ref: ref, Spec: spec, Checkout: co}
	if _, err := p.Build(ctx, req); err != nil {
		t.Fatal(err)
	}
	pkg, err := p.Package(ctx, ref, spec)
	if err != nil {
		t.Fatal(err)
	}
	files, err := readPackage(pkg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"web/linux-amd64/web":       "web amd64\n",
		"web/linux-loong64/web":     "web loong64\n",
		"worker/linux-amd64/worker": "worker amd64\n",
	}
	if len(files) != len(want) {
		t.Errorf("package holds %d files, want %d", len(files), len(want))
	}
	for k, v := range want {
		if string(files[k]) != v {
			t.Errorf("package %s = %q, want %q", k, files[k], v)
		}
	}
	digests := map[string]string{}
	for _, svc := range []string{"web", "worker"} {
		idx, err := imageOf(ctx, ImageRequest{Spec: spec, Service: svc, Package: pkg})
		if err != nil {
			t.Fatal(err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if n := len(m.Manifests); (svc == "web") != (n == 2) {
			t.Errorf("%s: %d platforms", svc, n)
		}
		d, _ := idx.Digest()
		digests[svc] = d.String()
	}
	if digests["web"] == digests["worker"] {
		t.Error("two services, one image")
	}
	if _, err := imageOf(ctx, ImageRequest{Spec: spec, Service: "db", Package: pkg}); err == nil {
		t.Error("an image for a service the spec lacks")
	}
}
