package workflows

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
)

// fleetWaves is the workflow.GetVersion change ID under which a run whose
// spec has deploy.waves rolls out wave by wave, analyses each wave while
// it bakes and, when a wave fails, puts every target back. Runs without
// waves do exactly what they did before.
const fleetWaves = "fleet-waves"

// WaveStatus is where a wave is.
type WaveStatus string

// Wave statuses.
const (
	WavePending    WaveStatus = "pending"
	WaveWaiting    WaveStatus = "waiting" // for approval
	WaveDeploying  WaveStatus = "deploying"
	WaveBaking     WaveStatus = "baking" // under analysis
	WaveDone       WaveStatus = "done"
	WaveFailed     WaveStatus = "failed"
	WaveRejected   WaveStatus = "rejected" // approval refused or timed out
	WaveRolledBack WaveStatus = "rolled-back"
)

// WaveProgress is one wave of a run.
type WaveProgress struct {
	Name     string           `json:"name"`
	Targets  []string         `json:"targets"`
	Status   WaveStatus       `json:"status"`
	Approval *Approval        `json:"approval,omitempty"`
	Analysis []TargetAnalysis `json:"analysis,omitempty"`
	Started  time.Time        `json:"started,omitzero"`
	Ended    time.Time        `json:"ended,omitzero"`
	Error    string           `json:"error,omitempty"`
	// Child is the workflow doing the wave's part right now (see
	// childWaves): its progress query has the wave's targets live.
	Child string `json:"child,omitempty"`
}

// TargetAnalysis is what a wave's analysis measured on one target, and
// the verdict.
type TargetAnalysis struct {
	Cloud string `json:"cloud"`
	activities.AnalysisResult
	Passed  bool   `json:"passed"`
	Verdict string `json:"verdict"`
}

// analysisOptions: the activity measures for the bake time, heartbeating;
// a lost worker's measurement is started again.
var analysisOptions = workflow.ActivityOptions{
	HeartbeatTimeout: 30 * time.Second,
	RetryPolicy:      retry(3, 10*time.Second, nonRetryable...),
}

func tierOf(topo *topology.Topology) func(string) string {
	return func(cloud string) string {
		c, _ := topo.Cloud(cloud)
		return string(c.Tier)
	}
}

// planWaves lays the targets out in their waves (validatePipeline checked
// the plan). A resumed run rolls out from the first wave again: a failed
// run put its targets back.
func (p *pipeline) planWaves() {
	d := p.in.Spec.Deploy
	p.plan, _ = d.Plan(tierOf(p.in.Topology))
	p.pr.Waves = nil
	for w, idx := range p.plan {
		wp := WaveProgress{Name: d.Waves[w].Name, Status: WavePending}
		for _, i := range idx {
			tp := &p.pr.Targets[i]
			wp.Targets = append(wp.Targets, tp.Cloud)
			tp.Wave, tp.Status, tp.Error, tp.Verified, tp.After = wp.Name, TargetPending, "", "", ""
		}
		if d.Waves[w].Approval {
			wp.Approval = &Approval{Status: ApprovalPending, Targets: wp.Targets}
		}
		p.pr.Waves = append(p.pr.Waves, wp)
	}
}

// waveGates reports whether a wave waits for approval.
func (p *pipeline) waveGates() bool {
	for _, w := range p.pr.Waves {
		if w.Approval != nil {
			return true
		}
	}
	return false
}

// openGate is the approval gate a decision goes to: the first not yet
// decided (nil: none).
func (p *pipeline) openGate() *Approval {
	if a := p.pr.Approval; a != nil && !a.Status.Decided() {
		return a
	}
	for i := range p.pr.Waves {
		if a := p.pr.Waves[i].Approval; a != nil && !a.Status.Decided() {
			return a
		}
	}
	return nil
}

