package workflows

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/release"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
)

// fakeFactory stands in for the build worker, the registry and the
// endpoints the targets serve (the test clouds' endpoints do not answer).
type fakeFactory struct {
	mu             sync.Mutex
	calls          []string          // activity names in order ("clone", "verify fog-north", …)
	built          map[string]string // image name + " " + build key → pinned image (the registry's build tags)
	failTest       bool              // test commands fail
	builtFilesLost bool              // the first Package finds no built files
	pushFails      int               // pushes that fail before one works
	failVerify     map[string]bool   // clouds whose endpoint never answers
	attested       []activities.AttestRequest
	attestFails    bool // signing fails
	noKey          bool // the build worker has no signing key
}

const (
	fakeDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	fakeImage  = "center.test/hello@" + fakeDigest
	oldImage   = "center.test/hello@sha256:0000000000000000000000000000000000000000000000000000000000000000"
)

func newFakeFactory() *fakeFactory {
	return &fakeFactory{built: map[string]string{}, failVerify: map[string]bool{}}
}

func (f *fakeFactory) called(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
}

func (f *fakeFactory) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == name {
			n++
		}
	}
	return n
}

func (f *fakeFactory) install(env *testsuite.TestWorkflowEnvironment) {
	env.RegisterActivity(&activities.Pipeline{})
	env.RegisterActivity(cloudActs.Verify)
	logs := activities.StepLogs{File: "/data/logs/step.log", Tail: []string{"ok"}}
	env.OnActivity(pipelineActs.Clone, mock.Anything, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.RunRef, pipelinespec.Spec) (activities.Checkout, error) {
			f.called("clone")
			return activities.Checkout{Commit: "c0ffee", Tree: "7ree", BuildKey: "key-7ree", Log: logs}, nil
		})
	env.OnActivity(pipelineActs.FindBuild, mock.Anything, mock.Anything, mock.Anything).Return(
		func(_ context.Context, name, key string) (string, error) {
			f.called("find")
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.built[name+" "+key], nil
		})
	env.OnActivity(pipelineActs.Build, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.StepRequest) (activities.StepLogs, error) {
			f.called("build")
			return logs, nil
		}).After(30 * time.Second)
	env.OnActivity(pipelineActs.Test, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.StepRequest) (activities.StepLogs, error) {
			f.called("test")
			logs := logs
			for _, pl := range req.Spec.Image.Platforms {
				logs.Tests = append(logs.Tests, release.TestResult{Platform: pl, Passed: !f.failTest, Commands: req.Spec.Test.Commands})
			}
			if f.failTest {
				failed := activities.StepLogs{File: "/data/logs/test.log", Tail: []string{"--- FAIL: TestHello", "FAIL"}}
				return failed, temporal.NewNonRetryableApplicationError("test: \"go test ./...\" failed\n--- FAIL: TestHello", activities.ErrTypeTestFailed, nil, failed)
			}
			return logs, nil
		})
	env.OnActivity(pipelineActs.Package, mock.Anything, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.RunRef, pipelinespec.Spec) (activities.Package, error) {
			f.called("package")
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.builtFilesLost {
				f.builtFilesLost = false
				return activities.Package{}, temporal.NewNonRetryableApplicationError("package: artifact out/hello is missing", activities.ErrTypeNoArtifact, nil)
			}
			return activities.Package{Path: "/data/artifacts/abc.tar.gz", SHA256: "abc", Size: 42}, nil
		})
	env.OnActivity(pipelineActs.BuildImage, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.ImageRequest) (string, error) {
			f.called("image")
			return digestOf(req.Service), nil
		})
	env.OnActivity(pipelineActs.Push, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.ImageRequest) (string, error) {
			f.called("push")
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.pushFails > 0 {
				f.pushFails--
				return "", errors.New("registry answered 503")
			}
			img := fakeImage
			if req.Service != "" {
				img = projectImage(req.Service)
			}
			if !req.DeferBuildTag {
				f.built[imageName(req)+" "+req.BuildKey] = img
			}
			return img, nil
		})
	env.OnActivity(pipelineActs.Attest, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.AttestRequest) (release.Attached, error) {
			f.called("attest")
			f.mu.Lock()
			defer f.mu.Unlock()
			f.attested = append(f.attested, req)
			if f.attestFails {
				return release.Attached{}, temporal.NewNonRetryableApplicationError("attest: registry refused", "Refused", nil)
			}
			f.built[imageName(req.Image)+" "+req.Image.BuildKey] = req.Pinned
			if f.noKey {
				return release.Attached{}, nil
			}
			return release.Attached{Signature: "center.test/hello:sha256-1111.sig", Attestations: "center.test/hello:sha256-1111.att", Key: "feedbeef",
				SBOMs: []release.SBOMInfo{{Platform: "linux/amd64", Packages: 3, Format: "SPDX-2.3"}, {Platform: "linux/loong64", Packages: 3, Format: "SPDX-2.3"}}}, nil
		})
	env.OnActivity(pipelineActs.Cleanup, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.RunRef) error { f.called("cleanup"); return nil })
	env.OnActivity(cloudActs.Verify, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, req activities.VerifyRequest) (string, error) {
			cloud := cloudOf(ctx)
			f.called("verify " + cloud)
			if f.failVerify[cloud] {
				return "", temporal.NewNonRetryableApplicationError("verify: 502", activities.ErrTypeNotServing, nil)
			}
			return req.URL + req.Health + " answered 200", nil
		}).After(10 * time.Second)
}

