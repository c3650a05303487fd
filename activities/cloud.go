// Package activities holds drift's side effects. Each struct holds the
// clients for one external system; workflows call its methods as activities.
package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/runtime"
)

// Cloud acts on one cloud through its runtime. A worker registers one Cloud
// on each `drift.cloud.<id>` queue it polls, so an activity scheduled on a
// cloud's queue always runs next to that cloud.
type Cloud struct {
	ID      string
	Runtime runtime.Runtime
}

// DeployRequest names the instance and what it runs.
type DeployRequest struct {
	Name string
	Spec runtime.Spec
}

// heartbeatEvery keeps long deploys visibly alive; workflows set a
// HeartbeatTimeout of a few times this.
const heartbeatEvery = 5 * time.Second

// DeployInstance deploys (or finds) the instance and returns its endpoint
// once it is ready.
func (c *Cloud) DeployInstance(ctx context.Context, req DeployRequest) (runtime.Endpoint, error) {
	stop := heartbeat(ctx)
	defer stop()
	ep, err := c.Runtime.Deploy(ctx, req.Name, req.Spec)
	return ep, classify(err)
}

// DestroyInstance removes the instance; a missing one is success.
func (c *Cloud) DestroyInstance(ctx context.Context, name string) error {
	stop := heartbeat(ctx)
	defer stop()
	return classify(c.Runtime.Destroy(ctx, name))
}

// InstanceStatus reports one instance.
func (c *Cloud) InstanceStatus(ctx context.Context, name string) (runtime.Status, error) {
	st, err := c.Runtime.Status(ctx, name)
	return st, classify(err)
}

// ListInstances lists drift-owned instances matching selector.
func (c *Cloud) ListInstances(ctx context.Context, selector map[string]string) ([]runtime.Instance, error) {
	in, err := c.Runtime.List(ctx, selector)
	return in, classify(err)
}

// ErrTypeInvalidSpec is the application error type of bad input, which no
// retry can fix.
const ErrTypeInvalidSpec = "InvalidSpec"

// classify turns bad-input errors into non-retryable application errors.
func classify(err error) error {
	if err != nil && errors.Is(err, runtime.ErrInvalid) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidSpec, err)
	}
	return err
}

// heartbeat records a heartbeat now and then until stop is called.
func heartbeat(ctx context.Context) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			activity.RecordHeartbeat(ctx)
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done) }
}
