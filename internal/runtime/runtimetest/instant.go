// Package runtimetest holds what tests of runtimes and of their users
// share: Instant, an in-memory runtime.Runtime that runs nothing, and
// Conformance, the behaviour every runtime (Instant included) must have.
package runtimetest

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/edgedrift/drift/internal/runtime"
)

// KindInstant is the Kind of Instant. It is not a kind a topology can
// declare: tests and benchmarks pass Instant runtimes ready-made through
// workerhost.WorkerOptions.Runtimes.
const KindInstant = "instant"

// Instant is a runtime.Runtime whose Deploy and Destroy return at once: it
// keeps instance records in memory and runs nothing. With it a session's
// cost is the orchestration alone (Temporal round trips, workflow code,
// activities), not a container's start-up, and workflow tests run the real
// cloud activities without an engine.
//
// It keeps the contract the real runtimes keep: names and specs are
// validated, Deploy is idempotent by name, instances carry drift's labels
// and List filters by them, Destroy of a missing instance is no error.
// Endpoints do not serve.
type Instant struct {
	// OnDeploy, when set, runs in every Deploy of a valid spec before
	// anything is recorded; an error it returns is the Deploy's, and the
	// instance is then left as it was. Tests use it to fail the deploys of
	// one cloud (one Instant) or of one instance name, or to hold a deploy
	// until they release it. Set it before the runtime is used.
	OnDeploy func(ctx context.Context, name string, spec runtime.Spec) error
	// OnRun, when set, is how every one-shot task of a valid spec ends.
	OnRun func(ctx context.Context, name string, spec runtime.Spec) (runtime.TaskResult, error)

	cloud string

	mu        sync.Mutex
	instances map[string]runtime.Instance
	specs     map[string]runtime.Spec
	volumes   map[string]runtime.Volume
	routes    map[string]runtime.Route
	tasks     []string

	deploys, destroys atomic.Int64
}

var _ runtime.Runtime = (*Instant)(nil)

// NewInstant returns an empty instant runtime for cloud.
func NewInstant(cloud string) *Instant {
	return &Instant{cloud: cloud, instances: map[string]runtime.Instance{}, specs: map[string]runtime.Spec{}, volumes: map[string]runtime.Volume{}, routes: map[string]runtime.Route{}}
}

// Kind is KindInstant.
func (r *Instant) Kind() string { return KindInstant }

// Deploy records the instance and returns its endpoint,
// instant://<cloud>/<name>, which nothing answers; a project's state
// endpoint is instant://<cloud>/<name>/<service><path>.
func (r *Instant) Deploy(ctx context.Context, name string, spec runtime.Spec) (runtime.Endpoint, error) {
	labels, err := runtime.ValidateSpec(name, r.cloud, spec)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	if err := ctx.Err(); err != nil {
		return runtime.Endpoint{}, err
	}
	if r.OnDeploy != nil {
		if err := r.OnDeploy(ctx, name, spec); err != nil {
			return runtime.Endpoint{}, err
		}
	}
	serve := spec.ServeService()
	ep := runtime.Endpoint{URL: fmt.Sprintf("instant://%s/%s", r.cloud, name), Host: r.cloud, Port: serve.Port}
	if st := spec.State; st != nil {
		ep = runtime.WithState(ep, spec, runtime.Endpoint{URL: ep.URL + "/" + st.Service})
	}
	r.mount(spec.Volumes)
	r.mu.Lock()
	r.instances[name] = runtime.Instance{Name: name, Image: serve.Image, Labels: labels, Ready: true, Endpoint: ep}
	r.specs[name] = spec
	r.mu.Unlock()
	r.deploys.Add(1)
	return ep, nil
}

// Status reports a recorded instance.
func (r *Instant) Status(ctx context.Context, name string) (runtime.Status, error) {
	if err := runtime.ValidateName(name); err != nil {
		return runtime.Status{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	in, ok := r.instances[name]
	if !ok {
		return runtime.Status{}, nil
	}
	st := runtime.Status{Exists: true, Ready: in.Ready, Image: in.Image, Endpoint: in.Endpoint}
	for _, svc := range r.specs[name].Services {
		st.Services = append(st.Services, runtime.ServiceStatus{Name: svc.Name, Image: svc.Image, Ready: in.Ready})
	}
	return st, nil
}

// Destroy forgets the instance; a missing one is no error.
func (r *Instant) Destroy(ctx context.Context, name string) error {
	if err := runtime.ValidateName(name); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.instances, name)
	delete(r.specs, name)
	r.mu.Unlock()
	r.destroys.Add(1)
	return nil
}

// List returns the recorded instances whose labels match selector, sorted
// by name.
func (r *Instant) List(ctx context.Context, selector map[string]string) ([]runtime.Instance, error) {
	sel := runtime.Selector(selector)
	r.mu.Lock()
	out := []runtime.Instance{}
	for _, in := range r.instances {
		if runtime.Matches(in.Labels, sel) {
			in.Labels = maps.Clone(in.Labels)
			out = append(out, in)
		}
	}
	r.mu.Unlock()
	runtime.SortInstances(out)
	return out, nil
}

// Len is the number of recorded instances.
func (r *Instant) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.instances)
}

// Counts returns how many Deploy and Destroy calls succeeded.
func (r *Instant) Counts() (deploys, destroys int64) {
	return r.deploys.Load(), r.destroys.Load()
}
