package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/registry"
	"github.com/edgedrift/drift/internal/release"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
)

func deploy(c *Cloud, name string, preDeploy bool) error {
	_, err := c.DeployInstance(context.Background(), DeployRequest{Name: name, Spec: runtime.Spec{Image: "registry.test/x:1", Port: 80}, PreDeploy: preDeploy})
	return err
}

func errType(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Type()
	}
	return ""
}

func TestCapacityRefusesOnlyPreDeploys(t *testing.T) {
	c := &Cloud{ID: "edge-1", Runtime: runtimetest.NewInstant("edge-1"), Capacity: 2}
	if err := deploy(c, "a", true); err != nil {
		t.Fatal(err)
	}
	if err := deploy(c, "b", false); err != nil {
		t.Fatal(err)
	}
	err := deploy(c, "c", true)
	if errType(err) != ErrTypeAtCapacity {
		t.Fatalf("third instance on a cloud of 2: %v", err)
	}
	if err := deploy(c, "a", true); err != nil {
		t.Fatalf("redeploying an existing instance takes no new place: %v", err)
	}
	if err := deploy(c, "d", false); err != nil {
		t.Fatalf("serving must win over capacity: %v", err)
	}
}

func TestBadInputIsNotRetried(t *testing.T) {
	rt := runtimetest.NewInstant("edge-1")
	c := &Cloud{ID: "edge-1", Runtime: rt}
	failWith := func(err error) {
		rt.OnDeploy = func(context.Context, string, runtime.Spec) error { return err }
	}
	failWith(fmt.Errorf("%w: the engine refuses the spec", runtime.ErrInvalid))
	if err := deploy(c, "a", false); errType(err) != ErrTypeInvalidSpec {
		t.Fatalf("invalid spec: %v", err)
	}
	failWith(errors.New("engine down"))
	if err := deploy(c, "a", false); err == nil || errType(err) != "" {
		t.Fatalf("an engine failure must stay retryable: %v", err)
	}
}

func TestDestroyOwnedSweepsBySelector(t *testing.T) {
	rt := runtimetest.NewInstant("edge-1")
	c := &Cloud{ID: "edge-1", Runtime: rt}
	for name, wf := range map[string]string{"a": "session/x/web", "b": "session/x/web", "c": "session/y/web"} {
		if _, err := c.DeployInstance(context.Background(), DeployRequest{Name: name, Spec: runtime.Spec{Image: "registry.test/x:1", Port: 80, Labels: map[string]string{runtime.LabelWorkflow: wf}}}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := c.DestroyOwned(context.Background(), map[string]string{runtime.LabelWorkflow: "session/x/web"})
	if err != nil || n != 2 {
		t.Fatalf("destroyed %d (%v), want 2", n, err)
	}
	left, _ := rt.List(context.Background(), nil)
	if len(left) != 1 || left[0].Name != "c" {
		t.Fatalf("left %v, want only c", left)
	}
}

// A cloud with an arch refuses an image without linux/<arch> before its
// runtime is asked, and runs that platform of an index.
func TestDeployChecksTheCloudsPlatform(t *testing.T) {
	ctx := context.Background()
	reg, err := registry.Start(ctx, t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	img, err := image.Build(v1.Platform{OS: "linux", Architecture: "loong64"}, []image.File{{Path: "/app/x", Mode: 0o755, Data: []byte("x")}}, image.Config{Entrypoint: []string{"/app/x"}})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := image.Push(ctx, reg.Host()+"/port/x:loong64", img)
	if err != nil {
		t.Fatal(err)
	}
	var platform string
	rt := runtimetest.NewInstant("fog")
	rt.OnDeploy = func(_ context.Context, _ string, spec runtime.Spec) error {
		platform = spec.Platform
		return nil
	}
	amd := &Cloud{ID: "fog-amd", Arch: "amd64", Runtime: rt}
	_, err = amd.DeployInstance(ctx, DeployRequest{Name: "x", Spec: runtime.Spec{Image: ref, Port: 8080}})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeWrongPlatform || !appErr.NonRetryable() || rt.Len() != 0 {
		t.Fatalf("amd64 cloud: %v, %d instances", err, rt.Len())
	}
	loong := &Cloud{ID: "fog-loong", Arch: "loong64", Runtime: rt}
	if _, err := loong.DeployInstance(ctx, DeployRequest{Name: "x", Spec: runtime.Spec{Image: ref, Port: 8080}}); err != nil {
		t.Fatal(err)
	}
	if platform != "linux/loong64" {
		t.Errorf("the runtime was asked for platform %q", platform)
	}
	// A cloud without an arch is not checked.
	if _, err := (&Cloud{ID: "any", Runtime: rt}).DeployInstance(ctx, DeployRequest{Name: "y", Spec: runtime.Spec{Image: ref, Port: 8080}}); err != nil {
		t.Fatal(err)
	}
}

// With a trust policy, a cloud deploys a signed image and refuses an
// unsigned one with UntrustedImage before its runtime is touched.
func TestUntrustedImageIsRefusedBeforeTheRuntime(t *testing.T) {
	ctx := context.Background()
	reg, err := registry.Start(ctx, t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	signer, err := release.EnsureKeyPair(release.KeyFiles(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	push := func(tag string) string {
		img, err := image.Build(v1.Platform{OS: "linux", Architecture: "amd64"}, []image.File{{Path: "/app", Mode: 0o755, Data: []byte(tag)}}, image.Config{})
		if err != nil {
			t.Fatal(err)
		}
		pinned, err := image.Push(ctx, reg.Host()+"/app:"+tag, img)
		if err != nil {
			t.Fatal(err)
		}
		return pinned
	}
	signed, unsigned := push("signed"), push("unsigned")
	repo, digest, _ := strings.Cut(signed, "@")
	if _, err := release.Attach(ctx, signer, release.Release{Repo: repo, Digest: digest}); err != nil {
		t.Fatal(err)
	}
	policy, err := release.NewPolicy([][]byte{signer.PublicPEM()}, nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	rt := runtimetest.NewInstant("edge-1")
	c := &Cloud{ID: "edge-1", Runtime: rt, Trust: policy}
	_, err = c.DeployInstance(ctx, DeployRequest{Name: "bad", Spec: runtime.Spec{Image: unsigned, Port: 80}})
	if errType(err) != ErrTypeUntrustedImage || !strings.Contains(err.Error(), "edge-1 refuses") {
		t.Fatalf("unsigned image: want UntrustedImage, got %v", err)
	}
	if st, _ := rt.Status(ctx, "bad"); st.Exists {
		t.Fatal("the untrusted image was deployed")
	}
	if _, err := c.DeployInstance(ctx, DeployRequest{Name: "good", Spec: runtime.Spec{Image: signed, Port: 80}}); err != nil {
		t.Fatalf("signed image: %v", err)
	}
	// A project runs only when every service's image is trusted.
	project := runtime.Spec{Services: []runtime.Service{{Name: "web", Image: signed, Port: 80}, {Name: "store", Image: unsigned, Port: 81}}}
	if _, err := c.DeployInstance(ctx, DeployRequest{Name: "pair", Spec: project}); errType(err) != ErrTypeUntrustedImage || !strings.Contains(err.Error(), strings.TrimPrefix(unsigned, reg.Host()+"/app@sha256:")) {
		t.Fatalf("a project with an unsigned service: want UntrustedImage naming it, got %v", err)
	}
	if st, _ := rt.Status(ctx, "pair"); st.Exists {
		t.Fatal("the project with an untrusted image was deployed")
	}
}
