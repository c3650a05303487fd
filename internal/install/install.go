// Package install is the client side of software installs: what the CLI,
// drift dev and tests call to start an install, read its status, and
// deliver a VM's report to its workflow.
package install

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/workflows"
)

// Start starts the install workflow, or finds the one already running
// for the same (tenant, vm, package).
func Start(ctx context.Context, c client.Client, in workflows.InstallInput) (client.WorkflowRun, error) {
	if err := workflows.CheckInstall(in); err != nil {
		return nil, err
	}
	id := workflows.InstallID(in.Tenant, in.VM, in.Package.Name)
	return c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                config.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StaticSummary:            fmt.Sprintf("%s installs %s (tenant network %s)", in.VM, in.Package, in.Tenant),
		StaticDetails:            fmt.Sprintf("VM **%s** at %s · package **%s** · network node %s", in.VM, in.Address, in.Package, in.Node),
		TypedSearchAttributes:    temporal.NewSearchAttributes(temporal.NewSearchAttributeKeyKeyword(config.AttrKind).ValueSet("install")),
	}, workflows.InstallSoftware, in)
}

// Status queries a running install, or returns the result of a finished one.
func Status(ctx context.Context, c client.Client, id string) (workflows.InstallState, error) {
	var st workflows.InstallState
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return st, err
	}
	if desc.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		err := c.GetWorkflow(ctx, id, "").Get(ctx, &st)
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.HasDetails() && appErr.Details(&st) == nil {
			return st, nil
		}
		if err != nil {
			return workflows.InstallState{ID: id, Phase: "failed", Error: err.Error()}, nil
		}
		return st, nil
	}
	v, err := c.QueryWorkflow(ctx, id, "", workflows.StatusQuery)
	if err == nil {
		err = v.Get(&st)
	}
	return st, err
}

// Signaler delivers a VM's report to the workflow that instructed it.
func Signaler(c client.Client) repo.ReportFunc {
	return func(ctx context.Context, in repo.Instruction, r repo.Report) error {
		err := c.SignalWorkflow(ctx, in.WorkflowID, "", workflows.ReportSignal, r)
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			return fmt.Errorf("%s: %w", in.WorkflowID, repo.ErrWorkflowGone)
		}
		return err
	}
}
