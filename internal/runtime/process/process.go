// Package process runs drift instances as plain local processes: the
// static entrypoint of an OCI image, unpacked from its registry and started
// on a free loopback port. It is the runtime of small edge boxes without
// Docker or a cluster, and the default when a cloud declares no runtime.
//
// It is not a sandbox: the process runs with the worker's user, on the
// host's filesystem and network (no chroot, no namespaces). It gives the
// process the image's filesystem as its working tree and none of the
// worker's environment.
//
// State lives in one directory (runtime.Config.Dir):
//
//	<dir>/.images/<algo>-<hex>-<arch>/rootfs       unpacked image, shared (never modified)
//	<dir>/.images/<algo>-<hex>-<arch>/config.json  its image config
//	<dir>/.locks/<name>                            flock serializing operations on one instance (gone after Destroy)
//	<dir>/<name>/rootfs/                           the instance's tree: hard links into the image
//	<dir>/<name>/log                               stdout and stderr of the process
//	<dir>/<name>/instance.json                     the record: pid, start time, port, image, digest, labels, spec hash, spec
//	<dir>/<name>/exit                              a one-shot task's exit code, once this worker saw it end
//	<dir>/.volumes/<name>/data/                    a volume; an instance's tree links its mount path there
//	<dir>/.volumes/<name>/volume.json              its labels
//
// and for a project, one tree and log per service and one directory per
// named volume (which a redeploy or a failed deploy keeps, and only
// Destroy removes):
//
//	<dir>/<name>/services/<service>/rootfs/         the service's tree
//	<dir>/<name>/services/<service>/log             its process's output
//	<dir>/<name>/volumes/<volume>/                  a named volume
//	<dir>/<name>/instance.json                      the record: one entry per service's process
//
// The record is written (atomically) as soon as the process has a pid, so a
// worker that restarts, or a second Runtime on the same directory, finds,
// reports and destroys what the first one started. A process is identified
// by its pid together with its start time from /proc/<pid>/stat, so a
// reused pid is never mistaken for an instance (or signalled). Deploy is
// idempotent: a live process with the same spec hash is reused; anything
// else recorded under the name is stopped and started again.
//
// The process gets the image config's Env, then the service's Env, then
// HOST=127.0.0.1 and PORT=<free loopback port> (which win), and nothing from the worker's
// environment, not even PATH: the image's PATH, if any, is what it sees.
//
// A project's services are processes on the host's network and filesystem,
// so they cannot reach each other by service name nor see a volume at its
// mount path. Instead drift rewrites their environment (PeerEnv): a peer's
// "<service>:<port>" becomes the loopback address of its process, and a
// mount path the volume's directory. An app that finds its peers and its
// data through its environment, as compose apps usually do, runs unchanged;
// read-only mounts are not enforced. The processes start in depends_on
// order, each ready before the next starts.
// It runs in its own session (and so its own process group), with its
// working directory at the image's WorkingDir inside its rootfs, and keeps
// running when the worker exits. Crashed processes are not restarted until
// the next Deploy.
package process

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
)

// DefaultReadyTimeout bounds how long Deploy waits for a new process to
// answer on its health path when ctx allows longer.
const DefaultReadyTimeout = 2 * time.Minute

// DefaultStopGrace is how long Destroy waits after SIGTERM before SIGKILL.
const DefaultStopGrace = 5 * time.Second

const loopback = "127.0.0.1"

