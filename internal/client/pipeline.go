package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	temporalclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/workflows"
)

// StartPipeline starts a run. A run's ID names that run only: a new run may
// not take it, while a resume continues a failed run under it.
func (c *Client) StartPipeline(ctx context.Context, in workflows.PipelineInput) (Run, error) {
	verb, reuse := "builds", enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
	if in.Resume != nil {
		verb, reuse = "resumes", enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY
	}
	var targets []string
	for _, t := range in.Spec.Deploy.Targets {
		targets = append(targets, t.Cloud)
	}
	return c.Temporal.ExecuteWorkflow(ctx, temporalclient.StartWorkflowOptions{
		ID:                                       names.PipelineID(in.Spec.App, in.Run),
		TaskQueue:                                names.TaskQueue,
		WorkflowIDReusePolicy:                    reuse,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("%s %s %s@%s and deploys it to %s", in.Run, verb, in.Spec.App, in.Spec.Ref, strings.Join(targets, ", ")),
		StaticDetails:                            fmt.Sprintf("repo `%s` ref `%s`\n\nimage `%s` for %s", in.Spec.Repo, in.Spec.Ref, in.Spec.Image.Name, strings.Join(in.Spec.Image.Platforms, ", ")),
	}, workflows.Pipeline, in)
}

// PipelineProgress reads a run's progress, live or final.
func (c *Client) PipelineProgress(ctx context.Context, app, run string) (workflows.PipelineProgress, error) {
	pr, err := Read[workflows.PipelineProgress](ctx, c, names.PipelineID(app, run))
	if pr.ID != "" {
		return pr, nil // a failed run's progress is what was asked for
	}
	return pr, err
}

// liveWaves takes into a run's progress what the child workflow of each
// wave under way knows of its targets: the run's own progress learns it
// only when the wave ends (its history stays small that way).
func (c *Client) liveWaves(ctx context.Context, pr *workflows.PipelineProgress) {
	for w := range pr.Waves {
		wp := &pr.Waves[w]
		if wp.Child == "" {
			continue
		}
		var child workflows.PipelineProgress
		v, err := c.Temporal.QueryWorkflow(ctx, wp.Child, "", names.ProgressQuery)
		if err != nil || v.Get(&child) != nil || len(child.Targets) != len(pr.Targets) || len(child.Waves) != len(pr.Waves) {
			continue // not started yet, or gone: the run's own view stands
		}
		for i := range pr.Targets {
			if pr.Targets[i].Wave == wp.Name {
				pr.Targets[i] = child.Targets[i]
			}
		}
		wp.Status, wp.Analysis = child.Waves[w].Status, child.Waves[w].Analysis
	}
}

// PipelineInput reads the input a run was started with from its history.
func (c *Client) PipelineInput(ctx context.Context, app, run string) (workflows.PipelineInput, error) {
	id := names.PipelineID(app, run)
	it := c.Temporal.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return workflows.PipelineInput{}, fmt.Errorf("no history for %s", id)
	}
	ev, err := it.Next()
	if err != nil {
		return workflows.PipelineInput{}, err
	}
	var in workflows.PipelineInput
	err = converter.GetDefaultDataConverter().FromPayloads(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &in)
	return in, err
}

// ResumePipeline starts a failed run again from its failed step, with the
// input it was started with.
func (c *Client) ResumePipeline(ctx context.Context, app, run string) (Run, error) {
	id := names.PipelineID(app, run)
	desc, err := c.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return nil, err
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_FAILED {
		return nil, fmt.Errorf("%s is %s: only a failed run can be resumed", id, strings.ToLower(strings.TrimPrefix(st.String(), "WORKFLOW_EXECUTION_STATUS_")))
	}
	in, err := c.PipelineInput(ctx, app, run)
	if err != nil {
		return nil, err
	}
	pr, err := c.PipelineProgress(ctx, app, run)
	if err != nil {
		return nil, err
	}
	in.Resume = &pr
	return c.StartPipeline(ctx, in)
}

