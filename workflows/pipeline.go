package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/release"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
)

// Error types of a pipeline's own failures.
const (
	ErrTypeInvalidPipeline = "InvalidPipeline"
	ErrTypeUnknownTarget   = "UnknownTarget"
	ErrTypeStepFailed      = "StepFailed"       // a step failed; the message names it
	ErrTypeRolledBack      = "RolledBack"       // targets failed and were put back
	ErrTypeRejected        = "ApprovalRejected" // someone said no
	ErrTypeApprovalTimeout = "ApprovalTimeout"  // nobody answered in time
)

// StepName names a step of a pipeline.
type StepName string

// Steps of a pipeline, in order.
const (
	StepClone    StepName = "clone"
	StepReuse    StepName = "reuse"
	StepBuild    StepName = "build"
	StepTest     StepName = "test"
	StepPackage  StepName = "package"
	StepImage    StepName = "image"
	StepPush     StepName = "push"
	StepSign     StepName = "sign" // sign, attach SBOM and provenance
	StepApproval StepName = "approval"
	StepDeploy   StepName = "deploy"
	StepVerify   StepName = "verify"
)

var pipelineSteps = []StepName{StepClone, StepReuse, StepBuild, StepTest, StepPackage, StepImage, StepPush, StepSign, StepApproval, StepDeploy, StepVerify}

// StepStatus is where a step is.
type StepStatus string

// Step statuses. The approval step ends as its gate does (done, rejected
// or timed-out).
const (
	StepPending  StepStatus = "pending"
	StepRunning  StepStatus = "running"
	StepDone     StepStatus = "done"
	StepSkipped  StepStatus = "skipped"
	StepWaiting  StepStatus = "waiting"
	StepFailed   StepStatus = "failed"
	StepRejected StepStatus = StepStatus(ApprovalRejected)
	StepTimedOut StepStatus = StepStatus(ApprovalTimedOut)
)

// TargetStatus is where a deploy target is.
type TargetStatus string

// Target statuses.
const (
	TargetPending     TargetStatus = "pending"
	TargetWaiting     TargetStatus = "waiting" // for approval
	TargetDeploying   TargetStatus = "deploying"
	TargetVerifying   TargetStatus = "verifying"
	TargetDone        TargetStatus = "done"
	TargetRollingBack TargetStatus = "rolling-back"
	TargetRolledBack  TargetStatus = "rolled-back"
	TargetRejected    TargetStatus = "rejected" // approval refused or timed out
	TargetFailed      TargetStatus = "failed"
)

// ApprovalStatus is where an approval gate is.
type ApprovalStatus string

// Approval statuses.
const (
	ApprovalPending  ApprovalStatus = "pending" // the gate has not opened yet
	ApprovalWaiting  ApprovalStatus = "waiting"
	ApprovalGranted  ApprovalStatus = "done"
	ApprovalRejected ApprovalStatus = "rejected"
	ApprovalTimedOut ApprovalStatus = "timed-out" // nobody decided before the deadline
)

// Decided reports whether the gate has its answer.
func (s ApprovalStatus) Decided() bool { return s != ApprovalPending && s != ApprovalWaiting }

// RunStatus is where a run is.
type RunStatus string

// Run statuses.
const (
	RunRunning   RunStatus = "running"
	RunSucceeded RunStatus = "succeeded"
	RunFailed    RunStatus = "failed"
)

// PipelineInput starts (or resumes) one run of a pipeline.
type PipelineInput struct {
	Run      string             `json:"run"` // names the run: pipeline/<app>/<run>
	Spec     pipelinespec.Spec  `json:"spec"`
	Topology *topology.Topology `json:"topology"` // the clouds targets name
	// Resume is a failed run's progress: steps it finished are not run again.
	Resume *PipelineProgress `json:"resume,omitempty"`
	// ScheduleToStart bounds each activity's wait for a worker on a cloud's
	// queue (0: DefaultScheduleToStart); past it the step fails with NoWorker.
	ScheduleToStart time.Duration `json:"scheduleToStart,omitempty"`
}

// PipelineInstance is the instance name of an app's pipeline deployments,
// the same for every run so a run replaces the last one's.
func PipelineInstance(app string) string { return runtime.InstanceName("pipeline", app) }

// ApprovalDecision is the payload of Approve and Reject.
type ApprovalDecision struct {
	Who string `json:"who"`
	Why string `json:"why,omitempty"`
}

// Approval is the state of a run's approval gate.
type Approval struct {
	Status   ApprovalStatus `json:"status"`
	Targets  []string       `json:"targets"`
	Who      string         `json:"who,omitempty"`
	Why      string         `json:"why,omitempty"`
	Deadline time.Time      `json:"deadline,omitzero"`
	At       time.Time      `json:"at,omitzero"`
}

// StepProgress is one step of a run.
type StepProgress struct {
	Name    StepName            `json:"name"`
	Status  StepStatus          `json:"status"`
	Started time.Time           `json:"started,omitzero"`
	Ended   time.Time           `json:"ended,omitzero"`
	Detail  string              `json:"detail,omitempty"`
	Error   string              `json:"error,omitempty"`
	Log     activities.StepLogs `json:"log,omitzero"`
}

// Duration is how long the step ran (so far).
func (s StepProgress) Duration(now time.Time) time.Duration {
	switch {
	case s.Started.IsZero():
		return 0
	case s.Ended.IsZero():
		return now.Sub(s.Started)
	}
	return s.Ended.Sub(s.Started)
}

