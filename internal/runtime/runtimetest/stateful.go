package runtimetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/edgedrift/drift/internal/runtime"
)

var (
	_ runtime.Stateful = (*Instant)(nil)
	_ runtime.Router   = (*Instant)(nil)
)

// Run records the task and answers with OnRun's result (exit 0 without
// it); it mounts the spec's volumes like Deploy does.
func (r *Instant) Run(ctx context.Context, name string, spec runtime.Spec) (runtime.TaskResult, error) {
	if _, err := runtime.ValidateTask(name, r.cloud, spec); err != nil {
		return runtime.TaskResult{}, err
	}
	r.mount(spec.Volumes)
	r.mu.Lock()
	r.tasks = append(r.tasks, name+": "+strings.Join(spec.Command, " "))
	r.mu.Unlock()
	if r.OnRun != nil {
		return r.OnRun(ctx, name, spec)
	}
	return runtime.TaskResult{}, nil
}

// Tasks lists the tasks run so far, "name: command", in order.
func (r *Instant) Tasks() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.tasks)
}

func (r *Instant) mount(vs []runtime.Volume) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range vs {
		if _, ok := r.volumes[v.Name]; !ok {
			r.volumes[v.Name] = runtime.Volume{Name: v.Name, Labels: runtime.VolumeLabels(v, r.cloud)}
		}
	}
}

// Stop marks the instance stopped: listed, not ready.
func (r *Instant) Stop(ctx context.Context, name string) error {
	if err := runtime.ValidateName(name); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if in, ok := r.instances[name]; ok {
		in.Ready = false
		r.instances[name] = in
	}
	return nil
}

// Start marks a kept instance ready again.
func (r *Instant) Start(ctx context.Context, name string) (runtime.Endpoint, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in, ok := r.instances[name]
	if !ok {
		return runtime.Endpoint{}, fmt.Errorf("start %s: no such instance", name)
	}
	in.Ready = true
	r.instances[name] = in
	return in.Endpoint, nil
}

// Volumes lists the volumes mounted so far and not removed.
func (r *Instant) Volumes(ctx context.Context, selector map[string]string) ([]runtime.Volume, error) {
	sel := runtime.Selector(selector)
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []runtime.Volume{}
	for _, v := range r.volumes {
		if runtime.Matches(v.Labels, sel) {
			out = append(out, runtime.Volume{Name: v.Name, Labels: maps.Clone(v.Labels)})
		}
	}
	slices.SortFunc(out, func(a, b runtime.Volume) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// RemoveVolume forgets a volume.
func (r *Instant) RemoveVolume(ctx context.Context, name string) error {
	r.mu.Lock()
	delete(r.volumes, name)
	r.mu.Unlock()
	return nil
}

// Route points endpoint name at an existing instance; its endpoint is
// instant://<cloud>/endpoint/<name>.
func (r *Instant) Route(ctx context.Context, name, instance string, labels map[string]string) (runtime.Route, error) {
	if err := runtime.ValidateName(name); err != nil {
		return runtime.Route{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.instances[instance]; !ok {
		return runtime.Route{}, fmt.Errorf("%w: route %s: no instance %s", runtime.ErrInvalid, name, instance)
	}
	l := runtime.OwnedLabels(name, labels)
	delete(l, runtime.LabelInstance)
	l[runtime.LabelEndpoint], l[runtime.LabelCloud] = name, runtime.LabelValue(r.cloud)
	rt := runtime.Route{Name: name, Instance: instance, Labels: l,
		Endpoint: runtime.Endpoint{URL: fmt.Sprintf("instant://%s/endpoint/%s", r.cloud, name), Host: r.cloud, Port: 80}}
	r.routes[name] = rt
	return rt, nil
}

// Routes lists the endpoints whose labels match selector.
func (r *Instant) Routes(ctx context.Context, selector map[string]string) ([]runtime.Route, error) {
	sel := runtime.Selector(selector)
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []runtime.Route{}
	for _, rt := range r.routes {
		if runtime.Matches(rt.Labels, sel) {
			out = append(out, rt)
		}
	}
	slices.SortFunc(out, func(a, b runtime.Route) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Unroute forgets an endpoint.
func (r *Instant) Unroute(ctx context.Context, name string) error {
	r.mu.Lock()
	delete(r.routes, name)
	r.mu.Unlock()
	return nil
}
