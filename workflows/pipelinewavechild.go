package workflows

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/runtime"
)

// childWaves is the workflow.GetVersion change ID under which a run with
// deploy.waves rolls each wave out (and back, and reads what its untouched
// targets run) in a child workflow, PipelineWave: the run's own history
// grows with its waves, not with its targets (about ten events a target
// before). Approval gates stay in the run, where the Updates go. Runs from
// before it do all of it inline.
const childWaves = "waves-child-workflows"

// What a wave's child does.
const (
	waveRelease  = "release"  // deploy, verify, bake under analysis
	waveRollback = "rollback" // put back the targets the run touched
	waveRead     = "read"     // read what the untouched targets run
)

// WaveInput is a wave's child's: the run as its parent holds it.
type WaveInput struct {
	Run      PipelineInput    `json:"run"`
	Progress PipelineProgress `json:"progress"`
	Plan     [][]int          `json:"plan"`
	Wave     int              `json:"wave"`
	Action   string           `json:"action"`
}

// WaveOutput is what a wave's child did: its targets' progress (in the
// wave's plan order), the wave's, and why the wave failed ("" when it did
// not).
type WaveOutput struct {
	Targets []TargetProgress `json:"targets"`
	Wave    WaveProgress     `json:"wave"`
	Failed  string           `json:"failed,omitempty"`
	Type    string           `json:"type,omitempty"`
}

// PipelineWave does one wave's part of a pipeline run (WaveInput.Action)
// for its parent, and answers the progress query with the run's progress
// as this wave sees it.
func PipelineWave(ctx workflow.Context, in WaveInput) (WaveOutput, error) {
	w := in.Wave
	if w < 0 || w >= len(in.Plan) || w >= len(in.Progress.Waves) || len(in.Progress.Targets) != len(in.Run.Spec.Deploy.Targets) {
		return WaveOutput{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("wave %d of a run of %d waves", w, len(in.Plan)), ErrTypeInvalidPipeline, nil)
	}
	p := &pipeline{in: in.Run, pr: in.Progress, plan: in.Plan, project: len(in.Run.Spec.Images) > 0, idx: map[StepName]int{}}
	for i, s := range p.pr.Steps {
		p.idx[s.Name] = i
	}
	if err := setProgressQuery(ctx, func() (PipelineProgress, error) { return p.pr, nil }); err != nil {
		return WaveOutput{}, err
	}
	var out WaveOutput
	switch in.Action {
	case waveRelease:
		if err := p.releaseWave(ctx, w); err != nil {
			out.Failed, out.Type = err.Error(), ErrTypeRolledBack
			var ae *temporal.ApplicationError
			if errors.As(err, &ae) {
				out.Failed, out.Type = ae.Message(), ae.Type()
			}
		}
	case waveRollback:
		p.rollbackWave(ctx, w)
	case waveRead:
		for _, i := range p.plan[w] {
			if p.untouched(i) {
				tp := &p.pr.Targets[i]
				var st runtime.Status
				if p.readTarget(ctx, tp.Cloud, tp.Instance).Get(ctx, &st) == nil {
					p.setPrevious(tp, st)
				}
			}
		}
	default:
		return out, temporal.NewNonRetryableApplicationError("unknown wave action "+in.Action, ErrTypeInvalidPipeline, nil)
	}
	for _, i := range p.plan[w] {
		out.Targets = append(out.Targets, p.pr.Targets[i])
	}
	out.Wave = p.pr.Waves[w]
	return out, nil
}

// waveChild runs action for wave w in a PipelineWave child and takes its
// outcome into the run's progress. A cancelled run still waits for the
// child (which stops starting targets and puts nothing half-done).
func (p *pipeline) waveChild(ctx workflow.Context, w int, action string) error {
	wp := &p.pr.Waves[w]
	id := fmt.Sprintf("%s/wave/%s/%s", p.pr.ID, wp.Name, action)
	if p.pr.Resumed > 0 {
		id += fmt.Sprintf("/resumed-%d", p.pr.Resumed)
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:    id,
		StaticSummary: fmt.Sprintf("%s wave %s of %s (%d targets)", action, wp.Name, p.pr.ID, len(wp.Targets)),
	})
	in := WaveInput{Run: p.in, Progress: p.pr, Plan: p.plan, Wave: w, Action: action}
	in.Run.Resume = nil // the progress is the wave's input; the run's resume state is not
	var out WaveOutput
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	wp.Child = id
	p.publish(ctx)
	err := workflow.ExecuteChildWorkflow(cctx, PipelineWave, in).Get(dctx, &out)
	wp.Child = ""
	if err != nil {
		if action == waveRelease {
			wp.Status, wp.Error = WaveFailed, errText(err)
		}
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("wave %s: %s", wp.Name, errText(err)), ErrTypeRolledBack, nil)
	}
	if len(out.Targets) != len(p.plan[w]) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("wave %s: its child answered for %d of %d targets", wp.Name, len(out.Targets), len(p.plan[w])), ErrTypeRolledBack, nil)
	}
	for k, i := range p.plan[w] {
		p.pr.Targets[i] = out.Targets[k]
	}
	if action != waveRead {
		wp.Status, wp.Error, wp.Analysis = out.Wave.Status, out.Wave.Error, out.Wave.Analysis
	}
	if out.Failed != "" {
		return temporal.NewNonRetryableApplicationError(out.Failed, out.Type, nil)
	}
	return nil
}
