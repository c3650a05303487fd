package client

import (
	"context"
	"fmt"
	"strings"

	temporalclient "go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/workflows"
)

// StartUpgrade starts upgrading a component on a cloud.
func (c *Client) StartUpgrade(ctx context.Context, in workflows.UpgradeInput) (Run, error) {
	return c.Temporal.ExecuteWorkflow(ctx, temporalclient.StartWorkflowOptions{
		ID:            names.UpgradeID(in.Cloud, in.Component.Name),
		TaskQueue:     names.TaskQueue,
		StaticSummary: fmt.Sprintf("upgrade %s on %s from %s (%s policy)", in.Component.Name, in.Cloud, in.Component.Version, in.Policy),
	}, workflows.ComponentUpgrade, in)
}

// UpgradeProgress reads an upgrade's progress: live while it runs, its
// report (also a failed one's, with the error) once it has ended.
func (c *Client) UpgradeProgress(ctx context.Context, cloud, component string) (workflows.UpgradeProgress, error) {
	return Read[workflows.UpgradeProgress](ctx, c, names.UpgradeID(cloud, component))
}

// PromoteUpgrade lets the switch held at an upgrade's promotion gate go.
func (c *Client) PromoteUpgrade(ctx context.Context, cloud, component string, d workflows.Decision) (workflows.UpgradeProgress, error) {
	return c.decideUpgrade(ctx, cloud, component, names.PromoteUpdate, d)
}

// RollbackUpgrade switches an upgraded component back to the env it was
// upgraded from, within the rollback window; it returns once that env
// serves again.
func (c *Client) RollbackUpgrade(ctx context.Context, cloud, component string, d workflows.Decision) (workflows.UpgradeProgress, error) {
	return c.decideUpgrade(ctx, cloud, component, names.RollbackUpdate, d)
}

func (c *Client) decideUpgrade(ctx context.Context, cloud, component, update string, d workflows.Decision) (workflows.UpgradeProgress, error) {
	id := names.UpgradeID(cloud, component)
	h, err := c.Temporal.UpdateWorkflow(ctx, temporalclient.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: update, Args: []any{d}, WaitForStage: temporalclient.WorkflowUpdateStageCompleted,
	})
	var p workflows.UpgradeProgress
	if err == nil {
		err = h.Get(ctx, &p)
	}
	if err != nil {
		return p, fmt.Errorf("%s %s: %w", strings.ToLower(update), id, err)
	}
	return p, nil
}