// registerDecisionUpdates makes Approve and Reject Updates answering with
// the gate they decided; the validator keeps a decision nobody waits for,
// or one without who decides, out of the history.
func (p *pipeline) registerDecisionUpdates(ctx workflow.Context) error {
	for _, u := range []struct {
		name   string
		status ApprovalStatus
	}{{names.ApproveUpdate, ApprovalGranted}, {names.RejectUpdate, ApprovalRejected}} {
		err := workflow.SetUpdateHandlerWithOptions(ctx, u.name, func(ctx workflow.Context, d ApprovalDecision) (Approval, error) {
			a := p.openGate()
			if a == nil {
				return Approval{}, fmt.Errorf("%s waits for no approval", p.pr.ID)
			}
			a.Status, a.Who, a.Why, a.At = u.status, d.Who, d.Why, workflow.Now(ctx)
			return *a, nil
		}, workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, d ApprovalDecision) error {
			switch {
			case strings.TrimSpace(d.Who) == "" || len(d.Who) > 200 || len(d.Why) > 2000:
				return errors.New("say who decides (at most 200 characters) and why (at most 2000)")
			case p.openGate() == nil:
				return fmt.Errorf("%s waits for no approval", p.pr.ID)
			}
			return nil
		}})
		if err != nil {
			return err
		}
	}
	return nil
}

// deployWaves rolls the release out wave by wave: each wave after its
// approval, at most maxParallel targets at a time, then baked under
// analysis. A failed wave (a target that does not deploy or verify, a
// failed analysis, a refused approval) stops the rollout and every target
// the run touched goes back to what it ran before, last wave first.
func (p *pipeline) deployWaves(ctx workflow.Context) error {
	deploy, verify := &p.pr.Steps[p.idx[StepDeploy]], &p.pr.Steps[p.idx[StepVerify]]
	p.pr.Step = StepDeploy
	now := workflow.Now(ctx)
	deploy.Status, deploy.Started, verify.Status, verify.Started = StepRunning, now, StepRunning, now
	var err error
	last := 0
	for w := range p.pr.Waves {
		last = w
		if err = p.wave(ctx, w); err != nil {
			break
		}
	}
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	if err != nil {
		p.rollbackFleet(dctx, last)
	}
	p.readUntouched(dctx)
	p.settle()
	now = workflow.Now(ctx)
	deploy.Ended, verify.Ended = now, now
	defer p.publish(ctx)
	if err == nil {
		deploy.Status, verify.Status = StepDone, StepDone
		deploy.Detail = fmt.Sprintf("%d wave(s), %d target(s) run %s", len(p.pr.Waves), len(p.pr.Targets), p.images())
		return nil
	}
	deploy.Status, verify.Status = StepFailed, StepFailed
	var ae *temporal.ApplicationError
	typ, msg := ErrTypeRolledBack, err.Error()
	if errors.As(err, &ae) {
		typ, msg = ae.Type(), ae.Message()
	}
	msg = fmt.Sprintf("%s; the fleet is back on what it ran before: %s", msg, p.fleetReport())
	deploy.Error = msg
	if typ == ErrTypeRejected || typ == ErrTypeApprovalTimeout {
		p.pr.Step = StepApproval
	}
	return temporal.NewNonRetryableApplicationError(msg, typ, nil)
}

// wave runs wave w: gate, deploy, bake.
func (p *pipeline) wave(ctx workflow.Context, w int) error {
	wp := &p.pr.Waves[w]
	wp.Started = workflow.Now(ctx)
	defer func() { wp.Ended = workflow.Now(ctx); p.publish(ctx) }()
	if wp.Approval != nil {
		wp.Status = WaveWaiting
		if err := p.waveGate(ctx, wp); err != nil {
			wp.Status, wp.Error = WaveRejected, errText(err)
			for _, i := range p.plan[w] {
				p.pr.Targets[i].Status = TargetRejected
			}
			return err
		}
	}
	wp.Status = WaveDeploying
	p.publish(ctx)
	if p.childWaves {
		return p.waveChild(ctx, w, waveRelease)
	}
	return p.releaseWave(ctx, w)
}

// releaseWave deploys wave w's targets, at most maxParallel at once, then
// bakes them under analysis.
func (p *pipeline) releaseWave(ctx workflow.Context, w int) error {
	wp, spec := &p.pr.Waves[w], p.in.Spec.Deploy.Waves[w]
	p.eachTarget(ctx, w, func(ctx workflow.Context, i int) {
		p.release(ctx, i, p.in.Spec.Deploy.Targets[i])
	})
	var failed []string
	for _, i := range p.plan[w] {
		if tp := p.pr.Targets[i]; tp.Status != TargetDone {
			failed = append(failed, tp.Cloud+": "+dashIfEmpty(tp.Error))
		}
	}
	if len(failed) > 0 {
		wp.Status, wp.Error = WaveFailed, "not deployed: "+strings.Join(failed, "; ")
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("wave %s failed: %s", wp.Name, wp.Error), ErrTypeRolledBack, nil)
	}
	if spec.Bake > 0 {
		wp.Status = WaveBaking
		p.publish(ctx)
		if err := p.bake(ctx, w); err != nil {
			wp.Status, wp.Error = WaveFailed, errText(err)
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("wave %s failed: %s", wp.Name, wp.Error), ErrTypeRolledBack, nil)
		}
	}
	wp.Status = WaveDone
	return nil
}