// TargetProgress is one target of a run.
type TargetProgress struct {
	Cloud    string       `json:"cloud"`
	Instance string       `json:"instance"`
	Status   TargetStatus `json:"status"`
	Previous string       `json:"previous,omitempty"` // image before this run ("" : none)
	// PreviousImages are a project's images before this run, by service
	// (nil: none), what a failed target is put back to.
	PreviousImages map[string]string `json:"previousImages,omitempty"`
	Endpoint       runtime.Endpoint  `json:"endpoint"`
	Verified       string            `json:"verified,omitempty"`
	Error          string            `json:"error,omitempty"`
	// Wave is the name of the target's wave (runs with deploy.waves).
	Wave string `json:"wave,omitempty"`
	// Before is what the target ran when the run read it ("": nothing, or
	// not read yet), After what it runs since the run ended: images, for a
	// project as service=image in service order.
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

// PipelineProgress is what Query Progress returns and a run's result.
type PipelineProgress struct {
	ID       string             `json:"id"`
	App      string             `json:"app"`
	Run      string             `json:"run"`
	Status   RunStatus          `json:"status"`
	Step     StepName           `json:"step"` // the step running or failed
	Started  time.Time          `json:"started"`
	Ended    time.Time          `json:"ended,omitzero"`
	Commit   string             `json:"commit,omitempty"`
	Tree     string             `json:"tree,omitempty"`
	BuildKey string             `json:"buildKey,omitempty"`
	Reused   bool               `json:"reused"`
	Package  activities.Package `json:"package,omitzero"`
	Digest   string             `json:"digest,omitempty"`
	Image    string             `json:"image,omitempty"` // pinned by digest
	// Release is where the image's signature, SBOMs and provenance are.
	Release *release.Attached `json:"release,omitempty"`
	// Images are a project's images (a spec with images:), in its order;
	// Digest and Image are then empty.
	Images   []BuiltImage     `json:"images,omitempty"`
	Steps    []StepProgress   `json:"steps"`
	Targets  []TargetProgress `json:"targets"`
	Approval *Approval        `json:"approval,omitempty"`
	// Waves are the rollout's waves, in order (a spec with deploy.waves).
	Waves []WaveProgress `json:"waves,omitempty"`
	// Sessions are how the sessions deploy.sessions names took the release.
	Sessions []activities.SessionAdoption `json:"sessions,omitempty"`
	Error    string                       `json:"error,omitempty"`
	Resumed  int                          `json:"resumed,omitempty"` // how many times resumed
}

// BuiltImage is one image of a project a run made (or reused).
type BuiltImage struct {
	Service string `json:"service"`
	Name    string `json:"name"`
	Digest  string `json:"digest,omitempty"`
	Image   string `json:"image,omitempty"` // pinned by digest
	// Release is where the image's signature, SBOMs and provenance are.
	Release *release.Attached `json:"release,omitempty"`
}

// ImageOf is the image the run made for a service of its project, pinned by
// digest ("" : none).
func (p PipelineProgress) ImageOf(service string) string {
	for _, b := range p.Images {
		if b.Service == service {
			return b.Image
		}
	}
	return ""
}

// Endpoints lists the ready targets' endpoints by cloud.
func (p PipelineProgress) Endpoints() map[string]runtime.Endpoint {
	out := map[string]runtime.Endpoint{}
	for _, t := range p.Targets {
		if t.Status == TargetDone {
			out[t.Cloud] = t.Endpoint
		}
	}
	return out
}

// StepByName returns the named step.
func (p PipelineProgress) StepByName(name StepName) (StepProgress, bool) {
	for _, s := range p.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return StepProgress{}, false
}

// Pipeline clones, builds, tests, packages, makes an OCI image, pushes it
// to the center registry and deploys it to every target, verifying each and
// putting a failed one back to its previous image.
func Pipeline(ctx workflow.Context, in PipelineInput) (PipelineProgress, error) {
	p, err := newPipeline(ctx, in)
	if err != nil {
		return PipelineProgress{}, err
	}
	return p.run(withScheduleToStart(ctx, in.ScheduleToStart))
}

type pipeline struct {
	in      PipelineInput
	ref     activities.RunRef
	pr      PipelineProgress
	idx     map[StepName]int // step name → index in pr.Steps
	cleanup workflow.Future  // removal of the checkout, once no step needs it
	// early: this run reads its targets while it clones and looks for an
	// earlier build as a local activity (see earlyTargetReads).
	early bool
	// before holds, by target index, the read of what each target ran
	// before this run, started with the clone.
	before map[int]workflow.Future
	// signs: this run signs and attests what it pushes (see signedReleases).
	signs bool
	// project: the spec makes one image per service (images:).
	project bool
	// plan holds the indices of each wave's targets (deploy.waves only).
	plan [][]int
	// childWaves: each wave runs in a child workflow (see childWaves).
	childWaves bool
}

// signedReleases is the workflow.GetVersion change ID under which a run
// signs its image and attaches SBOMs and provenance after the push (the
// sign step), and writes the build-<key> tag that lets reruns reuse the
// image only then. Older histories have no sign step.
const signedReleases = "signed-releases"

// earlyTargetReads is the workflow.GetVersion change ID under which a run
// reads what its targets run while it clones, instead of just before each
// deploy, and looks for an earlier build as a local activity: two round
// trips fewer on the path of every run. Older histories do neither.
const earlyTargetReads = "early-target-reads"

// composeProjects is the workflow.GetVersion change ID under which a run
// releases a compose project: an image, a push and a build lookup per
// service with a build section, and the whole project deployed. Runs of one
// image do exactly what they did before.
const composeProjects = "compose-projects"

func newPipeline(ctx workflow.Context, in PipelineInput) (*pipeline, error) {
	if err := validatePipeline(in); err != nil {
		return nil, err
	}
	p := &pipeline{in: in, ref: activities.RunRef{App: in.Spec.App, Run: in.Run}, idx: map[StepName]int{}, project: len(in.Spec.Images) > 0}
	now := workflow.Now(ctx)
	if in.Resume != nil {
		p.pr = *in.Resume
		p.pr.Resumed++
		p.pr.Error, p.pr.Ended = "", time.Time{}
		p.pr.Steps = withEveryStep(p.pr.Steps)
	} else {
		p.pr = PipelineProgress{ID: names.PipelineID(in.Spec.App, in.Run), App: in.Spec.App, Run: in.Run}
		if p.project {
			for _, img := range in.Spec.Images {
				p.pr.Images = append(p.pr.Images, BuiltImage{Service: img.Service, Name: img.Name})
			}
		}
		for _, name := range pipelineSteps {
			p.pr.Steps = append(p.pr.Steps, StepProgress{Name: name, Status: StepPending})
		}
		var gated []string
		for _, t := range in.Spec.Deploy.Targets {
			p.pr.Targets = append(p.pr.Targets, TargetProgress{Cloud: t.Cloud, Instance: PipelineInstance(in.Spec.App), Status: TargetPending})
			if t.Approval {
				gated = append(gated, t.Cloud)
			}
		}
		if len(gated) > 0 {
			p.pr.Approval = &Approval{Status: ApprovalPending, Targets: gated}
		}
	}
	p.pr.Status, p.pr.Started = RunRunning, now
	for i, s := range p.pr.Steps {
		p.idx[s.Name] = i
		if s.Status != StepDone && s.Status != StepSkipped {
			p.pr.Steps[i] = StepProgress{Name: s.Name, Status: StepPending}
		}
	}
	for i := range p.pr.Targets {
		if p.pr.Targets[i].Status != TargetDone {
			p.pr.Targets[i].Status, p.pr.Targets[i].Error = TargetPending, ""
		}
	}
	if len(in.Spec.Deploy.Waves) > 0 {
		p.planWaves()
	}
	if a := p.pr.Approval; a == nil && !p.waveGates() {
		p.pr.Steps[p.idx[StepApproval]].Status = StepSkipped
	} else if a != nil && a.Status != ApprovalGranted {
		*a = Approval{Status: ApprovalPending, Targets: a.Targets}
	}
	return p, nil
}

// validatePipeline rejects bad input before any side effect.
func validatePipeline(in PipelineInput) error {
	if err := in.Spec.Validate(); err != nil {
		return invalid(ErrTypeInvalidPipeline, "%v", err)
	}
	if !runNameOK(in.Run) {
		return invalid(ErrTypeInvalidPipeline, "run %q must be 1-40 characters of a-z, 0-9, '-', '.'", in.Run)
	}
	if in.Topology == nil {
		return invalid(ErrTypeInvalidPipeline, "no topology given")
	}
	for _, t := range in.Spec.Deploy.Targets {
		if _, ok := in.Topology.Cloud(t.Cloud); !ok {
			return invalid(ErrTypeUnknownTarget, "deploy: target %q is not a cloud of topology %q", t.Cloud, in.Topology.Name())
		}
	}
	if _, err := in.Spec.Deploy.Plan(tierOf(in.Topology)); err != nil {
		return invalid(ErrTypeInvalidPipeline, "%v", err)
	}
	if r := in.Resume; r != nil && (r.App != in.Spec.App || len(withEveryStep(r.Steps)) != len(pipelineSteps) || len(r.Targets) != len(in.Spec.Deploy.Targets) || len(r.Images) != len(in.Spec.Images)) {
		return invalid(ErrTypeInvalidPipeline, "resume: the progress given (app %q, %d steps, %d targets) is not a run of this spec", r.App, len(r.Steps), len(r.Targets))
	}
	return nil
}

// withEveryStep puts a resumed run's steps in today's order, adding the
// steps a run from an older version did not have, as pending.
func withEveryStep(steps []StepProgress) []StepProgress {
	out := make([]StepProgress, 0, len(pipelineSteps))
	for _, name := range pipelineSteps {
		s := StepProgress{Name: name, Status: StepPending}
		for _, old := range steps {
			if old.Name == name {
				s = old
			}
		}
		out = append(out, s)
	}
	for _, old := range steps { // a step unknown today: keep the count honest
		if !slices.Contains(pipelineSteps, old.Name) {
			out = append(out, old)
		}
	}
	return out
}

func runNameOK(run string) bool {
	if run == "" || len(run) > 40 || strings.HasPrefix(run, ".") {
		return false
	}
	for _, r := range run {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

func (p *pipeline) run(ctx workflow.Context) (PipelineProgress, error) {
	if err := p.registerHandlers(ctx); err != nil {
		return PipelineProgress{}, err
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		names.AppKey.ValueSet(p.in.Spec.App),
		names.KindKey.ValueSet(names.KindPipeline),
	); err != nil {
		return PipelineProgress{}, err
	}
	err := p.steps(ctx)
	if p.cleanup == nil { // failed before the deploy
		p.removeCheckout(ctx)
	}
	// The checkout goes whatever happened; logs and the package stay.
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	if cerr := p.cleanup.Get(dctx, nil); cerr != nil {
		workflow.GetLogger(ctx).Warn("cleanup failed", "error", cerr)
	}
	p.pr.Ended = workflow.Now(ctx)
	if err != nil {
		// The run fails with its cause's type and message (UnknownRef,
		// TestFailed, RolledBack, …), naming the step, with the progress
		// as details.
		typ, msg := ErrTypeStepFailed, err.Error()
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) {
			typ, msg = ae.Type(), ae.Message()
		}
		p.pr.Status, p.pr.Error = RunFailed, msg
		p.publish(ctx)
		return p.pr, temporal.NewNonRetryableApplicationError(fmt.Sprintf("pipeline %s failed at %s: %s", p.pr.ID, p.pr.Step, msg), typ, err, p.pr)
	}
	p.pr.Status = RunSucceeded
	p.publish(ctx)
	return p.pr, nil
}

func (p *pipeline) registerHandlers(ctx workflow.Context) error {
	if err := setProgressQuery(ctx, func() (PipelineProgress, error) {
		return p.pr, nil
	}); err != nil {
		return err
	}
	approve := workflow.GetSignalChannel(ctx, names.ApproveSignal)
	reject := workflow.GetSignalChannel(ctx, names.RejectSignal)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var d ApprovalDecision
			status := ApprovalGranted
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(approve, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &d) })
			sel.AddReceive(reject, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &d); status = ApprovalRejected })
			sel.Select(ctx)
			a := p.openGate()
			if a == nil {
				workflow.GetLogger(ctx).Warn("approval signal ignored: nothing waits for it", "who", d.Who)
				continue
			}
			a.Status, a.Who, a.Why, a.At = status, d.Who, d.Why, workflow.Now(ctx)
		}
	})
	return p.registerDecisionUpdates(ctx)
}