// digestOf is the digest the fake image step makes for a service's image
// (fakeDigest for the one image).
func digestOf(service string) string {
	switch service {
	case "":
		return fakeDigest
	case "web":
		return "sha256:" + strings.Repeat("a", 64)
	}
	return "sha256:" + strings.Repeat("b", 64)
}

// projectImage is the image the fake registry pins for a service.
func projectImage(service string) string {
	return "center.test/counter-" + service + "@" + digestOf(service)
}

// imageName is the name of the image a request asks for.
func imageName(req activities.ImageRequest) string {
	for _, img := range req.Spec.ImageSpecs() {
		if img.Service == req.Service {
			return img.Name
		}
	}
	return ""
}

// helloInstance is the instance the pipeline deploys hello as on every target.
var helloInstance = PipelineInstance("hello")

// cloudOf is the cloud whose queue an activity was scheduled on.
func cloudOf(ctx context.Context) string {
	return strings.TrimPrefix(activity.GetInfo(ctx).TaskQueue, "drift.cloud.")
}

func pipelineSpec(t *testing.T, edit func(*pipelinespec.Spec)) pipelinespec.Spec {
	t.Helper()
	s, err := pipelinespec.Parse(examples.Pipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&s)
	}
	return s
}

type pipelineTest struct {
	testsuite.WorkflowTestSuite
	env    *testsuite.TestWorkflowEnvironment
	f      *fakeFactory
	clouds *testClouds
	t      *testing.T
}

func newPipelineTest(t *testing.T) *pipelineTest {
	// Every deploy takes 5 s of workflow time.
	pt := &pipelineTest{t: t, f: newFakeFactory(), clouds: newTestClouds(t, exampleTopology, 5*time.Second)}
	pt.env = pt.NewTestWorkflowEnvironment()
	pt.env.RegisterWorkflow(PipelineWave)
	pt.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: names.PipelineID("hello", "r1")})
	pt.f.install(pt.env)
	pt.clouds.install(pt.env)
	return pt
}

