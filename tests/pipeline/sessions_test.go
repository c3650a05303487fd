package pipeline

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// A release whose spec names a user's session of the app: once every
// target runs it, the session adopts it; its serving instance keeps
// answering the version it ran, and the user's next move reaches the
// pipeline's build on an instance that was ready before the switch.
func TestAReleaseReachesALiveSessionAtItsNextMove(t *testing.T) {
	c, topo, ws, spec, _ := recoveryEnv(t)
	v1 := harness.ExampleImage(t, harness.Registry(t), demo.Hello, "v1")
	app, err := appspec.FromImage("hello", v1, 8080)
	if err != nil {
		t.Fatal(err)
	}
	const user = "release-it"
	id := names.SessionID(user, "hello")
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	sess, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: names.TaskQueue}, workflows.MobilitySession,
		workflows.SessionInput{User: user, App: app, Region: "quartier-latin", Topology: topo,
			Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNeighbours})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.TerminateWorkflow(context.Background(), id, "", "test over") })
	before := sessionState(t, ctx, c, id, func(st workflows.SessionState) bool { return st.Phase == "serving" && len(st.InFlight) == 0 })
	expectVersion(t, before.Endpoint.URL, "v1")

	spec.Deploy.Sessions = []string{user, "nobody-here"}
	spec.Deploy.SessionsReplaceAfter = -time.Second // at the next move only: this test is about that
	spec.Image.Platforms = []string{"linux/amd64"}
	pr := run(t, ctx, c, topo, spec, "adopted")
	if len(pr.Sessions) != 2 || !pr.Sessions[0].Adopted || pr.Sessions[1].Adopted || pr.Sessions[1].Error != "no open session" {
		t.Fatalf("the run told its sessions %+v", pr.Sessions)
	}
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, pr.ID, path)
	}
	onRelease := sessionState(t, ctx, c, id, func(st workflows.SessionState) bool {
		if st.Release != pr.ID || st.Image != pr.Image || len(st.InFlight) > 0 {
			return false
		}
		for _, in := range st.Instances {
			if in.Role == workflows.RoleWarm && (in.Status != workflows.StatusReady || in.Runs != pr.Image) {
				return false
			}
		}
		return true
	})
	if onRelease.Endpoint != before.Endpoint {
		t.Errorf("the serving endpoint changed without a move: %v -> %v", before.Endpoint, onRelease.Endpoint)
	}
	expectVersion(t, before.Endpoint.URL, "v1") // no restart under the user

	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: names.MoveUpdate, Args: []any{"bastille"}, WaitForStage: client.WorkflowUpdateStageCompleted})
	var moved workflows.MoveResult
	if err == nil {
		err = h.Get(ctx, &moved)
	}
	if err != nil || !moved.Warm {
		t.Fatalf("move: %+v %v", moved, err)
	}
	expectVersion(t, moved.Endpoint.URL, "pipeline")

	if err := c.SignalWorkflow(ctx, id, "", names.ExitSignal, nil); err != nil {
		t.Fatal(err)
	}
	if err := sess.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for cloud, rt := range ws.Runtimes {
		if left, err := rt.List(ctx, map[string]string{runtime.LabelWorkflow: id}); err != nil || len(left) > 0 {
			t.Errorf("%s still runs %v of the session (%v)", cloud, left, err)
		}
	}
}

// sessionState polls the session's Progress until ok holds (a minute and
// a half at most).
func sessionState(t *testing.T, ctx context.Context, c client.Client, id string, ok func(workflows.SessionState) bool) workflows.SessionState {
	t.Helper()
	var last workflows.SessionState
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var st workflows.SessionState // decoded afresh: fields left out of the answer are empty
		v, err := c.QueryWorkflow(ctx, id, "", names.ProgressQuery)
		if err == nil && v.Get(&st) == nil {
			if ok(st) {
				return st
			}
			last = st
		}
	}
	t.Fatalf("session %s never got there: %+v", id, last)
	return last
}

// expectVersion checks that the hello app at url answers as version.
func expectVersion(t *testing.T, url, version string) {
	t.Helper()
	code, _, body := harness.HTTPGet(t, url+"/")
	if code != 200 || !strings.Contains(body, `"version":"`+version+`"`) {
		t.Errorf("%s answered %d %s, want version %s", url, code, body, version)
	}
}