// Runtime runs instances as processes, keeping its state in one directory.
type Runtime struct {
	dir   string
	cloud string

	// ReadyTimeout bounds the readiness wait of Deploy (DefaultReadyTimeout).
	ReadyTimeout time.Duration
	// StopGrace is the wait between SIGTERM and SIGKILL (DefaultStopGrace).
	StopGrace time.Duration
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns a process runtime keeping its state in cfg.Dir (required; it
// is created if missing). cloud, when set, becomes every instance's
// drift.cloud label. Instances already recorded in the directory (from an
// earlier worker) are found, reported and destroyed like new ones.
func New(cfg runtime.Config, cloud string) (*Runtime, error) {
	if cfg.Kind != "" && cfg.Kind != runtime.KindProcess {
		return nil, fmt.Errorf("%w: process runtime given config of kind %q", runtime.ErrInvalid, cfg.Kind)
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: process runtime needs a state directory (dir)", runtime.ErrInvalid)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("process runtime: %w", err)
	}
	// Resolve symlinks once, so paths compare with what /proc reports.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return &Runtime{dir: dir, cloud: cloud, ReadyTimeout: DefaultReadyTimeout, StopGrace: DefaultStopGrace}, nil
}

// Dir is the state directory.
func (r *Runtime) Dir() string { return r.dir }

// Kind is runtime.KindProcess.
func (r *Runtime) Kind() string { return runtime.KindProcess }

func (r *Runtime) instDir(name string) string { return filepath.Join(r.dir, name) }

// Deploy makes sure the instance's processes run spec and answer their
// probes, in start order, and returns the serving service's loopback
// endpoint (with the state endpoint, if any).
func (r *Runtime) Deploy(ctx context.Context, name string, spec runtime.Spec) (runtime.Endpoint, error) {
	labels, err := runtime.ValidateSpec(name, r.cloud, spec)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	order, err := runtime.StartOrder(spec.Project())
	if err != nil {
		return runtime.Endpoint{}, err
	}
	hash := runtime.SpecHash(spec, labels)

	unlock, err := r.lock(ctx, name)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	defer unlock(false)

	inst := r.instDir(name)
	rec, err := readRecord(inst)
	if err != nil {
		// A torn or foreign record: start over.
		rec = nil
	}
	if rec != nil && rec.SpecHash == hash && len(rec.procs()) == len(order) && allRunning(rec) {
		for _, p := range rec.procs() {
			if err := r.waitReady(ctx, p, nil); err != nil {
				err = fmt.Errorf("deploy %s: reused process %d: %w", name, p.PID, err)
				if ctx.Err() != nil {
					// The caller gave up, not the instance: leave it be.
					return runtime.Endpoint{}, err
				}
				return runtime.Endpoint{}, r.fail(name, rec, err)
			}
		}
		return endpoints(rec), nil
	}
	if err := r.clear(name, rec, true); err != nil {
		return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w", name, err)
	}

	// Every image and every port first, so that each service can be told
	// where its peers are before it starts.
	imgs := map[string]*cachedImage{}
	argvs := map[string][]string{}
	ports := map[string]int{}
	for _, svc := range order {
		img, err := r.image(ctx, svc.Image)
		if err != nil {
			return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w", name, err)
		}
		argv := svc.Command
		if len(argv) == 0 {
			argv = append(append([]string(nil), img.Config.Config.Entrypoint...), img.Config.Config.Cmd...)
		}
		if len(argv) == 0 {
			return runtime.Endpoint{}, fmt.Errorf("%w: deploy %s: image %s has no entrypoint or cmd and the spec gives no command", runtime.ErrInvalid, name, svc.Image)
		}
		if ports[svc.Name], err = freePort(); err != nil {
			return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w", name, err)
		}
		imgs[svc.Name], argvs[svc.Name] = img, argv
	}

	if !spec.IsProject() {
		svc := order[0]
		if err := os.MkdirAll(inst, 0o755); err != nil {
			return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w", name, err)
		}
		rec, exited, err := r.start(inst, imgs[""], argvs[""], svc, svc.Env, ports[""], spec.Volumes)
		if rec != nil {
			rec.Name, rec.Labels, rec.SpecHash, rec.Spec = name, labels, hash, &spec
			if err == nil {
				err = writeRecord(inst, rec)
			}
		}
		if err != nil {
			return runtime.Endpoint{}, r.fail(name, rec, fmt.Errorf("deploy %s: %w", name, err))
		}
		if err := r.waitReady(ctx, rec, exited); err != nil {
			return runtime.Endpoint{}, r.fail(name, rec, fmt.Errorf("deploy %s: %w", name, err))
		}
		return endpoint(rec.Port), nil
	}

	rec = &record{Name: name, Labels: labels, SpecHash: hash, Spec: &spec, Project: true, Serve: spec.ServeService().Name, State: spec.State}
	for _, svc := range spec.Services {
		rec.Order = append(rec.Order, svc.Name)
	}
	for _, v := range spec.InstanceVolumes {
		if err := os.MkdirAll(r.instanceVolumeDir(name, v), 0o755); err != nil {
			return runtime.Endpoint{}, fmt.Errorf("deploy %s: volume %s: %w", name, v, err)
		}
	}
	if err := writeRecord(inst, rec); err != nil {
		return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w", name, err)
	}
	for _, svc := range order {
		dir := filepath.Join(inst, servicesDir, svc.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return runtime.Endpoint{}, r.fail(name, rec, fmt.Errorf("deploy %s: %w", name, err))
		}
		env := PeerEnv(svc, spec, ports, func(v string) string { return r.instanceVolumeDir(name, v) })
		p, exited, err := r.start(dir, imgs[svc.Name], argvs[svc.Name], svc, env, ports[svc.Name], nil)
		if p != nil {
			p.Service = svc.Name
			rec.Procs = append(rec.Procs, p)
			if err == nil {
				err = writeRecord(inst, rec)
			}
		}
		if err == nil {
			err = r.waitReady(ctx, p, exited)
		}
		if err != nil {
			return runtime.Endpoint{}, r.fail(name, rec, fmt.Errorf("deploy %s service %s: %w", name, svc.Name, err))
		}
	}
	return endpoints(rec), nil
}

// Layout of a project's instance directory.
const (
	servicesDir = "services" // <name>/services/<service>/{rootfs,log}: one per service
	volumesDir  = "volumes"  // <name>/volumes/<volume>: the named volumes, kept until Destroy
)

// instanceVolumeDir is a project's named volume, inside the instance's
// directory so it goes with it (a volume that outlives instances is
// volumeDir).
func (r *Runtime) instanceVolumeDir(name, volume string) string {
	return filepath.Join(r.instDir(name), volumesDir, volume)
}

// allRunning reports whether every process of the record lives.
func allRunning(rec *record) bool {
	for _, p := range rec.procs() {
		if !running(p.PID, p.StartTicks) {
			return false
		}
	}
	return true
}

// endpoints is the serving endpoint of a recorded instance, with its state
// endpoint.
func endpoints(rec *record) runtime.Endpoint {
	if !rec.Project {
		return endpoint(rec.Port)
	}
	var ep, state runtime.Endpoint
	for _, p := range rec.Procs {
		if p.Service == rec.Serve {
			ep = endpoint(p.Port)
		}
		if rec.State != nil && p.Service == rec.State.Service {
			state = endpoint(p.Port)
		}
	}
	if rec.State != nil && state.URL != "" {
		ep.StateURL = state.URL + rec.State.Path
	}
	return ep
}

// PeerEnv is the environment the process runtime gives one service of a
// project, which tells it where its peers are: processes share the host's
// network, so a peer is not at its service name but at 127.0.0.1 on the
// port drift chose for it. In every value of the service's environment,
// "<service>:<port>" of any service of the project, with the port it
// declares, becomes "127.0.0.1:<its port here>" (so STORE_URL:
// http://store:8081 becomes http://127.0.0.1:41234); and a value that is
// the path of one of the service's mounts, or under it, becomes the
// volume's directory, since processes see the host's filesystem. ports are
// the chosen ports by service, volumeDir the directory of a volume.
func PeerEnv(svc runtime.Service, spec runtime.Spec, ports map[string]int, volumeDir func(string) string) map[string]string {
	env := make(map[string]string, len(svc.Env))
	for k, v := range svc.Env {
		for _, peer := range spec.Services {
			v = replaceAddr(v, peer.Name+":"+strconv.Itoa(peer.Port), net.JoinHostPort(loopback, strconv.Itoa(ports[peer.Name])))
		}
		for _, m := range svc.Mounts {
			if v == m.Path || strings.HasPrefix(v, m.Path+"/") {
				v = volumeDir(m.Volume) + v[len(m.Path):]
				break
			}
		}
		env[k] = v
	}
	return env
}

// replaceAddr replaces each whole occurrence of addr ("host:port") in s: not
// inside a longer host name before it, nor a longer port after it.
func replaceAddr(s, addr, with string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, addr)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(addr)
		whole := (i == 0 || !hostByte(s[i-1])) && (end == len(s) || s[end] < '0' || s[end] > '9')
		b.WriteString(s[:i])
		if whole {
			b.WriteString(with)
		} else {
			b.WriteString(addr)
		}
		s = s[end:]
	}
}

func hostByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'
}

// start makes the process's tree in dir, starts argv with the image's
// environment, env, HOST=127.0.0.1 and PORT=port, with the volumes vs
// (which outlive it) linked into its tree, and returns the process's
// record (pid, port, image, probe, argv; the caller records it). The
// record is non-nil as soon as the process has started, even with an
// error; exited yields the process's end while this worker lives.
func (r *Runtime) start(dir string, img *cachedImage, argv []string, svc runtime.Service, env map[string]string, port int, vs []runtime.Volume) (rec *record, exited <-chan error, err error) {
	rootfs := filepath.Join(dir, "rootfs")
	if err := linkTree(img.Rootfs, rootfs); err != nil {
		return nil, nil, fmt.Errorf("instance tree: %w", err)
	}
	if err := r.mountVolumes(rootfs, vs); err != nil {
		return nil, nil, err
	}
	environ := environ(img.Config.Config.Env, env)
	workdir := img.Config.Config.WorkingDir
	if workdir == "" {
		workdir = "/"
	}
	if !path.IsAbs(workdir) {
		workdir = "/" + workdir
	}
	if err := mkdirIn(rootfs, workdir); err != nil {
		return nil, nil, fmt.Errorf("working directory %s: %w", workdir, err)
	}
	cwd, err := resolveIn(rootfs, "/", workdir)
	if err != nil {
		return nil, nil, fmt.Errorf("working directory %s: %w", workdir, err)
	}
	exe, err := lookPath(rootfs, workdir, argv[0], lookupEnv(environ, "PATH"))
	if err != nil {
		return nil, nil, err
	}
	// HOST asks apps that honour it to bind loopback only, like Docker's
	// 127.0.0.1 port publishing.
	environ = append(environ, "HOST=127.0.0.1", "PORT="+strconv.Itoa(port))

	logf, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- drift: %s starting %q on port %d (%s)\n", time.Now().UTC().Format(time.RFC3339), argv, port, svc.Image)
	cmd := &exec.Cmd{
		Path:   exe,
		Args:   argv,
		Env:    environ,
		Dir:    cwd,
		Stdout: logf,
		Stderr: logf,
		// Own session, hence own process group: the process outlives the
		// worker and is signalled as a group.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", exe, err)
	}
	// Reap it if it ends while this worker lives; otherwise init does.
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()

	rec = &record{
		PID:     cmd.Process.Pid,
		Started: time.Now().UTC(),
		Port:    port,
		Image:   svc.Image,
		Digest:  img.Digest,
		Health:  svc.Health,
		Probe:   svc.Probe,
		Argv:    argv,
	}
	st, err := readStat(rec.PID)
	if err != nil {
		// It ended already; record what we know so fail() can clean up.
		return rec, ch, fmt.Errorf("process %d exited at once", rec.PID)
	}
	rec.StartTicks = st.StartTicks
	return rec, ch, nil
}