// eachTarget runs fn for every target of wave w, at most the wave's
// maxParallel at once, and waits for all of them (also when cancelled).
func (p *pipeline) eachTarget(ctx workflow.Context, w int, fn func(workflow.Context, int)) {
	targets := p.plan[w]
	limit := len(targets)
	if w < len(p.in.Spec.Deploy.Waves) && p.in.Spec.Deploy.Waves[w].MaxParallel > 0 {
		limit = min(limit, p.in.Spec.Deploy.Waves[w].MaxParallel)
	}
	sem := workflow.NewSemaphore(ctx, int64(limit))
	wg := workflow.NewWaitGroup(ctx)
	for _, i := range targets {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			if sem.Acquire(ctx, 1) != nil {
				return // cancelled before its turn: not touched
			}
			defer sem.Release(1)
			fn(ctx, i)
		})
	}
	wctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	wg.Wait(wctx)
}

// waveGate waits for the wave's approval until the approval timeout.
func (p *pipeline) waveGate(ctx workflow.Context, wp *WaveProgress) error {
	a, s := wp.Approval, &p.pr.Steps[p.idx[StepApproval]]
	timeout := p.in.Spec.Deploy.ApprovalTimeout
	p.pr.Step = StepApproval
	s.Status, s.Started, s.Ended = StepWaiting, workflow.Now(ctx), time.Time{}
	if a.Status == ApprovalPending { // else decided before the gate opened
		a.Status, a.Deadline = ApprovalWaiting, workflow.Now(ctx).Add(timeout)
	}
	p.publish(ctx)
	decided, err := workflow.AwaitWithTimeout(ctx, timeout, func() bool { return a.Status.Decided() })
	if err != nil {
		return err
	}
	if !decided {
		a.Status, a.At = ApprovalTimedOut, workflow.Now(ctx)
	}
	p.pr.Step = StepDeploy
	s.Ended, s.Status = workflow.Now(ctx), StepStatus(a.Status)
	switch a.Status {
	case ApprovalGranted:
		s.Detail = "wave " + wp.Name + " approved by " + a.Who
		return nil
	case ApprovalTimedOut:
		s.Error = "nobody approved wave " + wp.Name + " in time"
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("nobody approved wave %s (%s) in time", wp.Name, strings.Join(wp.Targets, ", ")), ErrTypeApprovalTimeout, nil)
	}
	s.Error = fmt.Sprintf("wave %s rejected by %s: %s", wp.Name, a.Who, a.Why)
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("wave %s (%s) rejected by %s: %s", wp.Name, strings.Join(wp.Targets, ", "), a.Who, a.Why), ErrTypeRejected, nil)
}

