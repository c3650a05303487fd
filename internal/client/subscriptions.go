package client

import (
	"context"
	"errors"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	temporalclient "go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/workflows"
)

// Subscribe adds a subscription to the mobility API's subscriptions
// workflow, starting it on first use. req.ID is also the update's id:
// asking again with it makes no second subscription.
func (c *Client) Subscribe(ctx context.Context, req workflows.SubscribeRequest) (workflows.SubscriptionInfo, error) {
	opts := activities.SubscriptionsStart()
	opts.WorkflowIDConflictPolicy = enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING
	start := c.Temporal.NewWithStartWorkflowOperation(opts, names.SubscriptionsWorkflow, activities.SubscriptionsInput{})
	h, err := c.Temporal.UpdateWithStartWorkflow(ctx, temporalclient.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: temporalclient.UpdateWorkflowOptions{
			UpdateID: req.ID, UpdateName: names.SubscribeUpdate, Args: []any{req},
			WaitForStage: temporalclient.WorkflowUpdateStageCompleted,
		},
	})
	var out workflows.SubscriptionInfo
	if err == nil {
		err = h.Get(ctx, &out)
	}
	return out, err
}

// Resubscribe replaces a subscription of req.Owner, resuming it when it
// was suspended.
func (c *Client) Resubscribe(ctx context.Context, req workflows.SubscribeRequest) (workflows.SubscriptionInfo, error) {
	var out workflows.SubscriptionInfo
	return out, c.subscriptionsUpdate(ctx, names.ResubscribeUpdate, req, &out)
}

// Unsubscribe removes a subscription of owner.
func (c *Client) Unsubscribe(ctx context.Context, id, owner string) error {
	return c.subscriptionsUpdate(ctx, names.UnsubscribeUpdate, workflows.UnsubscribeRequest{ID: id, Owner: owner}, nil)
}

func (c *Client) subscriptionsUpdate(ctx context.Context, name string, arg, out any) error {
	h, err := c.Temporal.UpdateWorkflow(ctx, temporalclient.UpdateWorkflowOptions{
		WorkflowID: names.SubscriptionsID, UpdateName: name, Args: []any{arg},
		WaitForStage: temporalclient.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return err
	}
	return h.Get(ctx, out)
}

// Subscriptions lists every subscription with its delivery state; none
// before the first.
func (c *Client) Subscriptions(ctx context.Context) ([]workflows.SubscriptionInfo, error) {
	out, err := query[[]workflows.SubscriptionInfo](ctx, c, names.SubscriptionsID)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return []workflows.SubscriptionInfo{}, nil
	}
	return out, err
}
