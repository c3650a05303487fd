package mobility

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"
	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/appspec"
	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/devstack"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// dockerEverywhere runs every cloud on the Docker Engine.
func dockerEverywhere(topology.Cloud) runtime.Config { return runtime.Config{Kind: runtime.KindDocker} }

// allClouds lists the topology's clouds but one.
func allClouds(topo *topology.Topology, but string) []string {
	var out []string
	for _, cl := range topo.Clouds() {
		if cl.ID != but {
			out = append(out, cl.ID)
		}
	}
	return out
}

// dockerWorkers polls clouds (and the central queue) with every cloud on
// the Docker Engine. Unlike harness.Workers it sweeps nothing when the test
// ends: the engine may hold other tests' objects; each test checks its own
// session's label instead.
func dockerWorkers(t *testing.T, c client.Client, topo *topology.Topology, registry string, clouds []string, central bool) (*workerhost.Workers, func()) {
	t.Helper()
	ws, err := workerhost.StartWorkers(c, workerhost.WorkerOptions{Topology: topo, Clouds: clouds, Central: central,
		DataDir: t.TempDir(), Registry: registry, RuntimeFor: dockerEverywhere})
	if err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceFunc(ws.Stop)
	t.Cleanup(stop)
	return ws, stop
}

// counterEnv is what the counter app's tests on Docker share: the engine,
// an embedded Temporal server, the registry with the counter's images
// (web and store) of each version asked for, the example topology, and a
// worker for the central queue and every cloud, all on Docker.
type counterEnv struct {
	docker *dockerclient.Client
	stack  *devstack.Stack
	c      client.Client
	topo   *topology.Topology
	ws     *workerhost.Workers
	images map[string][2]string // version → web, store
	reg    string
}

func counterOnDocker(t *testing.T, versions ...string) counterEnv {
	e := counterEnv{docker: harness.Docker(t), images: map[string][2]string{}}
	e.stack, e.c = harness.Temporal(t, "")
	reg := harness.Registry(t)
	e.reg = reg.Host()
	for _, v := range versions {
		web, store := harness.CounterImages(t, reg, v)
		e.images[v] = [2]string{web, store}
	}
	e.topo = harness.ExampleTopology(t)
	e.ws, _ = dockerWorkers(t, e.c, e.topo, e.reg, allClouds(e.topo, ""), true)
	return e
}

// app is the counter app of version v.
func (e counterEnv) app(t *testing.T, v string) appspec.AppSpec {
	return counterApp(t, e.images[v][0], e.images[v][1])
}

// startSession starts session id of in, ends it when the test does, and
// waits until it serves.
func startSession(t *testing.T, ctx context.Context, c client.Client, id string, in workflows.SessionInput) client.WorkflowRun {
	t.Helper()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: names.TaskQueue}, workflows.MobilitySession, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.TerminateWorkflow(context.Background(), id, "", "test over") })
	waitServing(t, ctx, c, id)
	return run
}

// counterApp is the two-service example with the harness's images.
func counterApp(t *testing.T, web, store string) appspec.AppSpec {
	app, err := appspec.FromCompose(examples.CounterCompose, "")
	if err != nil {
		t.Fatal(err)
	}
	return app.WithImages(map[string]string{"web": web, "store": store})
}

// count POSTs /count at ep (web asks the store behind it) and returns the
// count it answers, failing the test on anything else.
func count(t *testing.T, ep runtime.Endpoint) int {
	t.Helper()
	n, err := tryCount(context.Background(), ep)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tryCount POSTs /count at ep and returns the count it answers.
func tryCount(ctx context.Context, ep runtime.Endpoint) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL+"/count", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST %s/count: %w", ep.URL, err)
	}
	defer resp.Body.Close()
	var body struct{ Count int }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("POST %s/count: %s (%v)", ep.URL, resp.Status, err)
	}
	return body.Count, nil
}