// steps runs the pipeline top to bottom; a step finished in the run being
// resumed is not run again.
func (p *pipeline) steps(ctx workflow.Context) error {
	p.early = workflow.GetVersion(ctx, earlyTargetReads, workflow.DefaultVersion, 1) == 1
	if p.project && workflow.GetVersion(ctx, composeProjects, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		// Only code that knows projects can have started a run of one.
		return invalid(ErrTypeInvalidPipeline, "this run of a compose project was started by a worker that cannot release projects")
	}
	waves := len(p.pr.Waves) > 0
	if waves && workflow.GetVersion(ctx, fleetWaves, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		// Only code that knows waves can have started a run with them.
		return invalid(ErrTypeInvalidPipeline, "this run with deploy waves was started by a worker that cannot roll out in waves")
	}
	p.childWaves = waves && workflow.GetVersion(ctx, childWaves, workflow.DefaultVersion, 1) == 1
	if p.early && !p.childWaves { // a wave's child reads its own targets
		p.readTargets(ctx)
	}
	p.signs = workflow.GetVersion(ctx, signedReleases, workflow.DefaultVersion, 1) == 1
	if sign := &p.pr.Steps[p.idx[StepSign]]; !p.signs && sign.Status == StepPending {
		sign.Status, sign.Detail = StepSkipped, "this run's version of drift did not sign images"
	}
	for _, s := range []struct {
		name StepName
		run  func(workflow.Context) (string, error)
	}{
		{StepClone, p.clone},
		{StepReuse, p.reuse},
		{StepBuild, p.build},
		{StepTest, p.test},
		{StepPackage, p.pack},
		{StepImage, p.image},
		{StepPush, p.push},
		{StepSign, p.sign},
	} {
		if err := p.step(ctx, s.name, s.run); err != nil {
			return err
		}
	}
	p.removeCheckout(ctx) // while the targets deploy
	if waves {
		if err := p.deployWaves(ctx); err != nil {
			return err
		}
	} else if err := p.deployAll(ctx); err != nil {
		return err
	}
	p.adoptSessions(ctx)
	return nil
}

