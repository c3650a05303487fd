package mobility

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	dockerclient "github.com/docker/docker/client"
	"go.temporal.io/sdk/client"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/tests/kube"
	"github.com/edgedrift/drift/workflows"
)

// A session of the two-service counter app (a compose project) follows its
// user across Docker, Kubernetes and process clouds: every instance is the
// whole project, web answers through the store it reaches by service name
// wherever HTTP reaches it, Kubernetes holds a Deployment per service and
// the store's claim, and after Exit nothing labelled as the session's is
// left on any cloud: containers, networks, volumes, Deployments, Services,
// pods, claims. The count is carried between the instances whose state
// endpoint answers (Docker, processes); kwok's pods answer nothing, so the
// session switches without state by policy and says so.
func TestSessionOfAComposeProject(t *testing.T) {
	docker := harness.Docker(t)
	cluster := kube.Start(t)
	_, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	web, store := harness.CounterImages(t, reg, "v1")
	topo := harness.ExampleTopology(t)
	ws := harness.Workers(t, c, topo, reg.Host(), func(cl topology.Cloud) runtime.Config {
		switch {
		case cl.Tier == topology.Fog:
			return runtime.Config{Kind: runtime.KindDocker}
		case kubeEdges[cl.ID]:
			return runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: cluster.Kubeconfig}
		default:
			return runtime.Config{Kind: runtime.KindProcess}
		}
	})
	// One volume per claim: each Kubernetes instance of the walk makes
	// one, and a released volume is not bound again.
	harness.PersistentVolumes(t, cluster.Clientset, "mob-counter", 12)

	app, err := appspec.FromCompose(examples.CounterCompose, "")
	if err != nil {
		t.Fatal(err)
	}
	app = app.WithImages(map[string]string{"web": web, "store": store})
	id := names.SessionID("mobility-proj", "counter")
	owned := runtime.LabelWorkflow + "=" + runtime.LabelValue(id)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: names.TaskQueue, StaticSummary: "the counter app follows its user"},
		workflows.MobilitySession, workflows.SessionInput{
			User: "mobility-proj", App: app, Region: "quartier-latin", Topology: topo,
			Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNeighbours,
			Continuity: workflows.Continuity{StatePolicy: workflows.StateSwitchWithout},
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A failed test still ends the session, which destroys its instances.
		_ = c.TerminateWorkflow(context.Background(), id, "", "test over")
	})

	waitServing(t, ctx, c, id)
	st, err := state(ctx, c, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Image != "" || len(st.Images) != 2 {
		t.Errorf("session pins %q %v, want one image per service", st.Image, st.Images)
	}
	clouds := map[string]bool{}
	from, last := st.Serving, 0 // the serving cloud and the count last seen there
	for _, region := range []string{"bastille", "la-defense", "montmartre", "montparnasse", "quartier-latin"} {
		res := move(t, ctx, c, id, region)
		clouds[res.Cloud] = true
		if res.Endpoint.StateURL == "" {
			t.Errorf("move to %s: endpoint %+v has no state endpoint", region, res.Endpoint)
		}
		carried := !kubeEdges[from] && !kubeEdges[res.Cloud]
		switch {
		case res.ContextTransferState == nil:
			t.Errorf("move to %s: no contextTransferState", region)
		case carried && *res.ContextTransferState != amsi.ContextTransferred:
			t.Errorf("move %s → %s: state not carried: %s", from, res.Cloud, res.StateError)
		case !carried && (*res.ContextTransferState != amsi.ContextNotTransferred || res.StateError == ""):
			t.Errorf("move %s → %s: context %d (%q), want not transferred and why", from, res.Cloud, *res.ContextTransferState, res.StateError)
		}
		if kubeEdges[res.Cloud] {
			expectProjectOnKubernetes(t, ctx, cluster, res.Cloud, runtime.InstanceName(app.Name, "mobility-proj", res.Cloud))
		} else {
			n := expectCounts(t, res.Endpoint, res.Cloud)
			if carried && n != last+1 {
				t.Errorf("%s counted %d after the move from %s, where the count was %d", res.Cloud, n, from, last)
			}
			last = n
		}
		from = res.Cloud
		expectLiveSet(t, ctx, c, ws, topo, id)
	}
	if len(clouds) < 3 {
		t.Errorf("the walk was served from %v, want at least three clouds", clouds)
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
		if left, err := rt.List(ctx, map[string]string{runtime.LabelWorkflow: id}); err != nil || len(left) > 0 {
			t.Errorf("%s still has %v (%v)", cloud, left, err)
		}
	}
	for _, kind := range []string{"deployments", "services", "pods"} {
		if n := cluster.CountLabelled(t, ctx, kind, owned); n > 0 {
			t.Errorf("%d %s of the session left in the cluster", n, kind)
		}
	}
	if claims, err := cluster.Clientset.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{LabelSelector: owned}); err != nil || len(claims.Items) > 0 {
		t.Errorf("claims of the session left in the cluster: %d (%v)", len(claims.Items), err)
	}
	if left := engineObjects(t, ctx, docker, owned); len(left) > 0 {
		t.Errorf("the Docker Engine still holds %v", left)
	}
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, id, path)
	}
}

