package mobility

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// A live session of the counter app adopts release v2 while a client
// streams requests at it: the warm instances take v2 at once, the serving
// instance keeps answering v1 (no restart under the user), the next move
// switches to an instance already on v2 with the count carried, and not
// one request fails. A release for other services is refused and changes
// nothing.
func TestSessionAdoptsAReleaseWithoutARestart(t *testing.T) {
	e := counterOnDocker(t, "v1", "v2")
	docker, stack, c, topo, ws := e.docker, e.stack, e.c, e.topo, e.ws
	web2, store2 := e.images["v2"][0], e.images["v2"][1]

	const user = "adopt-it"
	id := names.SessionID(user, "counter")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	run := startSession(t, ctx, c, id, workflows.SessionInput{
		User: user, App: e.app(t, "v1"), Region: "quartier-latin", Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNeighbours,
		Continuity: workflows.Continuity{Drain: 3 * time.Second},
	})
	st, err := state(ctx, c, id)
	if err != nil {
		t.Fatal(err)
	}
	v1 := st.Instances[slices.IndexFunc(st.Instances, func(in workflows.Instance) bool { return in.Cloud == st.Serving })].Runs

	s := &streamer{}
	s.follow(st.Endpoint.URL)
	sctx, stopStream := context.WithCancel(ctx)
	streamDone := make(chan struct{})
	go func() { s.run(sctx, 50*time.Millisecond); close(streamDone) }()

	dc := drift.New(c)
	if _, err := dc.Adopt(ctx, user, "counter", workflows.AdoptRequest{Release: "bad", Images: map[string]string{"web": web2}}); err == nil {
		t.Fatal("a release without the store's image was adopted")
	}
	// The good release as the README gives it: the CLI.
	driftBin, _ := harness.Binaries(t)
	out, err := exec.CommandContext(ctx, driftBin, "session", "adopt", "--user", user, "--app", "counter", "--release", "v2",
		"--image", "web="+web2, "--image", "store="+store2, "--replace-after=-1s", // at the next move only
		"--json", "--address", stack.Address(), "--namespace", stack.Namespace()).Output()
	if err != nil {
		t.Fatalf("drift session adopt: %v\n%s", err, out)
	}
	var res workflows.AdoptResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("drift session adopt --json printed %s: %v", out, err)
	}
	if res.Serving != v1 || res.Images["web"] == "" || res.Images["store"] == "" {
		t.Fatalf("adopt answered %+v", res)
	}
	// Every pre-deploy takes v2; the serving instance stays as it was.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st, err = state(ctx, c, id)
		warmOnV2 := err == nil && len(st.InFlight) == 0 && !slices.ContainsFunc(st.Instances, func(in workflows.Instance) bool {
			return in.Role == workflows.RoleWarm && (in.Status != workflows.StatusReady || in.Runs == v1)
		})
		if warmOnV2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pre-deploys not on v2 after 3 minutes: %+v (%v)", st.Instances, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.Release != "v2" {
		t.Errorf("state names release %q", st.Release)
	}
	for _, in := range st.Instances {
		if in.Cloud == st.Serving && in.Runs != v1 {
			t.Errorf("the serving instance was redeployed under the user: %+v", in)
		}
	}

	carried := 0 // the count before the move: the new instance holds at least that
	s.mu.Lock()
	for _, h := range s.hits {
		carried = max(carried, h.count)
	}
	s.mu.Unlock()
	moved := move(t, ctx, c, id, "bastille")
	if !moved.Warm {
		t.Errorf("the move after adopt was cold: %+v", moved)
	}
	s.follow(moved.Endpoint.URL)
	time.Sleep(2 * time.Second)
	stopStream()
	<-streamDone

	// No request failed; answers were v1 until the client followed the
	// move, then v2 from the new instance, which holds the count.
	s.mu.Lock()
	hits := slices.Clone(s.hits)
	s.mu.Unlock()
	failed, onV2, lowest := 0, 0, -1
	for _, h := range hits {
		switch {
		case !h.ok:
			failed++
		case h.url == moved.Endpoint.URL && h.version == "v2":
			onV2++
			if lowest < 0 || h.count < lowest {
				lowest = h.count
			}
		case h.url == moved.Endpoint.URL || h.version != "v1":
			t.Errorf("%s answered version %q", h.url, h.version)
		}
	}
	t.Logf("%d requests, %d failed, %d answered by v2 after the move (lowest count %d, %d before the move)", len(hits), failed, onV2, lowest, carried)
	if failed > 0 || onV2 == 0 || lowest <= carried || len(hits) < 50 {
		t.Errorf("%d requests: %d failed, %d answered by v2, lowest count there %d (want above %d)", len(hits), failed, onV2, lowest, carried)
	}
	exitAndExpectNothingLeft(t, ctx, c, ws, docker, run, id)
}