// deployAll deploys every target at once (a spec without waves).
func (p *pipeline) deployAll(ctx workflow.Context) error {
	defer p.settle()
	return p.deploy(ctx)
}

// clone fetches the spec's ref and records its commit and source tree.
func (p *pipeline) clone(ctx workflow.Context) (string, error) {
	spec := p.in.Spec
	var co activities.Checkout
	actx := central(ctx, cloneOptions, fmt.Sprintf("clone %s at %s", spec.Repo, spec.Ref))
	if err := workflow.ExecuteActivity(actx, pipelineActs.Clone, p.ref, spec).Get(ctx, &co); err != nil {
		return "", err
	}
	p.pr.Commit, p.pr.Tree, p.pr.BuildKey = co.Commit, co.Tree, co.BuildKey
	p.setLog(StepClone, co.Log)
	return "commit " + co.Commit, nil
}

// reuse looks for the images built earlier from the same tree and build
// spec; when there are (all of them), the steps up to push are skipped.
func (p *pipeline) reuse(ctx workflow.Context) (string, error) {
	var futures []workflow.Future
	for _, img := range p.in.Spec.ImageSpecs() {
		summary := "look for an earlier build of tree " + short(p.pr.Tree)
		if p.project {
			summary += " for " + img.Service
		}
		if p.early {
			opts := findBuildOptions
			opts.Summary = summary
			futures = append(futures, workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, opts), pipelineActs.FindBuild, img.Name, p.pr.BuildKey))
		} else {
			futures = append(futures, workflow.ExecuteActivity(central(ctx, quickOptions, summary), pipelineActs.FindBuild, img.Name, p.pr.BuildKey))
		}
	}
	found := make([]string, len(futures))
	for i, f := range futures {
		if err := f.Get(ctx, &found[i]); err != nil {
			return "", err
		}
	}
	if slices.Contains(found, "") {
		return "no earlier build of this source and spec", nil
	}
	p.pr.Reused = true
	for i, ref := range found {
		p.setImage(i, ref)
	}
	for _, s := range []StepName{StepBuild, StepTest, StepPackage, StepImage, StepPush, StepSign} {
		p.pr.Steps[p.idx[s]].Status = StepSkipped
		p.pr.Steps[p.idx[s]].Detail = "reused " + strings.Join(found, ", ")
	}
	return "reusing " + strings.Join(found, ", "), nil
}