// expectCounts counts once at ep and returns the count: the answer comes
// from web, which got the count from the store at http://store:8081.
func expectCounts(t *testing.T, ep runtime.Endpoint, cloud string) int {
	t.Helper()
	resp, err := http.Post(ep.URL+"/count", "", nil)
	if err != nil {
		t.Fatalf("%s: POST %s/count: %v", cloud, ep.URL, err)
	}
	defer resp.Body.Close()
	var body struct {
		App, Cloud string
		Count      int
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK ||
		body.App != "counter" || body.Cloud != cloud || body.Count < 1 {
		t.Fatalf("%s: POST %s/count: %s %+v (%v)", cloud, ep.URL, resp.Status, body, err)
	}
	resp, err = http.Get(ep.StateURL)
	if err != nil {
		t.Fatalf("%s: state endpoint: %v", cloud, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("%s: GET %s: %s", cloud, ep.StateURL, resp.Status)
	}
	return body.Count
}

// expectProjectOnKubernetes checks the instance through the API (kwok's
// pods answer no HTTP): a Deployment per service, available, and the
// store's claim bound.
func expectProjectOnKubernetes(t *testing.T, ctx context.Context, cluster *kube.Cluster, cloud, instance string) {
	t.Helper()
	ns := "drift-" + cloud
	for _, service := range []string{"web", "store"} {
		d, err := cluster.Clientset.AppsV1().Deployments(ns).Get(ctx, runtime.ObjectName(instance, service), metav1.GetOptions{})
		if err != nil || d.Status.AvailableReplicas < 1 {
			t.Fatalf("%s: Deployment of %s: %v", cloud, service, err)
		}
		if _, err := cluster.Clientset.CoreV1().Services(ns).Get(ctx, runtime.ObjectName(instance, service), metav1.GetOptions{}); err != nil {
			t.Fatalf("%s: Service of %s: %v", cloud, service, err)
		}
	}
	claim, err := cluster.Clientset.CoreV1().PersistentVolumeClaims(ns).Get(ctx, runtime.ObjectName(instance, "counter-data"), metav1.GetOptions{})
	if err != nil || claim.Status.Phase != "Bound" {
		t.Fatalf("%s: the store's claim: %v", cloud, err)
	}
}

// engineObjects lists the containers, networks and volumes labelled sel on
// the engine, as "kind name".
func engineObjects(t *testing.T, ctx context.Context, cli *dockerclient.Client, sel string) []string {
	t.Helper()
	f := filters.NewArgs(filters.Arg("label", sel))
	var out []string
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		out = append(out, "container "+c.ID[:12])
	}
	ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		out = append(out, "network "+n.Name)
	}
	vs, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Volumes {
		out = append(out, "volume "+v.Name)
	}
	return out
}
