package workflows

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/runtime"
)

// Analyze measures nothing on the instant runtime: every request answers
// 200 in 2 ms (tests mock it to fail).
func (c *testClouds) Analyze(ctx context.Context, req activities.AnalysisRequest) (activities.AnalysisResult, error) {
	if _, err := c.on(ctx); err != nil {
		return activities.AnalysisResult{}, err
	}
	n := int(req.For / req.Interval)
	return activities.AnalysisResult{Requests: n, P95: 2 * time.Millisecond, Max: 2 * time.Millisecond}, nil
}

// wavesSpec: canary fog-north, then the fog tier (fog-south) after an
// approval, then the edges labelled ring=last, one at a time; every wave
// bakes a minute under analysis.
func wavesSpec(t *testing.T) pipelinespec.Spec {
	return pipelineSpec(t, func(s *pipelinespec.Spec) {
		last := map[string]string{"ring": "last"}
		s.Deploy.Targets = []pipelinespec.Target{
			{Cloud: "fog-north", Verify: pipelinespec.VerifyHTTP},
			{Cloud: "fog-south", Verify: pipelinespec.VerifyHTTP},
			{Cloud: "edge-latin", Verify: pipelinespec.VerifyHTTP, Labels: last},
			{Cloud: "edge-bastille", Verify: pipelinespec.VerifyHTTP, Labels: last},
		}
		analysis := &pipelinespec.Analysis{Interval: time.Second, SuccessRatio: 0.95, MaxLatency: 100 * time.Millisecond}
		s.Deploy.Waves = []pipelinespec.Wave{
			{Name: "canary", Targets: []string{"fog-north"}, Bake: time.Minute, Analysis: analysis},
			{Name: "fog", Tier: "fog", Approval: true, Bake: time.Minute, Analysis: analysis},
			{Name: "edges", Labels: last, MaxParallel: 1, Bake: time.Minute, Analysis: analysis},
		}
		s.Deploy.ApprovalTimeout = 30 * time.Minute
	})
}

// decide sends Approve or Reject as an Update after delay of workflow time;
// *rejected gets the validator's answer (nil: accepted).
func (pt *pipelineTest) decide(delay time.Duration, update string, d ApprovalDecision, rejected *error) {
	pt.env.RegisterDelayedCallback(func() {
		pt.env.UpdateWorkflow(update, "", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { *rejected = err },
			OnAccept:   func() {},
			OnComplete: func(any, error) {},
		}, d)
	}, delay)
}

func byCloud(pr PipelineProgress) map[string]TargetProgress {
	out := map[string]TargetProgress{}
	for _, tp := range pr.Targets {
		out[tp.Cloud] = tp
	}
	return out
}