// setImage records the pushed image i of the run, pinned by digest.
func (p *pipeline) setImage(i int, ref string) {
	digest := ref[strings.LastIndex(ref, "@")+1:]
	if !p.project {
		p.pr.Image, p.pr.Digest = ref, digest
		return
	}
	p.pr.Images[i].Image, p.pr.Images[i].Digest = ref, digest
}

// imageRef is the run's pushed image i, pinned by digest.
func (p *pipeline) imageRef(i int) string {
	if !p.project {
		return p.pr.Image
	}
	return p.pr.Images[i].Image
}

// images are the run's pushed images, joined for the UI.
func (p *pipeline) images() string {
	if !p.project {
		return p.pr.Image
	}
	var refs []string
	for _, b := range p.pr.Images {
		refs = append(refs, b.Service+"="+b.Image)
	}
	return strings.Join(refs, ", ")
}

// build runs the build commands once per image platform.
func (p *pipeline) build(ctx workflow.Context) (string, error) {
	spec := p.in.Spec
	actx := central(ctx, buildOptions(spec.Build.Timeout), "build "+spec.App+" for "+strings.Join(spec.Image.Platforms, ", "))
	return "", p.runLogged(actx, StepBuild, pipelineActs.Build)
}

// test runs the test commands; a failure stops the run.
func (p *pipeline) test(ctx workflow.Context) (string, error) {
	spec := p.in.Spec
	if len(spec.Test.Commands) == 0 {
		return "no test commands", nil
	}
	actx := central(ctx, buildOptions(spec.Test.Timeout), "test "+spec.App)
	return "", p.runLogged(actx, StepTest, pipelineActs.Test)
}

// pack packages the artifacts of every platform; when the built files are
// gone (another build worker, or a resume after they were lost) it builds
// again first.
func (p *pipeline) pack(ctx workflow.Context) (string, error) {
	spec := p.in.Spec
	actx := central(ctx, quickOptions, "package "+spec.App)
	err := workflow.ExecuteActivity(actx, pipelineActs.Package, p.ref, spec).Get(ctx, &p.pr.Package)
	if isType(err, activities.ErrTypeNoArtifact) {
		bctx := central(ctx, buildOptions(spec.Build.Timeout), "build "+spec.App+" again: its built files are gone")
		if err := p.runLogged(bctx, StepBuild, pipelineActs.Build); err != nil {
			return "", err
		}
		err = workflow.ExecuteActivity(actx, pipelineActs.Package, p.ref, spec).Get(ctx, &p.pr.Package)
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d bytes, sha256 %s", p.pr.Package.Size, p.pr.Package.SHA256), nil
}

// image builds the OCI index of each image of the package.
func (p *pipeline) image(ctx workflow.Context) (string, error) {
	var done []string
	for i, img := range p.in.Spec.ImageSpecs() {
		what := p.in.Spec.App
		if p.project {
			what = img.Service + " of " + what
		}
		actx := central(ctx, quickOptions, "build the OCI image of "+what)
		var digest string
		if err := workflow.ExecuteActivity(actx, pipelineActs.BuildImage, p.imageRequest(i)).Get(ctx, &digest); err != nil {
			return "", err
		}
		if !p.project {
			p.pr.Digest = digest
			return digest, nil
		}
		p.pr.Images[i].Digest = digest
		done = append(done, img.Service+" "+digest)
	}
	return strings.Join(done, ", "), nil
}

// push pushes each image to the center registry, pinned by digest.
func (p *pipeline) push(ctx workflow.Context) (string, error) {
	for i, img := range p.in.Spec.ImageSpecs() {
		actx := central(ctx, pushOptions, "push "+img.Name+":"+p.in.Run+" to the center registry")
		var ref string
		if err := workflow.ExecuteActivity(actx, pipelineActs.Push, p.imageRequest(i)).Get(ctx, &ref); err != nil {
			return "", err
		}
		if !p.project {
			p.pr.Image = ref
			return ref, nil
		}
		p.pr.Images[i].Image = ref
	}
	return p.images(), nil
}

// sign signs each pushed image and attaches its SBOMs and provenance, with
// the test results of every platform.
func (p *pipeline) sign(ctx workflow.Context) (string, error) {
	signed, sboms, key := 0, 0, ""
	for i := range p.in.Spec.ImageSpecs() {
		pinned := p.imageRef(i)
		actx := central(ctx, pushOptions, "sign "+pinned+", attach its SBOMs and provenance")
		req := activities.AttestRequest{Image: p.imageRequest(i), Pinned: pinned, Commit: p.pr.Commit, Run: p.pr.ID,
			Started: p.pr.Started, Tests: p.pr.Steps[p.idx[StepTest]].Log.Tests}
		var att release.Attached
		if err := workflow.ExecuteActivity(actx, pipelineActs.Attest, req).Get(ctx, &att); err != nil {
			return "", err
		}
		if att.Signature == "" {
			continue
		}
		if p.project {
			p.pr.Images[i].Release = &att
		} else {
			p.pr.Release = &att
		}
		signed, sboms, key = signed+1, sboms+len(att.SBOMs), att.Key
	}
	if signed == 0 {
		return "not signed: the build worker has no signing key (drift-worker --signing-key-file)", nil
	}
	what := ""
	if p.project {
		what = fmt.Sprintf("%d images ", signed)
	}
	return fmt.Sprintf("signed %swith key %s; SBOM for %d platform(s); SLSA provenance", what, short(key), sboms), nil
}

func (p *pipeline) stepRequest() activities.StepRequest {
	return activities.StepRequest{Ref: p.ref, Spec: p.in.Spec, Checkout: activities.Checkout{Commit: p.pr.Commit, Tree: p.pr.Tree}}
}

// imageRequest asks for image i of the spec.
func (p *pipeline) imageRequest(i int) activities.ImageRequest {
	req := activities.ImageRequest{Spec: p.in.Spec, Package: p.pr.Package, Tree: p.pr.Tree, BuildKey: p.pr.BuildKey, Tag: p.in.Run, Digest: p.pr.Digest, DeferBuildTag: p.signs}
	if p.project {
		req.Service, req.Digest = p.pr.Images[i].Service, p.pr.Images[i].Digest
	}
	return req
}

// removeCheckout starts removing the run's checkout (also when the run is
// being cancelled); run waits for it before it returns.
func (p *pipeline) removeCheckout(ctx workflow.Context) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	p.cleanup = workflow.ExecuteActivity(central(dctx, quickOptions, "remove the checkout of "+p.pr.ID), pipelineActs.Cleanup, p.ref)
}

