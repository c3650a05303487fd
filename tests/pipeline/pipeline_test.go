// Package pipeline runs pipelines on real parts: real git (a repository made
// by the test, served from a local bare repository), the embedded Temporal
// server and registry, the Docker Engine and the Kubernetes harness as two
// targets, and qemu for the loong64 image.
package pipeline

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/deploy/examples"
	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/tests/kube"
	"github.com/edgedrift/drift/workflows"
)

// The example spec's targets: fog-north runs on Docker, edge-latin on the
// Kubernetes harness.
const dockerCloud, kubeCloud = "fog-north", "edge-latin"

func TestPipelineFromGitToDockerAndKubernetes(t *testing.T) {
	harness.Docker(t)
	cluster := kube.Start(t)
	_, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	topo := harness.ExampleTopology(t)
	ws := harness.Workers(t, c, topo, reg.Host(), func(cl topology.Cloud) runtime.Config {
		switch cl.ID {
		case dockerCloud:
			return runtime.Config{Kind: runtime.KindDocker}
		case kubeCloud:
			return runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: cluster.Kubeconfig}
		}
		return runtime.Config{Kind: runtime.KindProcess}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	t.Cleanup(func() { destroyPipelineInstances(t, ws, "hello") })

	files, err := demo.HelloFiles()
	if err != nil {
		t.Fatal(err)
	}
	repoDir := t.TempDir()
	bare, err := demo.GitRepo(ctx, repoDir, "hello", files)
	if err != nil {
		t.Fatal(err)
	}
	spec := exampleSpec(t, "file://"+bare)

	// First run: every step.
	first := run(t, ctx, c, topo, spec, "r1")
	if first.Reused || first.Commit == "" || !strings.Contains(first.Image, reg.Host()+"/hello@sha256:") {
		t.Fatalf("first run %+v", first)
	}
	for _, s := range first.Steps {
		if s.Status != workflows.StepDone && s.Name != workflows.StepApproval {
			t.Errorf("step %s %s", s.Name, s.Status)
		}
	}
	expectDockerServes(t, first.Endpoints()[dockerCloud].URL)
	expectKubeRuns(t, ctx, cluster, first.Image)
	expectBothPlatforms(t, ctx, first.Image)
	expectLoong64RunsUnderQemu(t, ctx, first.Image)
	build, _ := first.StepByName(workflows.StepBuild)
	log, err := os.ReadFile(build.Log.File)
	if err != nil || !strings.Contains(string(log), "[linux/loong64] $ go build") {
		t.Errorf("build log %s: %v\n%s", build.Log.File, err, log)
	}
	dataDir := strings.TrimSuffix(build.Log.File, filepath.Join("pipeline", "logs", "hello", "r1", "build.log"))
	if _, err := os.Stat(filepath.Join(dataDir, "pipeline", "runs", "hello", "r1", "src")); !os.IsNotExist(err) {
		t.Errorf("the run's checkout is still there (%v)", err)
	}
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, first.ID, path)
	}

	// An unchanged rerun reuses the pushed image and leaves the targets be.
	again := run(t, ctx, c, topo, spec, "r2")
	if !again.Reused || again.Image != first.Image {
		t.Fatalf("unchanged rerun: reused=%v image %s (first %s)", again.Reused, again.Image, first.Image)
	}
	if s, _ := again.StepByName(workflows.StepBuild); s.Status != workflows.StepSkipped {
		t.Errorf("rerun build step %s", s.Status)
	}
	if again.Endpoints()[dockerCloud] != first.Endpoints()[dockerCloud] {
		t.Errorf("rerun moved the Docker endpoint: %v → %v", first.Endpoints()[dockerCloud], again.Endpoints()[dockerCloud])
	}

	// A commit that changes no built file builds again, to the same digest.
	if err := os.WriteFile(filepath.Join(repoDir, "work", "README.md"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := demo.CommitAndPush(ctx, filepath.Join(repoDir, "work"), "readme"); err != nil {
		t.Fatal(err)
	}
	rebuilt := run(t, ctx, c, topo, spec, "r3")
	if rebuilt.Reused || rebuilt.Commit == first.Commit {
		t.Fatalf("new commit: reused=%v commit %s", rebuilt.Reused, rebuilt.Commit)
	}
	if rebuilt.Image != first.Image {
		t.Errorf("same sources gave %s, then %s: the build is not reproducible", first.Image, rebuilt.Image)
	}

	t.Run("bad input", func(t *testing.T) {
		badInput(t, ctx, c, topo, ws, spec)
	})

	destroyPipelineInstances(t, ws, "hello")
	for _, kind := range []string{"deployments", "services", "pods"} {
		if n := cluster.CountLabelled(t, ctx, kind, runtime.LabelWorkflow+"="+runtime.LabelValue("pipeline/hello")); n > 0 {
			t.Errorf("%d drift-owned %s left in the cluster", n, kind)
		}
	}
}

// badInput: each mistake fails with an error naming the step, and nothing
// is deployed.
func badInput(t *testing.T, ctx context.Context, c client.Client, topo *topology.Topology, ws *workerhost.Workers, good pipelinespec.Spec) {
	cases := []struct {
		name      string
		edit      func(*pipelinespec.Spec)
		typ, want string
	}{
		{"missing repo", func(s *pipelinespec.Spec) { s.Repo = "file:///nonexistent/drift-pipeline.git" },
			activities.ErrTypeUnreachableRepo, "failed at clone: clone: no git repository at file:///nonexistent/drift-pipeline.git"},
		{"unknown ref", func(s *pipelinespec.Spec) { s.Ref = "no-such-branch" },
			activities.ErrTypeUnknownRef, `failed at clone: clone: file://`},
		{"build command fails", func(s *pipelinespec.Spec) { s.Build.Commands = []string{"go build ./does-not-exist"} },
			activities.ErrTypeBuildFailed, "failed at build: build for linux/amd64"},
		{"invalid image name", func(s *pipelinespec.Spec) { s.Image.Name = "Not An/Image" },
			workflows.ErrTypeInvalidPipeline, `image.name "Not An/Image"`},
		{"unknown target", func(s *pipelinespec.Spec) { s.Deploy.Targets[1].Cloud = "edge-mars" },
			workflows.ErrTypeUnknownTarget, `target "edge-mars" is not a cloud`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := good
			spec.App = "hello-bad"
			spec.Deploy.Targets = append([]pipelinespec.Target(nil), good.Deploy.Targets...)
			tc.edit(&spec)
			wr, err := drift.New(c).StartPipeline(ctx, workflows.PipelineInput{Run: fmt.Sprint("bad", i), Spec: spec, Topology: topo})
			if err != nil {
				t.Fatal(err)
			}
			_, err = drift.Follow[workflows.PipelineProgress](ctx, drift.New(c), wr, 0, nil)
			var ae *temporal.ApplicationError
			if !errors.As(err, &ae) || !ae.NonRetryable() || ae.Type() != tc.typ || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a non-retryable %s with %q", err, tc.typ, tc.want)
			}
			if tc.name == "unknown ref" && !strings.Contains(err.Error(), `has no ref "no-such-branch"`) {
				t.Errorf("unknown ref error %v", err)
			}
			for _, cloud := range []string{dockerCloud, kubeCloud} {
				st, err := ws.Runtimes[cloud].Status(ctx, workflows.PipelineInstance("hello-bad"))
				if err != nil || st.Exists {
					t.Errorf("%s: a bad run deployed %+v (%v)", cloud, st, err)
				}
			}
		})
	}
}

