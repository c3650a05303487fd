package production

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	driftclient "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/open"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/tests/production/temporalpg"
	"github.com/edgedrift/drift/workflows"
)

func TestMain(m *testing.M) { harness.Main(m) }

// The README's Production block is Steps, line for line.
func TestReadmeShowsTheSteps(t *testing.T) {
	got, ok := readmeSteps(harness.RepoRoot())
	if !ok {
		t.Fatalf("README.md has no block between %q and %q", readmeBegin, readmeEnd)
	}
	if !slices.Equal(got, Steps) {
		t.Fatalf("README's production steps differ from tests/production/steps.go:\nREADME:\n%s\n\nsteps.go:\n%s",
			strings.Join(got, "\n"), strings.Join(Steps, "\n"))
	}
	for _, v := range Env {
		if !strings.Contains(readme(t), "`$"+v+"`") {
			t.Errorf("README does not explain $%s", v)
		}
	}
}

func readme(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// site is a drift-worker of the production example and the identity it
// shows in histories.
type site struct {
	step     int
	metrics  string // host:port of /metrics, /healthz, /readyz
	identity string // what it polls, @ host
	proc     *harness.Proc
}

// operator runs the README's steps against one cluster.
type operator struct {
	t     *testing.T
	env   map[string]string
	bin   string // dir of drift and drift-worker
	sites map[string]*site
}

func (o *operator) environ() []string {
	out := []string{"PATH=" + o.bin + string(os.PathListSeparator) + os.Getenv("PATH"), "OTEL_TRACES_EXPORTER=none"}
	for k, v := range o.env {
		out = append(out, k+"="+v)
	}
	return out
}

// run runs a foreground step with bash from the repository's root.
func (o *operator) run(ctx context.Context, step string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", "-c", step)
	cmd.Dir = harness.RepoRoot()
	cmd.Env = append(os.Environ(), o.environ()...)
	began := time.Now()
	out, err := cmd.CombinedOutput()
	if took := time.Since(began); took > 5*time.Second {
		o.t.Logf("%.70s… took %s", step, took.Round(time.Second))
	}
	return string(out), err
}

func (o *operator) mustRun(ctx context.Context, step string) string {
	o.t.Helper()
	out, err := o.run(ctx, step)
	if err != nil {
		o.t.Fatalf("%s: %v\n%s", step, err, out)
	}
	return out
}

// start runs a long-running step (" &") as its own process: bash execs it.
func (o *operator) start(step string) *harness.Proc {
	o.t.Helper()
	cmd := "cd " + harness.RepoRoot() + " && exec " + strings.TrimSuffix(step, " &")
	return harness.StartEnv(o.t, o.environ(), "bash", "-c", cmd)
}

func (o *operator) startSite(name string) {
	o.t.Helper()
	s := o.sites[name]
	s.proc = o.start(Steps[s.step])
	s.proc.WaitFor(o.t, "worker polling", time.Minute)
}

// kill SIGKILLs a site's worker and waits until it is gone.
func (o *operator) kill(name string) {
	o.t.Helper()
	p := o.sites[name].proc
	if err := syscall.Kill(p.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
		o.t.Fatal(err)
	}
	if exited, _ := p.Wait(30 * time.Second); !exited {
		o.t.Fatalf("%s worker still alive after SIGKILL", name)
	}
}

// session reads the session's state with the CLI.
func (o *operator) session(ctx context.Context) workflows.SessionState {
	o.t.Helper()
	var st workflows.SessionState
	out := o.mustRun(ctx, "drift session state --user alice --app hello --json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		o.t.Fatalf("session state: %v\n%s", err, out)
	}
	return st
}

// settled waits until the session serves from cloud with exactly the
// instances want, all ready, and nothing in flight.
func (o *operator) settled(ctx context.Context, cloud string, want ...string) workflows.SessionState {
	o.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := o.session(ctx)
		var ready []string
		for _, in := range st.Instances {
			if in.Status == workflows.StatusReady {
				ready = append(ready, in.Cloud)
			}
		}
		if st.Serving == cloud && len(st.InFlight) == 0 && slices.Equal(ready, want) && len(st.Instances) == len(want) {
			return st
		}
		if time.Now().After(deadline) {
			o.t.Fatalf("session not settled on %s with %v: %+v", cloud, want, st)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func status(url string) int {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// eventually waits up to within for url to answer code.
func eventually(t *testing.T, url string, code int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for status(url) != code {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d within %s (last %d)", url, code, within, status(url))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// drift in its production shape, by the README's steps: a worker refuses a
// namespace drift setup has not prepared; setup prepares it (and is
// idempotent); the registry wants a password; three sites poll their
// clouds; a pipeline builds and deploys to a fog and an edge cloud; /readyz
// follows Temporal going down and coming back; a session survives its edge
// worker's SIGKILL mid-move, a move to a cloud nobody polls fails within
// its bound while the session keeps serving; every cloud's activities ran
// on its own site; nothing is left.
func TestProductionShape(t *testing.T) {
	began := time.Now()
	phase := func(what string) { t.Logf("%s after %s", what, time.Since(began).Round(time.Second)) }
	harness.PrebuildBinaries() // while PostgreSQL and Temporal start
	cluster := temporalpg.Start(t)
	drift, _ := harness.Binaries(t)
	phase("Temporal up and drift built")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	data := t.TempDir()
	t.Cleanup(func() { removeInstances(t, data) })
	repo, err := demoRepo(ctx, filepath.Join(data, "src"))
	if err != nil {
		t.Fatal(err)
	}
	metrics := func() string { return fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)) }
	host, _ := os.Hostname()
	o := &operator{t: t, bin: filepath.Dir(drift), env: map[string]string{
		"TEMPORAL_ADDRESS": cluster.Address, "TEMPORAL_NAMESPACE": "drift",
		"DRIFT_REGISTRY": fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)), "DOCKER_CONFIG": filepath.Join(data, "docker"),
		"DATA": data, "REPO": repo, "METRICS_CENTRAL": metrics(), "METRICS_FOG": metrics(), "METRICS_EDGE": metrics(),
	}}
	o.sites = map[string]*site{
		"central": {step: stepCentral, metrics: o.env["METRICS_CENTRAL"], identity: "central+center@" + host},
		"fog":     {step: stepFog, metrics: o.env["METRICS_FOG"], identity: "fog-1+fog-2@" + host},
		"edge":    {step: stepEdge, metrics: o.env["METRICS_EDGE"], identity: "edge-1+edge-2@" + host},
	}

	// Before setup: a worker exits at once with one line naming the command.
	worker := o.start(Steps[stepCentral])
	if exited, err := worker.Wait(time.Minute); !exited || err == nil {
		t.Fatalf("worker on a namespace that does not exist: exited %v (%v)\n%s", exited, err, worker.Output())
	}
	wantLine(t, worker.Output(), "namespace drift does not exist", "run `drift setup --address "+cluster.Address+" --namespace drift`")
	if err := cluster.RegisterNamespace(ctx, "drift"); err != nil {
		t.Fatal(err)
	}
	worker = o.start(Steps[stepCentral])
	if exited, err := worker.Wait(time.Minute); !exited || err == nil {
		t.Fatalf("worker on a namespace without drift's search attributes: exited %v (%v)\n%s", exited, err, worker.Output())
	}
	wantLine(t, worker.Output(), "lacks drift's search attributes DriftApp, DriftCloud, DriftKind, DriftUser", "run `drift setup --address")

	out := o.mustRun(ctx, Steps[stepSetup])
	if words := strings.Join(strings.Fields(out), " "); !strings.Contains(words, "search attribute DriftKind (Keyword) created") || !strings.Contains(words, "ready for drift") {
		t.Fatalf("drift setup:\n%s", out)
	}
	if out = o.mustRun(ctx, Steps[stepSetup]); strings.Contains(out, "created") { // idempotent
		t.Fatalf("drift setup again created something:\n%s", out)
	}
	if out = o.mustRun(ctx, "drift setup --namespace drift-other --retention 24h"); !strings.Contains(strings.Join(strings.Fields(out), " "), "namespace drift-other created retention 24h0m0s") {
		t.Fatalf("drift setup of a new namespace:\n%s", out)
	}

	o.mustRun(ctx, Steps[stepPassword])
	o.mustRun(ctx, Steps[stepAddUser])
	registry := o.start(Steps[stepRegistry])
	registry.WaitFor(t, "registry serving", time.Minute)
	if code := status("http://" + o.env["DRIFT_REGISTRY"] + "/v2/"); code != http.StatusUnauthorized {
		t.Fatalf("registry answers an anonymous client %d, want 401", code)
	}
	// Nothing polls yet: a run started now is warned about, and terminated.
	out = o.mustRun(ctx, "drift pipeline run -f deploy/production/pipeline.yaml -t deploy/production/topology.yaml --repo $REPO --run r0 --detach")
	for _, q := range []string{"drift:", "drift.cloud.fog-1:", "drift.cloud.edge-1:"} {
		if !strings.Contains(out, "warning: no worker polls "+q) {
			t.Errorf("pipeline run before any worker: no warning for %s\n%s", q, out)
		}
	}
	if out = o.mustRun(ctx, "drift pipeline terminate hello r0 --reason 'no workers yet'"); !strings.Contains(out, "pipeline/hello/r0: terminate requested") {
		t.Fatalf("terminate: %s", out)
	}
	if st := o.workflowStatus(ctx, cluster, names.PipelineID("hello", "r0")); st != enums.WORKFLOW_EXECUTION_STATUS_TERMINATED {
		t.Fatalf("pipeline r0 is %s after terminate", st)
	}
	for _, s := range o.sites { // all at once: they start in parallel
		s.proc = o.start(Steps[s.step])
	}
	for _, s := range o.sites {
		s.proc.WaitFor(t, "worker polling", time.Minute)
		eventually(t, "http://"+s.metrics+"/readyz", http.StatusOK, 30*time.Second)
	}
	phase("set up, registry serving, three sites polling")

	t.Run("pipeline", func(t *testing.T) {
		// The central worker dies while it builds; the run carries on once
		// it is back, and the CLI that follows it sees it succeed.
		done := make(chan string, 1)
		go func() {
			out, err := o.run(ctx, Steps[stepPipeline])
			done <- fmt.Sprintf("%v\n%s", err, out)
		}()
		o.waitStep(ctx, "r1", workflows.StepBuild)
		o.kill("central")
		o.startSite("central")
		var out string
		select {
		case out = <-done:
		case <-time.After(5 * time.Minute):
			t.Fatal("pipeline did not end after the central worker came back")
		}
		if !strings.HasPrefix(out, "<nil>") || !strings.Contains(out, "pipeline/hello/r1 succeeded") {
			t.Fatalf("pipeline across the central worker's restart:\n%s", out)
		}
		pr := o.pipeline(ctx, "r1")
		if !strings.HasPrefix(pr.Image, o.env["DRIFT_REGISTRY"]+"/hello@sha256:") {
			t.Fatalf("image %q not in the registry", pr.Image)
		}
		o.env["IMAGE"] = pr.Image
		for _, tp := range pr.Targets {
			if code := status(tp.Endpoint.URL + "/healthz"); code != http.StatusOK {
				t.Errorf("%s at %s answers %d", tp.Cloud, tp.Endpoint.URL, code)
			}
		}
		if retried := o.ranOnItsSite(ctx, cluster, names.PipelineID("hello", "r1"), names.TaskQueue, "fog-1", "edge-1"); len(retried) == 0 {
			t.Error("no activity of the run was attempted again after the central worker's SIGKILL")
		}
	})
	if o.env["IMAGE"] == "" {
		t.FailNow()
	}

	phase("pipeline done")
	// The registry restarts: what it holds and its password stay (the
	// session's sites pull the image from it anew).
	registry.Cmd.Process.Signal(syscall.SIGTERM)
	if exited, _ := registry.Wait(30 * time.Second); !exited {
		t.Fatal("registry did not stop on SIGTERM")
	}
	registry = o.start(Steps[stepRegistry])
	registry.WaitFor(t, "registry serving", time.Minute)
	if code := status("http://" + o.env["DRIFT_REGISTRY"] + "/v2/"); code != http.StatusUnauthorized {
		t.Fatalf("restarted registry answers an anonymous client %d, want 401", code)
	}

	t.Run("session", func(t *testing.T) {
		out := o.mustRun(ctx, Steps[stepSessionStart])
		if !strings.Contains(out, "from edge-1") || strings.Contains(out, "warning") {
			t.Fatalf("session start:\n%s", out)
		}
		before := o.settled(ctx, "edge-1", "edge-1", "fog-1")

		// Temporal restarts under the running session: it keeps its state
		// and serves on.
		o.restartTemporal(ctx, t, cluster)
		after := o.settled(ctx, "edge-1", "edge-1", "fog-1")
		if after.Endpoint != before.Endpoint || after.Totals.Handovers != before.Totals.Handovers {
			t.Fatalf("session across Temporal's restart: before %+v, after %+v", before, after)
		}
		if code := status(after.Endpoint.URL + "/healthz"); code != http.StatusOK {
			t.Fatalf("the serving instance answers %d after Temporal's restart", code)
		}

		// The edge worker dies; the move waits on edge-2's queue and
		// completes once the worker is back.
		o.kill("edge")
		moved := make(chan string, 1)
		go func() {
			out, err := o.run(ctx, Steps[stepMove])
			moved <- fmt.Sprintf("%v\n%s", err, out)
		}()
		time.Sleep(3 * time.Second)
		o.startSite("edge")
		select {
		case out := <-moved:
			if !strings.HasPrefix(out, "<nil>") || !strings.Contains(out, "edge-2") {
				t.Fatalf("move across the edge worker's restart:\n%s", out)
			}
		case <-time.After(3 * time.Minute):
			t.Fatal("move did not complete after the edge worker came back")
		}
		o.settled(ctx, "edge-2", "edge-2", "fog-2")

		// The edge site's metrics tell its queues' pollers and waits, and
		// its log has a line per activity.
		_, _, metrics := harness.HTTPGet(t, "http://"+o.sites["edge"].metrics+"/metrics")
		for _, want := range []string{`drift_worker_queue_pollers{cloud="edge-2",queue="drift.cloud.edge-2"}`,
			`drift_worker_queue_schedule_to_start_seconds_count{cloud="edge-2",queue="drift.cloud.edge-2"}`} {
			if !strings.Contains(metrics, want) {
				t.Errorf("edge metrics lack %s", want)
			}
		}
		if log := o.sites["edge"].proc.Output(); !strings.Contains(log, `"msg":"activity done","workflow_id":"session/alice/hello","activity":"DeployInstance","cloud":"edge-2"`) {
			t.Errorf("edge worker's log has no line for the deploy on edge-2:\n%s", log)
		}

		// No worker polls the edge clouds now: the session fails over off
		// edge-2 (its watch has no worker), and a move back to downtown
		// (edge-1) fails within the 30s bound naming the queue; the session
		// keeps serving.
		o.kill("edge")
		began := time.Now()
		out, err := o.run(ctx, "drift session move downtown --user alice --app hello")
		took := time.Since(began)
		if err == nil || !strings.Contains(out, "cannot serve from edge-1: no worker polls drift.cloud.edge-1") || !strings.Contains(out, workflows.ErrTypeNoWorker) {
			t.Fatalf("move to an unpolled cloud: %v\n%s", err, out)
		}
		if took > 90*time.Second {
			t.Errorf("the failed move took %s, bound 30s", took)
		}
		t.Logf("move to an unpolled cloud failed after %s: %s", took.Round(time.Second), strings.TrimSpace(out))
		now := o.session(ctx)
		if strings.HasPrefix(now.Serving, "edge-") || now.Down["edge-2"] == "" || now.Totals.FailedMoves != 1 {
			t.Fatalf("after the edge worker died and the failed move: serving %q, down %v, %d failed moves", now.Serving, now.Down, now.Totals.FailedMoves)
		}
		if code := status(now.Endpoint.URL + "/healthz"); code != http.StatusOK {
			t.Fatalf("the serving instance on %s answers %d after the failed move", now.Serving, code)
		}
		o.startSite("edge")
		out = o.mustRun(ctx, Steps[stepExit])
		if !strings.Contains(out, "every instance destroyed") && !strings.Contains(out, "ended") {
			t.Logf("exit:\n%s", out)
		}
		o.ranOnItsSite(ctx, cluster, names.SessionID("alice", "hello"), names.TaskQueue, "center", "fog-1", "fog-2", "edge-1", "edge-2")
		if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" { // make record-histories
			c, err := cluster.Dial(ctx, "drift")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			harness.RecordHistory(t, ctx, c, names.SessionID("alice", "hello"), path)
		}
	})

	phase("session done")
	// The pipeline's deployment comes off its targets; a name no app can
	// have is refused before anything is asked of a worker.
	if out, err := o.run(ctx, "drift pipeline undeploy '../héllo' --clouds fog-1 -t deploy/production/topology.yaml"); err == nil || !strings.Contains(out, "must be a DNS-1035 label") {
		t.Errorf("undeploy of a bad name: %v\n%s", err, out)
	}
	if out = o.mustRun(ctx, Steps[stepUndeploy]); !strings.Contains(out, workflows.PipelineInstance("hello")+" removed from fog-1, edge-1") {
		t.Errorf("undeploy:\n%s", out)
	}
	o.ranOnItsSite(ctx, cluster, names.UndeployID("hello"), "fog-1", "edge-1")
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" { // make record-histories: beside the session's
		c, err := cluster.Dial(ctx, "drift")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		harness.RecordHistory(t, ctx, c, names.UndeployID("hello"), filepath.Join(filepath.Dir(path), "pipeline-undeploy.json"))
	}

	// Nothing is left: the session destroyed its instances, undeploy the
	// pipeline's.
	for _, s := range o.sites {
		if err := s.proc.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if exited, _ := s.proc.Wait(time.Minute); !exited {
			t.Fatal("a worker did not stop on SIGTERM")
		}
	}
	registry.Cmd.Process.Signal(syscall.SIGTERM)
	registry.Wait(30 * time.Second)
	if left := removeInstances(t, data); len(left) != 0 {
		t.Errorf("instances left: %v", left)
	}
	phase("undeployed, workers stopped, nothing left")
	if n := harness.ProcessesUnder(t, data); n != 0 {
		t.Fatalf("%d processes of drift's instances left under %s", n, data)
	}
}