// runLogged runs the build or test activity and keeps its logs, also from
// a failure's details.
func (p *pipeline) runLogged(actx workflow.Context, step StepName, act any) error {
	var logs activities.StepLogs
	err := workflow.ExecuteActivity(actx, act, p.stepRequest()).Get(actx, &logs)
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.HasDetails() {
		_ = ae.Details(&logs)
	}
	p.setLog(step, logs)
	return err
}

// step runs one step unless it is already done, recording its timings.
func (p *pipeline) step(ctx workflow.Context, name StepName, fn func(workflow.Context) (string, error)) error {
	s := &p.pr.Steps[p.idx[name]]
	if s.Status == StepDone || s.Status == StepSkipped {
		return nil
	}
	p.pr.Step = name
	s.Status, s.Started, s.Ended, s.Error = StepRunning, workflow.Now(ctx), time.Time{}, ""
	p.publish(ctx)
	detail, err := fn(ctx)
	s = &p.pr.Steps[p.idx[name]]
	s.Ended = workflow.Now(ctx)
	if err != nil {
		s.Status, s.Error = StepFailed, err.Error()
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) {
			s.Error = ae.Message()
		}
		return err
	}
	s.Status = StepDone
	if detail != "" {
		s.Detail = detail
	}
	return nil
}

func (p *pipeline) setLog(step StepName, logs activities.StepLogs) {
	p.pr.Steps[p.idx[step]].Log = logs
}

// deploy rolls the image out to every target in parallel, gated ones after
// approval, verifies each and puts back the ones that fail.
func (p *pipeline) deploy(ctx workflow.Context) error {
	deploy, verify := &p.pr.Steps[p.idx[StepDeploy]], &p.pr.Steps[p.idx[StepVerify]]
	p.pr.Step = StepDeploy
	now := workflow.Now(ctx)
	deploy.Status, deploy.Started, verify.Status, verify.Started = StepRunning, now, StepRunning, now
	if p.pr.Approval != nil && p.pr.Steps[p.idx[StepApproval]].Status != StepDone {
		p.gate(ctx)
	}
	wg := workflow.NewWaitGroup(ctx)
	for i, t := range p.in.Spec.Deploy.Targets {
		if p.pr.Targets[i].Status == TargetDone {
			continue
		}
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			p.target(ctx, i, t)
		})
	}
	// Wait for every target, rollbacks included, also when cancelled.
	wctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	wg.Wait(wctx)
	now = workflow.Now(ctx)
	deploy.Ended, verify.Ended = now, now
	var failed, rolled, rejected []string
	for _, t := range p.pr.Targets {
		switch t.Status {
		case TargetDone:
		case TargetRolledBack:
			rolled = append(rolled, t.Cloud)
		case TargetRejected:
			rejected = append(rejected, t.Cloud)
		default:
			failed = append(failed, t.Cloud+": "+t.Error)
		}
	}
	p.publish(ctx)
	switch {
	case len(failed) > 0 || len(rolled) > 0:
		deploy.Status, verify.Status = StepFailed, StepFailed
		msg := "targets rolled back to their previous image: " + strings.Join(rolled, ", ")
		if len(failed) > 0 {
			msg += "; failed: " + strings.Join(failed, "; ")
		}
		deploy.Error = msg
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeRolledBack, nil)
	case len(rejected) > 0:
		a := p.pr.Approval
		deploy.Status, verify.Status = StepFailed, StepFailed
		p.pr.Step = StepApproval
		if a.Status == ApprovalTimedOut {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("nobody approved the deploy to %s in time", strings.Join(rejected, ", ")), ErrTypeApprovalTimeout, nil)
		}
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("deploy to %s rejected by %s: %s", strings.Join(rejected, ", "), a.Who, a.Why), ErrTypeRejected, nil)
	}
	deploy.Status, verify.Status = StepDone, StepDone
	deploy.Detail = fmt.Sprintf("%d target(s) run %s", len(p.pr.Targets), p.images())
	return nil
}