func TestPipelineWavesRollOutInOrder(t *testing.T) {
	pt := newPipelineTest(t)
	pt.clouds.seed("fog-south", helloInstance, runtime.Spec{Image: oldImage, Port: 8080})
	pt.env.OnActivity(cloudActs.Analyze, mock.Anything, mock.Anything).Return(pt.clouds.Analyze).After(time.Minute)
	var noWho, early error
	var gate PipelineProgress
	pt.decide(time.Minute, names.ApproveUpdate, ApprovalDecision{Who: "dave"}, &early) // before the gate opens: kept for it
	pt.decide(2*time.Minute, names.ApproveUpdate, ApprovalDecision{}, &noWho)
	pt.env.RegisterDelayedCallback(func() { gate = pt.progress() }, 90*time.Second)
	start := pt.env.Now()
	pr, err := pt.run(wavesSpec(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if early != nil || noWho == nil || !strings.Contains(noWho.Error(), "who decides") {
		t.Errorf("an approval before the gate: %v; one without who: %v (want refused)", early, noWho)
	}
	if gate.Waves[1].Approval.Who != "dave" {
		t.Errorf("the fog wave's gate before it opened: %+v", gate.Waves[1].Approval)
	}
	var order []string
	for _, d := range pt.clouds.deploys {
		order = append(order, strings.TrimSuffix(d, "/"+helloInstance))
	}
	if want := []string{"fog-north", "fog-south", "edge-latin", "edge-bastille"}; !slices.Equal(order, want) {
		t.Errorf("deploy order %v, want %v", order, want)
	}
	// 30 s build + 3 waves of (deploy 5 s + verify 10 s + bake 1 m), the
	// edges one at a time: 30 + 75 + 75 + 2*15 + 60 = 270 s.
	if took := pt.env.Now().Sub(start); took < 270*time.Second || took > 280*time.Second {
		t.Errorf("the rollout took %v of workflow time, want 270 s: waves in order, edges one at a time, each baked", took)
	}
	for _, w := range pr.Waves {
		if w.Status != WaveDone || len(w.Analysis) != len(w.Targets) || !w.Analysis[0].Passed {
			t.Errorf("wave %+v", w)
		}
	}
	if pr.Waves[1].Approval.Status != ApprovalGranted || stepStatuses(pr)[StepApproval] != StepDone {
		t.Errorf("fog gate %+v, approval step %s", pr.Waves[1].Approval, stepStatuses(pr)[StepApproval])
	}
	tps := byCloud(pr)
	if tp := tps["fog-south"]; tp.Before != oldImage || tp.After != fakeImage || tp.Wave != "fog" {
		t.Errorf("fog-south %+v, want before old, after new", tp)
	}
	if tp := tps["edge-latin"]; tp.Before != "" || tp.After != fakeImage || tp.Wave != "edges" {
		t.Errorf("edge-latin %+v", tp)
	}
}

// The fog wave's analysis fails: every target the run touched goes back,
// last wave first, the edges are never touched, and the run says which
// target runs what.
func TestPipelineFailedWaveRollsTheFleetBack(t *testing.T) {
	pt := newPipelineTest(t)
	pt.clouds.seed("fog-north", helloInstance, runtime.Spec{Image: oldImage, Port: 8080})
	pt.clouds.seed("edge-latin", helloInstance, runtime.Spec{Image: oldImage, Port: 8080})
	pt.env.OnActivity(cloudActs.Analyze, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, req activities.AnalysisRequest) (activities.AnalysisResult, error) {
			if cloudOf(ctx) == "fog-south" {
				return activities.AnalysisResult{Requests: 60, Failures: 20, P95: time.Millisecond, LastFail: "answered 500"}, nil
			}
			return activities.AnalysisResult{Requests: 60, P95: time.Millisecond}, nil
		}).After(time.Minute)
	var rejected error
	pt.decide(2*time.Minute, names.ApproveUpdate, ApprovalDecision{Who: "erin"}, &rejected)
	pr, err := pt.run(wavesSpec(t), nil)
	if errorType(err) != ErrTypeRolledBack || !strings.Contains(err.Error(), "wave fog failed") || !strings.Contains(err.Error(), "40 of 60 requests answered 2xx") {
		t.Fatalf("error %v, want RolledBack naming the fog wave and its analysis", err)
	}
	if rejected != nil {
		t.Fatal(rejected)
	}
	if got := pt.clouds.images(helloInstance); got["fog-north"] != oldImage || got["edge-latin"] != oldImage || len(got) != 2 {
		t.Errorf("clouds run %v, want fog-north and edge-latin on the old image and fog-south empty", got)
	}
	if len(pt.clouds.deployed["edge-latin"]) != 0 || len(pt.clouds.deployed["edge-bastille"]) != 0 {
		t.Error("the edges wave was touched")
	}
	// fog-south (wave 2) goes before fog-north (wave 1).
	if pt.clouds.destroyed("fog-south") != 1 || pt.clouds.deployed["fog-north"][1] != oldImage {
		t.Errorf("fog-south destroyed %d times, fog-north got %v", pt.clouds.destroyed("fog-south"), pt.clouds.deployed["fog-north"])
	}
	want := map[string]WaveStatus{"canary": WaveRolledBack, "fog": WaveRolledBack, "edges": WavePending}
	for _, w := range pr.Waves {
		if w.Status != want[w.Name] {
			t.Errorf("wave %s is %s, want %s", w.Name, w.Status, want[w.Name])
		}
	}
	tps := byCloud(pr)
	if tp := tps["fog-north"]; tp.Status != TargetRolledBack || tp.Before != oldImage || tp.After != oldImage {
		t.Errorf("fog-north %+v", tp)
	}
	if tp := tps["edge-latin"]; tp.Status != TargetPending || tp.Before != oldImage || tp.After != oldImage {
		t.Errorf("edge-latin %+v: untouched, on the old image", tp)
	}
	for _, part := range []string{"fog-north runs center.test/hello@000000000000", "fog-south runs nothing of hello", "edge-latin untouched (runs center.test/hello@000000000000)"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("the error does not say %q: %v", part, err)
		}
	}
}

