// Package workflows holds drift's deterministic workflow code: one file per
// workflow and its types. Side effects happen only in activities.
package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/config"
)

// Activities are referenced through nil struct pointers: only their method
// names matter to Temporal.
var (
	cloudActs   *activities.Cloud
	imageActs   *activities.Images
	modelActs   *activities.Models
	upgradeActs *activities.Upgrade
)

// nonRetryable lists the error types no retry can fix.
var nonRetryable = []string{
	activities.ErrTypeInvalidSpec, activities.ErrTypeAtCapacity,
	activities.ErrTypeInvalidImage, activities.ErrTypeUnknownImage,
}

// Activity option sets.
var (
	// deployOptions: deploys heartbeat; a cancelled deploy is waited for so a
	// destroy of the same instance never overlaps it.
	deployOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
	// destroyOptions: a destroy must eventually happen, so it retries
	// without limit (a cloud that is down is waited for).
	destroyOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
		},
	}
	// lookupOptions: short reads (list instances, resolve an image).
	lookupOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			MaximumAttempts:        10,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
)

// Option sets of component upgrades: an attempt's env gets one retry (a
// release that does not start is the attempt's answer, not a hiccup); the
// driver probe is expected to fail and is never retried.
var (
	envDeployOptions = withAttempts(deployOptions, 2)
	probeOptions     = withAttempts(deployOptions, 1)
	verifyOptions    = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		HeartbeatTimeout:    15 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumAttempts:        3,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
)

func withAttempts(opts workflow.ActivityOptions, n int32) workflow.ActivityOptions {
	p := *opts.RetryPolicy
	p.MaximumAttempts = n
	opts.RetryPolicy = &p
	opts.HeartbeatTimeout = 15 * time.Second
	return opts
}

// onCloud schedules activities of opts on cloud's queue with a UI summary.
func onCloud(ctx workflow.Context, opts workflow.ActivityOptions, cloud, summary string) workflow.Context {
	opts.TaskQueue = config.CloudQueue(cloud)
	opts.Summary = summary
	return workflow.WithActivityOptions(ctx, opts)
}

// central schedules activities of opts on the central queue with a UI summary.
func central(ctx workflow.Context, opts workflow.ActivityOptions, summary string) workflow.Context {
	opts.TaskQueue = config.TaskQueue
	opts.Summary = summary
	return workflow.WithActivityOptions(ctx, opts)
}
