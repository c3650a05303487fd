// Package demo is drift's main job on the embedded default: it builds the
// example app into an image in the center registry and walks a mobility
// session across the example topology, saying what happens.
package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/session"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
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

// Walk opens a session for user in the first region, moves it through the
// others and exits, printing each step and the report.
func Walk(ctx context.Context, c client.Client, topo *topology.Topology, ref, user string, regions []string, out io.Writer) (workflows.SessionState, error) {
	spec, err := appspec.FromImage("hello", ref, 8080)
	if err != nil {
		return workflows.SessionState{}, err
	}
	spec.Health = "/healthz"
	fmt.Fprintf(out, "\nmobility session %s over %q (pre-deploy to adjacent clouds):\n", workflows.SessionID(user, spec.Name), topo.Name())
	res, err := session.Start(ctx, c, session.Open{
		User: user, App: spec, Region: regions[0], Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNeighbours,
	})
	if err != nil {
		return workflows.SessionState{}, err
	}
	fmt.Fprintf(out, "  %-15s served from %-18s %s\n", regions[0], res.Cloud, res.Endpoint.URL)
	for _, region := range regions[1:] {
		if err := settle(ctx, c, user, spec.Name); err != nil {
			return workflows.SessionState{}, err
		}
		res, err := session.Move(ctx, c, user, spec.Name, region)
		if err != nil {
			return workflows.SessionState{}, err
		}
		kind := "cold"
		if res.Warm {
			kind = "warm"
		}
		fmt.Fprintf(out, "  %-15s served from %-18s %s  (%s handover, switch %s)\n", region, res.Cloud, res.Endpoint.URL, kind, res.SwitchTime)
	}
	if err := settle(ctx, c, user, spec.Name); err != nil {
		return workflows.SessionState{}, err
	}
	st, err := session.State(ctx, c, user, spec.Name)
	if err != nil {
		return workflows.SessionState{}, err
	}
	var warm []string
	for _, in := range st.Instances {
		if in.Role == workflows.RoleWarm && in.Status == workflows.StatusReady {
			warm = append(warm, in.Cloud)
		}
	}
	fmt.Fprintf(out, "  warm now on: %s\n", strings.Join(warm, ", "))
	rep, err := session.Exit(ctx, c, user, spec.Name)
	if err != nil {
		return workflows.SessionState{}, err
	}
	t := rep.Totals
	fmt.Fprintf(out, "  exit: %d handovers (%d warm, %d cold), %.1f instance-seconds spent on pre-deploys, every instance destroyed\n",
		t.Handovers, t.Warm, t.Cold, t.PreDeploySeconds)
	return rep, nil
}

// settle waits until no deploy or destroy of the session is in flight, so
// the walk shows what pre-deploys buy.
func settle(ctx context.Context, c client.Client, user, app string) error {
	for {
		st, err := session.State(ctx, c, user, app)
		if err != nil {
			return err
		}
		if len(st.InFlight) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
