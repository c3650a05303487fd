package workflows

import (
	"errors"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/predict"
)

func TestAppModelLearnsAndContinuesAsNew(t *testing.T) {
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	for i, mv := range []activities.RegionMove{{From: "a", To: "b"}, {From: "a", To: "b"}, {From: "a", To: "c"}} {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(names.ObserveSignal, mv) }, time.Duration(i+1)*time.Second)
	}
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(names.ModelQuery)
		if err != nil {
			t.Fatal(err)
		}
		var m predict.Model
		if err := v.Get(&m); err != nil {
			t.Fatal(err)
		}
		tr := m.Transitions("a")
		if m.Observations("a") != 3 || len(tr) != 2 || tr[0].To != "b" || tr[0].Count != 2 {
			t.Errorf("model after 3 moves: %+v", tr)
		}
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflow(names.ObserveSignal, activities.RegionMove{From: "b", To: "a"})
	}, 10*time.Second)
	env.ExecuteWorkflow(AppModel, activities.AppModelInput{App: "hello"})

	var can *workflow.ContinueAsNewError
	if err := env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("want continue-as-new, got %v", err)
	}
	var next activities.AppModelInput
	if err := decodePayloads(can, &next); err != nil {
		t.Fatal(err)
	}
	if next.App != "hello" || next.Model.Observations("a") != 3 || next.Model.Observations("b") != 1 {
		t.Fatalf("carried model %+v", next)
	}
}
