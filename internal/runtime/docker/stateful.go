package docker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"

	"github.com/edgedrift/drift/internal/runtime"
)

var _ runtime.Stateful = (*Runtime)(nil)

// mountVolumes makes the named volumes an instance mounts (labelled, on
// first use) and adds their mounts to hc.
func (r *Runtime) mountVolumes(ctx context.Context, hc *container.HostConfig, vs []runtime.Volume) error {
	for _, v := range vs {
		got, err := r.cli.VolumeInspect(ctx, v.Name)
		switch {
		case cerrdefs.IsNotFound(err):
			_, err = r.cli.VolumeCreate(ctx, volume.CreateOptions{Name: v.Name, Labels: runtime.VolumeLabels(v, r.cloud)})
			if err != nil {
				return fmt.Errorf("create volume %s: %w", v.Name, err)
			}
		case err != nil:
			return fmt.Errorf("inspect volume %s: %w", v.Name, err)
		case runtime.Foreign("volume", got.Labels, r.cloud) != "":
			return fmt.Errorf("%w: volume %s is %s", runtime.ErrInvalid, v.Name, runtime.Foreign("volume", got.Labels, r.cloud))
		}
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Source: v.Name, Target: v.Path})
	}
	return nil
}

// Run runs a task as a container named name, waits for it to exit and
// removes it. A container of that name from an earlier try is waited for
// (its exit code stays with it).
func (r *Runtime) Run(ctx context.Context, name string, spec runtime.Spec) (runtime.TaskResult, error) {
	labels, err := runtime.ValidateTask(name, r.cloud, spec)
	if err != nil {
		return runtime.TaskResult{}, err
	}
	unlock, err := r.lock(ctx, name)
	if err != nil {
		return runtime.TaskResult{}, err
	}
	defer unlock()
	c, err := r.inspect(ctx, name)
	if err != nil {
		return runtime.TaskResult{}, err
	}
	id := ""
	switch {
	case c == nil:
		if id, err = r.createTask(ctx, name, spec, labels); err != nil {
			return runtime.TaskResult{}, fmt.Errorf("task %s: %w", name, err)
		}
	case r.foreign(c.Config.Labels) != "" || c.Config.Labels[runtime.LabelTask] != "true":
		return runtime.TaskResult{}, fmt.Errorf("task %s: the container name is taken by another container", name)
	default:
		id = c.ID
	}
	waitC, errC := r.cli.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	var res runtime.TaskResult
	select {
	case w := <-waitC:
		if w.Error != nil {
			return res, fmt.Errorf("task %s: %s", name, w.Error.Message)
		}
		res.ExitCode = int(w.StatusCode)
	case err := <-errC:
		return res, fmt.Errorf("task %s: wait: %w", name, err)
	}
	res.Output = r.tail(ctx, id, 50)
	if err := r.remove(ctx, id); err != nil {
		return res, err
	}
	return res, nil
}

func (r *Runtime) createTask(ctx context.Context, name string, spec runtime.Spec, labels map[string]string) (string, error) {
	if err := r.pull(ctx, spec.Image, spec.Platform); err != nil {
		return "", err
	}
	labels[LabelImage] = spec.Image
	cfg := &container.Config{Hostname: name, Image: spec.Image, Env: environ(spec.Project()[0]), Labels: labels, Entrypoint: spec.Command}
	hc := &container.HostConfig{}
	if err := r.mountVolumes(ctx, hc, spec.Volumes); err != nil {
		return "", err
	}
	resp, err := r.cli.ContainerCreate(ctx, cfg, hc, nil, platformOf(spec), name)
	if err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	if err := r.cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		r.remove(context.WithoutCancel(ctx), resp.ID)
		return "", fmt.Errorf("start container: %w", err)
	}
	return resp.ID, nil
}

// Stop stops the container and keeps it; it stays stopped across engine
// restarts (its restart policy is unless-stopped).
func (r *Runtime) Stop(ctx context.Context, name string) error {
	c, unlock, err := r.own(ctx, name)
	if err != nil || c == nil {
		return err
	}
	defer unlock()
	timeout := 10
	if err := r.cli.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return nil
}

// Start starts a kept container and waits until it answers.
func (r *Runtime) Start(ctx context.Context, name string) (runtime.Endpoint, error) {
	c, unlock, err := r.own(ctx, name)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	if c == nil {
		return runtime.Endpoint{}, fmt.Errorf("start %s: no such instance", name)
	}
	defer unlock()
	port, _ := strconv.Atoi(c.Config.Labels[LabelPort])
	if err := r.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return runtime.Endpoint{}, fmt.Errorf("start %s: %w", name, err)
	}
	return r.waitReady(ctx, c.ID, runtime.Service{Port: port, Health: c.Config.Labels[LabelHealth], Probe: c.Config.Labels[LabelProbe]})
}

// own locks name and returns its container when this runtime owns it (nil
// when there is none, and then it is already unlocked).
func (r *Runtime) own(ctx context.Context, name string) (*container.InspectResponse, func(), error) {
	if err := runtime.ValidateName(name); err != nil {
		return nil, nil, err
	}
	unlock, err := r.lock(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	c, err := r.inspect(ctx, name)
	if err == nil && c != nil && r.foreign(c.Config.Labels) != "" {
		err = fmt.Errorf("%s is %s", name, r.foreign(c.Config.Labels))
	}
	if err != nil || c == nil {
		unlock()
		return nil, nil, err
	}
	return c, unlock, nil
}

// Volumes lists this runtime's volumes matching selector.
func (r *Runtime) Volumes(ctx context.Context, selector map[string]string) ([]runtime.Volume, error) {
	sel, ok := runtime.ScopeToCloud(runtime.Selector(selector), r.cloud)
	if !ok {
		return []runtime.Volume{}, nil
	}
	// Only volumes that outlive instances: a project's instance volumes
	// (no drift.volume label) go with their instance.
	f := filters.NewArgs(filters.Arg("label", runtime.LabelVolume))
	for k, v := range sel {
		f.Add("label", k+"="+v)
	}
	resp, err := r.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	out := []runtime.Volume{}
	for _, v := range resp.Volumes {
		out = append(out, runtime.Volume{Name: v.Name, Labels: v.Labels})
	}
	return out, nil
}

// RemoveVolume removes a volume no container uses any more.
func (r *Runtime) RemoveVolume(ctx context.Context, name string) error {
	v, err := r.cli.VolumeInspect(ctx, name)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect volume %s: %w", name, err)
	}
	if runtime.Foreign("volume", v.Labels, r.cloud) != "" || v.Labels[runtime.LabelVolume] == "" {
		return nil // not ours, or a project's instance volume (Destroy removes it)
	}
	// A container just removed may still hold it for a moment.
	for try := 0; ; try++ {
		err = r.cli.VolumeRemove(ctx, name, false)
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		if !cerrdefs.IsConflict(err) || try == 20 {
			return fmt.Errorf("remove volume %s: %w", name, err)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}
