package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/predict"
	"github.com/edgedrift/drift/internal/topology"
)

// fakeCenter stands in for the central activities a session calls: the
// image center and the app's model.
type fakeCenter struct {
	mu     sync.Mutex
	images map[string]bool         // images EnsureImage knows
	pins   map[string]string       // what EnsureImage answers for an image (default pinnedHello)
	model  predict.Model           // the app's model workflow
	taught []activities.RegionMove // moves recorded into it
	events []amsi.Event            // events published to the subscriptions
	fail   int                     // publishes to fail first
}

// pinnedHello is hello's image as the center registry pins it.
const pinnedHello = "center.test/hello@sha256:0123456789012345678901234567890123456789012345678901234567890123"

func newFakeCenter() *fakeCenter {
	return &fakeCenter{images: map[string]bool{"registry.test/hello:v1": true}}
}

func (f *fakeCenter) install(env *testsuite.TestWorkflowEnvironment) {
	env.RegisterActivity(&activities.Images{})
	env.RegisterActivity(&activities.Models{})
	env.RegisterActivity(&activities.Notifier{})
	env.OnActivity(notifyActs.PublishSessionEvents, mock.Anything, mock.Anything).Return(
		func(_ context.Context, events []amsi.Event) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.fail > 0 {
				f.fail--
				return temporal.NewNonRetryableApplicationError("subscriptions unreachable", "Test", nil)
			}
			f.events = append(f.events, events...)
			return nil
		})
	env.OnActivity(modelActs.ModelSnapshot, mock.Anything, mock.Anything).Return(
		func(context.Context, string) (predict.Model, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.model.Clone(), nil
		})
	env.OnActivity(modelActs.RecordMove, mock.Anything, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ string, mv activities.RegionMove) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.model.Observe(mv.From, mv.To)
			f.taught = append(f.taught, mv)
			return nil
		})
	env.OnActivity(imageActs.EnsureImage, mock.Anything, mock.Anything).Return(
		func(_ context.Context, ref string) (string, error) {
			if !f.images[ref] {
				return "", temporal.NewNonRetryableApplicationError("no such image "+ref, activities.ErrTypeUnknownImage, nil)
			}
			if pin := f.pins[ref]; pin != "" {
				return pin, nil
			}
			return pinnedHello, nil
		})
}

var exampleTopology = func() *topology.Topology {
	t, err := topology.Parse(examples.Topology)
	if err != nil {
		panic(err)
	}
	return t
}()

func sessionInput(region string) SessionInput {
	app, err := appspec.FromImage("hello", "registry.test/hello:v1", 8080)
	if err != nil {
		panic(err)
	}
	return SessionInput{
		User: "alice", App: app, Region: region, Topology: exampleTopology,
		Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: PreDeployNeighbours,
	}
}

// expectedLive is {serving} ∪ adjacency neighbours of serving.
func expectedLive(cloud string) []string {
	out := []string{cloud}
	ns, _ := exampleTopology.Neighbours(cloud, topology.Policy{Kind: topology.Adjacency})
	for _, n := range ns {
		out = append(out, n.Cloud.ID)
	}
	slices.Sort(out)
	return out
}

type sessionTest struct {
	testsuite.WorkflowTestSuite
	env     *testsuite.TestWorkflowEnvironment
	clouds  *testClouds
	center  *fakeCenter
	t       *testing.T
	updates int
}

func newSessionTest(t *testing.T) *sessionTest {
	// Every deploy takes a second of workflow time.
	st := &sessionTest{t: t, clouds: newTestClouds(t, exampleTopology, time.Second), center: newFakeCenter()}
	st.env = st.NewTestWorkflowEnvironment()
	st.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: names.SessionID("alice", "hello")})
	st.clouds.install(st.env)
	st.center.install(st.env)
	return st
}

// at runs fn when the workflow's clock reaches d.
func (st *sessionTest) at(d time.Duration, fn func()) { st.env.RegisterDelayedCallback(fn, d) }

// move sends a Move update and checks the answer with check.
func (st *sessionTest) move(region string, check func(MoveResult, error)) {
	sendUpdate(st, names.MoveUpdate, region, check)
}

// sendUpdate sends the update name with arg and hands check its answer, or
// the validator's refusal.
func sendUpdate[T any](st *sessionTest, name string, arg any, check func(T, error)) {
	st.updates++
	st.env.UpdateWorkflow(name, fmt.Sprintf("%s-%d", strings.ToLower(name), st.updates), &testsuite.TestUpdateCallback{
		OnReject: func(err error) {
			var zero T
			check(zero, err)
		},
		OnAccept: func() {},
		OnComplete: func(res any, err error) {
			r, _ := res.(T)
			check(r, err)
		},
	}, arg)
}