// The canary's Prometheus gate: the query is asked from the canary's
// worker with {{cloud}} filled in, and an answer over max fails the wave
// although every request answered 2xx.
func TestPipelinePrometheusGateFailsAWave(t *testing.T) {
	pt := newPipelineTest(t)
	pt.clouds.seed("fog-north", helloInstance, runtime.Spec{Image: oldImage, Port: 8080})
	var asked []string
	pt.env.OnActivity(cloudActs.Analyze, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, req activities.AnalysisRequest) (activities.AnalysisResult, error) {
			asked = append(asked, cloudOf(ctx)+" "+req.PromAddress+" "+req.PromQuery)
			return activities.AnalysisResult{Requests: 60, P95: time.Millisecond,
				Prom: &activities.PromAnswer{Samples: []activities.PromSample{{Series: "{}", Value: "0.5"}}}}, nil
		}).After(time.Minute)
	spec := wavesSpec(t)
	most := 0.1
	spec.Deploy.Waves[0].Analysis = &pipelinespec.Analysis{Interval: time.Second, SuccessRatio: 0.95,
		Prometheus: &pipelinespec.PrometheusGate{Address: "http://prom.test:9090", Query: `errors{cloud="{{cloud}}"}`, Max: &most}}
	pr, err := pt.run(spec, nil)
	if errorType(err) != ErrTypeRolledBack || !strings.Contains(err.Error(), "wave canary failed") || !strings.Contains(err.Error(), "prometheus: {} is 0.5, want ≤ 0.1") {
		t.Fatalf("error %v, want RolledBack at the canary's Prometheus gate", err)
	}
	if want := []string{`fog-north http://prom.test:9090 errors{cloud="fog-north"}`}; !slices.Equal(asked, want) {
		t.Errorf("asked %q, want %q", asked, want)
	}
	if got := pt.clouds.images(helloInstance); got["fog-north"] != oldImage || len(got) != 1 {
		t.Errorf("clouds run %v, want fog-north back on the old image and nothing else touched", got)
	}
	if an := pr.Waves[0].Analysis; len(an) != 1 || an[0].Passed || an[0].Prom == nil {
		t.Errorf("canary analysis %+v", an)
	}
}

func TestPipelineRejectedWaveRollsTheFleetBack(t *testing.T) {
	pt := newPipelineTest(t)
	pt.clouds.seed("fog-north", helloInstance, runtime.Spec{Image: oldImage, Port: 8080})
	pt.env.RegisterDelayedCallback(func() {
		// A run in flight from before decisions were Updates is told by Signal.
		pt.env.SignalWorkflow(names.RejectSignal, ApprovalDecision{Who: "frank", Why: "freeze"})
	}, 3*time.Minute)
	pr, err := pt.run(wavesSpec(t), nil)
	if errorType(err) != ErrTypeRejected || !strings.Contains(err.Error(), "frank") || pr.Step != StepApproval {
		t.Fatalf("error %v at %s", err, pr.Step)
	}
	if got := pt.clouds.images(helloInstance); got["fog-north"] != oldImage || len(got) != 1 {
		t.Errorf("clouds run %v", got)
	}
	if pr.Waves[1].Status != WaveRejected || byCloud(pr)["fog-south"].Status != TargetRejected {
		t.Errorf("waves %+v", pr.Waves)
	}
}

func TestPipelineWavesBadInput(t *testing.T) {
	for name, edit := range map[string]func(*pipelinespec.Spec){
		"tier with no target": func(s *pipelinespec.Spec) {
			s.Deploy.Waves = []pipelinespec.Wave{{Name: "all", Tier: "fog"}, {Name: "centre", Tier: "center"}}
		},
		"target in no wave": func(s *pipelinespec.Spec) {
			s.Deploy.Waves = []pipelinespec.Wave{{Name: "fog", Tier: "fog"}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			pt := newPipelineTest(t)
			_, err := pt.run(pipelineSpec(t, edit), nil)
			if errorType(err) != ErrTypeInvalidPipeline || len(pt.f.calls) != 0 {
				t.Fatalf("error %v after %v, want InvalidPipeline before any step", err, pt.f.calls)
			}
		})
	}
}

// PipelineRollback puts a finished run's targets back, the last wave
// first, and leaves alone what the run did not leave on its release.
func TestPipelineRollbackPutsAFinishedRunBack(t *testing.T) {
	pt := newPipelineTest(t)
	pt.clouds.seed("fog-north", helloInstance, runtime.Spec{Image: oldImage, Port: 8080})
	var rejected error
	pt.decide(2*time.Minute, names.ApproveUpdate, ApprovalDecision{Who: "gus"}, &rejected)
	spec := wavesSpec(t)
	done, err := pt.run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}

	rollback := func(pr PipelineProgress) (RollbackResult, error) {
		var s testsuite.WorkflowTestSuite
		env := s.NewTestWorkflowEnvironment()
		pt.clouds.install(env)
		env.ExecuteWorkflow(PipelineRollback, RollbackInput{Run: PipelineInput{Run: "r1", Spec: spec, Topology: exampleTopology}, Progress: pr})
		var res RollbackResult
		err := env.GetWorkflowResult(&res)
		return res, err
	}
	res, err := rollback(done)
	if err != nil {
		t.Fatal(err)
	}
	if got := pt.clouds.images(helloInstance); got["fog-north"] != oldImage || len(got) != 1 {
		t.Errorf("clouds run %v, want only fog-north, on the old image", got)
	}
	for _, tp := range res.Targets {
		if tp.Status != TargetRolledBack || tp.After != tp.Before {
			t.Errorf("target %+v", tp)
		}
	}
	if !strings.Contains(res.Report, "fog-north runs center.test/hello@000000000000") || !strings.Contains(res.Report, "edge-bastille runs nothing") {
		t.Errorf("report %q", res.Report)
	}
	// Rolling the same run back again touches nothing.
	deploys := len(pt.clouds.deploys)
	done.Targets = res.Targets
	if _, err := rollback(done); err != nil || len(pt.clouds.deploys) != deploys {
		t.Errorf("second rollback: %v, %d deploys", err, len(pt.clouds.deploys)-deploys)
	}
}

