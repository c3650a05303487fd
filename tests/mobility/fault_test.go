package mobility

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/appspec"
	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/registry"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/process"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

func TestMain(m *testing.M) { harness.Main(m) }

// The worker dies (SIGKILL) while a handover's deploy is running; a new
// worker finishes the move, and the target cloud ends up with exactly one
// instance, not two.
func TestWorkerKilledDuringHandover(t *testing.T) {
	ws := newWorkerStack(t)
	c, dataDir, topo, worker := ws.c, ws.dataDir, ws.topo, ws.start
	w := worker()
	// Nothing is pre-deployed, so the move below is cold and slow enough
	// to be interrupted.
	spec := slowHello(t, harness.HelloImage(t, ws.reg, "v1"))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const user = "fault-it"
	if _, err := drift.New(c).OpenSession(ctx, drift.Open{User: user, App: spec, Region: "quartier-latin", Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNone}); err != nil {
		t.Fatal(err)
	}

	moved := make(chan workflows.MoveResult, 1)
	moveErr := make(chan error, 1)
	go func() {
		res, err := drift.New(c).Move(ctx, user, "hello", "bastille")
		moved <- res
		moveErr <- err
	}()
	waitInFlight(t, ctx, c, user, "deploy edge-bastille")
	time.Sleep(time.Second) // the instance is starting, not yet ready
	if err := syscall.Kill(w.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.Wait(time.Minute)
	w = worker()

	res := <-moved
	if err := <-moveErr; err != nil {
		t.Fatalf("move after the crash: %v", err)
	}
	if res.Cloud != "edge-bastille" || res.Warm {
		t.Fatalf("move result %+v", res)
	}
	bastille := processRuntime(t, dataDir, "edge-bastille")
	if in, err := bastille.List(ctx, nil); err != nil || len(in) != 1 {
		t.Fatalf("edge-bastille holds %v (%v), want exactly one instance", in, err)
	}
	if n := harness.ProcessesUnder(t, filepath.Join(dataDir, "process", "edge-bastille")); n != 1 {
		t.Fatalf("%d processes run for edge-bastille, want 1", n)
	}

	rep, err := drift.New(c).Exit(ctx, user, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Handovers != 1 || rep.Totals.Cold != 1 {
		t.Fatalf("report %+v", rep.Totals)
	}
	for _, cl := range topo.Clouds() {
		if in, err := processRuntime(t, dataDir, cl.ID).List(ctx, nil); err != nil || len(in) > 0 {
			t.Errorf("%s still holds %v (%v)", cl.ID, in, err)
		}
	}
	if n := harness.ProcessesUnder(t, dataDir); n != 0 {
		t.Errorf("%d instance processes still run", n)
	}
}

// workerStack is what the worker fault tests share: a Temporal server,
// the registry, a data dir and the example topology, served by the real
// drift-worker binary, which start starts (again).
type workerStack struct {
	c       client.Client
	reg     *registry.Server
	dataDir string
	topo    *topology.Topology
	start   func() *harness.Proc
}

func newWorkerStack(t *testing.T) workerStack {
	_, driftWorker := harness.Binaries(t)
	stack, c := harness.Temporal(t, "")
	ws := workerStack{c: c, reg: harness.Registry(t), dataDir: t.TempDir()}
	topoFile := filepath.Join(harness.RepoRoot(), "deploy", "examples", "topology.yaml")
	topo, err := topology.Load(topoFile)
	if err != nil {
		t.Fatal(err)
	}
	ws.topo = topo
	ws.start = func() *harness.Proc {
		return harness.StartWorker(t, driftWorker, stack.Address(), "--topology", topoFile, "--all-clouds",
			"--data-dir", ws.dataDir, "--registry", ws.reg.Host())
	}
	return ws
}

// slowHello is the hello app of image, ready only 3 s after it starts: a
// deploy of it is slow enough to be interrupted.
func slowHello(t *testing.T, image string) appspec.AppSpec {
	spec, err := appspec.FromImage("hello", image, 8080)
	if err != nil {
		t.Fatal(err)
	}
	spec.Health = "/healthz"
	spec.Env = map[string]string{"READY_AFTER": "3s"}
	return spec
}

func waitInFlight(t *testing.T, ctx context.Context, c client.Client, user, op string) {
	t.Helper()
	for ctx.Err() == nil {
		if st, err := drift.New(c).Session(ctx, user, "hello"); err == nil && slices.Contains(st.InFlight, op) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%q never in flight", op)
}

func processRuntime(t *testing.T, dataDir, cloud string) *process.Runtime {
	t.Helper()
	rt, err := process.New(runtime.Config{Kind: runtime.KindProcess, Dir: filepath.Join(dataDir, "process", cloud)}, cloud)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// The worker dies (SIGKILL) while a quiet session's replacement is being
// deployed beside its serving instance; a new worker finishes it: the
// cloud ends up with exactly the new release's instance, serving, and
// nothing else.
func TestWorkerKilledDuringAQuietReplacement(t *testing.T) {
	ws := newWorkerStack(t)
	c, dataDir, topo, worker := ws.c, ws.dataDir, ws.topo, ws.start
	w := worker()
	v2 := harness.HelloImage(t, ws.reg, "v2")
	spec := slowHello(t, harness.HelloImage(t, ws.reg, "v1"))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const user = "quiet-fault-it"
	d := drift.New(c)
	if _, err := d.OpenSession(ctx, drift.Open{User: user, App: spec, Region: "quartier-latin", Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNone}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Adopt(ctx, user, "hello", workflows.AdoptRequest{Release: "v2", Images: map[string]string{"hello": v2}, ReplaceAfter: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	replacement := func() (workflows.SessionState, workflows.MoveRecord) {
		st, err := d.Session(ctx, user, "hello")
		if i := slices.IndexFunc(st.Moves, func(r workflows.MoveRecord) bool { return r.Source == workflows.FromReplace }); err == nil && i >= 0 {
			return st, st.Moves[i]
		}
		return st, workflows.MoveRecord{}
	}
	for _, r := replacement(); r.Status != workflows.MoveTriggered; _, r = replacement() {
		if ctx.Err() != nil {
			t.Fatal("no replacement began")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // the spare is starting, not yet ready
	if err := syscall.Kill(w.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.Wait(time.Minute)
	worker()

	var st workflows.SessionState
	for r := (workflows.MoveRecord{}); r.Status != workflows.MoveCompleted; st, r = replacement() {
		if r.Status == workflows.MoveFailed || ctx.Err() != nil {
			t.Fatalf("replacement %+v", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	latin := processRuntime(t, dataDir, "edge-latin")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) { // the old one drains, then goes
		in, err := latin.List(ctx, nil)
		if err == nil && len(in) == 1 && in[0].Name == runtime.InstanceName("hello", user, "edge-latin", "b") && in[0].Image == st.Image {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge-latin holds %+v (%v), want only the replacement on %s", in, err, st.Image)
		}
	}
	if n := harness.ProcessesUnder(t, filepath.Join(dataDir, "process", "edge-latin")); n != 1 {
		t.Fatalf("%d processes run for edge-latin, want 1", n)
	}
	if code, _, body := harness.HTTPGet(t, st.Endpoint.URL+"/"); code != 200 || !strings.Contains(body, `"version":"v2"`) {
		t.Errorf("the serving endpoint answers %d %s", code, body)
	}
	if _, err := d.Exit(ctx, user, "hello"); err != nil {
		t.Fatal(err)
	}
	if n := harness.ProcessesUnder(t, dataDir); n != 0 {
		t.Errorf("%d instance processes still run", n)
	}
}