// waitReady waits until the recorded process answers its probe, failing
// early when it exits. exited, when not nil, reports the exit of a process
// this worker started.
func (r *Runtime) waitReady(ctx context.Context, rec *record, exited <-chan error) error {
	timeout := r.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runtime.WaitService(ctx, rec.service(), endpoint(rec.Port)) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case err := <-exited:
			cancel()
			<-done
			return fmt.Errorf("process %d ended before it was ready: %v", rec.PID, err)
		case <-tick.C:
			if !running(rec.PID, rec.StartTicks) {
				cancel()
				<-done
				return fmt.Errorf("process %d exited before it was ready", rec.PID)
			}
		}
	}
}

// fail stops what a failed deploy started and returns err with the last
// lines of the logs. Everything goes but a project's volumes, which stay
// with a record saying so (so that List and Destroy find them).
func (r *Runtime) fail(name string, rec *record, err error) error {
	inst := r.instDir(name)
	var logs []string
	if rec != nil && rec.Project {
		for _, p := range rec.Procs {
			if t := tailFile(filepath.Join(inst, servicesDir, p.Service, "log"), 20); t != "" {
				logs = append(logs, "["+p.Service+"]\n"+t)
			}
		}
	} else if t := tailFile(filepath.Join(inst, "log"), 20); t != "" {
		logs = append(logs, t)
	}
	_, err2 := os.Stat(filepath.Join(inst, volumesDir))
	keep := rec != nil && rec.Project && err2 == nil
	if serr := r.clear(name, rec, keep); serr != nil {
		err = fmt.Errorf("%w (and cleaning up failed: %v)", err, serr)
	} else if keep {
		left := *rec
		left.Procs = nil
		if werr := writeRecord(inst, &left); werr != nil {
			err = fmt.Errorf("%w (and recording its volumes failed: %v)", err, werr)
		}
	}
	if len(logs) > 0 {
		return fmt.Errorf("%w; last log lines:\n%s", err, strings.Join(logs, "\n"))
	}
	return err
}

