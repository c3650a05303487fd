package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	temporalclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/names"
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
	// ScheduleToStart bounds each step's wait for a worker (0: the default).
	ScheduleToStart time.Duration
	// Continuity: the state policy, drain and failover (zero: defaults).
	Continuity workflows.Continuity
	// Registration is what a MEC registrant says beyond the above (zero
	// for the CLI).
	Registration workflows.Registration
}

// OpenSession registers the session (the Register update, with start): the
// first call opens it and answers once the app serves (Created); a call
// asking for the open session as it was registered gets it as it is now;
// any other fails with workflows.ErrTypeRegistrationConflict. Concurrent
// calls for one user and app make one session.
func (c *Client) OpenSession(ctx context.Context, o Open) (workflows.RegisterResult, error) {
	id := names.SessionID(o.User, o.App.Name)
	if o.Registration.Consumer == "" {
		o.Registration.Consumer = o.App.Name
	}
	start := c.Temporal.NewWithStartWorkflowOperation(temporalclient.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                names.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            fmt.Sprintf("%s's %s follows them across %s", o.User, o.App.Name, o.Topology.Name()),
		StaticDetails: fmt.Sprintf("app **%s** (%s)\n\nneighbours: %s · pre-deploy: %s",
			o.App.Name, o.App.Image, o.Neighbours, o.PreDeploy),
	}, workflows.MobilitySession, workflows.SessionInput{
		User: o.User, App: o.App, Region: o.Region, Topology: o.Topology,
		Neighbours: o.Neighbours, PreDeploy: o.PreDeploy, Registration: o.Registration,
		ScheduleToStart: o.ScheduleToStart, Continuity: o.Continuity,
	})
	h, err := c.Temporal.UpdateWithStartWorkflow(ctx, temporalclient.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: temporalclient.UpdateWorkflowOptions{
			UpdateName: names.RegisterUpdate, WaitForStage: temporalclient.WorkflowUpdateStageCompleted,
			Args: []any{workflows.RegisterRequest{
				App: o.App, Region: o.Region, Neighbours: o.Neighbours, PreDeploy: o.PreDeploy, Registration: o.Registration,
			}},
		},
	})
	var res workflows.RegisterResult
	if err == nil {
		err = h.Get(ctx, &res)
	}
	if err != nil {
		return workflows.RegisterResult{}, fmt.Errorf("open session %s: %w", id, c.sessionFailure(ctx, id, err))
	}
	return res, nil
}

// Reregister changes what the session's registration says (service level,
// context transfer state, expiry).
func (c *Client) Reregister(ctx context.Context, user, app string, r workflows.Registration) (workflows.Registration, error) {
	return sessionUpdate[workflows.Registration](ctx, c, user, app, names.ReregisterUpdate, r)
}

// Adopt gives the session of user and app a release: its pre-deploys take
// it at once, the user reaches it at the next handover.
func (c *Client) Adopt(ctx context.Context, user, app string, r workflows.AdoptRequest) (workflows.AdoptResult, error) {
	out, err := sessionUpdate[workflows.AdoptResult](ctx, c, user, app, names.AdoptUpdate, r)
	if err != nil {
		return out, fmt.Errorf("adopt release %q in %s/%s: %w", r.Release, user, app, err)
	}
	return out, nil
}

// sessionUpdate sends the session of user and app the update name with
// arg and returns its answer.
func sessionUpdate[T any](ctx context.Context, c *Client, user, app, name string, arg any) (T, error) {
	var out T
	h, err := c.Temporal.UpdateWorkflow(ctx, temporalclient.UpdateWorkflowOptions{
		WorkflowID: names.SessionID(user, app), UpdateName: name,
		Args: []any{arg}, WaitForStage: temporalclient.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &out)
	}
	return out, err
}

// sessionFailure explains a failed open: when the session itself has ended
// (bad input fails it before its handlers exist), its own error says why
// better than the update's.
func (c *Client) sessionFailure(ctx context.Context, id string, updateErr error) error {
	desc, err := c.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil || desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return updateErr
	}
	if err := c.Temporal.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
		return err
	}
	return updateErr
}

