package client

import (
	"context"
	"fmt"

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