// A user who stays put gets the release too, without a restart: a client
// streams at the endpoint the session says serves (as a subscriber would
// learn it) while the session, quiet for replaceAfter, deploys v2 beside
// the serving instance on its cloud, carries the count, switches, and
// retires the old one after its drain. Not one request fails, answers turn
// from v1 to v2 without a move, and every acknowledged increment is held.
func TestAQuietSessionGetsTheReleaseWithoutARestart(t *testing.T) {
	e := counterOnDocker(t, "v1", "v2")
	docker, c, topo, ws := e.docker, e.c, e.topo, e.ws
	web2, store2 := e.images["v2"][0], e.images["v2"][1]
	const user = "quiet-it"
	id := names.SessionID(user, "counter")
	t.Cleanup(func() { sweepSessions(t, ws.Runtimes, []string{id}) })
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	run := startSession(t, ctx, c, id, workflows.SessionInput{
		User: user, App: e.app(t, "v1"), Region: "quartier-latin", Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Nearest, N: 1, Metric: topology.Geo}, PreDeploy: workflows.PreDeployNeighbours,
		Continuity: workflows.Continuity{Drain: 3 * time.Second},
	})
	st, err := state(ctx, c, id)
	if err != nil {
		t.Fatal(err)
	}
	old := st.Instances[slices.IndexFunc(st.Instances, func(in workflows.Instance) bool { return in.Cloud == st.Serving })]

	s := &streamer{}
	s.follow(st.Endpoint.URL)
	sctx, stopStream := context.WithCancel(ctx)
	streamDone := make(chan struct{})
	go func() { s.run(sctx, 50*time.Millisecond); close(streamDone) }()
	go func() { // follow the endpoint the session says serves
		for sctx.Err() == nil {
			if st, err := state(sctx, c, id); err == nil && st.Endpoint.URL != "" {
				s.follow(st.Endpoint.URL)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	if _, err := drift.New(c).Adopt(ctx, user, "counter", workflows.AdoptRequest{Release: "v2",
		Images: map[string]string{"web": web2, "store": store2}, ReplaceAfter: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	var replaced workflows.MoveRecord
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		st, err = state(ctx, c, id)
		if i := slices.IndexFunc(st.Moves, func(r workflows.MoveRecord) bool { return r.Source == workflows.FromReplace }); err == nil && i >= 0 && st.Moves[i].Status != workflows.MoveTriggered {
			replaced = st.Moves[i]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replacement after 3 minutes: %+v (%v)", st.Moves, err)
		}
	}
	if replaced.Status != workflows.MoveCompleted || st.Serving != old.Cloud || st.Endpoint == old.Endpoint {
		t.Fatalf("replacement %+v; serving %s at %s (was %s)", replaced, st.Serving, st.Endpoint.URL, old.Endpoint.URL)
	}
	replaced = settledMoves(t, ctx, c, id, 1)[0] // its late writes carried, after the drain
	if replaced.LateWrites != workflows.LateWritesNone && !strings.HasPrefix(replaced.LateWrites, workflows.LateWritesCarried) {
		t.Errorf("late writes of the replacement: %s", replaced.LateWrites)
	}
	stopStream()
	<-streamDone
	time.Sleep(3 * time.Second) // the last answers (a request is bounded by 2 s)

	s.mu.Lock()
	hits := slices.Clone(s.hits)
	s.mu.Unlock()
	failed, onV2, ok := 0, 0, 0
	for _, h := range hits {
		switch {
		case !h.ok:
			failed++
		case h.url == st.Endpoint.URL && h.version == "v2":
			onV2++
		case h.version != "v1":
			t.Errorf("%s answered version %q", h.url, h.version)
		}
		if h.ok {
			ok++
		}
	}
	final := readCount(t, st.Endpoint)
	t.Logf("%d requests, %d failed, %d answered by v2 after the replacement; count %d, %d acknowledged; late writes %s", len(hits), failed, onV2, final, ok, replaced.LateWrites)
	if failed > 0 || onV2 == 0 || final != ok {
		t.Errorf("%d failed, %d answered by v2, count %d after %d acknowledged increments", failed, onV2, final, ok)
	}
	if left, err := ws.Runtimes[old.Cloud].Status(ctx, old.Name); err != nil || left.Exists {
		t.Errorf("the replaced instance %s is still there (%+v, %v)", old.Name, left, err)
	}
	exitAndExpectNothingLeft(t, ctx, c, ws, docker, run, id)
}
