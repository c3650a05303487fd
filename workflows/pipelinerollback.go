package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/names"
)

// ErrTypeRollbackFailed: a target could not be put back.
const ErrTypeRollbackFailed = "RollbackFailed"

// RollbackInput names a finished run whose release comes off its targets:
// the input it was started with and its final progress.
type RollbackInput struct {
	Run      PipelineInput    `json:"run"`
	Progress PipelineProgress `json:"progress"`
	// ScheduleToStart bounds each step's wait for a worker on a cloud's
	// queue (0: DefaultScheduleToStart).
	ScheduleToStart time.Duration `json:"scheduleToStart,omitempty"`
}

// RollbackResult is every target of the run with what it ran before the
// run and what it runs now.
type RollbackResult struct {
	ID      string           `json:"id"` // the run's
	Targets []TargetProgress `json:"targets"`
	// Report says in one line which target runs what.
	Report string `json:"report"`
}

// PipelineRollback puts every target a finished run left on its release
// back to what it ran before the run (removing the release where nothing
// ran), in reverse wave order, each wave's targets at most its maxParallel
// at once. Targets the run did not leave on its release are not touched.
func PipelineRollback(ctx workflow.Context, in RollbackInput) (RollbackResult, error) {
	if err := validatePipeline(in.Run); err != nil {
		return RollbackResult{}, err
	}
	pr := in.Progress
	if pr.ID != names.PipelineID(in.Run.Spec.App, in.Run.Run) || len(pr.Targets) != len(in.Run.Spec.Deploy.Targets) || pr.Status == RunRunning {
		return RollbackResult{}, invalid(ErrTypeInvalidPipeline, "rollback: the progress given (%s, %s, %d targets) is not a finished run of this spec", pr.ID, pr.Status, len(pr.Targets))
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		names.AppKey.ValueSet(in.Run.Spec.App),
		names.KindKey.ValueSet(names.KindPipeline),
	); err != nil {
		return RollbackResult{}, err
	}
	p := &pipeline{in: in.Run, pr: pr, project: len(in.Run.Spec.Images) > 0}
	p.plan, _ = in.Run.Spec.Deploy.Plan(tierOf(in.Run.Topology))
	p.rollbackFleet(withScheduleToStart(ctx, in.ScheduleToStart), len(p.plan)-1)
	p.settle()
	p.publish(ctx)
	res := RollbackResult{ID: pr.ID, Targets: p.pr.Targets, Report: p.fleetReport()}
	var failed []string
	for _, tp := range p.pr.Targets {
		if tp.Status == TargetRollingBack {
			failed = append(failed, tp.Cloud+": "+tp.Error)
		}
	}
	if len(failed) > 0 {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s not put back on %s", pr.ID, strings.Join(failed, "; ")), ErrTypeRollbackFailed, nil, res)
	}
	return res, nil
}