func exampleSpec(t *testing.T, repo string) pipelinespec.Spec {
	t.Helper()
	spec, err := pipelinespec.Parse(examples.Pipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec.Repo = repo
	// kwok's pods serve nothing: the Kubernetes target is verified through
	// the API (rolled out, ready, running this image), not over HTTP.
	for i := range spec.Deploy.Targets {
		if spec.Deploy.Targets[i].Cloud == kubeCloud {
			spec.Deploy.Targets[i].Verify = pipelinespec.VerifyReady
		}
	}
	return spec
}

func run(t *testing.T, ctx context.Context, c client.Client, topo *topology.Topology, spec pipelinespec.Spec, name string) workflows.PipelineProgress {
	t.Helper()
	start := time.Now()
	wr, err := drift.New(c).StartPipeline(ctx, workflows.PipelineInput{Run: name, Spec: spec, Topology: topo})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := drift.Follow[workflows.PipelineProgress](ctx, drift.New(c), wr, 0, nil)
	t.Logf("%s in %s:", wr.GetID(), time.Since(start).Round(time.Millisecond))
	for _, s := range pr.Steps {
		t.Logf("  %-9s %-10s %s", s.Name, s.Status, s.Duration(s.Ended))
	}
	if err != nil {
		t.Fatalf("%s: %v", wr.GetID(), err)
	}
	if len(pr.Endpoints()) != 2 {
		t.Fatalf("%s endpoints %v", wr.GetID(), pr.Endpoints())
	}
	return pr
}

func expectDockerServes(t *testing.T, url string) {
	t.Helper()
	code, _, body := harness.HTTPGet(t, url+"/")
	var got struct{ App, Cloud, Version, Arch string }
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil || got.App != "hello" || got.Cloud != dockerCloud || got.Version != "pipeline" {
		t.Fatalf("Docker endpoint %s answered %d %q (%v)", url, code, body, err)
	}
}

// expectKubeRuns checks the Kubernetes target through the API: kwok pods
// reach Running but serve nothing.
func expectKubeRuns(t *testing.T, ctx context.Context, cluster *kube.Cluster, ref string) {
	t.Helper()
	d, err := cluster.Clientset.AppsV1().Deployments("drift-"+kubeCloud).Get(ctx, workflows.PipelineInstance("hello"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != ref || d.Status.AvailableReplicas < 1 {
		t.Fatalf("Deployment runs %s with %d available, want %s", img, d.Status.AvailableReplicas, ref)
	}
}

// pullIndex fetches the image index ref names, and its manifest.
func pullIndex(t *testing.T, ctx context.Context, ref string) (v1.ImageIndex, *v1.IndexManifest) {
	t.Helper()
	r, err := image.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	return idx, m
}

func expectBothPlatforms(t *testing.T, ctx context.Context, ref string) {
	t.Helper()
	_, m := pullIndex(t, ctx, ref)
	var got []string
	for _, d := range m.Manifests {
		got = append(got, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	if strings.Join(got, ",") != "linux/amd64,linux/loong64" {
		t.Fatalf("index platforms %v", got)
	}
}

// expectLoong64RunsUnderQemu pulls the loong64 image from the registry,
// takes the binary out of its layer and serves HTTP with it under qemu.
func expectLoong64RunsUnderQemu(t *testing.T, ctx context.Context, ref string) {
	t.Helper()
	qemu, err := exec.LookPath("qemu-loongarch64-static")
	if err != nil {
		harness.RequireHeavy(t, "qemu-loongarch64-static is not installed (apt-get install qemu-user-static)")
	}
	bin := imageFiles(t, ctx, ref, "loong64")["hello"]
	if len(bin) == 0 {
		t.Fatal("no /hello in the loong64 image")
	}
	exe := filepath.Join(t.TempDir(), "hello-loong64")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	port := harness.FreePort(t)
	p := harness.StartEnv(t, []string{"HOST=127.0.0.1", fmt.Sprint("PORT=", port)}, qemu, exe)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			var got struct{ Arch string }
			json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if got.Arch != "loong64" {
				t.Fatalf("the binary under qemu says arch %q", got.Arch)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the loong64 binary never answered under qemu: %v\n%s", err, p.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// destroyPipelineInstances removes an app's pipeline deployments from every
// cloud (what a release leaves running is the test's to remove).
func destroyPipelineInstances(t *testing.T, ws *workerhost.Workers, appName string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for cloud, rt := range ws.Runtimes {
		if err := rt.Destroy(ctx, workflows.PipelineInstance(appName)); err != nil {
			t.Errorf("destroy on %s: %v", cloud, err)
		}
	}
}

// imageFiles pulls the image for arch from an index and returns the files
// of its one layer by path.
func imageFiles(t *testing.T, ctx context.Context, ref, arch string) map[string][]byte {
	t.Helper()
	idx, m := pullIndex(t, ctx, ref)
	files := map[string][]byte{}
	for _, d := range m.Manifests {
		if d.Platform == nil || d.Platform.Architecture != arch {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("%s image layers %d (%v)", arch, len(layers), err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name], _ = io.ReadAll(tr)
		}
	}
	return files
}