func TestJudge(t *testing.T) {
	limit := 2
	low, high := 0.1, 0.5
	a := pipelinespec.Analysis{SuccessRatio: 0.9, MaxLatency: 50 * time.Millisecond, FailureLimit: &limit, Metric: &pipelinespec.MetricGate{Name: "errors", Max: 3},
		Prometheus: &pipelinespec.PrometheusGate{Min: &low, Max: &high}}
	four := 4.0
	prom := func(values ...string) *activities.PromAnswer {
		a := &activities.PromAnswer{}
		for i, v := range values {
			a.Samples = append(a.Samples, activities.PromSample{Series: fmt.Sprintf("{i=\"%d\"}", i), Value: v})
		}
		return a
	}
	for _, c := range []struct {
		r    activities.AnalysisResult
		pass bool
		says string
	}{
		{activities.AnalysisResult{Requests: 100, Failures: 2, P95: 10 * time.Millisecond}, true, "98 of 100"},
		{activities.AnalysisResult{Requests: 10, Failures: 3, Stopped: true}, false, "stopped after 3 failed requests (failure limit 2)"},
		{activities.AnalysisResult{Requests: 10, Failures: 2}, false, "want ≥ 90.0%"},
		{activities.AnalysisResult{Requests: 100, P95: time.Second}, false, "want p95 ≤ 50ms"},
		{activities.AnalysisResult{Requests: 100, Metric: &four}, false, "metric errors is 4, want ≤ 3"},
		{activities.AnalysisResult{Requests: 100, Prom: prom("0.25", "0.1")}, true, "prometheus: 0.25, 0.1"},
		{activities.AnalysisResult{Requests: 100, Prom: prom("0.25", "0.75")}, false, `prometheus: {i="1"} is 0.75, want ≤ 0.5`},
		{activities.AnalysisResult{Requests: 100, Prom: prom("0.05")}, false, `prometheus: {i="0"} is 0.05, want ≥ 0.1`},
		{activities.AnalysisResult{Requests: 100, Prom: prom("NaN")}, false, "is NaN, not a number"},
		{activities.AnalysisResult{Requests: 100, Prom: prom()}, false, "matched no series"},
		{activities.AnalysisResult{Requests: 100, Prom: &activities.PromAnswer{Error: "connection refused"}}, false, "prometheus: connection refused"},
	} {
		pass, says := judge(a, c.r)
		if pass != c.pass || !strings.Contains(says, c.says) {
			t.Errorf("%+v: %v %q, want %v %q", c.r, pass, says, c.pass, c.says)
		}
	}
}

// Cancelled while the canary wave bakes (in its child workflow), the run
// puts the canary back and touches nothing else.
func TestPipelineCancelledDuringAWaveLeavesNothingHalfDeployed(t *testing.T) {
	pt := newPipelineTest(t)
	pt.clouds.seed("fog-north", helloInstance, runtime.Spec{Image: oldImage, Port: 8080})
	pt.env.OnActivity(cloudActs.Analyze, mock.Anything, mock.Anything).Return(pt.clouds.Analyze).After(time.Minute)
	pt.env.RegisterDelayedCallback(func() {
		if w := pt.progress().Waves[0]; w.Status != WaveDeploying {
			t.Errorf("cancelling with the canary wave %s", w.Status)
		}
		pt.env.CancelWorkflow()
	}, 70*time.Second) // build 30 s, deploy 5 s, verify 10 s, then the bake
	pr, err := pt.run(wavesSpec(t), nil)
	if err == nil {
		t.Fatal("a cancelled run succeeded")
	}
	if got := pt.clouds.images(helloInstance); got["fog-north"] != oldImage || len(got) != 1 {
		t.Errorf("clouds run %v, want fog-north back on the old image and nothing else", got)
	}
	if tp := byCloud(pr)["fog-north"]; tp.Status != TargetRolledBack {
		t.Errorf("fog-north %+v", tp)
	}
	if len(pt.clouds.deployed["fog-south"]) != 0 || len(pt.clouds.deployed["edge-latin"]) != 0 {
		t.Error("a later wave was touched")
	}
}
