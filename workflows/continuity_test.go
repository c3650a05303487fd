package workflows

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
)

// counterSession is a session of the two-service counter example, whose
// store declares the state endpoint.
func counterSession(t *testing.T) (*sessionTest, SessionInput) {
	st := newSessionTest(t)
	st.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: names.SessionID("alice", "counter")})
	web, store := "registry.test/counter-web:v1", "registry.test/counter-store:v1"
	st.center.images[web], st.center.images[store] = true, true
	app, err := appspec.FromCompose(examples.CounterCompose, "")
	if err != nil {
		t.Fatal(err)
	}
	in := sessionInput("quartier-latin")
	in.App = app.WithImages(map[string]string{"web": web, "store": store})
	return st, in
}

func stateURL(cloud string) string {
	return "instant://" + cloud + "/counter-alice-" + cloud + "/store/state"
}

func transferred(v *int) bool { return v != nil && *v == amsi.ContextTransferred }

// The state is read from the serving instance and written into the target
// before the switch, on a warm move and on a cold one; the Move result, the
// move record, the registration and the notification all say so.
func TestStateTransferOnWarmAndColdMoves(t *testing.T) {
	st, in := counterSession(t)
	st.at(time.Minute, func() {
		st.clouds.states[stateURL("edge-latin")] = `{"count":7}`
		st.move("bastille", func(r MoveResult, err error) { // warm
			if err != nil || !r.Warm || !transferred(r.ContextTransferState) {
				t.Errorf("warm move: %+v %v", r, err)
			}
			if got := st.clouds.states[stateURL("edge-bastille")]; got != `{"count":7}` {
				t.Errorf("edge-bastille holds %q", got)
			}
			st.clouds.states[stateURL("edge-bastille")] = `{"count":9}`
		})
	})
	st.at(2*time.Minute, func() {
		st.move("montmartre", func(r MoveResult, err error) { // cold
			if err != nil || r.Warm || !transferred(r.ContextTransferState) {
				t.Errorf("cold move: %+v %v", r, err)
			}
			if got := st.clouds.states[stateURL("edge-montmartre")]; got != `{"count":9}` {
				t.Errorf("edge-montmartre holds %q", got)
			}
		})
	})
	st.at(3*time.Minute, func() {
		s := st.state()
		if !transferred(s.Registration.ContextTransferState) {
			t.Errorf("registration %+v", s.Registration)
		}
		for _, m := range s.Moves {
			if !transferred(m.ContextTransferState) {
				t.Errorf("move record %+v", m)
			}
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, in)
	st.report()
	completed := 0
	for _, e := range st.center.events {
		if e.Kind == amsi.KindMove && e.Status == amsi.MoveCompleted {
			completed++
			if !transferred(e.ContextTransferState) {
				t.Errorf("event %+v", e)
			}
		}
	}
	if completed != 2 {
		t.Errorf("%d completed move events", completed)
	}
}

// A state endpoint that answers non-2xx fails the move by default: the old
// instance keeps serving, and the move says the context was not carried.
func TestStateTransferRefusedFailsTheMove(t *testing.T) {
	st, in := counterSession(t)
	st.at(time.Minute, func() {
		st.clouds.refused[stateURL("edge-latin")] = true
		st.move("bastille", func(r MoveResult, err error) {
			if err == nil || !isType(err, ErrTypeMoveFailed) || !strings.Contains(err.Error(), "stays on edge-latin") {
				t.Errorf("move: %+v %v", r, err)
			}
		})
	})
	st.at(2*time.Minute, func() {
		s := st.state()
		if s.Serving != "edge-latin" || s.Totals.FailedMoves != 1 {
			t.Errorf("serving %s, totals %+v", s.Serving, s.Totals)
		}
		if m := s.Moves[len(s.Moves)-1]; m.Status != MoveFailed || m.ContextTransferState == nil || *m.ContextTransferState != amsi.ContextNotTransferred || m.StateError == "" {
			t.Errorf("move record %+v", m)
		}
		if !runtimetest.Status(t, st.clouds.runtimes["edge-latin"], "counter-alice-edge-latin").Exists {
			t.Error("the serving instance is gone")
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, in)
	st.report()
}

// By policy a move whose state cannot be carried switches anyway, and says
// so.
func TestStateTransferRefusedSwitchesWithoutStateByPolicy(t *testing.T) {
	st, in := counterSession(t)
	in.Continuity.StatePolicy = StateSwitchWithout
	st.at(time.Minute, func() {
		st.clouds.refused[stateURL("edge-bastille")] = true
		st.move("bastille", func(r MoveResult, err error) {
			if err != nil || r.Cloud != "edge-bastille" || r.ContextTransferState == nil ||
				*r.ContextTransferState != amsi.ContextNotTransferred || !strings.Contains(r.StateError, "answered 500") {
				t.Errorf("move: %+v %v", r, err)
			}
		})
	})
	st.at(2*time.Minute, func() {
		if s := st.state(); s.Registration.ContextTransferState == nil || *s.Registration.ContextTransferState != amsi.ContextNotTransferred {
			t.Errorf("registration %+v", s.Registration)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, in)
	st.report()
}

func TestContinuityRefusesBadSettings(t *testing.T) {
	for _, c := range []Continuity{{StatePolicy: "maybe"}, {StateLimit: MaxStateLimit + 1}, {WatchBound: -time.Second}} {
		st := newSessionTest(t)
		in := sessionInput("quartier-latin")
		in.Continuity = c
		st.env.ExecuteWorkflow(MobilitySession, in)
		if err := st.env.GetWorkflowError(); !isType(err, ErrTypeInvalidSession) || len(st.clouds.deploys) != 0 {
			t.Errorf("%+v: %v, deploys %v", c, err, st.clouds.deploys)
		}
	}
}

// The instance that served until a switch stays up for the drain period,
// then goes; the new one serves from the switch on.
func TestDrainKeepsTheOldInstanceUpAfterTheSwitch(t *testing.T) {
	st := newSessionTest(t)
	in := sessionInput("quartier-latin")
	in.Continuity.Drain = 30 * time.Second
	exists := func(cloud string) bool {
		return runtimetest.Status(t, st.clouds.runtimes[cloud], "hello-alice-"+cloud).Exists
	}
	st.at(time.Minute, func() {
		st.move("montmartre", func(r MoveResult, err error) { // not a neighbour of edge-latin
			if err != nil || r.Cloud != "edge-montmartre" {
				t.Errorf("move: %+v %v", r, err)
			}
		})
	})
	st.at(time.Minute+15*time.Second, func() {
		if s := st.state(); s.Serving != "edge-montmartre" || !exists("edge-latin") {
			t.Errorf("serving %s; edge-latin up: %v", s.Serving, exists("edge-latin"))
		}
	})
	st.at(time.Minute+45*time.Second, func() {
		if exists("edge-latin") {
			t.Error("edge-latin still up after its drain")
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, in)
	st.report()
}

// The serving instance dies: the session switches to a ready warm instance,
// records why and notifies subscribers; the dead cloud is back in plans
// once its leftovers are gone.
func TestFailoverWhenTheServingInstanceDies(t *testing.T) {
	st := newSessionTest(t)
	st.at(time.Minute, func() {
		if err := st.clouds.runtimes["edge-latin"].Destroy(context.Background(), "hello-alice-edge-latin"); err != nil {
			t.Fatal(err)
		}
	})
	st.at(time.Minute+10*time.Second, func() {
		s := st.state()
		if s.Serving == "edge-latin" || s.Serving == "" {
			t.Fatalf("still serving from %q", s.Serving)
		}
		m := s.Moves[len(s.Moves)-1]
		if m.Source != FromFailover || m.Status != MoveCompleted || m.FromCloud != "edge-latin" || !strings.Contains(m.Reason, "is gone") {
			t.Errorf("failover record %+v", m)
		}
		if h := s.Handovers[len(s.Handovers)-1]; !h.Warm || h.Reason == "" {
			t.Errorf("handover %+v", h)
		}
	})
	st.at(3*time.Minute, func() {
		s := st.state()
		if len(s.Down) != 0 {
			t.Errorf("down %v", s.Down)
		}
		// It serves from a neighbour of the user's region, as the server
		// (not a warm instance), and the user's own cloud, back, is warm.
		roles := map[string]Role{}
		for _, in := range s.Instances {
			if in.Status == StatusReady {
				roles[in.Cloud] = in.Role
			}
		}
		if roles[s.Serving] != RoleServe || roles["edge-latin"] != RoleWarm {
			t.Errorf("ready roles %v serving from %s", roles, s.Serving)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	st.report()
	var notes []string
	for _, e := range st.center.events {
		if e.Kind == amsi.KindMove && e.Reason != "" {
			notes = append(notes, amsi.StatusName(e.Status))
		}
	}
	if strings.Join(notes, " ") != "TRIGGERED COMPLETED" {
		t.Errorf("failover notifications %v", notes)
	}
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}

// The serving cloud's worker goes silent: the session fails over within
// the watch's bound (a cold deploy when nothing is warm), and destroys the
// dead cloud's leftovers when its worker is back.
func TestFailoverWhenTheCloudsWorkerIsGone(t *testing.T) {
	st := newSessionTest(t)
	in := sessionInput("quartier-latin")
	in.PreDeploy = PreDeployNone
	st.at(time.Minute, func() {
		st.clouds.mu.Lock()
		st.clouds.silent["edge-latin"] = true
		st.clouds.mu.Unlock()
	})
	st.at(time.Minute+20*time.Second, func() {
		s := st.state()
		if s.Serving == "edge-latin" || s.Down["edge-latin"] == "" || !strings.Contains(s.Down["edge-latin"], "went silent") {
			t.Errorf("serving %s, down %v", s.Serving, s.Down)
		}
		if m := s.Moves[len(s.Moves)-1]; m.Source != FromFailover || m.Warm || m.Status != MoveCompleted {
			t.Errorf("failover record %+v", m)
		}
		if !runtimetest.Status(t, st.clouds.runtimes["edge-latin"], "hello-alice-edge-latin").Exists {
			t.Error("the silent cloud's instance went without its worker")
		}
		st.clouds.mu.Lock()
		st.clouds.silent["edge-latin"] = false
		st.clouds.mu.Unlock()
	})
	st.at(5*time.Minute, func() {
		s := st.state()
		if len(s.Down) != 0 || runtimetest.Status(t, st.clouds.runtimes["edge-latin"], "hello-alice-edge-latin").Exists {
			t.Errorf("down %v after the worker came back", s.Down)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, in)
	st.report()
}

// No worker polls the serving cloud any more: the session fails over, and
// keeps asking that cloud to destroy its leftovers (each ask bounded by the
// schedule-to-start bound) rather than leaving them, until a worker is back.
func TestFailoverKeepsDestroyingOnACloudWithNoWorker(t *testing.T) {
	st := newSessionTest(t)
	in := sessionInput("quartier-latin")
	in.PreDeploy = PreDeployNone
	in.ScheduleToStart = 30 * time.Second
	// A NoWorker answer comes once the bound is up.
	st.env.OnActivity(cloudActs.DestroyInstance, mock.Anything, mock.Anything).Return(st.clouds.DestroyInstance).After(in.ScheduleToStart)
	st.at(time.Minute, func() { st.clouds.setPolled("edge-latin", false) })
	st.at(4*time.Minute, func() {
		s := st.state()
		if s.Serving == "edge-latin" || !strings.Contains(s.Down["edge-latin"], "no worker of cloud edge-latin") {
			t.Errorf("serving %s, down %v", s.Serving, s.Down)
		}
		if !runtimetest.Status(t, st.clouds.runtimes["edge-latin"], "hello-alice-edge-latin").Exists {
			t.Error("the unpolled cloud's instance went without its worker")
		}
		st.clouds.setPolled("edge-latin", true)
	})
	st.at(6*time.Minute, func() {
		s := st.state()
		if len(s.Down) != 0 || runtimetest.Status(t, st.clouds.runtimes["edge-latin"], "hello-alice-edge-latin").Exists {
			t.Errorf("down %v after a worker came back", s.Down)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, in)
	st.report()
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}

// The serving cloud's worker misses a heartbeat once (a busy machine): the
// session watches again and, since the instance answers, does not fail over.
func TestABusyWorkerDoesNotFailAHealthyInstanceOver(t *testing.T) {
	st := newSessionTest(t)
	st.at(time.Minute, func() {
		st.clouds.mu.Lock()
		st.clouds.silent["edge-latin"] = true
		st.clouds.mu.Unlock()
	})
	st.at(time.Minute+3*time.Second, func() {
		st.clouds.mu.Lock()
		st.clouds.silent["edge-latin"] = false
		st.clouds.mu.Unlock()
	})
	st.at(2*time.Minute, func() {
		s := st.state()
		if s.Serving != "edge-latin" || len(s.Down) != 0 || len(s.Moves) != 0 {
			t.Errorf("serving %s, down %v, moves %+v", s.Serving, s.Down, s.Moves)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	st.report()
}

// The session exits while the leftovers of a cloud it failed over from are
// still being destroyed: when that destroy ends, the cloud is back, but an
// exiting session plans nothing again (it used to give the serving and
// warm clouds their roles back, deploy them, and never end).
func TestExitEndsWhenAFailedOverCloudComesBackDuringIt(t *testing.T) {
	st := newSessionTest(t)
	st.env.OnActivity(cloudActs.DestroyInstance, mock.Anything, mock.Anything).Return(st.clouds.DestroyInstance).After(30 * time.Second)
	st.at(time.Minute, func() {
		if err := st.clouds.runtimes["edge-latin"].Destroy(context.Background(), "hello-alice-edge-latin"); err != nil {
			t.Fatal(err)
		}
	})
	st.at(time.Minute+15*time.Second, func() {
		if s := st.state(); s.Down["edge-latin"] == "" || !slices.Contains(s.InFlight, "destroy edge-latin") {
			t.Errorf("down %v, in flight %v: want edge-latin's leftovers being destroyed", s.Down, s.InFlight)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	if !st.env.IsWorkflowCompleted() {
		s := st.state()
		t.Fatalf("the session did not end: %s, serving %s, in flight %v, instances %+v", s.Phase, s.Serving, s.InFlight, s.Instances)
	}
	st.report()
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}

// The writes the instance left behind takes after its state was read reach
// the serving instance: at the end of its drain, or, when another move
// comes first, before that move reads the state. The move records say so.
func TestLateWritesReachTheServingInstance(t *testing.T) {
	st, in := counterSession(t)
	in.Continuity.Drain = 10 * time.Second
	count := func(cloud string) string { return st.clouds.states[stateURL(cloud)] }
	st.at(time.Minute, func() {
		st.clouds.states[stateURL("edge-latin")] = `{"count":7}`
		st.move("bastille", func(r MoveResult, err error) {
			if err != nil || !r.Warm || count("edge-bastille") != `{"count":7}` {
				t.Errorf("move: %+v %v; edge-bastille holds %s", r, err, count("edge-bastille"))
			}
			// After the read: the client's last writes to the old instance,
			// and a first one to the new.
			st.clouds.states[stateURL("edge-latin")] = `{"count":10}`
			st.clouds.states[stateURL("edge-bastille")] = `{"count":8}`
		})
	})
	st.at(time.Minute+5*time.Second, func() {
		if got := count("edge-bastille"); got != `{"count":8}` {
			t.Errorf("during the drain edge-bastille holds %s: nothing is carried before the drain ends", got)
		}
	})
	st.at(time.Minute+30*time.Second, func() {
		if got := count("edge-bastille"); got != `{"count":11}` {
			t.Errorf("after the drain edge-bastille holds %s, want 8 + the 3 late writes", got)
		}
		st.move("quartier-latin", func(r MoveResult, err error) {
			if err != nil || count("edge-latin") != `{"count":11}` {
				t.Errorf("move back: %+v %v; edge-latin holds %s", r, err, count("edge-latin"))
			}
			st.clouds.states[stateURL("edge-bastille")] = `{"count":16}` // 5 late writes
		})
	})
	st.at(time.Minute+32*time.Second, func() { // within the drain
		st.move("bastille", func(r MoveResult, err error) {
			if err != nil || count("edge-bastille") != `{"count":16}` {
				t.Errorf("third move: %+v %v; edge-bastille holds %s, want 11 + 5 carried first", r, err, count("edge-bastille"))
			}
		})
	})
	st.at(2*time.Minute, func() {
		var got []string
		for _, m := range st.state().Moves {
			got = append(got, m.LateWrites)
		}
		if want := []string{"carried to edge-bastille", "carried to edge-latin", LateWritesNone}; !slices.Equal(got, want) {
			t.Errorf("late writes of the moves %q, want %q", got, want)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, in)
	st.report()
}
