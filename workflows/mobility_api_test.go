package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/names"
)

// eventLine is an event as the tests compare them.
func eventLine(e amsi.Event) string {
	if e.Kind == amsi.KindAdjacent {
		var clouds []string
		for _, in := range e.Adjacent {
			clouds = append(clouds, in.Cloud)
		}
		return "adjacent " + strings.Join(clouds, ",")
	}
	return fmt.Sprintf("%s %s %s→%s", e.MoveID, amsi.StatusName(e.Status), e.FromCloud, e.ToCloud)
}

// Every move — by update or by signal, warm, cold or refused — is
// recorded under its id and told to subscribers in order: TRIGGERED when
// the session takes it up, then COMPLETED or FAILED.
func TestMovesAreRecordedAndPublishedInOrder(t *testing.T) {
	st := newSessionTest(t)
	st.at(time.Minute, func() {
		st.move("bastille", func(r MoveResult, err error) {}) // move-1: warm
	})
	st.at(2*time.Minute, func() { st.env.SignalWorkflow(names.MoveSignal, "montmartre") }) // cold
	st.at(3*time.Minute, func() {
		s := st.state()
		if len(s.Moves) != 2 || s.Moves[0].ID != "move-1" || s.Moves[0].Source != FromUpdate || s.Moves[0].Status != MoveCompleted ||
			!s.Moves[0].Warm || s.Moves[0].FromCloud != "edge-latin" || s.Moves[0].ToCloud != "edge-bastille" || s.Moves[0].Endpoint.URL == "" {
			t.Errorf("update move record %+v", s.Moves)
		}
		sig := s.Moves[1]
		if !strings.HasPrefix(sig.ID, "signal-") || sig.Source != FromSignal || sig.Status != MoveCompleted || sig.Warm ||
			sig.FromCloud != "edge-bastille" || sig.ToCloud != "edge-montmartre" || sig.FinishedAt.Before(sig.ArrivedAt) {
			t.Errorf("signal move record %+v", sig)
		}
		if len(s.Handovers) != 2 || s.Handovers[0].MoveID != "move-1" || s.Handovers[1].MoveID != sig.ID {
			t.Errorf("handovers %+v", s.Handovers)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	rep := st.report()
	var moves []string
	var seqs []int64
	for _, e := range st.center.events {
		seqs = append(seqs, e.Seq)
		if e.Session != names.SessionID("alice", "hello") || e.User != "alice" || e.App != "hello" || e.Chain == "" {
			t.Errorf("event %+v does not name its session", e)
		}
		if e.Kind == amsi.KindMove {
			moves = append(moves, eventLine(e))
		}
	}
	sig := rep.Moves[1].ID
	want := []string{
		"move-1 TRIGGERED edge-latin→edge-bastille", "move-1 COMPLETED edge-latin→edge-bastille",
		sig + " TRIGGERED edge-bastille→edge-montmartre", sig + " COMPLETED edge-bastille→edge-montmartre",
	}
	if !slices.Equal(moves, want) {
		t.Errorf("move events\n%s\nwant\n%s", strings.Join(moves, "\n"), strings.Join(want, "\n"))
	}
	for i, seq := range seqs {
		if seq != int64(i+1) {
			t.Fatalf("event numbers %v: not 1, 2, 3, …", seqs)
		}
	}
	// Pre-deploys that became ready were told as adjacent instances.
	var adjacent []string
	for _, e := range st.center.events {
		if e.Kind == amsi.KindAdjacent {
			adjacent = append(adjacent, eventLine(e))
		}
	}
	if want := "adjacent " + strings.Join(slices.DeleteFunc(expectedLive("edge-latin"), func(c string) bool { return c == "edge-latin" }), ","); len(adjacent) == 0 || adjacent[0] != want {
		t.Errorf("adjacent events %v", adjacent)
	}
	if rep.Events != int64(len(st.center.events)) {
		t.Errorf("report counts %d events, %d published", rep.Events, len(st.center.events))
	}
}

// A move the session fails (its target cannot serve) and one it refuses
// (exiting) are FAILED; a publish that fails is tried again, nothing lost.
func TestFailedMovesArePublishedAndPublishesRetried(t *testing.T) {
	st := newSessionTest(t)
	st.center.fail = 1
	st.clouds.failDeploys("fog-north", "engine down")
	st.at(time.Minute, func() {
		st.move("la-defense", func(r MoveResult, err error) {
			if err == nil {
				t.Error("a move to a failing cloud succeeded")
			}
		})
	})
	st.at(5*time.Minute, func() { st.env.SignalWorkflow(names.ExitSignal, nil) })
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	rep := st.report()
	if len(rep.Moves) != 1 || rep.Moves[0].Status != MoveFailed || !strings.Contains(rep.Moves[0].Error, "engine down") {
		t.Fatalf("records %+v", rep.Moves)
	}
	var moves []string
	for _, e := range st.center.events {
		if e.Kind == amsi.KindMove {
			moves = append(moves, eventLine(e))
		}
	}
	if !slices.Equal(moves, []string{"move-1 TRIGGERED edge-latin→fog-north", "move-1 FAILED edge-latin→fog-north"}) {
		t.Errorf("events %v", moves)
	}
	if st.center.fail != 0 {
		t.Error("the failing publish was never tried")
	}
}

// register sends a Register update.
func (st *sessionTest) register(req RegisterRequest, check func(RegisterResult, error)) {
	sendUpdate(st, names.RegisterUpdate, req, check)
}

func registerRequest(in SessionInput) RegisterRequest {
	return RegisterRequest{App: in.App, Region: in.Region, Neighbours: in.Neighbours, PreDeploy: in.PreDeploy, Registration: in.Registration}
}

func isErrType(err error, typ string) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == typ
}

// The first Register opens the session; the same request again gets the
// open session; another is a conflict naming what differs; a PUT changes
// the registration, and APP_MOBILITY_NOT_ALLOWED refuses moves.
func TestRegisterIsSameOrConflict(t *testing.T) {
	st := newSessionTest(t)
	in := sessionInput("quartier-latin")
	in.Registration = Registration{AssociateType: amsi.TypeUEIPv4, ServiceLevel: amsi.MobilityWithoutConfirmation}
	var answers []string
	st.at(0, func() {
		st.register(registerRequest(in), func(r RegisterResult, err error) {
			answers = append(answers, fmt.Sprintf("created=%v %s %v", r.Created, r.Cloud, err))
		})
	})
	st.at(time.Minute, func() {
		st.register(registerRequest(in), func(r RegisterResult, err error) {
			answers = append(answers, fmt.Sprintf("created=%v %s %v", r.Created, r.Cloud, err))
		})
		other := registerRequest(in)
		other.Region = "montmartre"
		st.register(other, func(r RegisterResult, err error) {
			if !isErrType(err, ErrTypeRegistrationConflict) || !strings.Contains(err.Error(), `region "quartier-latin" (asked: "montmartre")`) {
				t.Errorf("conflicting registration: %v", err)
			}
		})
		st.updates++
		level := Registration{Consumer: "hello", AssociateType: amsi.TypeUEIPv4, ServiceLevel: amsi.MobilityNotAllowed}
		st.env.UpdateWorkflow(names.ReregisterUpdate, "put-1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("reregister rejected: %v", err) }, OnAccept: func() {},
			OnComplete: func(res any, err error) {
				if r, _ := res.(Registration); err != nil || r.ServiceLevel != amsi.MobilityNotAllowed {
					t.Errorf("reregister: %+v %v", res, err)
				}
			},
		}, level)
	})
	st.at(2*time.Minute, func() {
		st.move("bastille", func(_ MoveResult, err error) {
			if !isErrType(err, ErrTypeMoveRefused) || !strings.Contains(err.Error(), "APP_MOBILITY_NOT_ALLOWED") {
				t.Errorf("move of a session that may not move: %v", err)
			}
		})
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, in)
	rep := st.report()
	if want := []string{"created=true edge-latin <nil>", "created=false edge-latin <nil>"}; !slices.Equal(answers, want) {
		t.Errorf("answers %v, want %v", answers, want)
	}
	if rep.Registration.Consumer != "hello" || rep.Registration.ServiceLevel != amsi.MobilityNotAllowed || len(rep.Moves) != 0 {
		t.Errorf("report %+v", rep)
	}
}

// A registration with an expiry time ends the session by itself.
func TestRegistrationExpiryEndsTheSession(t *testing.T) {
	st := newSessionTest(t)
	in := sessionInput("quartier-latin")
	in.Registration.ExpiryTime = 600
	start := st.env.Now()
	st.env.ExecuteWorkflow(MobilitySession, in)
	rep := st.report()
	if took := st.env.Now().Sub(start); took < 10*time.Minute || took > 11*time.Minute {
		t.Errorf("the session ended after %s, want 10m", took)
	}
	if rep.Phase != "ended" || !rep.Registration.ExpiresAt().Equal(rep.Registration.RegisteredAt.Add(10*time.Minute)) {
		t.Errorf("report %+v", rep)
	}
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}

// Continue-as-new carries the move records, the event count and the events
// not yet published.
func TestContinueAsNewCarriesMovesAndEvents(t *testing.T) {
	st := newSessionTest(t)
	st.center.fail = 1000 // nothing gets published
	st.at(time.Minute, func() { st.move("bastille", func(MoveResult, error) {}) })
	st.at(2*time.Minute, func() {
		st.env.SetContinueAsNewSuggested(true)
		st.move("quartier-latin", func(MoveResult, error) {})
	})
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	var can *workflow.ContinueAsNewError
	if err := st.env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("want continue-as-new, got %v", err)
	}
	var next SessionInput
	if err := decodePayloads(can, &next); err != nil {
		t.Fatal(err)
	}
	if next.Resume == nil || len(next.Resume.Moves) != 1 || next.Resume.Moves[0].ID != "move-1" || next.Resume.Events != 4 ||
		int64(len(next.Pending)) != next.Resume.Events || next.Pending[0].Seq != 1 {
		t.Fatalf("carried %+v, pending %d", next.Resume, len(next.Pending))
	}
}
