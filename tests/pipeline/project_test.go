package pipeline

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/tests/kube"
	"github.com/edgedrift/drift/workflows"
)

// The two-service counter app, released by one run: both images built for
// both platforms, tested and pushed, and the project deployed with both
// digests to Docker (where web answers through the store it reaches by
// name) and to Kubernetes (checked through the API).
func TestPipelineReleasesAProject(t *testing.T) {
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
	harness.PersistentVolumes(t, cluster.Clientset, "counter", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	t.Cleanup(func() { destroyPipelineInstances(t, ws, "counter") })

	files, err := demo.CounterFiles()
	if err != nil {
		t.Fatal(err)
	}
	bare, err := demo.GitRepo(ctx, t.TempDir(), "counter", files)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := pipelinespec.Parse(examples.CounterPipeline, examples.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	spec.Repo = "file://" + bare
	for i := range spec.Deploy.Targets {
		if spec.Deploy.Targets[i].Cloud == kubeCloud {
			spec.Deploy.Targets[i].Verify = pipelinespec.VerifyReady
		}
	}

	first := run(t, ctx, c, topo, spec, "r1")
	if first.Reused || len(first.Images) != 2 || first.Image != "" {
		t.Fatalf("first run %+v", first)
	}
	images := map[string]string{}
	for _, b := range first.Images {
		if !strings.HasPrefix(b.Image, reg.Host()+"/counter-"+b.Service+"@sha256:") || !strings.HasSuffix(b.Image, b.Digest) {
			t.Errorf("%s: image %q, digest %q", b.Service, b.Image, b.Digest)
		}
		expectBothPlatforms(t, ctx, b.Image)
		if b.Release == nil || b.Release.Signature == "" || len(b.Release.SBOMs) != 2 {
			t.Errorf("%s: not signed with an SBOM per platform: %+v", b.Service, b.Release)
		}
		images[b.Service] = b.Image
	}
	if images["web"] == images["store"] {
		t.Fatal("one image for two services")
	}
	for _, s := range first.Steps {
		if s.Status != workflows.StepDone && s.Name != workflows.StepApproval {
			t.Errorf("step %s %s", s.Name, s.Status)
		}
	}
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, first.ID, path)
	}

	// Docker: the project answers, web counting through the store it
	// reaches by its service name, the state endpoint beside it.
	ep := first.Endpoints()[dockerCloud]
	for i := 1; i <= 2; i++ {
		if code, _, body := harness.HTTPPost(t, ep.URL+"/count"); code != 200 || !strings.Contains(body, fmt.Sprintf(`"count":%d`, i)) || !strings.Contains(body, `"version":"pipeline"`) {
			t.Fatalf("POST %s/count: %d %s", ep.URL, code, body)
		}
	}
	if code, _, body := harness.HTTPGet(t, ep.StateURL); code != 200 || strings.TrimSpace(body) != `{"count":2}` {
		t.Errorf("state endpoint %s: %d %s", ep.StateURL, code, body)
	}
	st, err := ws.Runtimes[dockerCloud].Status(ctx, workflows.PipelineInstance("counter"))
	if err != nil || !st.Ready || len(st.Services) != 2 || st.Services[0].Image != images["web"] || st.Services[1].Image != images["store"] {
		t.Errorf("Docker status %+v, %v", st, err)
	}

	// Kubernetes: a Deployment per service running its digest, the store's
	// claim bound.
	ns := "drift-" + kubeCloud
	for service, ref := range images {
		name := runtime.ObjectName(workflows.PipelineInstance("counter"), service)
		d, err := cluster.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != ref || d.Status.AvailableReplicas < 1 {
			t.Errorf("Deployment of %s runs %s with %d available, want %s", service, img, d.Status.AvailableReplicas, ref)
		}
	}
	claim, err := cluster.Clientset.CoreV1().PersistentVolumeClaims(ns).Get(ctx, runtime.ObjectName(workflows.PipelineInstance("counter"), "counter-data"), metav1.GetOptions{})
	if err != nil || claim.Status.Phase != corev1.ClaimBound {
		t.Errorf("the store's claim: %+v, %v", claim.Status, err)
	}

	// An unchanged rerun reuses both images and leaves the targets be.
	again := run(t, ctx, c, topo, spec, "r2")
	if !again.Reused || again.ImageOf("web") != images["web"] || again.ImageOf("store") != images["store"] {
		t.Fatalf("unchanged rerun: reused=%v images %+v", again.Reused, again.Images)
	}
	if again.Endpoints()[dockerCloud] != ep {
		t.Errorf("the rerun moved the Docker endpoint: %+v → %+v", ep, again.Endpoints()[dockerCloud])
	}
	if code, _, body := harness.HTTPGet(t, ep.URL+"/"); code != 200 || !strings.Contains(body, `"count":2`) {
		t.Errorf("after the rerun: %d %s", code, body)
	}

	destroyPipelineInstances(t, ws, "counter")
	owned := runtime.LabelWorkflow + "=" + runtime.LabelValue("pipeline/counter")
	for _, kind := range []string{"deployments", "services", "pods"} {
		if n := cluster.CountLabelled(t, ctx, kind, owned); n > 0 {
			t.Errorf("%d drift-owned %s left in the cluster", n, kind)
		}
	}
	if claims, err := cluster.Clientset.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{LabelSelector: owned}); err != nil || len(claims.Items) > 0 {
		t.Errorf("claims left in the cluster: %d (%v)", len(claims.Items), err)
	}
	if st, err := ws.Runtimes[dockerCloud].Status(ctx, workflows.PipelineInstance("counter")); err != nil || st.Exists {
		t.Errorf("Docker after destroy: %+v, %v", st, err)
	}
}