// bake waits the wave's bake time; with an analysis, each target checked
// over HTTP is measured from its own worker meanwhile, and one that fails
// the analysis fails the wave.
func (p *pipeline) bake(ctx workflow.Context, w int) error {
	wp, spec := &p.pr.Waves[w], p.in.Spec.Deploy.Waves[w]
	a := spec.Analysis
	var measured []int
	if a != nil {
		for _, i := range p.plan[w] {
			if p.in.Spec.Deploy.Targets[i].Verify == pipelinespec.VerifyHTTP {
				measured = append(measured, i)
			}
		}
	}
	if len(measured) == 0 {
		return workflow.Sleep(ctx, spec.Bake)
	}
	opts := analysisOptions
	opts.StartToCloseTimeout = spec.Bake + time.Minute
	opts.HeartbeatTimeout = max(opts.HeartbeatTimeout, 2*a.Interval+10*time.Second) // it beats once a request
	futures := make([]workflow.Future, len(measured))
	for k, i := range measured {
		tp := p.pr.Targets[i]
		req := activities.AnalysisRequest{URL: tp.Endpoint.URL, Path: firstOf(a.Path, p.healthPath(tp.Cloud)), For: spec.Bake, Interval: a.Interval, FailureLimit: -1}
		if a.FailureLimit != nil {
			req.FailureLimit = *a.FailureLimit
		}
		if a.Metric != nil {
			req.MetricPath, req.Metric = a.Metric.Path, a.Metric.Name
		}
		if g := a.Prometheus; g != nil {
			req.PromAddress, req.PromQuery = g.Address, g.QueryFor(tp.Cloud)
		}
		summary := fmt.Sprintf("analyse %s%s on %s for %s", tp.Endpoint.URL, req.Path, tp.Cloud, spec.Bake)
		futures[k] = executeOnCloud(ctx, opts, tp.Cloud, summary, cloudActs.Analyze, req)
	}
	var failed []string
	for k, i := range measured {
		ta := TargetAnalysis{Cloud: p.pr.Targets[i].Cloud}
		if err := futures[k].Get(ctx, &ta.AnalysisResult); err != nil {
			ta.Verdict = "not measured: " + errText(err)
		} else {
			ta.Passed, ta.Verdict = judge(*a, ta.AnalysisResult)
		}
		wp.Analysis = append(wp.Analysis, ta)
		if !ta.Passed {
			failed = append(failed, ta.Cloud+": "+ta.Verdict)
		}
	}
	if len(failed) > 0 {
		return errors.New("analysis failed on " + strings.Join(failed, "; "))
	}
	return nil
}

// judge says whether a measurement passes the analysis' thresholds.
func judge(a pipelinespec.Analysis, r activities.AnalysisResult) (bool, string) {
	said := fmt.Sprintf("%d of %d requests answered 2xx (%.1f%%, want ≥ %.1f%%), p95 %s", r.Requests-r.Failures, r.Requests, 100*r.SuccessRatio(), 100*a.SuccessRatio, r.P95.Round(time.Millisecond))
	switch {
	case r.Stopped:
		return false, fmt.Sprintf("stopped after %d failed requests (failure limit %d): %s; last: %s", r.Failures, *a.FailureLimit, said, r.LastFail)
	case r.SuccessRatio() < a.SuccessRatio:
		return false, said + "; last failure: " + r.LastFail
	case a.MaxLatency > 0 && r.P95 > a.MaxLatency:
		return false, fmt.Sprintf("%s, want p95 ≤ %s", said, a.MaxLatency)
	case a.Metric != nil && r.Metric != nil && *r.Metric > a.Metric.Max:
		return false, fmt.Sprintf("%s; metric %s is %g, want ≤ %g", said, a.Metric.Name, *r.Metric, a.Metric.Max)
	}
	if r.Metric != nil {
		said += fmt.Sprintf("; metric %s %g", a.Metric.Name, *r.Metric)
	}
	if g, ans := a.Prometheus, r.Prom; g != nil && ans != nil {
		ok, why := judgeProm(*g, *ans)
		if !ok {
			return false, said + "; " + why
		}
		said += "; " + why
	}
	return true, said
}

// judgeProm says whether every sample of Prometheus' answer is within the
// gate's bounds; an answer without samples judges nothing, so fails.
func judgeProm(g pipelinespec.PrometheusGate, ans activities.PromAnswer) (bool, string) {
	switch {
	case ans.Error != "":
		return false, "prometheus: " + ans.Error
	case len(ans.Samples) == 0:
		return false, "prometheus: the query matched no series"
	}
	var values []string
	for _, s := range ans.Samples {
		v, err := strconv.ParseFloat(s.Value, 64)
		switch {
		case err != nil || math.IsNaN(v):
			return false, fmt.Sprintf("prometheus: %s is %s, not a number", s.Series, s.Value)
		case g.Max != nil && v > *g.Max:
			return false, fmt.Sprintf("prometheus: %s is %g, want ≤ %g", s.Series, v, *g.Max)
		case g.Min != nil && v < *g.Min:
			return false, fmt.Sprintf("prometheus: %s is %g, want ≥ %g", s.Series, v, *g.Min)
		}
		values = append(values, s.Value)
	}
	return true, "prometheus: " + strings.Join(values, ", ")
}

// healthPath is the path verify GETs on a target.
func (p *pipeline) healthPath(cloud string) string {
	health := p.in.Spec.Deploy.App.Health
	if p.project {
		health = p.runtimeSpec(cloud, nil).ServeService().Health
	}
	return firstOf(health, "/")
}