// The counter app walks five Docker clouds, warm and cold: before each
// switch its count is carried from the serving instance to the next, the
// move says so, the old instance still answers right after the switch (it
// drains), and after Exit nothing labelled as the session's is left.
func TestStateTransferAndDrainAcrossDockerClouds(t *testing.T) {
	e := counterOnDocker(t, "v1")
	docker, c, topo, ws := e.docker, e.c, e.topo, e.ws

	id := names.SessionID("state-it", "counter")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	run := startSession(t, ctx, c, id, workflows.SessionInput{
		User: "state-it", App: e.app(t, "v1"), Region: "quartier-latin", Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNeighbours,
		Continuity: workflows.Continuity{Drain: 3 * time.Second},
	})
	st, err := state(ctx, c, id)
	if err != nil {
		t.Fatal(err)
	}
	ep := st.Endpoint
	want := 0
	for range 3 {
		want = count(t, ep)
	}
	clouds := map[string]bool{st.Serving: true}
	warm, cold := 0, 0
	for _, region := range []string{"bastille", "montmartre", "la-defense", "montparnasse", "quartier-latin"} {
		res := move(t, ctx, c, id, region)
		if res.ContextTransferState == nil || *res.ContextTransferState != amsi.ContextTransferred || res.StateError != "" {
			t.Fatalf("move to %s: context %v (%s)", region, res.ContextTransferState, res.StateError)
		}
		if _, err := http.Get(ep.URL + "/healthz"); err != nil {
			t.Errorf("the instance that served before %s went at the switch: %v", region, err)
		}
		want++
		if got := count(t, res.Endpoint); got != want {
			t.Fatalf("after the move to %s (%s) the count is %d, want %d", region, res.Cloud, got, want)
		}
		if res.Warm {
			warm++
		} else {
			cold++
		}
		clouds[res.Cloud] = true
		ep = res.Endpoint
	}
	if len(clouds) < 3 || warm == 0 || cold == 0 {
		t.Errorf("the walk was served from %v (%d warm, %d cold)", clouds, warm, cold)
	}
	if st, err := state(ctx, c, id); err != nil || st.Registration.ContextTransferState == nil || *st.Registration.ContextTransferState != amsi.ContextTransferred {
		t.Errorf("registration %+v (%v)", st.Registration, err)
	}
	exitAndExpectNothingLeft(t, ctx, c, ws, docker, run, id)
}

// exitAndExpectNothingLeft ends the session and checks that no cloud and
// no Docker object holds anything of it.
func exitAndExpectNothingLeft(t *testing.T, ctx context.Context, c client.Client, ws *workerhost.Workers, docker *dockerclient.Client, run client.WorkflowRun, id string) {
	t.Helper()
	if err := c.SignalWorkflow(ctx, id, "", names.ExitSignal, nil); err != nil {
		t.Fatal(err)
	}
	var report workflows.SessionState
	if err := run.Get(ctx, &report); err != nil {
		t.Fatal(err)
	}
	for cloud, rt := range ws.Runtimes {
		if left, err := rt.List(ctx, map[string]string{runtime.LabelWorkflow: id}); err != nil || len(left) > 0 {
			t.Errorf("%s still has %v (%v)", cloud, left, err)
		}
	}
	if left := engineObjects(t, ctx, docker, runtime.LabelWorkflow+"="+runtime.LabelValue(id)); len(left) > 0 {
		t.Errorf("the Docker Engine still holds %v", left)
	}
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, id, path)
	}
}

// notices collects the MobilityProcedureNotifications a callback gets.
type notices struct {
	mu  sync.Mutex
	got []amsi.MobilityProcedureNotificationBody
}

