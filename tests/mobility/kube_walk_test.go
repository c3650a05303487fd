package mobility

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/tests/kube"
	"github.com/edgedrift/drift/workflows"
)

// The counter app follows its user across four Kubernetes clouds (one
// namespace each) on a real node: every instance is the whole project
// (a Deployment and Service per service, the store's claim), its pods pull
// the images from drift's registry and serve, each move carries the count
// from the serving instance's store to the target's before the switch,
// and after Exit nothing labelled as the session's is left in the cluster
// (Deployments, Services, pods, claims); the test then removes the clouds'
// namespaces and the volumes' host directories.
func TestCounterWalksKubernetesCloudsOnARealNode(t *testing.T) {
	reg := harness.Registry(t)
	web, store := harness.CounterImages(t, reg, "v1")
	cluster := kube.Start(t, kube.WithRealNode(), kube.WithInsecureRegistry(reg.Host()))
	cs := cluster.Clientset
	_, c := harness.Temporal(t, "")
	topo := harness.ExampleTopology(t)
	ws := harness.Workers(t, c, topo, reg.Host(), func(topology.Cloud) runtime.Config {
		return runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: cluster.Kubeconfig}
	})
	prefix := "kwalk-" + time.Now().UTC().Format("150405")
	harness.PersistentVolumes(t, cs, prefix, 10)
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/tmp/" + prefix + "-pv-*")
		for _, d := range dirs {
			if err := os.RemoveAll(d); err != nil {
				t.Error(err)
			}
		}
	})

	id := names.SessionID("kube-walk", "counter")
	owned := runtime.LabelWorkflow + "=" + runtime.LabelValue(id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := startSession(t, ctx, c, id, workflows.SessionInput{
		User: "kube-walk", App: counterApp(t, web, store), Region: "quartier-latin", Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Nearest, N: 1, Metric: topology.Geo}, PreDeploy: workflows.PreDeployNeighbours,
	})
	st, _ := state(ctx, c, id)
	last := countRetrying(t, ctx, st.Endpoint)
	clouds := map[string]bool{st.Serving: true}
	for _, region := range []string{"bastille", "montmartre", "montparnasse"} {
		from := st.Serving
		res := move(t, ctx, c, id, region)
		if res.ContextTransferState == nil || *res.ContextTransferState != amsi.ContextTransferred {
			t.Fatalf("move %s → %s did not carry the count: %s", from, res.Cloud, res.StateError)
		}
		if n := countRetrying(t, ctx, res.Endpoint); n != last+1 {
			t.Errorf("%s counted %d after the move from %s, where the count was %d", res.Cloud, n, from, last)
		} else {
			t.Logf("%s → %s: the count went on from %d", from, res.Cloud, last)
		}
		last++
		clouds[res.Cloud] = true
		st, _ = state(ctx, c, id)
	}
	if len(clouds) < 4 {
		t.Errorf("served from %v, want four clouds", clouds)
	}

	if err := c.SignalWorkflow(ctx, id, "", names.ExitSignal, nil); err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for cloud, rt := range ws.Runtimes {
		if left, err := rt.List(ctx, map[string]string{runtime.LabelWorkflow: id}); err != nil || len(left) > 0 {
			t.Errorf("%s still has %v (%v)", cloud, left, err)
		}
	}
	for _, kind := range []string{"deployments", "services", "pods"} {
		if n := cluster.CountLabelled(t, ctx, kind, owned); n > 0 {
			t.Errorf("%d %s of the session left in the cluster", n, kind)
		}
	}
	if claims, err := cs.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{LabelSelector: owned}); err != nil || len(claims.Items) > 0 {
		t.Errorf("claims of the session left in the cluster: %d (%v)", len(claims.Items), err)
	}
	// The clouds' namespaces outlive their instances (a cloud's, not a
	// session's): the test made them, the test removes them.
	for _, cl := range topo.Clouds() {
		ns := "drift-" + cl.ID
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	}
	for _, cl := range topo.Clouds() {
		for {
			if _, err := cs.CoreV1().Namespaces().Get(ctx, "drift-"+cl.ID, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("namespace drift-%s still there", cl.ID)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// countRetrying counts once at ep, retrying a refused connection for a
// while: kube-proxy routes a new Service's ClusterIP a moment after the
// Service exists.
func countRetrying(t *testing.T, ctx context.Context, ep runtime.Endpoint) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := tryCount(ctx, ep)
		if err == nil {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST %s/count: %v", ep.URL, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
