package client

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	temporalclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/workflows"
)

// StartInstall starts the install workflow, or finds the one already
// running for the same (tenant, vm, package).
func (c *Client) StartInstall(ctx context.Context, in workflows.InstallInput) (Run, error) {
	if err := workflows.CheckInstall(in); err != nil {
		return nil, err
	}
	return c.Temporal.ExecuteWorkflow(ctx, temporalclient.StartWorkflowOptions{
		ID:                       names.InstallID(in.Tenant, in.VM, in.Package.Name),
		TaskQueue:                names.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StaticSummary:            fmt.Sprintf("%s installs %s (tenant network %s)", in.VM, in.Package, in.Tenant),
		StaticDetails:            fmt.Sprintf("VM **%s** at %s · package **%s** · network node %s", in.VM, in.Address, in.Package, in.Node),
		TypedSearchAttributes:    temporal.NewSearchAttributes(names.KindKey.ValueSet(names.KindInstall)),
	}, workflows.InstallSoftware, in)
}

// InstallStatus reads an install: live while it runs, its result once it
// has ended; a failure that carries no state is reported as phase failed.
func (c *Client) InstallStatus(ctx context.Context, id string) (workflows.InstallState, error) {
	st, err := Read[workflows.InstallState](ctx, c, id)
	var failed *temporal.WorkflowExecutionError
	switch {
	case err == nil, st.ID != "":
		return st, nil
	case errors.As(err, &failed):
		return workflows.InstallState{ID: id, Phase: "failed", Error: err.Error()}, nil
	}
	return st, err
}

// Signaler delivers a VM's report to the workflow that instructed it,
// after telling the tenant's inventory what the VM has now.
func (c *Client) Signaler() repo.ReportFunc {
	return func(ctx context.Context, in repo.Instruction, r repo.Report) error {
		if r.Installed != nil {
			if err := c.recordInstalled(ctx, in.Tenant, workflows.VMInstalled{Address: r.Client, Installed: r.Installed}); err != nil {
				return err
			}
		}
		err := c.Temporal.SignalWorkflow(ctx, in.WorkflowID, "", names.ReportSignal, r)
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			return fmt.Errorf("%s: %w", in.WorkflowID, repo.ErrWorkflowGone)
		}
		return err
	}
}
