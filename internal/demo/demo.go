// Package demo holds what drift's demo and tests share about the example
// apps: building their programs into images, and their source as a git
// repository of its own for the pipeline to build.
package demo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgedrift/drift/internal/image"
)

// Example is one program of the example apps, built into an image of its
// own.
type Example struct {
	Package string // its Go package in drift's module
	Name    string // the image repository and the binary's name in the image
	Port    int    // the port it listens on (baked in as PORT)
}

// The example programs: hello, and the two services of counter.
var (
	Hello        = Example{Package: "github.com/edgedrift/drift/deploy/examples/apps/hello", Name: "hello", Port: 8080}
	CounterWeb   = Example{Package: "github.com/edgedrift/drift/deploy/examples/apps/counter/web", Name: "counter-web", Port: 8080}
	CounterStore = Example{Package: "github.com/edgedrift/drift/deploy/examples/apps/counter/store", Name: "counter-store", Port: 8081}
)

// Platforms the example images are built for.
var Platforms = []string{"amd64", "loong64"}

// Build compiles an example program statically for arch with the Go
// toolchain, from the drift module at moduleDir, and returns the binary.
func Build(ctx context.Context, moduleDir string, ex Example, arch, version string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "drift-"+ex.Name)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, ex.Name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, ex.Package)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s for %s: %v\n%s", ex.Name, arch, err, b)
	}
	return os.ReadFile(out)
}

// Image builds an example program for every platform into one image
// index, pushes it to registry as <name>:<version> and returns it pinned by
// digest. binary supplies each platform's executable.
func Image(ctx context.Context, registry string, ex Example, version string, binary func(arch string) ([]byte, error)) (string, error) {
	var imgs []v1.Image
	for _, arch := range Platforms {
		bin, err := binary(arch)
		if err != nil {
			return "", err
		}
		img, err := image.Build(v1.Platform{OS: "linux", Architecture: arch},
			[]image.File{{Path: "/" + ex.Name, Mode: 0o755, Data: bin}},
			image.Config{Entrypoint: []string{"/" + ex.Name}, Env: []string{"PORT=" + strconv.Itoa(ex.Port)}, Ports: []int{ex.Port}})
		if err != nil {
			return "", err
		}
		imgs = append(imgs, img)
	}
	idx, err := image.Index(imgs...)
	if err != nil {
		return "", err
	}
	return image.Push(ctx, registry+"/"+ex.Name+":"+version, idx)
}
