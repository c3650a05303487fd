// Package workflows holds drift's deterministic workflow code: one file per
// workflow and its types. Side effects happen only in activities.
package workflows

import (
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
)

// Activities are referenced through nil struct pointers: only their method
// names matter to Temporal.
var (
	cloudActs    *activities.Cloud
	imageActs    *activities.Images
	modelActs    *activities.Models
	notifyActs   *activities.Notifier
	upgradeActs  *activities.Upgrade
	pipelineActs *activities.Pipeline
	portActs     *activities.Port
	installActs  *activities.Install
)

// nonRetryable lists the error types no retry can fix. (A repository that
// does not exist fails as non-retryable UnreachableRepo; one that does not
// answer is retried under the same type, so that type is not listed.)
var nonRetryable = []string{
	activities.ErrTypeInvalidSpec, activities.ErrTypeAtCapacity,
	activities.ErrTypeInvalidImage, activities.ErrTypeUnknownImage,
	activities.ErrTypeUnknownRef, activities.ErrTypeBuildFailed,
	activities.ErrTypeTestFailed, activities.ErrTypeNoArtifact, activities.ErrTypeNotServing,
}

// retry is every retry policy drift uses: from a second, doubling up to
// maxInterval, at most attempts tries (0: until it works), never retrying
// the final error types.
func retry(attempts int32, maxInterval time.Duration, final ...string) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        maxInterval,
		MaximumAttempts:        attempts,
		NonRetryableErrorTypes: final,
	}
}

// Option sets of cloud activities.
var (
	// deployOptions: deploys heartbeat; a cancelled deploy is waited for so a
	// destroy of the same instance never overlaps it.
	deployOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		WaitForCancellation: true,
		RetryPolicy:         retry(5, 30*time.Second, nonRetryable...),
	}
	// destroyOptions: a destroy must eventually happen, so it retries
	// without limit (a cloud that is down is waited for).
	destroyOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         retry(0, time.Minute),
	}
	// lookupOptions: short reads (list instances, resolve an image).
	lookupOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         retry(10, 30*time.Second, nonRetryable...),
	}
)

// Option sets of the mobility API's notifications.
var (
	// publishOptions: a session's events to the subscriptions workflow. It
	// retries for a while; then the session keeps the events and tries again
	// after publishPause.
	publishOptions = workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 5 * time.Minute,
		RetryPolicy:            retry(0, 30*time.Second),
	}
	// deliverOptions: a batch of notifications to one callback (an attempt
	// stops early rather than run out of time). A callback that does not
	// answer is tried again with backoff for a few minutes, then its
	// subscription is suspended; an answer no retry can fix suspends it at
	// once.
	deliverOptions = workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: 3 * time.Minute,
		RetryPolicy:            retry(6, 30*time.Second, activities.ErrTypeCallbackRefused),
	}
)

// publishPause is how long a session waits before publishing events again
// after publishOptions gave up.
const publishPause = time.Minute

// Option sets of component upgrades: an attempt's env gets one retry (a
// release that does not start is the attempt's answer, not a hiccup); the
// driver probe is expected to fail and is never retried.
var (
	envDeployOptions = withAttempts(deployOptions, 2)
	probeOptions     = withAttempts(deployOptions, 1)
	envVerifyOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		HeartbeatTimeout:    15 * time.Second,
		RetryPolicy:         retry(3, 0, nonRetryable...),
	}
)

// Pipeline step option sets. Steps heartbeat every few seconds, so a
// worker that dies mid-step is noticed within HeartbeatTimeout and the step
// runs again on another (steps are idempotent by run).
var (
	// cloneOptions: a network fetch; missing repos and refs fail at once.
	cloneOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    20 * time.Second,
		RetryPolicy:         pipelineRetry(5),
	}
	// quickOptions: package, image build, registry lookups, cleanup.
	quickOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy:         pipelineRetry(5),
	}
	// pushOptions: a registry that hiccups is retried for a while.
	pushOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    20 * time.Second,
		RetryPolicy:         pipelineRetry(10),
	}
	// findBuildOptions: one registry lookup, run as a local activity.
	findBuildOptions = workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         pipelineRetry(5),
	}
	// targetVerifyOptions: the activity itself keeps asking until its deadline.
	targetVerifyOptions = workflow.ActivityOptions{
		HeartbeatTimeout: 20 * time.Second,
		RetryPolicy:      pipelineRetry(2),
	}
	// rollbackOptions: putting a target back must eventually happen.
	rollbackOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		WaitForCancellation: true,
		RetryPolicy:         retry(0, time.Minute, nonRetryable...),
	}
)

// portOptions: builds and test runs take minutes and heartbeat; a bad
// input or a failed build is not retried.
var portOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 30 * time.Minute,
	HeartbeatTimeout:    time.Minute,
	RetryPolicy: retry(3, 30*time.Second,
		activities.ErrTypeNotGoModule, activities.ErrTypeUnknownArch, activities.ErrTypeBuildFailed),
}

// installOptions: the node and the repository are reached over the network;
// bad input and unknown packages are final.
var installOptions = workflow.ActivityOptions{
	StartToCloseTimeout: time.Minute,
	RetryPolicy:         retry(10, 30*time.Second, activities.ErrTypeInvalidInstall, activities.ErrTypeUnknownPackage),
}

func withAttempts(opts workflow.ActivityOptions, n int32) workflow.ActivityOptions {
	p := *opts.RetryPolicy
	p.MaximumAttempts = n
	opts.RetryPolicy = &p
	opts.HeartbeatTimeout = 15 * time.Second
	return opts
}

// buildOptions: build and test commands, heartbeating; a failing command
// is not retried (its error is non-retryable), a lost worker is.
func buildOptions(timeout time.Duration) workflow.ActivityOptions {
	if timeout == 0 {
		timeout = 20 * time.Minute
	}
	return workflow.ActivityOptions{StartToCloseTimeout: timeout, HeartbeatTimeout: 20 * time.Second, RetryPolicy: pipelineRetry(3)}
}

func pipelineRetry(attempts int32) *temporal.RetryPolicy {
	return retry(attempts, 30*time.Second, nonRetryable...)
}

// onCloud schedules activities of opts on cloud's queue with a UI summary.
func onCloud(ctx workflow.Context, opts workflow.ActivityOptions, cloud, summary string) workflow.Context {
	opts.TaskQueue = names.CloudQueue(cloud)
	opts.Summary = summary
	return workflow.WithActivityOptions(ctx, opts)
}

// central schedules activities of opts on the central queue with a UI summary.
func central(ctx workflow.Context, opts workflow.ActivityOptions, summary string) workflow.Context {
	opts.TaskQueue = names.TaskQueue
	opts.Summary = summary
	return workflow.WithActivityOptions(ctx, opts)
}

// portDeployOptions: a ported service deployed on a cloud of its arch; a
// cloud whose worker does not poll is noticed within ScheduleToStartTimeout.
var portDeployOptions = workflow.ActivityOptions{
	StartToCloseTimeout:    5 * time.Minute,
	ScheduleToStartTimeout: 2 * time.Minute,
	HeartbeatTimeout:       30 * time.Second,
	RetryPolicy:            retry(3, 30*time.Second, slices.Concat(nonRetryable, []string{activities.ErrTypeWrongPlatform})...),
}
