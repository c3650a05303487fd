// Package session is the client side of mobility sessions: what the CLI and
// the HTTP API call to open, move, exit, inspect and list sessions.
package session

import (
	"context"
	"fmt"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// Open describes a session to open.
type Open struct {
	User       string
	App        appspec.AppSpec
	Region     string
	Topology   *topology.Topology
	Neighbours topology.Policy
	PreDeploy  string
}

// Start opens the session, or finds the one already open, and moves it to
// Region in one call (update-with-start); it returns once the app serves
// there.
func Start(ctx context.Context, c client.Client, o Open) (workflows.MoveResult, error) {
	id := workflows.SessionID(o.User, o.App.Name)
	start := c.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                config.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            fmt.Sprintf("%s's %s follows them across %s", o.User, o.App.Name, o.Topology.Name()),
		StaticDetails: fmt.Sprintf("app **%s** (%s)\n\nneighbours: %s · pre-deploy: %s",
			o.App.Name, o.App.Image, o.Neighbours, o.PreDeploy),
	}, workflows.MobilitySession, workflows.SessionInput{
		User: o.User, App: o.App, Region: o.Region, Topology: o.Topology,
		Neighbours: o.Neighbours, PreDeploy: o.PreDeploy,
	})
	h, err := c.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName: workflows.MoveName, Args: []any{o.Region}, WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	var res workflows.MoveResult
	if err == nil {
		err = h.Get(ctx, &res)
	}
	if err != nil {
		return workflows.MoveResult{}, fmt.Errorf("open session %s: %w", id, sessionFailure(ctx, c, id, err))
	}
	return res, nil
}

// sessionFailure explains a failed open: when the session itself has ended
// (bad input fails it before its handlers exist), its own error says why
// better than the update's.
func sessionFailure(ctx context.Context, c client.Client, id string, updateErr error) error {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil || desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return updateErr
	}
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
		return err
	}
	return updateErr
}

// Move moves the session's user to region and returns the serving endpoint
// once it is ready there.
func Move(ctx context.Context, c client.Client, user, app, region string) (workflows.MoveResult, error) {
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.SessionID(user, app), UpdateName: workflows.MoveName,
		Args: []any{region}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return workflows.MoveResult{}, fmt.Errorf("move %s/%s to %s: %w", user, app, region, err)
	}
	var res workflows.MoveResult
	if err := h.Get(ctx, &res); err != nil {
		return workflows.MoveResult{}, fmt.Errorf("move %s/%s to %s: %w", user, app, region, err)
	}
	return res, nil
}

// Exit ends the session and returns its report once everything is destroyed.
func Exit(ctx context.Context, c client.Client, user, app string) (workflows.SessionState, error) {
	id := workflows.SessionID(user, app)
	if err := c.SignalWorkflow(ctx, id, "", workflows.ExitName, nil); err != nil {
		return workflows.SessionState{}, fmt.Errorf("exit %s: %w", id, err)
	}
	var report workflows.SessionState
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &report); err != nil {
		return workflows.SessionState{}, fmt.Errorf("exit %s: %w", id, err)
	}
	return report, nil
}

// State queries a running session.
func State(ctx context.Context, c client.Client, user, app string) (workflows.SessionState, error) {
	id := workflows.SessionID(user, app)
	v, err := c.QueryWorkflow(ctx, id, "", workflows.StateQuery)
	if err != nil {
		return workflows.SessionState{}, fmt.Errorf("state of %s: %w", id, err)
	}
	var st workflows.SessionState
	return st, v.Get(&st)
}

// Summary is one line of the session list.
type Summary struct {
	ID     string `json:"id"`
	User   string `json:"user"`
	App    string `json:"app"`
	Cloud  string `json:"cloud"`
	Status string `json:"status"`
}

// List returns sessions from visibility, newest first; all=false keeps the
// running ones.
func List(ctx context.Context, c client.Client, all bool) ([]Summary, error) {
	query := config.AttrKind + " = 'session'"
	if !all {
		query += " AND ExecutionStatus = 'Running'"
	}
	var out []Summary
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			s := Summary{ID: e.GetExecution().GetWorkflowId(), Status: e.GetStatus().String()}
			fields := e.GetSearchAttributes().GetIndexedFields()
			for key, dst := range map[string]*string{config.AttrUser: &s.User, config.AttrApp: &s.App, config.AttrCloud: &s.Cloud} {
				if p := fields[key]; p != nil {
					_ = converter.GetDefaultDataConverter().FromPayload(p, dst)
				}
			}
			out = append(out, s)
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}