// restartTemporal stops the Temporal server and starts it again: /readyz
// of every site follows it down and back up while /healthz stays 200, and
// every queue is polled again.
func (o *operator) restartTemporal(ctx context.Context, t *testing.T, cluster *temporalpg.Cluster) {
	t.Helper()
	ready := "http://" + o.sites["central"].metrics + "/readyz"
	if err := cluster.StopServer(); err != nil {
		t.Fatal(err)
	}
	eventually(t, ready, http.StatusServiceUnavailable, 30*time.Second)
	if code := status("http://" + o.sites["central"].metrics + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz (liveness) %d while Temporal is down", code)
	}
	if err := cluster.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range o.sites {
		eventually(t, "http://"+s.metrics+"/readyz", http.StatusOK, time.Minute)
	}
	// The server knows pollers once the workers poll again (their SDK
	// backs off while it is down).
	c, err := cluster.Dial(ctx, "drift")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	all := []string{"center", "fog-1", "fog-2", "edge-1", "edge-2"}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		unpolled, err := driftclient.New(c).Unpolled(ctx, all)
		if err == nil && len(unpolled) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queues not polled again after the restart: %v (%v)", unpolled, err)
		}
	}
}

// workflowStatus is where workflow id is.
func (o *operator) workflowStatus(ctx context.Context, cluster *temporalpg.Cluster, id string) enums.WorkflowExecutionStatus {
	o.t.Helper()
	c, err := cluster.Dial(ctx, "drift")
	if err != nil {
		o.t.Fatal(err)
	}
	defer c.Close()
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		o.t.Fatal(err)
	}
	return desc.GetWorkflowExecutionInfo().GetStatus()
}