func (n *notices) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var body amsi.MobilityProcedureNotificationBody
	if json.Unmarshal(b, &body) == nil && body.NotificationType == amsi.MobilityProcedureNotification {
		n.mu.Lock()
		n.got = append(n.got, body)
		n.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

// failover returns the completed failover notification, once one came.
func (n *notices) failover() (amsi.Notice, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, b := range n.got {
		if b.Drift.Reason != "" && b.Drift.Status == "COMPLETED" {
			return b.Drift, true
		}
	}
	return amsi.Notice{}, false
}

// subscribe has the mobility API's subscriptions tell n of app's moves.
func subscribe(t *testing.T, ctx context.Context, c client.Client, app string, n *notices) {
	srv := httptest.NewServer(n)
	t.Cleanup(srv.Close)
	_, err := drift.New(c).Subscribe(ctx, workflows.SubscribeRequest{ID: "sub-" + app, Owner: "it", Subscription: amsi.Subscription{
		SubscriptionType: amsi.MobilityProcedureSubscription, CallbackReference: srv.URL,
		FilterCriteria: amsi.FilterCriteria{AppInstanceID: app, MobilityStatus: []int{amsi.MoveTriggered, amsi.MoveCompleted}},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// waitFailover waits, at most bound, for the session to serve from
// somewhere other than from, and returns its state and how long it took.
func waitFailover(t *testing.T, ctx context.Context, c client.Client, id, from string, bound time.Duration) (workflows.SessionState, time.Duration) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < bound {
		if st, err := state(ctx, c, id); err == nil && st.Serving != from && st.Serving != "" {
			return st, time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("still serving from %s %s after its instance went", from, bound)
	return workflows.SessionState{}, 0
}

// failoverBound is how soon a session must serve again: two failed probes
// a second apart (or a worker silent for the watch bound), then the switch.
const failoverBound = 20 * time.Second

// The serving instance's containers are killed: the session fails over
// within its bound to a warm instance, records why, notifies subscribers,
// and keeps serving.
func TestFailoverWhenTheServingInstanceIsKilled(t *testing.T) {
	e := counterOnDocker(t, "v1")
	docker, c, topo, ws := e.docker, e.c, e.topo, e.ws
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	n := &notices{}
	subscribe(t, ctx, c, "counter", n)

	id := names.SessionID("failover-it", "counter")
	run := startSession(t, ctx, c, id, workflows.SessionInput{
		User: "failover-it", App: e.app(t, "v1"), Region: "quartier-latin", Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNeighbours,
	})
	waitWarm(t, ctx, c, id)
	st, _ := state(ctx, c, id)
	dead := st.Serving
	killed := 0
	cs, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", runtime.LabelInstance+"="+runtime.LabelValue(runtime.InstanceName("counter", "failover-it", dead))))})
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range cs {
		if err := docker.ContainerKill(ctx, ct.ID, "KILL"); err != nil {
			t.Fatal(err)
		}
		killed++
	}
	if killed == 0 {
		t.Fatalf("no container of the serving instance on %s", dead)
	}
	st, took := waitFailover(t, ctx, c, id, dead, failoverBound)
	t.Logf("failover %s → %s in %s", dead, st.Serving, took)
	count(t, st.Endpoint)
	m := st.Moves[len(st.Moves)-1]
	if m.Source != workflows.FromFailover || m.FromCloud != dead || !strings.Contains(m.Reason, "stopped answering") {
		t.Errorf("failover record %+v", m)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if note, ok := n.failover(); ok {
			if note.FromCloud != dead || note.ToCloud != st.Serving {
				t.Errorf("failover notification %+v", note)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no failover notification within 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The dead cloud's leftovers go, and the user's own cloud holds a warm
	// instance again; the instance serving stays the server.
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st, err := state(ctx, c, id)
		roles := map[string]workflows.Role{}
		for _, in := range st.Instances {
			if in.Status == workflows.StatusReady {
				roles[in.Cloud] = in.Role
			}
		}
		if err == nil && len(st.Down) == 0 && roles[dead] == workflows.RoleWarm && roles[st.Serving] == workflows.RoleServe {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("90s after the failover: down %v, ready roles %v (%v)", st.Down, roles, err)
		}
	}
	exitAndExpectNothingLeft(t, ctx, c, ws, docker, run, id)
}

// The serving cloud's worker stops: the session fails over within its
// bound (no worker takes or answers the watch), and the dead cloud's
// leftovers are destroyed once a worker polls its queue again.
func TestFailoverWhenTheCloudsWorkerStops(t *testing.T) {
	docker := harness.Docker(t)
	_, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	web, store := harness.CounterImages(t, reg, "v1")
	topo := harness.ExampleTopology(t)
	const dead = "edge-latin" // quartier-latin's cloud
	ws, _ := dockerWorkers(t, c, topo, reg.Host(), allClouds(topo, dead), true)
	_, stopDead := dockerWorkers(t, c, topo, reg.Host(), []string{dead}, false)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	id := names.SessionID("worker-it", "counter")
	run := startSession(t, ctx, c, id, workflows.SessionInput{
		User: "worker-it", App: counterApp(t, web, store), Region: "quartier-latin", Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNeighbours,
	})
	waitWarm(t, ctx, c, id)
	stopDead()
	st, took := waitFailover(t, ctx, c, id, dead, failoverBound)
	t.Logf("failover off a silent worker %s → %s in %s: %s", dead, st.Serving, took, st.Down[dead])
	if !strings.Contains(st.Down[dead], dead) {
		t.Errorf("down %v", st.Down)
	}
	count(t, st.Endpoint)

	// The worker comes back: the instance it left is destroyed (the
	// session clears Down only then), and the cloud is usable again: the
	// user's own cloud, it may at once hold a new warm instance.
	w, _ := dockerWorkers(t, c, topo, reg.Host(), []string{dead}, false)
	name := runtime.InstanceName("counter", "worker-it", dead)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := state(ctx, c, id)
		left, lerr := w.Runtimes[dead].List(ctx, map[string]string{runtime.LabelInstance: name})
		if err == nil && lerr == nil && len(st.Down) == 0 && (len(left) == 0 || heldWarm(st, dead)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the returned cloud still holds %v; down %v", left, st.Down)
		}
		time.Sleep(500 * time.Millisecond)
	}
	all := &workerhost.Workers{Runtimes: map[string]runtime.Runtime{}}
	for id, rt := range ws.Runtimes {
		all.Runtimes[id] = rt
	}
	all.Runtimes[dead] = w.Runtimes[dead]
	exitAndExpectNothingLeft(t, ctx, c, all, docker, run, id)
}

// heldWarm says whether the session holds a warm instance on cloud.
func heldWarm(st workflows.SessionState, cloud string) bool {
	return slices.ContainsFunc(st.Instances, func(in workflows.Instance) bool { return in.Cloud == cloud && in.Role == workflows.RoleWarm })
}

// waitWarm waits until the session has a ready pre-deploy.
func waitWarm(t *testing.T, ctx context.Context, c client.Client, id string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if st, err := state(ctx, c, id); err == nil {
			for _, in := range st.Instances {
				if in.Role == workflows.RoleWarm && in.Status == workflows.StatusReady {
					return
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("no ready pre-deploy within 2 minutes")
}

// No write stays behind on a handover: a client POSTs /count 50 times a
// second at the endpoint each move returns while the user commutes between
// two pre-deployed clouds. The increments the old instance acknowledges
// after its state was read reach the new one when its drain ends (the
// counter's store merges them), so in the end the count is every
// acknowledged increment, and the move records say the late writes were
// carried.
func TestLateWritesOnHandoverAreKept(t *testing.T) {
	e := counterOnDocker(t, "v1")
	docker, c, topo, ws := e.docker, e.c, e.topo, e.ws
	id := names.SessionID("late-it", "counter")
	t.Cleanup(func() { sweepSessions(t, ws.Runtimes, []string{id}) })
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	run := startSession(t, ctx, c, id, workflows.SessionInput{
		User: "late-it", App: e.app(t, "v1"), Region: "quartier-latin", Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Nearest, N: 1, Metric: topology.Geo}, PreDeploy: workflows.PreDeployNeighbours,
		Continuity: workflows.Continuity{Drain: 2 * time.Second},
	})
	waitWarm(t, ctx, c, id)
	st, err := state(ctx, c, id)
	if err != nil {
		t.Fatal(err)
	}
	s := &streamer{}
	s.follow(st.Endpoint.URL)
	sctx, stop := context.WithCancel(ctx)
	go s.run(sctx, benchEvery)
	ep := st.Endpoint
	const moves = 6
	for i := range moves {
		time.Sleep(1500 * time.Millisecond)
		res := move(t, ctx, c, id, []string{"bastille", "quartier-latin"}[i%2])
		if !res.Warm {
			t.Fatalf("move %d was cold", i)
		}
		s.follow(res.Endpoint.URL)
		ep = res.Endpoint
	}
	time.Sleep(time.Second)
	stop()
	time.Sleep(3 * time.Second) // the last answers come in (a request is bounded by 2 s)

	records := settledMoves(t, ctx, c, id, moves)
	ok, failed := s.answers()
	final := readCount(t, ep)
	carried := 0
	for _, r := range records {
		t.Logf("move %s to %s: late writes %s", r.ID, r.ToCloud, r.LateWrites)
		if strings.HasPrefix(r.LateWrites, workflows.LateWritesCarried) {
			carried++
		}
	}
	t.Logf("%d increments acknowledged, %d failed; the count is %d; late writes carried on %d of %d moves", ok, failed, final, carried, moves)
	if failed > 0 || ok < 200 {
		t.Errorf("%d requests failed, %d answered: want none failed of a steady stream", failed, ok)
	}
	if final != ok {
		t.Errorf("the count is %d after %d acknowledged increments: %d writes lost", final, ok, ok-final)
	}
	if carried == 0 {
		t.Error("no move carried late writes: the stream did not reach an old instance after the read?")
	}
	exitAndExpectNothingLeft(t, ctx, c, ws, docker, run, id)
}

// settledMoves waits until the session's last n move records say what
// became of their late writes, and returns them.
func settledMoves(t *testing.T, ctx context.Context, c client.Client, id string, n int) []workflows.MoveRecord {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		st, err := state(ctx, c, id)
		if err == nil && len(st.Moves) > 0 {
			last := st.Moves[len(st.Moves)-min(n, len(st.Moves)):] // a session keeps its recent moves
			if !slices.ContainsFunc(last, func(r workflows.MoveRecord) bool { return r.LateWrites == "" }) {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the moves of %s do not say what became of their late writes after a minute: %+v (%v)", id, st.Moves, err)
		}
	}
}

// readCount GETs / at ep: the count, without adding to it.
func readCount(t *testing.T, ep runtime.Endpoint) int {
	t.Helper()
	resp, err := http.Get(ep.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Count int }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		t.Fatalf("GET %s/: %s", ep.URL, resp.Status)
	}
	return body.Count
}
