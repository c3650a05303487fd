// Package workflows holds drift's deterministic workflow code: one file per
// workflow and its types. Side effects happen only in activities.
package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/api/enums/v1"

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
	sessionActs  *activities.Sessions
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
	// taskOptions: the component's own tools (upgrade check, db sync, online
	// migrations, contract) may run long and heartbeat; a worker lost
	// mid-task is noticed and the task waited for again by name (its exit
	// code is an answer, not an error).
	taskOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    15 * time.Second,
		RetryPolicy:         retry(5, 30*time.Second, nonRetryable...),
	}
	// routeOptions: a switch of the stable endpoint must eventually happen,
	// like a destroy (a cloud that is down is waited for).
	routeOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         retry(0, time.Minute, nonRetryable...),
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
// bad input and unknown packages are final; a node whose worker does not
// take the activity within nodeWait fails it (NodeUnavailable).
var installOptions = workflow.ActivityOptions{
	StartToCloseTimeout:    time.Minute,
	ScheduleToStartTimeout: nodeWait,
	RetryPolicy:            retry(10, 30*time.Second, activities.ErrTypeInvalidInstall, activities.ErrTypeUnknownPackage),
}

// nodeWait bounds how long a network node's activity waits for its worker.
const nodeWait = 2 * time.Minute

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

// ErrTypeNoWorker is the error of an activity no worker took from its
// cloud's queue within the schedule-to-start bound: nothing polls that queue.
const ErrTypeNoWorker = "NoWorker"

// portServiceScheduleToStart bounds the wait for the worker of the cloud a
// ported service is deployed on: a port has no bound of the user's.
const portServiceScheduleToStart = 2 * time.Minute

// DefaultScheduleToStart bounds how long an activity waits on a cloud's
// queue for a worker to take it, unless the job's input says otherwise.
const DefaultScheduleToStart = 5 * time.Minute

type scheduleToStartKey struct{}

// withScheduleToStart sets the bound of every activity the workflow puts on
// a cloud's queue (0: DefaultScheduleToStart).
func withScheduleToStart(ctx workflow.Context, bound time.Duration) workflow.Context {
	if bound <= 0 {
		bound = DefaultScheduleToStart
	}
	return workflow.WithValue(ctx, scheduleToStartKey{}, bound)
}

func scheduleToStart(ctx workflow.Context) time.Duration {
	if d, ok := ctx.Value(scheduleToStartKey{}).(time.Duration); ok {
		return d
	}
	return DefaultScheduleToStart
}

// executeOnCloud runs activity on cloud's queue with opts and a UI summary.
// The activity waits at most the schedule-to-start bound for a worker;
// then its Future fails with ErrTypeNoWorker naming the cloud and queue.
func executeOnCloud(ctx workflow.Context, opts workflow.ActivityOptions, cloud, summary string, activity any, args ...any) workflow.Future {
	opts.TaskQueue = names.CloudQueue(cloud)
	opts.Summary = summary
	opts.ScheduleToStartTimeout = scheduleToStart(ctx)
	f := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), activity, args...)
	return cloudFuture{Future: f, cloud: cloud, bound: opts.ScheduleToStartTimeout}
}

// cloudFuture is an activity on a cloud's queue (never put in a Selector:
// Selectors take only the SDK's own futures).
type cloudFuture struct {
	workflow.Future
	cloud string
	bound time.Duration
}

func (f cloudFuture) Get(ctx workflow.Context, valuePtr any) error {
	return noWorker(f.Future.Get(ctx, valuePtr), f.cloud, f.bound)
}

// noWorker turns a schedule-to-start timeout into an error naming the
// cloud, its queue and what to run; other errors pass unchanged.
func noWorker(err error, cloud string, bound time.Duration) error {
	var timeout *temporal.TimeoutError
	if !errors.As(err, &timeout) || timeout.TimeoutType() != enums.TIMEOUT_TYPE_SCHEDULE_TO_START {
		return err
	}
	what := "an activity"
	var actErr *temporal.ActivityError
	if errors.As(err, &actErr) {
		what = actErr.ActivityType().GetName()
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
		"no worker polls %s: %s for cloud %s waited %s for a worker; start one with `drift-worker --clouds %s` next to that cloud",
		names.CloudQueue(cloud), what, cloud, bound, cloud), ErrTypeNoWorker, nil)
}

// onNode schedules install activities on a network node's queue with a UI
// summary.
func onNode(ctx workflow.Context, node, summary string) workflow.Context {
	opts := installOptions
	opts.TaskQueue = names.NodeQueue(node)
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
// cloud whose worker does not poll is noticed within
// portServiceScheduleToStart.
var portDeployOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 5 * time.Minute,
	HeartbeatTimeout:    30 * time.Second,
	RetryPolicy:         retry(3, 30*time.Second, slices.Concat(nonRetryable, []string{activities.ErrTypeWrongPlatform})...),
}