// run executes the pipeline and returns its progress and error.
func (pt *pipelineTest) run(spec pipelinespec.Spec, resume *PipelineProgress) (PipelineProgress, error) {
	pt.env.ExecuteWorkflow(Pipeline, PipelineInput{Run: "r1", Spec: spec, Topology: exampleTopology, Resume: resume})
	if !pt.env.IsWorkflowCompleted() {
		pt.t.Fatal("pipeline did not complete")
	}
	err := pt.env.GetWorkflowError()
	var pr PipelineProgress
	if err == nil {
		if gerr := pt.env.GetWorkflowResult(&pr); gerr != nil {
			pt.t.Fatal(gerr)
		}
		return pr, nil
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.HasDetails() {
		if derr := ae.Details(&pr); derr != nil {
			pt.t.Fatal(derr)
		}
	}
	return pr, err
}

func (pt *pipelineTest) progress() PipelineProgress {
	v, err := pt.env.QueryWorkflow(names.ProgressQuery)
	if err != nil {
		pt.t.Fatal(err)
	}
	var pr PipelineProgress
	if err := v.Get(&pr); err != nil {
		pt.t.Fatal(err)
	}
	return pr
}

func stepStatuses(pr PipelineProgress) map[StepName]StepStatus {
	out := map[StepName]StepStatus{}
	for _, s := range pr.Steps {
		out[s.Name] = s.Status
	}
	return out
}

func errorType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Type()
	}
	return ""
}

