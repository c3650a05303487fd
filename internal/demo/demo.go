// Package demo is drift's main job on the embedded default: it builds the
// example app into an image in the center registry and walks a mobility
// session across the example topology, saying what happens.
package demo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgedrift/drift/internal/image"
)

// HelloPackage is the example app's Go package.
const HelloPackage = "github.com/edgedrift/drift/deploy/examples/apps/hello"

// Platforms the example image is built for.
var Platforms = []string{"amd64", "loong64"}

// BuildHello compiles the example app statically for arch with the Go
// toolchain, from the drift module at moduleDir, and returns the binary.
func BuildHello(ctx context.Context, moduleDir, arch, version string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "drift-hello")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "hello")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, HelloPackage)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build hello for %s: %v\n%s", arch, err, b)
	}
	return os.ReadFile(out)
}

// HelloImage builds the example app for every platform into one image
// index, pushes it to registry as hello:<version> and returns it pinned by
// digest. binary supplies each platform's executable.
func HelloImage(ctx context.Context, registry, version string, binary func(arch string) ([]byte, error)) (string, error) {
	var imgs []v1.Image
	for _, arch := range Platforms {
		bin, err := binary(arch)
		if err != nil {
			return "", err
		}
		img, err := image.Build(v1.Platform{OS: "linux", Architecture: arch},
			[]image.File{{Path: "/hello", Mode: 0o755, Data: bin}},
			image.Config{Entrypoint: []string{"/hello"}, Env: []string{"PORT=8080"}, Ports: []int{8080}})
		if err != nil {
			return "", err
		}
		imgs = append(imgs, img)
	}
	idx, err := image.Index(imgs...)
	if err != nil {
		return "", err
	}
	return image.Push(ctx, registry+"/hello:"+version, idx)
}