// gate opens the approval gate and closes it on a decision or the timeout.
func (p *pipeline) gate(ctx workflow.Context) {
	a, s := p.pr.Approval, &p.pr.Steps[p.idx[StepApproval]]
	timeout := p.in.Spec.Deploy.ApprovalTimeout
	s.Status, s.Started = StepWaiting, workflow.Now(ctx)
	if a.Status == ApprovalPending { // else decided before the gate opened
		a.Status, a.Deadline = ApprovalWaiting, workflow.Now(ctx).Add(timeout)
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		decided, _ := workflow.AwaitWithTimeout(ctx, timeout, func() bool { return a.Status != ApprovalWaiting })
		if !decided {
			a.Status, a.At = ApprovalTimedOut, workflow.Now(ctx)
		}
		s.Ended = workflow.Now(ctx)
		s.Status = StepStatus(a.Status)
		if a.Status == ApprovalGranted {
			s.Detail = "approved by " + a.Who
		} else {
			s.Error = string(a.Status) + " " + a.Who + " " + a.Why
		}
		p.publish(ctx)
	})
	p.publish(ctx)
}

// target deploys to one cloud, verifies, and rolls back on failure.
func (p *pipeline) target(ctx workflow.Context, i int, t pipelinespec.Target) {
	tp := &p.pr.Targets[i]
	if t.Approval {
		tp.Status = TargetWaiting
		a := p.pr.Approval
		if err := workflow.Await(ctx, func() bool { return a.Status.Decided() }); err != nil {
			return
		}
		if a.Status != ApprovalGranted {
			tp.Status, tp.Error = TargetRejected, "approval "+string(a.Status)
			return
		}
	}
	err := p.release(ctx, i, t)
	if tp.Status == TargetFailed || err == nil {
		return
	}
	tp.Status = TargetRollingBack
	p.publish(ctx)
	p.rollback(ctx, t.Cloud, tp, p.runtimeSpec(t.Cloud, nil))
	p.publish(ctx)
}

// release deploys the run's images to one target and verifies them; the
// target ends done, failed (its status could not be read: it was not
// touched) or, with the error, still deploying or verifying.
func (p *pipeline) release(ctx workflow.Context, i int, t pipelinespec.Target) error {
	tp := &p.pr.Targets[i]
	name := tp.Instance
	if tp.Previous == "" && tp.PreviousImages == nil {
		f := p.before[i]
		if f == nil {
			f = p.readTarget(ctx, t.Cloud, name)
		}
		var st runtime.Status
		if err := f.Get(ctx, &st); err != nil {
			tp.Status, tp.Error = TargetFailed, "status: "+err.Error()
			return err
		}
		p.setPrevious(tp, st)
	}
	tp.Status = TargetDeploying
	p.publish(ctx)
	spec := p.runtimeSpec(t.Cloud, nil)
	opts := deployOptions
	opts.StartToCloseTimeout = p.in.Spec.Deploy.RolloutTimeout
	summary := fmt.Sprintf("deploy %s to %s", p.in.Spec.App, t.Cloud)
	err := executeOnCloud(ctx, opts, t.Cloud, summary, cloudActs.DeployInstance, activities.DeployRequest{Name: name, Spec: spec}).Get(ctx, &tp.Endpoint)
	if err == nil {
		tp.Status = TargetVerifying
		p.publish(ctx)
		tp.Verified, err = p.verify(ctx, t, tp)
	}
	if err == nil {
		tp.Status = TargetDone
		p.publish(ctx)
		return nil
	}
	tp.Error = err.Error()
	return err
}

// setPrevious records what a target ran before this run, when it ran
// something else: the images a failed deploy is put back to.
func (p *pipeline) setPrevious(tp *TargetProgress, st runtime.Status) {
	if !st.Exists {
		return
	}
	tp.Before = p.imagesOf(st)
	if !p.project {
		if st.Image != p.pr.Image {
			tp.Previous = st.Image
		}
		return
	}
	prev, same := map[string]string{}, true
	for _, ss := range st.Services {
		if ss.Image != "" {
			prev[ss.Name] = ss.Image
			same = same && ss.Image == p.pr.ImageOf(ss.Name)
		}
	}
	if len(prev) > 0 && !same {
		tp.PreviousImages = prev
	}
}

// runtimeSpec is what a target's runtime deploys: the app with this run's
// images, or with images (by service) instead when given.
func (p *pipeline) runtimeSpec(cloud string, images map[string]string) runtime.Spec {
	app := p.in.Spec.Deploy.App
	if p.project {
		built := map[string]string{}
		for _, b := range p.pr.Images {
			built[b.Service] = b.Image
		}
		app = app.WithImages(built).WithImages(images)
	} else {
		app = app.WithImage(p.pr.Image)
	}
	return app.RuntimeSpec(cloud, map[string]string{runtime.LabelWorkflow: "pipeline/" + p.in.Spec.App})
}