// wantLine checks that the process printed exactly one line and that it
// holds every part.
func wantLine(t *testing.T, out string, parts ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Errorf("want one line, got %d:\n%s", len(lines), out)
	}
	for _, p := range parts {
		if !strings.Contains(out, p) {
			t.Errorf("output lacks %q:\n%s", p, out)
		}
	}
}

// ranOnItsSite checks in a workflow's history that every activity on a
// cloud's queue was taken by the worker of that cloud's site, and that
// activities ran on each of clouds. It returns the activities that took
// more than one attempt.
func (o *operator) ranOnItsSite(ctx context.Context, cluster *temporalpg.Cluster, id string, clouds ...string) (retried []string) {
	o.t.Helper()
	c, err := cluster.Dial(ctx, "drift")
	if err != nil {
		o.t.Fatal(err)
	}
	defer c.Close()
	siteOf := map[string]string{names.TaskQueue: "central", names.CloudQueue("center"): "central",
		names.CloudQueue("fog-1"): "fog", names.CloudQueue("fog-2"): "fog",
		names.CloudQueue("edge-1"): "edge", names.CloudQueue("edge-2"): "edge"}
	queueOf := map[int64]string{}
	typeOf := map[int64]string{}
	ran := map[string]int{}
	it := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			o.t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			queueOf[ev.GetEventId()] = a.GetTaskQueue().GetName()
			typeOf[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil {
			q := queueOf[a.GetScheduledEventId()]
			if a.GetAttempt() > 1 {
				retried = append(retried, fmt.Sprintf("%s (attempt %d)", typeOf[a.GetScheduledEventId()], a.GetAttempt()))
			}
			want := o.sites[siteOf[q]]
			if want == nil || a.GetIdentity() != want.identity {
				o.t.Errorf("%s: an activity on %s ran on %q, want %s's worker", id, q, a.GetIdentity(), siteOf[q])
				continue
			}
			ran[strings.TrimPrefix(q, names.CloudQueue(""))]++
		}
	}
	for _, cloud := range clouds {
		if ran[cloud] == 0 {
			o.t.Errorf("%s: no activity ran on %s (ran: %v)", id, cloud, ran)
		}
	}
	o.t.Logf("%s: activities by queue, each on its site's worker: %v; attempted again: %v", id, ran, retried)
	return retried
}

