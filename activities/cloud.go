// Package activities holds drift's side effects. Each struct holds the
// clients for one external system; workflows call its methods as activities.
package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/release"
	"github.com/edgedrift/drift/internal/runtime"
)

// Cloud acts on one cloud through its runtime. A worker registers one Cloud
// on each `drift.cloud.<id>` queue it polls, so an activity scheduled on a
// cloud's queue always runs next to that cloud.
type Cloud struct {
	ID      string
	Runtime runtime.Runtime
	// Capacity is the most drift instances the cloud takes (0: unlimited).
	// Only pre-deploys are refused at capacity: serving always wins.
	Capacity int
	// Arch is the GOARCH the cloud runs (its topology arch; "" : whatever
	// its runtime's host runs, unchecked). Every deploy on a cloud with an
	// arch is refused unless the image has linux/<arch>, and the runtime
	// runs that platform of a multi-platform index.
	Arch string
	// Trust is the site's trust policy: with one, every deploy (pipeline,
	// session, upgrade, rollback) first verifies the image's signature and
	// provenance, and refuses with ErrTypeUntrustedImage. nil: no check.
	Trust *release.Policy

	mu      sync.Mutex
	pending map[string]bool // pre-deploys admitted but not finished
}

// DeployRequest names the instance and what it runs.
type DeployRequest struct {
	Name string
	Spec runtime.Spec
	// PreDeploy marks a warm instance for a user who may come: it is refused
	// with ErrTypeAtCapacity when the cloud is full.
	PreDeploy bool
}

// heartbeatEvery keeps long deploys visibly alive; workflows set a
// HeartbeatTimeout of a few times this.
const heartbeatEvery = 5 * time.Second

// DeployInstance deploys (or finds) the instance and returns its endpoint
// once it is ready.
func (c *Cloud) DeployInstance(ctx context.Context, req DeployRequest) (runtime.Endpoint, error) {
	stop := heartbeat(ctx)
	defer stop()
	for _, svc := range req.Spec.Project() {
		if err := checkTrust(ctx, c.Trust, c.ID, svc.Image); err != nil {
			return runtime.Endpoint{}, err
		}
		if c.Arch != "" {
			if err := checkPlatform(ctx, svc.Image, c.ID, c.Arch); err != nil {
				return runtime.Endpoint{}, err
			}
		}
	}
	if c.Arch != "" {
		req.Spec.Platform = "linux/" + c.Arch
	}
	if req.PreDeploy && c.Capacity > 0 {
		release, err := c.admit(ctx, req.Name)
		if err != nil {
			return runtime.Endpoint{}, err
		}
		defer release()
	}
	ep, err := c.Runtime.Deploy(ctx, req.Name, req.Spec)
	return ep, classify(err)
}

// admit reserves a place for a pre-deploy, counting the instances on the
// cloud and the pre-deploys admitted but not finished; an instance that
// already exists under this name takes no new place.
func (c *Cloud) admit(ctx context.Context, name string) (release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	existing, err := c.Runtime.List(ctx, nil)
	if err != nil {
		return nil, err
	}
	used := 0
	for _, in := range existing {
		if in.Name == name {
			return func() {}, nil
		}
		if !c.pending[in.Name] {
			used++
		}
	}
	used += len(c.pending)
	if used >= c.Capacity {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("cloud %s is at capacity (%d of %d instances)", c.ID, used, c.Capacity), ErrTypeAtCapacity, nil)
	}
	if c.pending == nil {
		c.pending = map[string]bool{}
	}
	c.pending[name] = true
	return func() {
		c.mu.Lock()
		delete(c.pending, name)
		c.mu.Unlock()
	}, nil
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

// Room is how many more instances the cloud takes (-1: no limit).
func (c *Cloud) Room(ctx context.Context) (int, error) {
	if c.Capacity <= 0 {
		return -1, nil
	}
	in, err := c.Runtime.List(ctx, nil)
	if err != nil {
		return 0, classify(err)
	}
	return max(0, c.Capacity-len(in)), nil
}

// Application error types drift's activities return; none is retried.
const (
	ErrTypeInvalidSpec   = "InvalidSpec"   // bad input no retry can fix
	ErrTypeAtCapacity    = "AtCapacity"    // a pre-deploy found its cloud full
	ErrTypeInvalidImage  = "InvalidImage"  // a malformed image reference
	ErrTypeUnknownImage  = "UnknownImage"  // no registry has the image
	ErrTypeWrongPlatform = "WrongPlatform" // the image has no build for the cloud's platform
	// ErrTypeRegistryUnauthorized: a registry refused drift's credentials
	// (or wanted some); the message names the registry and user.
	ErrTypeRegistryUnauthorized = "RegistryUnauthorized"
	// ErrTypeUntrustedImage: the image fails the site's trust policy (no
	// trusted signature, or a provenance the policy refuses).
	ErrTypeUntrustedImage = "UntrustedImage"
)

// registryError makes a refused login non-retryable: no retry fixes a password.
func registryError(err error) error {
	if errors.Is(err, image.ErrUnauthorized) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeRegistryUnauthorized, nil)
	}
	return err
}

// checkPlatform refuses an image the registry holds without linux/<arch>.
func checkPlatform(ctx context.Context, ref, cloud, arch string) error {
	platforms, err := image.Platforms(ctx, ref)
	if errors.Is(err, image.ErrNotFound) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeUnknownImage, err)
	}
	if err != nil {
		return registryError(err)
	}
	want := "linux/" + arch
	if !slices.Contains(platforms, want) {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("cloud %s runs %s, and %s has only %s", cloud, want, ref, strings.Join(platforms, ", ")), ErrTypeWrongPlatform, nil)
	}
	return nil
}

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
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}

// DestroyOwned destroys every drift-owned instance on the cloud matching
// selector, found by listing, and returns how many it destroyed. Sessions
// end with it so nothing survives that state may have missed.
func (c *Cloud) DestroyOwned(ctx context.Context, selector map[string]string) (int, error) {
	stop := heartbeat(ctx)
	defer stop()
	found, err := c.Runtime.List(ctx, selector)
	if err != nil {
		return 0, classify(err)
	}
	for _, in := range found {
		if err := c.Runtime.Destroy(ctx, in.Name); err != nil {
			return 0, classify(err)
		}
	}
	return len(found), nil
}