// rollbackFleet puts every target the run touched, in waves last..0 (last
// first), back to what it ran before; also when the run is being
// cancelled (ctx is disconnected).
func (p *pipeline) rollbackFleet(ctx workflow.Context, last int) {
	for w := last; w >= 0; w-- {
		if p.childWaves {
			_ = p.waveChild(ctx, w, waveRollback)
		} else {
			p.rollbackWave(ctx, w)
		}
	}
}

// rollbackWave puts wave w's targets the run touched back.
func (p *pipeline) rollbackWave(ctx workflow.Context, w int) {
	touched := false
	p.eachTarget(ctx, w, func(ctx workflow.Context, i int) {
		tp := &p.pr.Targets[i]
		switch tp.Status {
		case TargetDone, TargetDeploying, TargetVerifying:
		default:
			return
		}
		touched = true
		tp.Status = TargetRollingBack
		p.publish(ctx)
		if tp.Previous == "" && tp.PreviousImages == nil && tp.Before != "" {
			tp.Status = TargetRolledBack // it ran this release already
			return
		}
		p.rollback(ctx, tp.Cloud, tp, p.runtimeSpec(tp.Cloud, nil))
		p.publish(ctx)
	})
	if touched && w < len(p.pr.Waves) {
		p.pr.Waves[w].Status = WaveRolledBack
	}
}

// readUntouched records what the targets the run never touched run, from
// the reads started with the clone (a wave's child reads its own).
func (p *pipeline) readUntouched(ctx workflow.Context) {
	if p.childWaves {
		for w := range p.pr.Waves {
			if slices.ContainsFunc(p.plan[w], p.untouched) {
				_ = p.waveChild(ctx, w, waveRead)
			}
		}
		return
	}
	for i := range p.pr.Targets {
		if f := p.before[i]; f != nil && p.untouched(i) {
			var st runtime.Status
			if f.Get(ctx, &st) == nil {
				p.setPrevious(&p.pr.Targets[i], st)
			}
		}
	}
}

// untouched says whether the run never touched target i and does not know
// yet what it runs.
func (p *pipeline) untouched(i int) bool {
	tp := p.pr.Targets[i]
	return tp.Before == "" && (tp.Status == TargetPending || tp.Status == TargetRejected)
}

// settle records what every target runs now the run ends.
func (p *pipeline) settle() {
	for i := range p.pr.Targets {
		tp := &p.pr.Targets[i]
		switch tp.Status {
		case TargetDone:
			tp.After = p.images()
		case TargetRolledBack, TargetPending, TargetWaiting, TargetRejected:
			tp.After = tp.Before
		}
	}
}

// fleetReport says what each target runs: "fog-north runs sha256:…".
func (p *pipeline) fleetReport() string {
	var out []string
	for _, tp := range p.pr.Targets {
		now := "nothing of " + p.in.Spec.App
		if tp.After != "" {
			now = shortImages(tp.After)
		}
		switch tp.Status {
		case TargetPending, TargetRejected, TargetWaiting:
			out = append(out, fmt.Sprintf("%s untouched (runs %s)", tp.Cloud, now))
		case TargetRolledBack:
			out = append(out, fmt.Sprintf("%s runs %s", tp.Cloud, now))
		default:
			out = append(out, fmt.Sprintf("%s %s: %s", tp.Cloud, tp.Status, tp.Error))
		}
	}
	return strings.Join(out, ", ")
}

// shortImages shortens the digests of images as Before and After hold them.
func shortImages(images string) string {
	parts := strings.Split(images, ", ")
	for i, s := range parts {
		if at := strings.LastIndex(s, "@"); at >= 0 {
			digest := s[at+1:]
			digest = strings.TrimPrefix(digest, "sha256:")
			parts[i] = s[:at] + "@" + short(digest)
		}
	}
	return strings.Join(parts, ", ")
}

// imagesOf is what a target's status says it runs, as Before holds it.
func (p *pipeline) imagesOf(st runtime.Status) string {
	if !p.project {
		return st.Image
	}
	var refs []string
	for _, b := range p.pr.Images {
		for _, ss := range st.Services {
			if ss.Name == b.Service {
				refs = append(refs, b.Service+"="+ss.Image)
			}
		}
	}
	return strings.Join(refs, ", ")
}
