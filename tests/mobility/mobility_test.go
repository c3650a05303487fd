// Package mobility runs mobility sessions on real parts: the embedded
// Temporal server, the embedded registry, the Docker Engine (fog clouds),
// the Kubernetes harness (two edge clouds) and the process runtime.
package mobility

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/tests/kube"
	"github.com/edgedrift/drift/workflows"
)

// kubeEdges are the edge clouds this test runs on Kubernetes; the other
// edges run processes, fog clouds run on Docker.
var kubeEdges = map[string]bool{"edge-latin": true, "edge-montparnasse": true}

func TestSessionAcrossDockerKubernetesAndProcesses(t *testing.T) {
	harness.Docker(t)
	cluster := kube.Start(t)
	_, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	image := harness.HelloImage(t, reg, "v1")
	topo := harness.ExampleTopology(t)
	runtimeFor := func(cl topology.Cloud) runtime.Config {
		switch {
		case cl.Tier == topology.Fog:
			return runtime.Config{Kind: runtime.KindDocker}
		case kubeEdges[cl.ID]:
			return runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: cluster.Kubeconfig}
		default:
			return runtime.Config{Kind: runtime.KindProcess}
		}
	}
	ws := harness.Workers(t, c, topo, reg.Host(), runtimeFor)

	spec, err := appspec.FromImage("hello", image, 8080)
	if err != nil {
		t.Fatal(err)
	}
	spec.Health = "/healthz"
	id := names.SessionID("mobility-it", "hello")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: names.TaskQueue, StaticSummary: "alice's hello follows her across Paris"},
		workflows.MobilitySession, workflows.SessionInput{
			User: "mobility-it", App: spec, Region: "quartier-latin", Topology: topo,
			Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNeighbours,
		})
	if err != nil {
		t.Fatal(err)
	}

	waitServing(t, ctx, c, id)
	var warmMoves int
	for _, region := range []string{"bastille", "la-defense", "montmartre", "montparnasse", "quartier-latin"} {
		res := move(t, ctx, c, id, region)
		cl, _ := topo.FirstCloud(region)
		if res.Cloud != cl.ID {
			t.Fatalf("move to %s served from %s, want %s", region, res.Cloud, cl.ID)
		}
		if res.Warm {
			warmMoves++
		}
		if kubeEdges[res.Cloud] {
			expectDeploymentAvailable(t, ctx, cluster, res.Cloud)
		} else {
			expectServes(t, res.Endpoint, res.Cloud)
		}
		expectLiveSet(t, ctx, c, ws, topo, id)
	}
	if warmMoves == 0 {
		t.Error("no move was warm")
	}

	if err := c.SignalWorkflow(ctx, id, "", names.ExitSignal, nil); err != nil {
		t.Fatal(err)
	}
	var report workflows.SessionState
	if err := run.Get(ctx, &report); err != nil {
		t.Fatal(err)
	}
	if report.Totals.Handovers != 5 || report.Phase != "ended" {
		t.Fatalf("report %+v", report.Totals)
	}
	for cloud, rt := range ws.Runtimes {
		if left, err := rt.List(ctx, nil); err != nil || len(left) > 0 {
			t.Errorf("%s still has %v (%v)", cloud, left, err)
		}
	}
	for _, kind := range []string{"deployments", "services", "pods"} {
		if n := cluster.CountLabelled(t, ctx, kind, runtime.LabelOwned+"=true"); n > 0 {
			t.Errorf("%d drift-owned %s left in the cluster", n, kind)
		}
	}
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, id, path)
	}
}

func waitServing(t *testing.T, ctx context.Context, c client.Client, id string) {
	t.Helper()
	for ctx.Err() == nil {
		if st, err := state(ctx, c, id); err == nil && st.Phase == "serving" && len(st.InFlight) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("session never settled")
}

// waitDrained waits until the session is settled and holds no instance it
// is done with (the old serving instance drains for a few seconds after a
// switch, then goes).
func waitDrained(t *testing.T, ctx context.Context, c client.Client, id string) workflows.SessionState {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		waitServing(t, ctx, c, id)
		st, err := state(ctx, c, id)
		if err == nil && !slices.ContainsFunc(st.Instances, func(in workflows.Instance) bool { return in.Role == "" }) {
			return st
		}
	}
	t.Fatal("an instance the session is done with is still there after a minute")
	return workflows.SessionState{}
}

func state(ctx context.Context, c client.Client, id string) (workflows.SessionState, error) {
	var st workflows.SessionState
	v, err := c.QueryWorkflow(ctx, id, "", names.ProgressQuery)
	if err == nil {
		err = v.Get(&st)
	}
	return st, err
}

func move(t *testing.T, ctx context.Context, c client.Client, id, region string) workflows.MoveResult {
	t.Helper()
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: names.MoveUpdate, Args: []any{region}, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err != nil {
		t.Fatalf("move to %s: %v", region, err)
	}
	var res workflows.MoveResult
	if err := h.Get(ctx, &res); err != nil {
		t.Fatalf("move to %s: %v", region, err)
	}
	t.Logf("moved to %s: %s warm=%v switch=%s", region, res.Cloud, res.Warm, res.SwitchTime)
	return res
}

// expectLiveSet waits for the session to be quiet, then checks that the
// clouds holding its label are exactly the serving cloud and the warm ones.
func expectLiveSet(t *testing.T, ctx context.Context, c client.Client, ws *workerhost.Workers, topo *topology.Topology, id string) {
	t.Helper()
	st := waitDrained(t, ctx, c, id)
	want := map[string]bool{}
	for _, in := range st.Instances {
		if in.Status == workflows.StatusReady {
			want[in.Cloud] = true
		}
	}
	ns, _ := topo.Neighbours(st.Serving, topology.Policy{Kind: topology.Adjacency})
	if !want[st.Serving] || len(want) != len(ns)+1 {
		t.Errorf("ready instances %v for serving %s with %d neighbours", want, st.Serving, len(ns))
	}
	for cloud, rt := range ws.Runtimes {
		found, err := rt.List(ctx, map[string]string{runtime.LabelWorkflow: id})
		if err != nil {
			t.Fatal(err)
		}
		if (len(found) > 0) != want[cloud] || len(found) > 1 {
			t.Errorf("%s holds %d instances of the session, want live=%v", cloud, len(found), want[cloud])
		}
	}
}

func expectServes(t *testing.T, ep runtime.Endpoint, cloud string) {
	t.Helper()
	resp, err := http.Get(ep.URL)
	if err != nil {
		t.Fatalf("%s endpoint %s: %v", cloud, ep.URL, err)
	}
	defer resp.Body.Close()
	var body struct{ App, Cloud string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Cloud != cloud || body.App != "hello" {
		t.Fatalf("%s endpoint answered %+v (%v)", cloud, body, err)
	}
}

// expectDeploymentAvailable checks the serving Deployment through the API:
// kwok's pods are not reachable over HTTP.
func expectDeploymentAvailable(t *testing.T, ctx context.Context, cluster *kube.Cluster, cloud string) {
	t.Helper()
	list, err := cluster.Clientset.AppsV1().Deployments("drift-"+cloud).List(ctx, metav1.ListOptions{LabelSelector: runtime.LabelOwned + "=true"})
	if err != nil || len(list.Items) == 0 {
		t.Fatalf("no drift Deployment on %s (%v)", cloud, err)
	}
	for _, d := range list.Items {
		if d.Status.AvailableReplicas < 1 {
			t.Fatalf("Deployment %s on %s not available", d.Name, cloud)
		}
	}
}