// Decide sends Approve (approve=true) or Reject to a waiting run.
func (c *Client) Decide(ctx context.Context, app, run string, approve bool, d workflows.ApprovalDecision) error {
	if d.Who == "" {
		return errors.New("say who decides (--who)")
	}
	pr, err := c.PipelineProgress(ctx, app, run)
	if err != nil {
		return err
	}
	open := pr.Approval != nil && !pr.Approval.Status.Decided()
	for _, w := range pr.Waves {
		open = open || w.Approval != nil && !w.Approval.Status.Decided()
	}
	if !open {
		return fmt.Errorf("%s waits for no approval", pr.ID)
	}
	name, signal := names.RejectUpdate, names.RejectSignal
	if approve {
		name, signal = names.ApproveUpdate, names.ApproveSignal
	}
	h, err := c.Temporal.UpdateWorkflow(ctx, temporalclient.UpdateWorkflowOptions{
		WorkflowID: pr.ID, UpdateName: name, Args: []any{d}, WaitForStage: temporalclient.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err != nil && strings.Contains(err.Error(), "unknown update") {
		// A run started before decisions were Updates takes the Signal.
		return c.Temporal.SignalWorkflow(ctx, pr.ID, "", signal, d)
	}
	return err
}

// LatestRun names the app's newest pipeline run.
func (c *Client) LatestRun(ctx context.Context, app string) (string, error) {
	query := fmt.Sprintf("WorkflowType = 'Pipeline' AND %s = '%s'", names.AppKey.GetName(), app)
	var newest *workflowpb.WorkflowExecutionInfo
	var token []byte
	for {
		resp, err := c.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return "", fmt.Errorf("list the runs of %s: %w", app, err)
		}
		for _, e := range resp.GetExecutions() {
			if newest == nil || e.GetStartTime().AsTime().After(newest.GetStartTime().AsTime()) {
				newest = e
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	if newest == nil {
		return "", fmt.Errorf("%s has no pipeline run", app)
	}
	return strings.TrimPrefix(newest.GetExecution().GetWorkflowId(), names.PipelineID(app, "")), nil
}

// Rollback starts putting every target a finished run left on its release
// back to what it ran before (run "": the app's newest run).
func (c *Client) Rollback(ctx context.Context, app, run string, scheduleToStart time.Duration) (Run, error) {
	if run == "" {
		var err error
		if run, err = c.LatestRun(ctx, app); err != nil {
			return nil, err
		}
	}
	id := names.PipelineID(app, run)
	desc, err := c.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return nil, err
	}
	if desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil, fmt.Errorf("%s is running: let it end (or reject its gate, or stop it) before rolling it back", id)
	}
	in, err := c.PipelineInput(ctx, app, run)
	if err != nil {
		return nil, err
	}
	pr, err := c.PipelineProgress(ctx, app, run)
	if err != nil {
		return nil, err
	}
	return c.Temporal.ExecuteWorkflow(ctx, temporalclient.StartWorkflowOptions{
		ID:                                       names.RollbackID(app, run),
		TaskQueue:                                names.TaskQueue,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("put the targets of %s back to what they ran before it", id),
	}, workflows.PipelineRollback, workflows.RollbackInput{Run: in, Progress: pr, ScheduleToStart: scheduleToStart})
}

// Undeploy starts removing an app's pipeline deployment from clouds; one
// removal of an app runs at a time.
func (c *Client) Undeploy(ctx context.Context, in workflows.UndeployInput) (Run, error) {
	return c.Temporal.ExecuteWorkflow(ctx, temporalclient.StartWorkflowOptions{
		ID:                                       names.UndeployID(in.App),
		TaskQueue:                                names.TaskQueue,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("remove %s's pipeline deployment from %s", in.App, strings.Join(in.Clouds, ", ")),
	}, workflows.PipelineUndeploy, in)
}