// clear stops whatever is recorded or running under name and removes its
// directory, or with keepVolumes everything in it but the volumes.
func (r *Runtime) clear(name string, rec *record, keepVolumes bool) error {
	inst := r.instDir(name)
	if _, err := os.Lstat(inst); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	grace := r.StopGrace
	if grace <= 0 {
		grace = DefaultStopGrace
	}
	if err := stop(rec, inst, grace); err != nil {
		return err
	}
	if !keepVolumes {
		if err := os.RemoveAll(inst); err != nil {
			return fmt.Errorf("remove %s: %w", inst, err)
		}
		return nil
	}
	ents, err := os.ReadDir(inst)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == volumesDir {
			continue
		}
		if err := os.RemoveAll(filepath.Join(inst, e.Name())); err != nil {
			return fmt.Errorf("remove %s: %w", filepath.Join(inst, e.Name()), err)
		}
	}
	_ = os.Remove(inst) // when it held no volumes: nothing is left
	return nil
}

// Status reports the instance from its record, whether its processes live
// and whether each answers a quick probe.
func (r *Runtime) Status(ctx context.Context, name string) (runtime.Status, error) {
	if err := runtime.ValidateName(name); err != nil {
		return runtime.Status{}, err
	}
	rec, err := readRecord(r.instDir(name))
	if err != nil {
		return runtime.Status{Exists: true, Message: err.Error()}, nil
	}
	if rec == nil {
		return runtime.Status{}, nil
	}
	if !rec.Project {
		ss := probe(ctx, rec)
		return runtime.Status{Exists: true, Ready: ss.Ready, Image: rec.Image, Endpoint: endpoint(rec.Port), Message: ss.Message}, nil
	}
	st := runtime.Status{Exists: true, Ready: len(rec.Procs) > 0, Endpoint: endpoints(rec)}
	procs := slices.Clone(rec.Procs)
	slices.SortStableFunc(procs, func(a, b *record) int {
		return slices.Index(rec.Order, a.Service) - slices.Index(rec.Order, b.Service)
	})
	for _, p := range procs {
		ss := probe(ctx, p)
		st.Services = append(st.Services, ss)
		st.Ready = st.Ready && ss.Ready
		if p.Service == rec.Serve {
			st.Image = p.Image
		}
	}
	switch {
	case len(rec.Procs) == 0:
		st.Message = "no processes: its volumes are kept until Destroy"
	default:
		st.Message = runtime.ServicesMessage(st.Services)
	}
	return st, nil
}

// probe reports one recorded process: alive, and answering its probe.
func probe(ctx context.Context, p *record) runtime.ServiceStatus {
	ss := runtime.ServiceStatus{Name: p.Service, Image: p.Image}
	if !running(p.PID, p.StartTicks) {
		ss.Message = fmt.Sprintf("process %d is not running", p.PID)
		return ss
	}
	if err := runtime.ProbeService(ctx, p.service(), endpoint(p.Port)); err != nil {
		ss.Message = fmt.Sprintf("process %d runs but does not answer: %v", p.PID, err)
		return ss
	}
	ss.Ready, ss.Message = true, fmt.Sprintf("process %d", p.PID)
	return ss
}