// Move moves the session's user to region and returns the serving endpoint
// once it is ready there.
func (c *Client) Move(ctx context.Context, user, app, region string) (workflows.MoveResult, error) {
	res, err := sessionUpdate[workflows.MoveResult](ctx, c, user, app, names.MoveUpdate, region)
	if err != nil {
		return workflows.MoveResult{}, fmt.Errorf("move %s/%s to %s: %w", user, app, region, err)
	}
	return res, nil
}

// AskMove sends the Move update with id as its update id and returns once
// the session has taken the move up (or its validator refused it, which
// the error says); the handle tells the outcome. Sending the same id
// again asks for the same move.
func (c *Client) AskMove(ctx context.Context, user, app, id, region string) (temporalclient.WorkflowUpdateHandle, error) {
	h, err := c.Temporal.UpdateWorkflow(ctx, temporalclient.UpdateWorkflowOptions{
		WorkflowID: names.SessionID(user, app), UpdateID: id, UpdateName: names.MoveUpdate,
		Args: []any{region}, WaitForStage: temporalclient.WorkflowUpdateStageAccepted,
	})
	if err != nil {
		return nil, err
	}
	// A refused update comes back completed with the validator's error:
	// Get with a done context returns an outcome already known, and only
	// then.
	probe, stop := context.WithCancel(ctx)
	stop()
	var appErr *temporal.ApplicationError
	if err := h.Get(probe, nil); errors.As(err, &appErr) &&
		(appErr.Type() == workflows.ErrTypeUnknownRegion || appErr.Type() == workflows.ErrTypeMoveRefused) {
		return nil, err
	}
	return h, nil
}

// Exit ends the session and returns its report once everything is
// destroyed. Asked again after the session ended, it returns the same
// report.
func (c *Client) Exit(ctx context.Context, user, app string) (workflows.SessionState, error) {
	id := names.SessionID(user, app)
	var notFound *serviceerror.NotFound
	if err := c.Temporal.SignalWorkflow(ctx, id, "", names.ExitSignal, nil); err != nil && !errors.As(err, &notFound) {
		return workflows.SessionState{}, fmt.Errorf("exit %s: %w", id, err)
	}
	var report workflows.SessionState
	if err := c.Temporal.GetWorkflow(ctx, id, "").Get(ctx, &report); err != nil {
		return workflows.SessionState{}, fmt.Errorf("exit %s: %w", id, err)
	}
	return report, nil
}

// Session queries a running session's state.
func (c *Client) Session(ctx context.Context, user, app string) (workflows.SessionState, error) {
	id := names.SessionID(user, app)
	st, err := query[workflows.SessionState](ctx, c, id)
	if err != nil {
		return st, fmt.Errorf("state of %s: %w", id, err)
	}
	return st, nil
}

// SessionRecord is a session's state while it runs and its report once it
// ended (ended tells which): where its move records are, from any process,
// after any restart.
func (c *Client) SessionRecord(ctx context.Context, user, app string) (st workflows.SessionState, ended bool, err error) {
	id := names.SessionID(user, app)
	desc, err := c.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return st, false, err
	}
	if desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		st, err = query[workflows.SessionState](ctx, c, id)
		return st, false, err
	}
	return st, true, c.Temporal.GetWorkflow(ctx, id, "").Get(ctx, &st)
}

// SessionSummary is one line of the session list.
type SessionSummary struct {
	ID     string `json:"id"`
	User   string `json:"user"`
	App    string `json:"app"`
	Cloud  string `json:"cloud"`
	Status string `json:"status"`
}

// Sessions returns sessions from visibility, newest first; all=false keeps
// the running ones.
func (c *Client) Sessions(ctx context.Context, all bool) ([]SessionSummary, error) {
	query := fmt.Sprintf("%s = '%s'", names.KindKey.GetName(), names.KindSession)
	if !all {
		query += " AND ExecutionStatus = 'Running'"
	}
	var out []SessionSummary
	var token []byte
	for {
		resp, err := c.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			s := SessionSummary{ID: e.GetExecution().GetWorkflowId(), Status: e.GetStatus().String()}
			fields := e.GetSearchAttributes().GetIndexedFields()
			for key, dst := range map[string]*string{names.UserKey.GetName(): &s.User, names.AppKey.GetName(): &s.App, names.CloudKey.GetName(): &s.Cloud} {
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