func TestPipelineRunsEveryStepAndDeploysEveryTarget(t *testing.T) {
	pt := newPipelineTest(t)
	var during PipelineProgress
	pt.env.RegisterDelayedCallback(func() { during = pt.progress() }, 10*time.Second)
	pr, err := pt.run(pipelineSpec(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if during.Step != StepBuild || stepStatuses(during)[StepBuild] != StepRunning || stepStatuses(during)[StepClone] != StepDone {
		t.Errorf("progress during the build: step %s, %v", during.Step, stepStatuses(during))
	}
	want := []string{"clone", "find", "build", "test", "package", "image", "push", "attest"}
	if got := pt.f.calls[:len(want)]; !slices.Equal(got, want) {
		t.Fatalf("steps ran %v, want %v first", pt.f.calls, want)
	}
	if pr.Status != RunSucceeded || pr.Image != fakeImage || pr.Digest != fakeDigest || pr.Commit != "c0ffee" || pr.Reused {
		t.Fatalf("result %+v", pr)
	}
	for name, st := range stepStatuses(pr) {
		if want := StepDone; name == StepApproval {
			want = StepSkipped
			if st != want {
				t.Errorf("step %s is %s, want %s", name, st, want)
			}
		} else if st != want {
			t.Errorf("step %s is %s, want %s", name, st, want)
		}
	}
	if s, _ := pr.StepByName(StepBuild); s.Duration(time.Time{}) != 30*time.Second || s.Log.File == "" {
		t.Errorf("build step timing/logs %+v", s)
	}
	eps := pr.Endpoints()
	if len(eps) != 2 || eps["fog-north"].URL != "instant://fog-north/pipeline-hello" || eps["edge-latin"].URL != "instant://edge-latin/pipeline-hello" {
		t.Errorf("endpoints %v", eps)
	}
	if images := pt.clouds.images(helloInstance); images["fog-north"] != fakeImage || images["edge-latin"] != fakeImage {
		t.Errorf("clouds run %v", images)
	}
	if pt.f.count("cleanup") != 1 {
		t.Error("checkout not cleaned")
	}
}

func TestPipelineDeploysTargetsInParallel(t *testing.T) {
	pt := newPipelineTest(t)
	start := pt.env.Now()
	if _, err := pt.run(pipelineSpec(t, nil), nil); err != nil {
		t.Fatal(err)
	}
	// 30 s build + one 5 s deploy + one 10 s verify: the two targets overlap.
	if took := pt.env.Now().Sub(start); took >= 55*time.Second {
		t.Errorf("pipeline took %v of workflow time: deploys ran one after another", took)
	}
}

func TestPipelineTestFailureStopsWithTheOutput(t *testing.T) {
	pt := newPipelineTest(t)
	pt.f.failTest = true
	pr, err := pt.run(pipelineSpec(t, nil), nil)
	if err == nil || !strings.Contains(err.Error(), "failed at test") || !strings.Contains(err.Error(), "--- FAIL: TestHello") {
		t.Fatalf("error %v, want the test step and its output", err)
	}
	if pt.f.count("test") != 1 {
		t.Errorf("test ran %d times: a failing test is not retried", pt.f.count("test"))
	}
	if n := pt.f.count("package") + pt.f.count("push") + len(pt.clouds.deploys); n != 0 {
		t.Errorf("%d steps after the failed test ran: %v %v", n, pt.f.calls, pt.clouds.deploys)
	}
	s, _ := pr.StepByName(StepTest)
	if s.Status != "failed" || !slices.Contains(s.Log.Tail, "--- FAIL: TestHello") || pr.Step != StepTest {
		t.Errorf("test step %+v (run at %s)", s, pr.Step)
	}
	if pt.f.count("cleanup") != 1 {
		t.Error("checkout not cleaned after a failure")
	}
}

func TestPipelinePushFailureIsRetried(t *testing.T) {
	pt := newPipelineTest(t)
	pt.f.pushFails = 2
	pr, err := pt.run(pipelineSpec(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := pt.f.count("push"); n != 3 || pr.Image != fakeImage {
		t.Fatalf("push ran %d times (want 3), image %s", n, pr.Image)
	}
}

func TestPipelineRollsBackTheFailingTargetOnly(t *testing.T) {
	pt := newPipelineTest(t)
	pt.clouds.seed("edge-latin", helloInstance, runtime.Spec{Image: oldImage, Port: 8080}) // an earlier release runs there
	pt.f.failVerify["edge-latin"] = true
	pr, err := pt.run(pipelineSpec(t, nil), nil)
	if errorType(err) != ErrTypeRolledBack || !strings.Contains(err.Error(), "edge-latin") || strings.Contains(err.Error(), "fog-north") {
		t.Fatalf("error %v, want RolledBack naming edge-latin only", err)
	}
	if got := pt.clouds.deployed["edge-latin"]; !slices.Equal(got, []string{fakeImage, oldImage}) {
		t.Errorf("edge-latin got %v, want the new image then the old one back", got)
	}
	if images := pt.clouds.images(helloInstance); images["edge-latin"] != oldImage || images["fog-north"] != fakeImage {
		t.Errorf("clouds run %v", images)
	}
	byCloud := map[string]TargetProgress{}
	for _, tp := range pr.Targets {
		byCloud[tp.Cloud] = tp
	}
	if byCloud["edge-latin"].Status != TargetRolledBack || byCloud["edge-latin"].Previous != oldImage || byCloud["fog-north"].Status != TargetDone {
		t.Errorf("targets %+v", pr.Targets)
	}
}

func TestPipelineRollbackRemovesANewInstance(t *testing.T) {
	pt := newPipelineTest(t)
	pt.clouds.failDeploys("fog-north", "rollout timed out")
	_, err := pt.run(pipelineSpec(t, nil), nil)
	if errorType(err) != ErrTypeRolledBack {
		t.Fatalf("error %v", err)
	}
	if img, ok := pt.clouds.images(helloInstance)["fog-north"]; ok || pt.clouds.destroyed("fog-north") != 1 {
		t.Errorf("fog-north had nothing before and still runs %q", img)
	}
}

func gatedSpec(t *testing.T) pipelinespec.Spec {
	return pipelineSpec(t, func(s *pipelinespec.Spec) {
		s.Deploy.Targets[1].Approval = true // edge-latin waits
		s.Deploy.ApprovalTimeout = 10 * time.Minute
	})
}

func TestPipelineApprovalApprove(t *testing.T) {
	pt := newPipelineTest(t)
	var waiting PipelineProgress
	pt.env.RegisterDelayedCallback(func() {
		waiting = pt.progress()
		pt.env.SignalWorkflow(names.ApproveSignal, ApprovalDecision{Who: "bob", Why: "release 1"})
	}, 2*time.Minute)
	pr, err := pt.run(gatedSpec(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := waiting.Approval; a == nil || a.Status != ApprovalWaiting || !slices.Equal(a.Targets, []string{"edge-latin"}) || a.Deadline.IsZero() {
		t.Fatalf("approval while waiting %+v", waiting.Approval)
	}
	if waiting.Targets[0].Status != TargetDone || waiting.Targets[1].Status != TargetWaiting {
		t.Errorf("while waiting: %+v (the ungated target deploys at once)", waiting.Targets)
	}
	if img := pt.clouds.images(helloInstance)["edge-latin"]; pr.Approval.Who != "bob" || pr.Approval.Status != ApprovalGranted || img != fakeImage {
		t.Errorf("approval %+v, edge-latin runs %q", pr.Approval, img)
	}
}

func TestPipelineApprovalReject(t *testing.T) {
	pt := newPipelineTest(t)
	pt.env.RegisterDelayedCallback(func() {
		pt.env.SignalWorkflow(names.RejectSignal, ApprovalDecision{Who: "carol", Why: "freeze"})
	}, 2*time.Minute)
	pr, err := pt.run(gatedSpec(t), nil)
	if errorType(err) != ErrTypeRejected || !strings.Contains(err.Error(), "carol") || !strings.Contains(err.Error(), "freeze") {
		t.Fatalf("error %v", err)
	}
	if len(pt.clouds.deployed["edge-latin"]) != 0 || pr.Approval.Status != ApprovalRejected {
		t.Errorf("edge-latin deployed %d times, approval %+v", len(pt.clouds.deployed["edge-latin"]), pr.Approval)
	}
}

func TestPipelineApprovalTimeout(t *testing.T) {
	pt := newPipelineTest(t)
	start := pt.env.Now()
	_, err := pt.run(gatedSpec(t), nil)
	if errorType(err) != ErrTypeApprovalTimeout {
		t.Fatalf("error %v", err)
	}
	if took := pt.env.Now().Sub(start); took < 10*time.Minute {
		t.Errorf("gave up after %v, before the timeout", took)
	}
	if len(pt.clouds.deployed["edge-latin"]) != 0 {
		t.Error("edge-latin deployed without approval")
	}
}

func TestPipelineReusesAnEarlierBuild(t *testing.T) {
	pt := newPipelineTest(t)
	pt.f.built["hello key-7ree"] = fakeImage
	pr, err := pt.run(pipelineSpec(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"build", "test", "package", "image", "push"} {
		if pt.f.count(step) != 0 {
			t.Errorf("%s ran on a reuse hit", step)
		}
	}
	st := stepStatuses(pr)
	if !pr.Reused || pr.Image != fakeImage || st[StepBuild] != StepSkipped || st[StepReuse] != StepDone || st[StepDeploy] != StepDone {
		t.Fatalf("progress %+v", pr)
	}
}

func TestPipelineResumesFromTheFailedStep(t *testing.T) {
	first := newPipelineTest(t)
	first.f.pushFails = 100
	failed, err := first.run(pipelineSpec(t, nil), nil)
	if err == nil || failed.Step != StepPush {
		t.Fatalf("first run: %v at %s", err, failed.Step)
	}
	second := newPipelineTest(t)
	pr, err := second.run(pipelineSpec(t, nil), &failed)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"clone", "build", "test", "package", "image"} {
		if second.f.count(step) != 0 {
			t.Errorf("resume ran %s again", step)
		}
	}
	if second.f.count("push") != 1 || pr.Image != fakeImage || pr.Resumed != 1 || pr.Status != RunSucceeded {
		t.Fatalf("resumed run %+v", pr)
	}
}

func TestPipelineBadInputBeforeAnySideEffect(t *testing.T) {
	cases := []struct {
		name string
		edit func(*PipelineInput)
		typ  string
	}{
		{"unknown target", func(in *PipelineInput) { in.Spec.Deploy.Targets[0].Cloud = "mars" }, ErrTypeUnknownTarget},
		{"invalid image name", func(in *PipelineInput) { in.Spec.Image.Name = "Bad Name" }, ErrTypeInvalidPipeline},
		{"bad run name", func(in *PipelineInput) { in.Run = "a/b" }, ErrTypeInvalidPipeline},
		{"missing repo", func(in *PipelineInput) { in.Spec.Repo = "" }, ErrTypeInvalidPipeline},
		{"resume of nothing", func(in *PipelineInput) { in.Resume = &PipelineProgress{App: "hello"} }, ErrTypeInvalidPipeline},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pt := newPipelineTest(t)
			in := PipelineInput{Run: "r1", Spec: pipelineSpec(t, nil), Topology: exampleTopology}
			c.edit(&in)
			pt.env.ExecuteWorkflow(Pipeline, in)
			err := pt.env.GetWorkflowError()
			if errorType(err) != c.typ {
				t.Fatalf("error %v, want type %s", err, c.typ)
			}
			if len(pt.f.calls) != 0 || len(pt.clouds.deploys) != 0 {
				t.Errorf("activities ran: %v %v", pt.f.calls, pt.clouds.deploys)
			}
		})
	}
}

// Cancelled while the targets are being verified, the run puts every
// target back: nothing stays half-deployed.
func TestPipelineCancelledDuringDeployLeavesNothingHalfDeployed(t *testing.T) {
	pt := newPipelineTest(t)
	pt.clouds.seed("edge-latin", helloInstance, runtime.Spec{Image: oldImage, Port: 8080})
	pt.env.RegisterDelayedCallback(func() {
		if st := stepStatuses(pt.progress())[StepDeploy]; st != StepRunning {
			t.Errorf("cancelling at deploy status %s", st)
		}
		pt.env.CancelWorkflow()
	}, 38*time.Second) // build 30 s, 5 s deploys, then 10 s verifications
	pr, err := pt.run(pipelineSpec(t, nil), nil)
	if err == nil {
		t.Fatal("a cancelled run succeeded")
	}
	for _, tp := range pr.Targets {
		if tp.Status != TargetRolledBack {
			t.Errorf("target %s %s after the cancel", tp.Cloud, tp.Status)
		}
	}
	images := pt.clouds.images(helloInstance)
	if img, ok := images["fog-north"]; ok {
		t.Errorf("fog-north still runs %s after the cancelled run", img)
	}
	if images["edge-latin"] != oldImage {
		t.Errorf("edge-latin runs %s, want its previous image back", images["edge-latin"])
	}
}

func TestPipelineBuildsAgainWhenTheBuiltFilesAreGone(t *testing.T) {
	pt := newPipelineTest(t)
	pt.f.builtFilesLost = true
	pr, err := pt.run(pipelineSpec(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt.f.count("build") != 2 || pt.f.count("package") != 2 || pr.Package.SHA256 != "abc" {
		t.Fatalf("build ran %d times, package %d times; package %+v", pt.f.count("build"), pt.f.count("package"), pr.Package)
	}
}

// The pushed image is signed with every platform's test results, and only
// then marked as a reusable build: a run whose signing failed leaves no
// build tag, so the next run builds and signs again.
func TestPipelineSignsThePushedImageWithItsTestResults(t *testing.T) {
	pt := newPipelineTest(t)
	pr, err := pt.run(pipelineSpec(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(pt.f.attested) != 1 {
		t.Fatalf("attested %d times", len(pt.f.attested))
	}
	req := pt.f.attested[0]
	if req.Pinned != fakeImage || req.Commit != "c0ffee" || req.Run != pr.ID || !req.Image.DeferBuildTag || len(req.Tests) != 2 || !req.Tests[1].Passed {
		t.Errorf("attest request %+v", req)
	}
	if pr.Release == nil || pr.Release.Signature == "" || len(pr.Release.SBOMs) != 2 {
		t.Errorf("release %+v", pr.Release)
	}
	if s, _ := pr.StepByName(StepSign); s.Status != StepDone || !strings.Contains(s.Detail, "signed with key feedbeef") {
		t.Errorf("sign step %+v", s)
	}

	failing := newPipelineTest(t)
	failing.f.attestFails = true
	pr, err = failing.run(pipelineSpec(t, nil), nil)
	if err == nil || pr.Step != StepSign || len(failing.clouds.deploys) != 0 {
		t.Fatalf("a failed signing: %v at %s, deploys %v", err, pr.Step, failing.clouds.deploys)
	}
	if len(failing.f.built) != 0 {
		t.Errorf("a build whose signing failed is marked reusable: %v", failing.f.built)
	}

	unsigned := newPipelineTest(t)
	unsigned.f.noKey = true
	pr, err = unsigned.run(pipelineSpec(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := pr.StepByName(StepSign); pr.Release != nil || !strings.Contains(s.Detail, "not signed") {
		t.Errorf("without a key: release %+v, step %+v", pr.Release, s)
	}
}

// A run from before the sign step resumes with it: its pushed image is
// signed, and the steps it finished are not run again.
func TestPipelineResumesARunFromBeforeSigning(t *testing.T) {
	first := newPipelineTest(t)
	first.f.pushFails = 100
	failed, err := first.run(pipelineSpec(t, nil), nil)
	if err == nil {
		t.Fatal("push did not fail")
	}
	old := failed
	old.Steps = slices.DeleteFunc(slices.Clone(failed.Steps), func(s StepProgress) bool { return s.Name == StepSign })
	second := newPipelineTest(t)
	pr, err := second.run(pipelineSpec(t, nil), &old)
	if err != nil {
		t.Fatal(err)
	}
	if second.f.count("build") != 0 || second.f.count("attest") != 1 || len(pr.Steps) != len(pipelineSteps) || pr.Release == nil {
		t.Fatalf("resumed: calls %v, %d steps, release %+v", second.f.calls, len(pr.Steps), pr.Release)
	}
}

// counterSpec is the example pipeline of the two-service counter app.
func counterSpec(t *testing.T) pipelinespec.Spec {
	t.Helper()
	s, err := pipelinespec.Parse(examples.CounterPipeline, examples.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var counterInstance = PipelineInstance("counter")

// serviceImages maps the services of instance name on cloud to their images.
func (c *testClouds) serviceImages(cloud, name string) map[string]string {
	out := map[string]string{}
	for _, ss := range runtimetest.Status(c.t, c.runtimes[cloud], name).Services {
		out[ss.Name] = ss.Image
	}
	return out
}

// A compose project is released by one run: an image per service with a
// build section, each built, pushed and deployed, the project whole on
// every target.
func TestPipelineReleasesAProject(t *testing.T) {
	pt := newPipelineTest(t)
	pr, err := pt.run(counterSpec(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"clone", "find", "find", "build", "test", "package", "image", "image", "push", "push", "attest", "attest"}
	if got := pt.f.calls[:len(want)]; !slices.Equal(got, want) {
		t.Fatalf("steps ran %v, want %v first", pt.f.calls, want)
	}
	wantImages := []BuiltImage{
		{Service: "web", Name: "counter-web", Digest: digestOf("web"), Image: projectImage("web")},
		{Service: "store", Name: "counter-store", Digest: digestOf("store"), Image: projectImage("store")},
	}
	for i, b := range pr.Images {
		if b.Release == nil || b.Release.Signature == "" {
			t.Errorf("%s is not signed", b.Service)
		}
		pr.Images[i].Release = nil
	}
	if pr.Status != RunSucceeded || !slices.Equal(pr.Images, wantImages) || pr.Image != "" || pr.Reused {
		t.Fatalf("result %+v", pr)
	}
	for _, cloud := range []string{"fog-north", "edge-latin"} {
		got := pt.clouds.serviceImages(cloud, counterInstance)
		if got["web"] != projectImage("web") || got["store"] != projectImage("store") || len(got) != 2 {
			t.Errorf("%s runs %v", cloud, got)
		}
	}
	if eps := pr.Endpoints(); eps["fog-north"].StateURL != "instant://fog-north/pipeline-counter/store/state" {
		t.Errorf("endpoints %v", eps)
	}
	if pt.f.count("verify fog-north") != 1 {
		t.Error("the serving service was not verified over HTTP")
	}
}

// A rerun finds every image of the project built before and builds
// nothing; when one of them is missing, it builds them all.
func TestPipelineReusesAProjectOnlyWhole(t *testing.T) {
	pt := newPipelineTest(t)
	pt.f.built["counter-web key-7ree"] = projectImage("web")
	pt.f.built["counter-store key-7ree"] = projectImage("store")
	pr, err := pt.run(counterSpec(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !pr.Reused || pr.ImageOf("web") != projectImage("web") || pr.ImageOf("store") != projectImage("store") || pt.f.count("build")+pt.f.count("push") != 0 {
		t.Fatalf("a reuse of both: %+v, calls %v", pr, pt.f.calls)
	}

	half := newPipelineTest(t)
	half.f.built["counter-web key-7ree"] = projectImage("web")
	pr, err = half.run(counterSpec(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Reused || half.f.count("build") != 1 || half.f.count("push") != 2 {
		t.Fatalf("one image of two found: reused %v, calls %v", pr.Reused, half.f.calls)
	}
}

// A target that fails is put back to the images every service ran before.
func TestPipelineRollsAProjectBack(t *testing.T) {
	pt := newPipelineTest(t)
	old := counterSpec(t).Deploy.App.WithImages(map[string]string{"web": oldImage, "store": oldImage}).RuntimeSpec("edge-latin", nil)
	pt.clouds.seed("edge-latin", counterInstance, old)
	pt.f.failVerify["edge-latin"] = true
	pr, err := pt.run(counterSpec(t), nil)
	if errorType(err) != ErrTypeRolledBack || !strings.Contains(err.Error(), "edge-latin") {
		t.Fatalf("error %v, want RolledBack naming edge-latin", err)
	}
	if got := pt.clouds.serviceImages("edge-latin", counterInstance); got["web"] != oldImage || got["store"] != oldImage {
		t.Errorf("edge-latin runs %v after the rollback", got)
	}
	if got := pt.clouds.serviceImages("fog-north", counterInstance); got["web"] != projectImage("web") {
		t.Errorf("fog-north runs %v", got)
	}
	for _, tp := range pr.Targets {
		if tp.Cloud == "edge-latin" && (tp.Status != TargetRolledBack || tp.PreviousImages["store"] != oldImage) {
			t.Errorf("edge-latin %+v", tp)
		}
	}
}

// Verifying through the runtime checks every service runs this run's image.
func TestPipelineVerifiesEveryServiceOfAProject(t *testing.T) {
	pt := newPipelineTest(t)
	spec := counterSpec(t)
	for i := range spec.Deploy.Targets {
		spec.Deploy.Targets[i].Verify = pipelinespec.VerifyReady
	}
	pr, err := pt.run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range pr.Targets {
		if tp.Status != TargetDone || !strings.Contains(tp.Verified, "2 services") {
			t.Errorf("target %+v", tp)
		}
	}
}

// A target on a cloud no worker polls fails within the schedule-to-start
// bound with NoWorker naming the queue; the other target deploys.
func TestPipelineTargetOnAnUnpolledCloudFailsNamingIt(t *testing.T) {
	pt := newPipelineTest(t)
	pt.clouds.setPolled("edge-latin", false)
	_, err := pt.run(pipelineSpec(t, nil), nil)
	if errorType(err) != ErrTypeRolledBack || !strings.Contains(err.Error(), "edge-latin: status: no worker polls drift.cloud.edge-latin") {
		t.Fatalf("error %v, want a failed target naming drift.cloud.edge-latin", err)
	}
	if images := pt.clouds.images(helloInstance); images["fog-north"] != fakeImage || len(images) != 1 {
		t.Errorf("clouds run %v, want only fog-north with the new image", images)
	}
}
