package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
)

var _ runtime.Stateful = (*Runtime)(nil)

func (r *Runtime) volumeDir(name string) string { return filepath.Join(r.dir, ".volumes", name) }

// mountVolumes makes each volume (on first use) and links its mount path in
// the instance's tree to the volume's data: the process, whose working tree
// is rootfs, reaches it by the same relative path as in a container.
func (r *Runtime) mountVolumes(rootfs string, vs []runtime.Volume) error {
	for _, v := range vs {
		dir := r.volumeDir(v.Name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(dir, "volume.json")); errors.Is(err, fs.ErrNotExist) {
			b, _ := json.Marshal(runtime.VolumeLabels(v, r.cloud))
			if err := os.WriteFile(filepath.Join(dir, "volume.json"), b, 0o644); err != nil {
				return err
			}
		}
		if err := mkdirIn(rootfs, path.Dir(v.Path)); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		link := filepath.Join(rootfs, filepath.FromSlash(v.Path))
		if err := os.RemoveAll(link); err != nil {
			return err
		}
		if err := os.Symlink(filepath.Join(dir, "data"), link); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	return nil
}

// Run runs a task as a process in a tree of its own and waits for its end.
// A task of that name still running from an earlier worker is waited for
// and, its exit code being that worker's to see, run again; one this worker
// saw end answers with its recorded exit code.
func (r *Runtime) Run(ctx context.Context, name string, spec runtime.Spec) (runtime.TaskResult, error) {
	labels, err := runtime.ValidateTask(name, r.cloud, spec)
	if err != nil {
		return runtime.TaskResult{}, err
	}
	unlock, err := r.lock(ctx, name)
	if err != nil {
		return runtime.TaskResult{}, err
	}
	defer unlock(true)
	inst := r.instDir(name)
	rec, _ := readRecord(inst)
	for rec != nil && running(rec.PID, rec.StartTicks) {
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return runtime.TaskResult{}, err
		}
	}
	if b, err := os.ReadFile(filepath.Join(inst, "exit")); err == nil {
		code, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return r.taskDone(name, rec, code)
	}
	if err := r.clear(name, rec, false); err != nil {
		return runtime.TaskResult{}, err
	}
	img, err := r.image(ctx, spec.Image)
	if err != nil {
		return runtime.TaskResult{}, fmt.Errorf("task %s: %w", name, err)
	}
	if err := os.MkdirAll(inst, 0o755); err != nil {
		return runtime.TaskResult{}, err
	}
	port, err := freePort()
	if err != nil {
		return runtime.TaskResult{}, err
	}
	rec, exited, err := r.start(inst, img, spec.Command, spec.Project()[0], spec.Env, port, spec.Volumes)
	if rec != nil {
		rec.Name, rec.Labels, rec.SpecHash = name, labels, runtime.SpecHash(spec, labels)
		if err == nil {
			err = writeRecord(inst, rec)
		}
	}
	if err != nil {
		return runtime.TaskResult{}, r.fail(name, rec, fmt.Errorf("task %s: %w", name, err))
	}
	var werr error
	select {
	case werr = <-exited:
	case <-ctx.Done():
		return runtime.TaskResult{}, ctx.Err() // it runs on; a retry waits for it
	}
	code := 0
	var exitErr *exec.ExitError
	if errors.As(werr, &exitErr) {
		code = exitErr.ExitCode()
	} else if werr != nil {
		return runtime.TaskResult{}, r.fail(name, rec, fmt.Errorf("task %s: %w", name, werr))
	}
	if err := os.WriteFile(filepath.Join(inst, "exit"), []byte(strconv.Itoa(code)), 0o644); err != nil {
		return runtime.TaskResult{}, err
	}
	return r.taskDone(name, rec, code)
}

// taskDone reads an ended task's output and removes it.
func (r *Runtime) taskDone(name string, rec *record, code int) (runtime.TaskResult, error) {
	res := runtime.TaskResult{ExitCode: code, Output: tailFile(filepath.Join(r.instDir(name), "log"), 50)}
	return res, r.clear(name, rec, false)
}

// Stop ends the instance's process and keeps its tree and record.
func (r *Runtime) Stop(ctx context.Context, name string) error {
	if err := runtime.ValidateName(name); err != nil {
		return err
	}
	unlock, err := r.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock(false)
	rec, err := readRecord(r.instDir(name))
	if err != nil || rec == nil {
		return err
	}
	grace := r.StopGrace
	if grace <= 0 {
		grace = DefaultStopGrace
	}
	return stop(rec, r.instDir(name), grace)
}

// Start starts a kept instance again from the spec in its record.
func (r *Runtime) Start(ctx context.Context, name string) (runtime.Endpoint, error) {
	if err := runtime.ValidateName(name); err != nil {
		return runtime.Endpoint{}, err
	}
	rec, err := readRecord(r.instDir(name))
	switch {
	case err != nil:
		return runtime.Endpoint{}, err
	case rec == nil:
		return runtime.Endpoint{}, fmt.Errorf("start %s: no such instance", name)
	case rec.Spec == nil:
		return runtime.Endpoint{}, fmt.Errorf("start %s: its record predates kept instances: deploy it again", name)
	}
	return r.Deploy(ctx, name, *rec.Spec)
}

// Volumes lists the volumes whose labels match selector.
func (r *Runtime) Volumes(ctx context.Context, selector map[string]string) ([]runtime.Volume, error) {
	ents, err := os.ReadDir(filepath.Join(r.dir, ".volumes"))
	if errors.Is(err, fs.ErrNotExist) {
		return []runtime.Volume{}, nil
	}
	if err != nil {
		return nil, err
	}
	sel := runtime.Selector(selector)
	out := []runtime.Volume{}
	for _, e := range ents {
		var labels map[string]string
		b, err := os.ReadFile(filepath.Join(r.volumeDir(e.Name()), "volume.json"))
		if err == nil && json.Unmarshal(b, &labels) == nil && runtime.Matches(labels, sel) {
			out = append(out, runtime.Volume{Name: e.Name(), Labels: labels})
		}
	}
	return out, nil
}

// RemoveVolume removes a volume and its data.
func (r *Runtime) RemoveVolume(ctx context.Context, name string) error {
	if err := runtime.ValidateName(name); err != nil {
		return err
	}
	return os.RemoveAll(r.volumeDir(name))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