// pipeline reads a run's progress with the CLI.
func (o *operator) pipeline(ctx context.Context, run string) workflows.PipelineProgress {
	o.t.Helper()
	var pr workflows.PipelineProgress
	out := o.mustRun(ctx, "drift pipeline status hello "+run+" --json")
	if err := json.Unmarshal([]byte(out), &pr); err != nil {
		o.t.Fatalf("pipeline status: %v\n%s", err, out)
	}
	return pr
}

// waitStep waits until run is at step, running (the run may not have
// started yet).
func (o *operator) waitStep(ctx context.Context, run string, step workflows.StepName) {
	o.t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(300 * time.Millisecond) {
		var pr workflows.PipelineProgress
		out, err := o.run(ctx, "drift pipeline status hello "+run+" --json")
		if err == nil && json.Unmarshal([]byte(out), &pr) == nil {
			if s, _ := pr.StepByName(step); s.Status == workflows.StepRunning {
				return
			}
		}
		if time.Now().After(deadline) {
			o.t.Fatalf("run %s never ran %s", run, step)
		}
	}
}

// siteClouds are the clouds of each site's worker, whose instances live
// under DATA/<site>.
var siteClouds = map[string][]string{"central": {"center"}, "fog": {"fog-1", "fog-2"}, "edge": {"edge-1", "edge-2"}}

// removeInstances destroys every drift-owned instance on every cloud of the
// example, as its site's worker would (the process runtime keeps its
// records under the site's data dir), and returns what it found by cloud.
func removeInstances(t *testing.T, data string) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	found := map[string][]string{}
	for site, clouds := range siteClouds {
		for _, cloud := range clouds {
			rt, err := open.Runtime(cloud, runtime.Config{Kind: runtime.KindProcess}, filepath.Join(data, site))
			if err != nil {
				t.Fatal(err)
			}
			list, err := rt.List(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range list {
				found[cloud] = append(found[cloud], in.Name)
				if err := rt.Destroy(ctx, in.Name); err != nil {
					t.Errorf("destroy %s on %s: %v", in.Name, cloud, err)
				}
			}
		}
	}
	return found
}

// demoRepo is the hello app in a git repository of its own.
func demoRepo(ctx context.Context, dir string) (string, error) {
	files, err := demo.HelloFiles()
	if err != nil {
		return "", err
	}
	return demo.GitRepo(ctx, dir, "hello", files)
}
