package client

import (
	"context"
	"fmt"

	"go.temporal.io/api/enums/v1"

	"github.com/edgedrift/drift/internal/names"
)

// Stop ends a running job: cancel asks the workflow to stop (it cleans up
// as it does on failure: a session destroys its instances, a pipeline rolls
// its targets back), terminate ends it at once and runs nothing more.
func (c *Client) Stop(ctx context.Context, id string, terminate bool, reason string) error {
	if terminate {
		return c.Temporal.TerminateWorkflow(ctx, id, "", reason)
	}
	return c.Temporal.CancelWorkflow(ctx, id, "")
}

// Unpolled names the queues among drift (workflows) and the clouds' queues
// (activities) that no worker has polled lately: jobs that need them wait
// there until their schedule-to-start bound fails them.
func (c *Client) Unpolled(ctx context.Context, clouds []string) ([]string, error) {
	queues := map[string]enums.TaskQueueType{names.TaskQueue: enums.TASK_QUEUE_TYPE_WORKFLOW}
	order := []string{names.TaskQueue}
	for _, cloud := range clouds {
		q := names.CloudQueue(cloud)
		if _, dup := queues[q]; !dup {
			queues[q] = enums.TASK_QUEUE_TYPE_ACTIVITY
			order = append(order, q)
		}
	}
	var unpolled []string
	for _, q := range order {
		resp, err := c.Temporal.DescribeTaskQueue(ctx, q, queues[q])
		if err != nil {
			return nil, fmt.Errorf("describe task queue %s: %w", q, err)
		}
		if len(resp.GetPollers()) == 0 {
			unpolled = append(unpolled, q)
		}
	}
	return unpolled, nil
}
