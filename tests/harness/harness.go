// Package harness starts the real parts integration tests run against: an
// embedded registry, images of the example app, the Docker Engine and a
// Temporal server. Heavy parts fail the test when missing; they skip only
// when DRIFT_SKIP_HEAVY=1, which CI never sets.
package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/registry"
)

// RequireHeavy fails the test with why, or skips it when DRIFT_SKIP_HEAVY=1.
func RequireHeavy(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("DRIFT_SKIP_HEAVY") == "1" {
		t.Skipf("DRIFT_SKIP_HEAVY=1: %s", why)
	}
	t.Fatal(why)
}

// Registry starts an embedded registry on a free loopback port for the test.
func Registry(t testing.TB) *registry.Server {
	t.Helper()
	reg, err := registry.Start(context.Background(), t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// RepoRoot is the drift module's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	binMu    sync.Mutex
	binCache = map[string][]byte{}
)

// ExampleBinary builds an example program statically for arch, once per
// (program, arch, version) per test binary.
func ExampleBinary(t testing.TB, ex demo.Example, arch, version string) []byte {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	key := ex.Name + "/" + arch + "/" + version
	if b, ok := binCache[key]; ok {
		return b
	}
	b, err := demo.Build(context.Background(), RepoRoot(), ex, arch, version)
	if err != nil {
		t.Fatal(err)
	}
	binCache[key] = b
	return b
}

// ExampleImage builds an example program as a FROM-scratch image for
// linux/amd64 and linux/loong64, pushes the index to reg as
// <name>:<version> and returns its reference by digest. The version is
// compiled in, so two versions are two different images.
func ExampleImage(t testing.TB, reg *registry.Server, ex demo.Example, version string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ref, err := demo.Image(ctx, reg.Host(), ex, version, func(arch string) ([]byte, error) {
		return ExampleBinary(t, ex, arch, version), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// HelloBinary is ExampleBinary of the hello app.
func HelloBinary(t testing.TB, arch, version string) []byte {
	t.Helper()
	return ExampleBinary(t, demo.Hello, arch, version)
}

// HelloImage is ExampleImage of the hello app.
func HelloImage(t testing.TB, reg *registry.Server, version string) string {
	t.Helper()
	return ExampleImage(t, reg, demo.Hello, version)
}

// CounterImages are ExampleImage of the counter app's two services.
func CounterImages(t testing.TB, reg *registry.Server, version string) (web, store string) {
	t.Helper()
	return ExampleImage(t, reg, demo.CounterWeb, version), ExampleImage(t, reg, demo.CounterStore, version)
}

// Docker connects to the Docker Engine named by DOCKER_HOST (or the default
// socket) and checks that it answers.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		RequireHeavy(t, fmt.Sprintf("no Docker Engine answers (%v); run tests/docker-up.sh", err))
	}
	t.Cleanup(func() { c.Close() })
	return c
}