func (st *sessionTest) state() SessionState {
	v, err := st.env.QueryWorkflow(names.ProgressQuery)
	if err != nil {
		st.t.Fatal(err)
	}
	var s SessionState
	if err := v.Get(&s); err != nil {
		st.t.Fatal(err)
	}
	return s
}

func (st *sessionTest) report() SessionState {
	st.t.Helper()
	if !st.env.IsWorkflowCompleted() {
		st.t.Fatal("session did not end")
	}
	if err := st.env.GetWorkflowError(); err != nil {
		st.t.Fatal(err)
	}
	var rep SessionState
	if err := st.env.GetWorkflowResult(&rep); err != nil {
		st.t.Fatal(err)
	}
	return rep
}

func TestSessionStartsServesAndPreDeploys(t *testing.T) {
	st := newSessionTest(t)
	st.at(time.Minute, func() {
		s := st.state()
		if s.Serving != "edge-latin" || s.Phase != "serving" || s.Endpoint.URL != "instant://edge-latin/hello-alice-edge-latin" {
			t.Errorf("serving %q (%s) at %q", s.Serving, s.Phase, s.Endpoint.URL)
		}
		if got := st.clouds.liveClouds(); !slices.Equal(got, expectedLive("edge-latin")) {
			t.Errorf("live %v, want %v", got, expectedLive("edge-latin"))
		}
		if s.Image != pinnedHello {
			t.Errorf("image %q not pinned in the center registry", s.Image)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	rep := st.report()
	if rep.Phase != "ended" || len(rep.Instances) != 0 {
		t.Fatalf("report %+v", rep)
	}
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
	// The serving cloud was deployed first, before any pre-deploy.
	if first := st.clouds.deploys[0]; first != "edge-latin/hello-alice-edge-latin" {
		t.Fatalf("first deploy %s", first)
	}
}

func TestWarmAndColdMoves(t *testing.T) {
	st := newSessionTest(t)
	// Deploys take 5 s: a cold move must wait for one, a warm one must not.
	st.at(time.Minute, func() {
		st.move("bastille", func(r MoveResult, err error) { // edge-bastille neighbours edge-latin
			if err != nil || !r.Warm || r.Cloud != "edge-bastille" || r.SwitchTime != 0 {
				t.Errorf("warm move: %+v %v", r, err)
			}
		})
	})
	st.at(2*time.Minute, func() {
		if got := st.clouds.liveClouds(); !slices.Equal(got, expectedLive("edge-bastille")) {
			t.Errorf("after warm move live %v, want %v", got, expectedLive("edge-bastille"))
		}
		st.move("quartier-latin", func(r MoveResult, err error) { // edge-latin: neighbour again
			if err != nil || !r.Warm {
				t.Errorf("move back: %+v %v", r, err)
			}
		})
	})
	st.at(3*time.Minute, func() {
		st.move("montmartre", func(r MoveResult, err error) { // not a neighbour of edge-latin
			if err != nil || r.Warm || r.Cloud != "edge-montmartre" || r.SwitchTime <= 0 {
				t.Errorf("cold move: %+v %v", r, err)
			}
		})
	})
	st.at(4*time.Minute, func() {
		if got := st.clouds.liveClouds(); !slices.Equal(got, expectedLive("edge-montmartre")) {
			t.Errorf("after cold move live %v, want %v", got, expectedLive("edge-montmartre"))
		}
		s := st.state()
		if s.Totals.Handovers != 3 || s.Totals.Warm != 2 || s.Totals.Cold != 1 || len(s.Handovers) != 3 {
			t.Errorf("totals %+v", s.Totals)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	rep := st.report()
	if rep.Totals.PreDeploySeconds <= 0 {
		t.Errorf("no pre-deploy instance-seconds counted: %+v", rep.Totals)
	}
	if !slices.Equal(rep.Totals.CloudsUsed, []string{"edge-latin", "edge-bastille", "edge-montmartre"}) {
		t.Errorf("clouds used %v", rep.Totals.CloudsUsed)
	}
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}

// The DriftCloud search attribute follows the serving cloud, but a burst of
// moves costs one visibility write at its start and one when
// CloudIndexInterval is up, naming where the burst ended.
func TestServingCloudIndexIsThrottled(t *testing.T) {
	st := newSessionTest(t)
	type write struct {
		cloud string
		at    time.Duration
	}
	var writes []write
	start := st.env.Now()
	key := names.CloudKey
	st.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		if cloud, ok := args.Get(0).(temporal.SearchAttributes).GetKeyword(key); ok {
			writes = append(writes, write{cloud, st.env.Now().Sub(start).Round(time.Millisecond)})
		}
	}).Return(nil)
	// edge-latin and edge-bastille are adjacent: every move is warm.
	for i, region := range []string{"bastille", "quartier-latin", "bastille", "quartier-latin"} {
		st.at(time.Minute+time.Duration(i)*100*time.Millisecond, func() {
			st.move(region, func(r MoveResult, err error) {
				if err != nil || !r.Warm {
					t.Errorf("move %d to %s: %+v %v", i, region, r, err)
				}
			})
		})
	}
	st.at(2*time.Minute, func() { st.env.SignalWorkflow(names.ExitSignal, nil) })
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	st.report()
	want := []write{{"edge-latin", time.Second}, {"edge-bastille", time.Minute}, {"edge-latin", time.Minute + CloudIndexInterval}}
	if !slices.Equal(writes, want) {
		t.Fatalf("DriftCloud writes %v, want %v", writes, want)
	}
}

// Moves that arrive while pre-deploys are still running are served in
// order; deploys nobody needs any more are cancelled or undone.
func TestMovesDuringPreDeploy(t *testing.T) {
	st := newSessionTest(t)
	var order []string
	// The first cloud is up at 1 s; its pre-deploys run until 2 s.
	for i, region := range []string{"montmartre", "montparnasse", "bastille"} {
		st.at(1500*time.Millisecond+time.Duration(i)*100*time.Millisecond, func() {
			st.move(region, func(r MoveResult, err error) {
				if err != nil {
					t.Errorf("move to %s: %v", region, err)
				}
				order = append(order, r.Region)
			})
		})
	}
	st.at(10*time.Minute, func() {
		if len(order) != 3 {
			t.Errorf("answered %d of 3 moves", len(order))
		}
		s := st.state()
		var served []string
		for _, h := range s.Handovers {
			served = append(served, h.ToRegion)
		}
		if !slices.Equal(served, []string{"montmartre", "montparnasse", "bastille"}) {
			t.Errorf("moves served in order %v", served)
		}
		if got := st.clouds.liveClouds(); !slices.Equal(got, expectedLive("edge-bastille")) {
			t.Errorf("live %v, want %v", got, expectedLive("edge-bastille"))
		}
		if len(s.InFlight) != 0 || s.Serving != "edge-bastille" {
			t.Errorf("state %+v", s)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	st.report()
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}

func TestCapacityRefusesPreDeployButNotServing(t *testing.T) {
	st := newSessionTest(t)
	st.clouds.fill("edge-bastille", pinnedHello) // bob's session has its only place
	st.at(time.Minute, func() {
		s := st.state()
		var bastille *Instance
		for i := range s.Instances {
			if s.Instances[i].Cloud == "edge-bastille" {
				bastille = &s.Instances[i]
			}
		}
		if bastille == nil || bastille.Status != StatusSkipped || bastille.Role != RoleWarm {
			t.Errorf("full cloud not recorded as skipped: %+v", bastille)
		}
		st.move("bastille", func(r MoveResult, err error) {
			if err != nil || r.Cloud != "edge-bastille" || r.Warm {
				t.Errorf("serving must win over capacity: %+v %v", r, err)
			}
		})
	})
	st.at(2*time.Minute, func() { st.env.SignalWorkflow(names.ExitSignal, nil) })
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	st.report()
}

func TestExitReportAndSignalMove(t *testing.T) {
	st := newSessionTest(t)
	st.at(time.Minute, func() { st.env.SignalWorkflow(names.MoveUpdate, "montparnasse") })
	st.at(2*time.Minute, func() { st.env.SignalWorkflow(names.MoveUpdate, "atlantis") }) // ignored, logged
	st.at(3*time.Minute, func() { st.env.SignalWorkflow(names.ExitSignal, nil) })
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	rep := st.report()
	if rep.Totals.Handovers != 1 || rep.Totals.Warm != 1 || rep.Handovers[0].ToCloud != "edge-montparnasse" || rep.Handovers[0].FromRegion != "quartier-latin" {
		t.Fatalf("report %+v", rep)
	}
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}

func TestMoveUpdateRejectsUnknownRegion(t *testing.T) {
	st := newSessionTest(t)
	st.at(time.Minute, func() {
		st.move("atlantis", func(_ MoveResult, err error) {
			if err == nil {
				t.Error("unknown region accepted")
			}
		})
	})
	st.at(2*time.Minute, func() { st.env.SignalWorkflow(names.ExitSignal, nil) })
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	if rep := st.report(); rep.Totals.Handovers != 0 {
		t.Fatalf("rejected move changed state: %+v", rep.Totals)
	}
}

func TestContinueAsNewCarriesState(t *testing.T) {
	st := newSessionTest(t)
	st.at(time.Minute, func() {
		st.move("bastille", func(MoveResult, error) {})
	})
	st.at(2*time.Minute, func() {
		st.env.SetContinueAsNewSuggested(true)
		st.move("bastille", func(MoveResult, error) {}) // any event wakes the loop
	})
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	err := st.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("want continue-as-new, got %v", err)
	}
	var next SessionInput
	if err := decodePayloads(can, &next); err != nil {
		t.Fatal(err)
	}
	if next.Resume == nil || next.Resume.Serving != "edge-bastille" || next.Resume.Totals.Handovers != 1 || len(next.Resume.Instances) != len(expectedLive("edge-bastille")) {
		t.Fatalf("carried state %+v", next.Resume)
	}
	// The next run picks up where this one stopped, deploying nothing anew.
	st2 := newSessionTest(t)
	st2.clouds.copyFrom(st.clouds)
	st2.at(time.Minute, func() {
		if s := st2.state(); s.Serving != "edge-bastille" || s.Totals.Handovers != 1 {
			t.Errorf("resumed state %+v", s)
		}
		st2.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st2.env.ExecuteWorkflow(MobilitySession, next)
	st2.report()
	if len(st2.clouds.deploys) != 0 {
		t.Errorf("resumed session redeployed %v", st2.clouds.deploys)
	}
	if live := st2.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}

func TestBadInputDeploysNothing(t *testing.T) {
	malformed := sessionInput("quartier-latin")
	malformed.App.Image = "NOT A REF"
	noImage := sessionInput("quartier-latin")
	noImage.App.Image = "registry.test/missing:v1"
	// The counter project, with a cycle in its depends_on, and with one
	// service's image missing from the center registry.
	counter, err := appspec.FromCompose(examples.CounterCompose, "")
	if err != nil {
		t.Fatal(err)
	}
	counter = counter.WithImages(map[string]string{"web": "registry.test/hello:v1", "store": "registry.test/counter-store:missing"})
	cyclic := sessionInput("quartier-latin")
	cyclic.App = counter
	cyclic.App.Services = slices.Clone(counter.Services)
	cyclic.App.Services[1].DependsOn = []string{"web"}
	storeMissing := sessionInput("quartier-latin")
	storeMissing.App = counter
	for name, c := range map[string]struct {
		in  SessionInput
		typ string
	}{
		"unknown region":  {sessionInput("atlantis"), ErrTypeUnknownRegion},
		"bad policy":      {func() SessionInput { in := sessionInput("bastille"); in.PreDeploy = "everywhere"; return in }(), ErrTypeInvalidSession},
		"no user":         {func() SessionInput { in := sessionInput("bastille"); in.User = ""; return in }(), ErrTypeInvalidSession},
		"malformed image": {malformed, activities.ErrTypeInvalidSpec},
		"unknown image":   {noImage, activities.ErrTypeUnknownImage},
		"cyclic project":  {cyclic, activities.ErrTypeInvalidSpec},
		"project image":   {storeMissing, activities.ErrTypeUnknownImage},
	} {
		t.Run(name, func(t *testing.T) {
			st := newSessionTest(t)
			st.env.ExecuteWorkflow(MobilitySession, c.in)
			var appErr *temporal.ApplicationError
			if err := st.env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != c.typ {
				t.Fatalf("error %v, want type %s", err, c.typ)
			}
			if len(st.clouds.deploys) != 0 {
				t.Fatalf("deployed %v", st.clouds.deploys)
			}
		})
	}
}

// A failed first deploy fails the session and leaves nothing anywhere.
func TestFailedStartCleansUp(t *testing.T) {
	st := newSessionTest(t)
	st.clouds.failDeploys("edge-latin", "engine down")
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	if err := st.env.GetWorkflowError(); err == nil {
		t.Fatal("session started on a failing cloud")
	}
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}

// A cloud whose trust policy refuses the image fails the session's start
// with UntrustedImage, as the site said, and nothing is left.
func TestUntrustedImageFailsTheStartWithItsType(t *testing.T) {
	st := newSessionTest(t)
	st.clouds.failDeploys("edge-latin", "cloud edge-latin refuses to run it: untrusted image", activities.ErrTypeUntrustedImage)
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	var appErr *temporal.ApplicationError
	if err := st.env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != activities.ErrTypeUntrustedImage || !strings.Contains(err.Error(), "refuses to run it") {
		t.Fatalf("want UntrustedImage, got %v", err)
	}
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}

// With a trained model, only the clouds users really go to next are warm;
// with a cold one, the session falls back to every neighbour.
func TestPredictedPreDeploy(t *testing.T) {
	st := newSessionTest(t)
	for range 10 {
		st.center.model.Observe("quartier-latin", "montparnasse")
	}
	in := sessionInput("quartier-latin")
	in.PreDeploy = PreDeployPredicted
	st.at(time.Minute, func() {
		s := st.state()
		if s.Plan.Mode != predict.Predicted || !slices.Equal(s.Plan.Clouds, []string{"edge-montparnasse"}) {
			t.Errorf("plan %+v", s.Plan)
		}
		if got := st.clouds.liveClouds(); !slices.Equal(got, []string{"edge-latin", "edge-montparnasse"}) {
			t.Errorf("live %v", got)
		}
		st.move("montparnasse", func(r MoveResult, err error) {
			if err != nil || !r.Warm {
				t.Errorf("predicted move not warm: %+v %v", r, err)
			}
		})
	})
	st.at(2*time.Minute, func() {
		// Nothing is known about moves from montparnasse: all neighbours.
		s := st.state()
		if s.Plan.Mode != predict.Neighbours || !s.Plan.Cold {
			t.Errorf("cold model plan %+v", s.Plan)
		}
		if got := st.clouds.liveClouds(); !slices.Equal(got, expectedLive("edge-montparnasse")) {
			t.Errorf("live %v, want %v", got, expectedLive("edge-montparnasse"))
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, in)
	st.report()
	if !slices.Equal(st.center.taught, []activities.RegionMove{{From: "quartier-latin", To: "montparnasse"}}) {
		t.Fatalf("model taught %v", st.center.taught)
	}
}

// decodePayloads reads the input a workflow continued as new with.
func decodePayloads(can *workflow.ContinueAsNewError, into any) error {
	return converter.GetDefaultDataConverter().FromPayloads(can.Input, into)
}

// A move to a cloud no worker polls fails within the schedule-to-start
// bound with NoWorker naming the cloud's queue; the session keeps serving
// where it served, and a later Exit sweeps the cloud once it is polled.
func TestMoveToUnpolledCloudFailsWithinItsBound(t *testing.T) {
	st := newSessionTest(t)
	st.clouds.setPolled("edge-montmartre", false)
	in := sessionInput("quartier-latin")
	in.ScheduleToStart = 30 * time.Second
	var moveErr error
	st.at(time.Minute, func() {
		st.move("montmartre", func(_ MoveResult, err error) { moveErr = err }) // edge-montmartre
	})
	st.at(3*time.Minute, func() {
		var appErr *temporal.ApplicationError
		if !errors.As(moveErr, &appErr) || appErr.Type() != ErrTypeNoWorker ||
			!strings.Contains(appErr.Error(), "no worker polls drift.cloud.edge-montmartre") || !strings.Contains(appErr.Error(), "waited 30s") {
			t.Errorf("move error %v, want %s naming drift.cloud.edge-montmartre and the 30s bound", moveErr, ErrTypeNoWorker)
		}
		s := st.state()
		if s.Serving != "edge-latin" || s.Phase != "serving" || s.Totals.FailedMoves != 1 {
			t.Errorf("after the failed move: serving %q (%s), %d failed moves", s.Serving, s.Phase, s.Totals.FailedMoves)
		}
		if got := st.clouds.liveClouds(); !slices.Equal(got, expectedLive("edge-latin")) {
			t.Errorf("live %v, want %v", got, expectedLive("edge-latin"))
		}
		st.clouds.setPolled("edge-montmartre", true) // a worker comes
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, in)
	if rep := st.report(); rep.Phase != "ended" || rep.Totals.FailedMoves != 1 {
		t.Fatalf("report %+v", rep)
	}
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}

// Exit's sweep of a cloud nobody polls fails the session naming the queue,
// instead of waiting for ever.
func TestExitSweepOfUnpolledCloudFailsNamingIt(t *testing.T) {
	st := newSessionTest(t)
	st.clouds.setPolled("fog-north", false) // not a neighbour of edge-latin
	st.at(time.Minute, func() { st.env.SignalWorkflow(names.ExitSignal, nil) })
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	err := st.env.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "no worker polls drift.cloud.fog-north") || !strings.Contains(err.Error(), "waited "+DefaultScheduleToStart.String()) {
		t.Fatalf("exit error %v, want one naming drift.cloud.fog-north and the default bound", err)
	}
	if live := st.clouds.liveClouds(); !slices.Equal(live, nil) {
		t.Fatalf("the polled clouds still hold %v", live)
	}
}
