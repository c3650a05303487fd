package runtime

import (
	"context"
	"fmt"
	"path"
	"strings"
)

// Labels of what an upgrade with data adds beside instances.
const (
	LabelVolume   = "drift.volume"   // a volume, by name
	LabelTask     = "drift.task"     // "true" on the container, process or Job of a one-shot task
	LabelEndpoint = "drift.endpoint" // a stable endpoint, by name
)

// Volume is storage that outlives the instances mounting it, such as the
// data every env of a component shares. An instance mounts it at Path. The
// runtime makes it on first use, labelled with drift's ownership labels,
// its cloud, drift.volume and Labels, and removes it only when asked.
type Volume struct {
	Name   string            `json:"name"`
	Path   string            `json:"path,omitempty"` // absolute, inside the instance
	Labels map[string]string `json:"labels,omitempty"`
}

// TaskResult is how a one-shot task ended.
type TaskResult struct {
	ExitCode int    `json:"exitCode"`
	Output   string `json:"output"` // its last lines, stdout and stderr
}

// Stateful is a runtime that keeps what an upgrade with data needs:
// volumes, one-shot tasks on them, and instances stopped but kept.
type Stateful interface {
	// Run runs spec.Command in spec's image, environment and volumes to
	// its end and returns how it ended (a non-zero exit is a result, not an
	// error); the task is removed afterwards. A task of that name still
	// there from an earlier try is waited for instead of started again
	// (where the runtime can still learn its end; otherwise it runs
	// again), so tasks must be idempotent.
	Run(ctx context.Context, name string, spec Spec) (TaskResult, error)
	// Stop stops an instance and keeps it (a stopped container, a
	// Deployment scaled to zero, a process's tree and record): List still
	// shows it, not ready. A missing instance is no error.
	Stop(ctx context.Context, name string) error
	// Start starts a kept instance again and returns its endpoint once it
	// is ready.
	Start(ctx context.Context, name string) (Endpoint, error)
	// Volumes lists the drift-owned volumes whose labels match selector.
	Volumes(ctx context.Context, selector map[string]string) ([]Volume, error)
	// RemoveVolume removes a volume and its data; a missing one, or one
	// drift does not own, is no error (and is left alone).
	RemoveVolume(ctx context.Context, name string) error
}

// Route is a stable endpoint drift owns and where it sends requests.
type Route struct {
	Name     string            `json:"name"`
	Instance string            `json:"instance"` // the instance it sends to
	Endpoint Endpoint          `json:"endpoint"` // where consumers reach it
	Labels   map[string]string `json:"labels,omitempty"`
}

// Router keeps stable endpoints: consumers reach a component at one
// address while drift points it at one instance after another.
type Router interface {
	// Route makes endpoint name send to instance, creating it or switching
	// it at once: every request that starts after Route returns reaches
	// instance; requests under way finish where they started.
	Route(ctx context.Context, name, instance string, labels map[string]string) (Route, error)
	// Routes lists the endpoints whose labels match selector.
	Routes(ctx context.Context, selector map[string]string) ([]Route, error)
	// Unroute removes an endpoint; a missing one is no error.
	Unroute(ctx context.Context, name string) error
}

// VolumeLabels are the labels a volume carries on a runtime of cloud.
func VolumeLabels(v Volume, cloud string) map[string]string {
	l := OwnedLabels(v.Name, v.Labels)
	delete(l, LabelInstance)
	l[LabelVolume] = v.Name
	if cloud != "" {
		l[LabelCloud] = LabelValue(cloud)
	}
	return l
}

// MountPathOK reports whether p can be where a volume is mounted (either
// kind): absolute, clean, not / and nothing Docker's mount syntax splits on.
func MountPathOK(p string) bool {
	return path.IsAbs(p) && path.Clean(p) == p && p != "/" && !strings.ContainsAny(p, "\x00:")
}

// validateVolumes checks the volumes of an instance's spec.
func validateVolumes(name string, vs []Volume) error {
	seen := map[string]bool{}
	for _, v := range vs {
		if err := ValidateName(v.Name); err != nil {
			return fmt.Errorf("%w: instance %s: volume: %v", ErrInvalid, name, err)
		}
		if !MountPathOK(v.Path) {
			return fmt.Errorf("%w: instance %s: volume %s: mount path %q must be absolute and clean, not /", ErrInvalid, name, v.Name, v.Path)
		}
		if seen[v.Name] || seen[v.Path] {
			return fmt.Errorf("%w: instance %s: volume %s or path %s given twice", ErrInvalid, name, v.Name, v.Path)
		}
		seen[v.Name], seen[v.Path] = true, true
	}
	return nil
}

// ValidateTask checks a one-shot task's name and spec like ValidateSpec
// and wants a command; the port is not used.
func ValidateTask(name, cloud string, spec Spec) (map[string]string, error) {
	if len(spec.Command) == 0 {
		return nil, fmt.Errorf("%w: task %s: no command", ErrInvalid, name)
	}
	if spec.Port == 0 {
		spec.Port = 1
	}
	labels, err := ValidateSpec(name, cloud, spec)
	if err != nil {
		return nil, err
	}
	labels[LabelTask] = "true"
	return labels, nil
}