// Destroy stops the instance's processes (SIGTERM to each group, SIGKILL
// after StopGrace) and removes its directory, volumes included. A missing
// instance is no error.
func (r *Runtime) Destroy(ctx context.Context, name string) error {
	unlock, err := r.lock(ctx, name)
	if err != nil {
		return err
	}
	rec, _ := readRecord(r.instDir(name)) // a torn record: stop by path alone
	if err := r.clear(name, rec, false); err != nil {
		unlock(false)
		return fmt.Errorf("destroy %s: %w", name, err)
	}
	unlock(true)
	return nil
}

// List returns the recorded instances whose labels match selector, sorted
// by name; Ready means every process is alive.
func (r *Runtime) List(ctx context.Context, selector map[string]string) ([]runtime.Instance, error) {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", r.dir, err)
	}
	sel := runtime.Selector(selector)
	out := []runtime.Instance{}
	for _, e := range ents {
		if !e.IsDir() || runtime.ValidateName(e.Name()) != nil {
			continue
		}
		rec, err := readRecord(r.instDir(e.Name()))
		if err != nil || rec == nil || !runtime.Matches(rec.Labels, sel) {
			continue
		}
		in := runtime.Instance{
			Name:     rec.Name,
			Image:    rec.Image,
			Labels:   rec.Labels,
			Ready:    len(rec.procs()) > 0 && allRunning(rec),
			Endpoint: endpoints(rec),
		}
		for _, p := range rec.Procs {
			if p.Service == rec.Serve {
				in.Image = p.Image
			}
		}
		out = append(out, in)
	}
	runtime.SortInstances(out)
	return out, nil
}

// lock takes an exclusive flock on <dir>/.locks/<name>, which serializes
// operations on one instance across goroutines, Runtimes and processes.
// unlock(true) also removes the lock file (Destroy does, so names do not
// pile up); a waiter that then wins the flock on the unlinked file notices
// and starts over on a fresh one.
func (r *Runtime) lock(ctx context.Context, name string) (unlock func(remove bool), err error) {
	if err := runtime.ValidateName(name); err != nil {
		return nil, err // the name becomes a path below
	}
	dir := filepath.Join(r.dir, ".locks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, name)
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		if err := flock(ctx, f); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		held, err1 := f.Stat()
		linked, err2 := os.Stat(p)
		if err1 == nil && err2 == nil && os.SameFile(held, linked) {
			return func(remove bool) {
				if remove {
					os.Remove(p)
				}
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		f.Close() // removed while we waited: take the new one
	}
}

// flock takes an exclusive flock on f, polling so ctx can end the wait.
func flock(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func endpoint(port int) runtime.Endpoint {
	return runtime.Endpoint{
		URL:  "http://" + net.JoinHostPort(loopback, strconv.Itoa(port)),
		Host: loopback,
		Port: port,
	}
}

// freePort asks the kernel for a free loopback port. Another program could
// take it before the process binds it; the process then fails to start and
// Deploy reports it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// environ merges the image's environment and the spec's (which wins), in a
// stable order, leaving out HOST and PORT (the caller appends them).
func environ(image []string, spec map[string]string) []string {
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if k == "" || k == "PORT" || k == "HOST" {
			return
		}
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, kv := range image {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	keys := make([]string, 0, len(spec))
	for k := range spec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, spec[k])
	}
	env := make([]string, 0, len(order)+1)
	for _, k := range order {
		env = append(env, k+"="+vals[k])
	}
	return env
}

func lookupEnv(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// mkdirIn creates directory p (a path inside the image) under rootfs without
// leaving it.
func mkdirIn(rootfs, p string) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	rel := strings.TrimPrefix(path.Clean(p), "/")
	if rel == "" {
		return nil
	}
	return root.MkdirAll(rel, 0o755)
}

// tailFile returns the last n lines of a file (at most 8 KiB of it).
func tailFile(name string, n int) string {
	f, err := os.Open(name)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 8 << 10
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := fi.Size() - max
	if off < 0 {
		off = 0
	}
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // the first one is cut
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