// readTargets starts reading what every target not yet done runs now,
// the image a failed deploy is rolled back to.
func (p *pipeline) readTargets(ctx workflow.Context) {
	p.before = map[int]workflow.Future{}
	for i, t := range p.in.Spec.Deploy.Targets {
		if tp := p.pr.Targets[i]; tp.Status != TargetDone && tp.Previous == "" && tp.PreviousImages == nil {
			p.before[i] = p.readTarget(ctx, t.Cloud, tp.Instance)
		}
	}
}

func (p *pipeline) readTarget(ctx workflow.Context, cloud, name string) workflow.Future {
	return executeOnCloud(ctx, lookupOptions, cloud, "what runs "+name+" on "+cloud+" now", cloudActs.InstanceStatus, name)
}

// verify checks that the target serves the new image.
func (p *pipeline) verify(ctx workflow.Context, t pipelinespec.Target, tp *TargetProgress) (string, error) {
	within := p.in.Spec.Deploy.RolloutTimeout
	if t.Verify == pipelinespec.VerifyReady {
		var st runtime.Status
		if err := executeOnCloud(ctx, lookupOptions, t.Cloud, "check "+tp.Instance+" is ready on "+t.Cloud, cloudActs.InstanceStatus, tp.Instance).Get(ctx, &st); err != nil {
			return "", err
		}
		if !st.Exists || !st.Ready || !p.runs(st) {
			return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s on %s is not ready with %s (%+v)", tp.Instance, t.Cloud, p.images(), st), activities.ErrTypeNotServing, nil)
		}
		if p.project {
			return fmt.Sprintf("ready on the runtime: %d services with this run's images", len(st.Services)), nil
		}
		return "ready on the runtime with " + p.pr.Digest, nil
	}
	health := p.in.Spec.Deploy.App.Health
	if p.project {
		health = p.runtimeSpec(t.Cloud, nil).ServeService().Health
	}
	if health == "" {
		health = "/"
	}
	var said string
	opts := targetVerifyOptions
	opts.StartToCloseTimeout = within + 30*time.Second
	err := executeOnCloud(ctx, opts, t.Cloud, "verify "+tp.Endpoint.URL+health+" answers", cloudActs.Verify, activities.VerifyRequest{URL: tp.Endpoint.URL, Health: health, Within: within}).Get(ctx, &said)
	return said, err
}

// runs reports whether a target's status shows this run's images.
func (p *pipeline) runs(st runtime.Status) bool {
	if !p.project {
		return st.Image == p.pr.Image
	}
	for _, b := range p.pr.Images {
		found := false
		for _, ss := range st.Services {
			found = found || ss.Name == b.Service && ss.Image == b.Image
		}
		if !found {
			return false
		}
	}
	return true
}

// rollback puts the target back to the image it ran before this run, or
// removes the instance when there was none; also when the run is being
// cancelled, so no target is left half-deployed.
func (p *pipeline) rollback(ctx workflow.Context, cloud string, tp *TargetProgress, spec runtime.Spec) {
	ctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	if tp.Previous == "" && tp.PreviousImages == nil {
		if err := executeOnCloud(ctx, destroyOptions, cloud, "roll back: remove "+tp.Instance+" from "+cloud, cloudActs.DestroyInstance, tp.Instance).Get(ctx, nil); err != nil {
			tp.Error += "; rollback failed: " + err.Error()
			return
		}
	} else {
		to := tp.Previous
		if p.project {
			spec = p.runtimeSpec(cloud, tp.PreviousImages)
			to = "its images before this run"
		} else {
			spec.Image = tp.Previous
		}
		summary := "roll back " + tp.Instance + " on " + cloud + " to " + to
		if err := executeOnCloud(ctx, rollbackOptions, cloud, summary, cloudActs.DeployInstance, activities.DeployRequest{Name: tp.Instance, Spec: spec}).Get(ctx, &tp.Endpoint); err != nil {
			tp.Error += "; rollback failed: " + err.Error()
			return
		}
	}
	tp.Status = TargetRolledBack
}

// publish tells the Web UI where the run is.
func (p *pipeline) publish(ctx workflow.Context) {
	details := fmt.Sprintf("**%s** %s", p.pr.ID, p.pr.Status)
	if p.pr.Step != "" {
		details += " at " + string(p.pr.Step)
	}
	if imgs := p.images(); imgs != "" && (!p.project || p.pr.Images[0].Image != "") {
		details += "\n\nimage `" + imgs + "`"
	}
	for _, t := range p.pr.Targets {
		details += fmt.Sprintf("\n- %s: %s %s", t.Cloud, t.Status, t.Endpoint.URL)
	}
	for _, w := range p.pr.Waves {
		details += fmt.Sprintf("\n- wave %s (%s): %s", w.Name, strings.Join(w.Targets, ", "), w.Status)
	}
	if a := p.openGate(); a != nil && a.Status == ApprovalWaiting {
		details += fmt.Sprintf("\n\nwaiting for approval of %s until %s", strings.Join(a.Targets, ", "), a.Deadline.Format(time.RFC3339))
	}
	workflow.SetCurrentDetails(ctx, details)
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
