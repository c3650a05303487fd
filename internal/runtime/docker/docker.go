// Package docker runs drift instances as containers on a Docker Engine: the
// runtime of fog clouds.
//
// One instance is one container named after the instance. The container
// carries drift's ownership labels plus bookkeeping labels (the spec hash,
// the image reference, the service port and the health path), publishes the
// service port on 127.0.0.1 with a host port chosen by the engine, and
// restarts unless stopped. Deploy is idempotent: a running container with the
// same spec hash is reused; anything else with the name (stopped, crashed,
// made from another spec) is removed and recreated. When the runtime is made
// for a cloud, every instance is labelled drift.cloud=<cloud> and the runtime
// only sees containers of its own cloud, so several clouds can share one
// engine (as `drift dev` does).
package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	driftimage "github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/runtime"
)

// Bookkeeping labels, next to runtime.OwnedLabels. They are not reported in
// Instance.Labels.
const (
	LabelSpec   = "drift.spec"   // hash of the spec the container was made from
	LabelImage  = "drift.image"  // image reference exactly as the spec gave it
	LabelPort   = "drift.port"   // service port inside the container
	LabelHealth = "drift.health" // health path ("" means "/")
)

// DefaultReadyTimeout bounds how long Deploy waits for a new container to
// answer on its health path when ctx allows longer.
const DefaultReadyTimeout = 2 * time.Minute

// loopback is the only host address instances are published on.
const loopback = "127.0.0.1"

// Runtime is a Docker Engine seen as a drift runtime.
type Runtime struct {
	cli   *client.Client
	cloud string

	// ReadyTimeout bounds the readiness wait of Deploy (DefaultReadyTimeout).
	ReadyTimeout time.Duration

	mu    sync.Mutex
	locks map[string]chan struct{}
}

var _ runtime.Runtime = (*Runtime)(nil)

// New connects to the engine named by cfg.Host (DOCKER_HOST syntax) or, when
// empty, by the environment (DOCKER_HOST, DOCKER_API_VERSION, …). The API
// version is negotiated on first use, so older engines (API 1.41) work.
// cloud, when set, scopes the runtime to the instances of that cloud.
// New does not contact the engine.
func New(cfg runtime.Config, cloud string) (*Runtime, error) {
	if cfg.Kind != "" && cfg.Kind != runtime.KindDocker {
		return nil, fmt.Errorf("%w: docker runtime given config of kind %q", runtime.ErrInvalid, cfg.Kind)
	}
	opts := []client.Opt{client.FromEnv}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	opts = append(opts, client.WithAPIVersionNegotiation())
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Runtime{cli: cli, cloud: cloud, ReadyTimeout: DefaultReadyTimeout, locks: map[string]chan struct{}{}}, nil
}

// Close releases the engine connection.
func (r *Runtime) Close() error { return r.cli.Close() }

// Kind is runtime.KindDocker.
func (r *Runtime) Kind() string { return runtime.KindDocker }

// Deploy makes sure a container named name runs spec and answers on its
// health path, and returns its loopback endpoint.
func (r *Runtime) Deploy(ctx context.Context, name string, spec runtime.Spec) (runtime.Endpoint, error) {
	labels, err := runtime.ValidateSpec(name, r.cloud, spec)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	hash := runtime.SpecHash(spec, labels)
	labels[LabelSpec] = hash
	labels[LabelImage] = spec.Image
	labels[LabelPort] = strconv.Itoa(spec.Port)
	labels[LabelHealth] = spec.Health

	unlock, err := r.lock(ctx, name)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	defer unlock()

	pulled := false
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		c, err := r.inspect(ctx, name)
		if err != nil {
			return runtime.Endpoint{}, err
		}
		if c != nil {
			if why := r.foreign(c.Config.Labels); why != "" {
				return runtime.Endpoint{}, fmt.Errorf("deploy %s: the container name is taken by %s", name, why)
			}
			if c.Config.Labels[LabelSpec] == hash && c.State != nil &&
				(c.State.Running && !c.State.Restarting || c.State.Status == string(container.StateCreated)) {
				return r.startAndWait(ctx, name, c.ID, spec, true)
			}
			if err := r.remove(ctx, c.ID); err != nil {
				lastErr = err
				if err := sleep(ctx, 200*time.Millisecond); err != nil {
					return runtime.Endpoint{}, err
				}
				continue
			}
		}
		if !pulled {
			if err := r.pull(ctx, spec.Image, spec.Platform); err != nil {
				return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w", name, err)
			}
			pulled = true
		}
		id, err := r.create(ctx, name, spec, labels)
		if cerrdefs.IsConflict(err) {
			// Someone else (another worker, another Runtime) created it
			// between our inspect and create: look again and reuse it. The
			// engine reserves the name before the container can be
			// inspected, so give it a moment.
			lastErr = err
			if err := sleep(ctx, time.Duration(attempt+1)*100*time.Millisecond); err != nil {
				return runtime.Endpoint{}, err
			}
			continue
		}
		if err != nil {
			return runtime.Endpoint{}, fmt.Errorf("deploy %s: create container: %w", name, err)
		}
		return r.startAndWait(ctx, name, id, spec, false)
	}
	return runtime.Endpoint{}, fmt.Errorf("deploy %s: container name kept conflicting: %w", name, lastErr)
}

// startAndWait starts container id (a no-op when it runs) and waits until it
// is ready. On failure the container is removed, so nothing is left
// half-deployed, and the error carries its last log lines; but a reused
// container is left alone when it is the caller's ctx that ended.
func (r *Runtime) startAndWait(ctx context.Context, name, id string, spec runtime.Spec, reused bool) (runtime.Endpoint, error) {
	err := r.cli.ContainerStart(ctx, id, container.StartOptions{})
	var ep runtime.Endpoint
	if err == nil {
		ep, err = r.waitReady(ctx, id, spec)
		if err == nil {
			return ep, nil
		}
	} else {
		err = fmt.Errorf("start container: %w", err)
	}
	if reused && ctx.Err() != nil {
		return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w", name, err)
	}
	// ctx may be what ended; clean up on a fresh one.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	logs := r.tail(cctx, id, 20)
	if rerr := r.remove(cctx, id); rerr != nil {
		err = fmt.Errorf("%w (and removing the container failed: %v)", err, rerr)
	}
	if logs != "" {
		return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w; last log lines:\n%s", name, err, logs)
	}
	return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w (no log output)", name, err)
}

// waitReady waits until the container answers on its health path, failing
// early when it stops or restarts.
func (r *Runtime) waitReady(ctx context.Context, id string, spec runtime.Spec) (runtime.Endpoint, error) {
	timeout := r.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var ep runtime.Endpoint
	for {
		c, err := r.cli.ContainerInspect(ctx, id)
		if err != nil {
			return ep, fmt.Errorf("inspect container: %w", err)
		}
		if err := stopped(c); err != nil {
			return ep, err
		}
		if ep, err = endpointOf(c.NetworkSettings, spec.Port); err == nil {
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return ep, fmt.Errorf("container publishes no port for %d/tcp: %w", spec.Port, err)
		}
	}

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	done := make(chan error, 1)
	go func() { done <- runtime.WaitHTTP(wctx, runtime.HealthURL(ep, spec)) }()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return ep, err
		case <-tick.C:
			c, err := r.cli.ContainerInspect(ctx, id)
			if err != nil {
				if ctx.Err() != nil {
					return ep, <-done
				}
				return ep, fmt.Errorf("inspect container: %w", err)
			}
			if err := stopped(c); err != nil {
				return ep, err
			}
		}
	}
}

// stopped tells why a container that should be coming up is not.
func stopped(c container.InspectResponse) error {
	switch {
	case c.State == nil:
		return errors.New("container has no state")
	case c.RestartCount > 0 || c.State.Restarting:
		return fmt.Errorf("container exited with code %d and is being restarted", c.State.ExitCode)
	case !c.State.Running:
		if c.State.Error != "" {
			return fmt.Errorf("container is %s: %s", c.State.Status, c.State.Error)
		}
		return fmt.Errorf("container is %s (exit code %d)", c.State.Status, c.State.ExitCode)
	}
	return nil
}

// endpointOf finds the loopback host port published for port/tcp.
func endpointOf(ns *container.NetworkSettings, port int) (runtime.Endpoint, error) {
	if ns == nil {
		return runtime.Endpoint{}, errors.New("no network settings")
	}
	for _, b := range ns.Ports[nat.Port(fmt.Sprintf("%d/tcp", port))] {
		if b.HostIP != loopback {
			continue
		}
		if hp, err := strconv.Atoi(b.HostPort); err == nil && hp > 0 {
			return endpoint(hp), nil
		}
	}
	return runtime.Endpoint{}, fmt.Errorf("no host port published for %d/tcp", port)
}

func endpoint(port int) runtime.Endpoint {
	return runtime.Endpoint{
		URL:  "http://" + net.JoinHostPort(loopback, strconv.Itoa(port)),
		Host: loopback,
		Port: port,
	}
}

// pull makes the engine pull ref (the platform entry of an index, when
// set), unless ref names a digest the engine has for that platform.
func (r *Runtime) pull(ctx context.Context, ref, platform string) error {
	if strings.Contains(ref, "@") {
		if img, err := r.cli.ImageInspect(ctx, ref); err == nil && (platform == "" || img.Os+"/"+img.Architecture == platform) {
			return nil
		}
	}
	auth, err := registryAuth(ref)
	if err != nil {
		return err
	}
	rc, err := r.cli.ImagePull(ctx, ref, image.PullOptions{Platform: platform, RegistryAuth: auth})
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("pull %s: reading progress: %w", ref, err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return fmt.Errorf("pull %s: %s", ref, msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return fmt.Errorf("pull %s: %s", ref, msg.Error)
		}
	}
}

func (r *Runtime) create(ctx context.Context, name string, spec runtime.Spec, labels map[string]string) (string, error) {
	port := nat.Port(fmt.Sprintf("%d/tcp", spec.Port))
	cfg := &container.Config{
		Hostname:     name,
		Image:        spec.Image,
		Env:          environ(spec),
		Labels:       labels,
		ExposedPorts: nat.PortSet{port: struct{}{}},
	}
	if len(spec.Command) > 0 {
		// Like Kubernetes' command: replaces the entrypoint and drops the
		// image's CMD.
		cfg.Entrypoint = append([]string(nil), spec.Command...)
	}
	hc := &container.HostConfig{
		PortBindings:  nat.PortMap{port: {{HostIP: loopback, HostPort: ""}}},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
	}
	if err := r.mountVolumes(ctx, hc, spec.Volumes); err != nil {
		return "", err
	}
	resp, err := r.cli.ContainerCreate(ctx, cfg, hc, nil, platformOf(spec), name)
	if err != nil {
		return "", err
	}
	return resp.ID, nil
}

// environ is spec.Env in a stable order plus PORT=<spec.Port>, which wins
// over a PORT in spec.Env.
func environ(spec runtime.Spec) []string {
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		if k != "PORT" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys)+1)
	for _, k := range keys {
		env = append(env, k+"="+spec.Env[k])
	}
	return append(env, "PORT="+strconv.Itoa(spec.Port))
}

// Status reports the container named name.
func (r *Runtime) Status(ctx context.Context, name string) (runtime.Status, error) {
	if err := runtime.ValidateName(name); err != nil {
		return runtime.Status{}, err
	}
	c, err := r.inspect(ctx, name)
	if err != nil || c == nil {
		return runtime.Status{}, err
	}
	labels := c.Config.Labels
	if why := r.foreign(labels); why != "" {
		return runtime.Status{Message: "the name is taken by " + why}, nil
	}
	st := runtime.Status{Exists: true, Image: labels[LabelImage]}
	if c.State == nil {
		st.Message = "no state"
		return st, nil
	}
	st.Message = c.State.Status
	port, _ := strconv.Atoi(labels[LabelPort])
	ep, err := endpointOf(c.NetworkSettings, port)
	if err != nil {
		if c.State.Running {
			st.Message = err.Error()
		}
		return st, nil
	}
	st.Endpoint = ep
	if c.State.Running && !c.State.Restarting {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		health := runtime.HealthURL(ep, runtime.Spec{Health: labels[LabelHealth]})
		if err := runtime.WaitHTTP(pctx, health); err != nil {
			st.Message = "running, not answering: " + err.Error()
		} else {
			st.Ready = true
		}
	}
	return st, nil
}

// Destroy force-removes the container named name and its anonymous volumes.
// A missing container, or one drift does not own, is no error (and is left
// alone).
func (r *Runtime) Destroy(ctx context.Context, name string) error {
	unlock, err := r.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := r.inspect(ctx, name)
	if err != nil || c == nil {
		return err
	}
	if r.foreign(c.Config.Labels) != "" {
		return nil
	}
	if err := r.remove(ctx, c.ID); err != nil {
		return fmt.Errorf("destroy %s: %w", name, err)
	}
	return nil
}

// List returns this runtime's drift-owned containers whose labels match
// selector, sorted by name.
func (r *Runtime) List(ctx context.Context, selector map[string]string) ([]runtime.Instance, error) {
	sel, ok := runtime.ScopeToCloud(runtime.Selector(selector), r.cloud)
	if !ok {
		return []runtime.Instance{}, nil
	}
	f := filters.NewArgs()
	for k, v := range sel {
		f.Add("label", k+"="+v)
	}
	cs, err := r.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]runtime.Instance, 0, len(cs))
	for _, c := range cs {
		name := c.Labels[runtime.LabelInstance]
		if name == "" && len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		in := runtime.Instance{
			Name:   name,
			Image:  c.Labels[LabelImage],
			Labels: publicLabels(c.Labels),
			Ready:  c.State == container.StateRunning,
		}
		port, _ := strconv.Atoi(c.Labels[LabelPort])
		for _, p := range c.Ports {
			if int(p.PrivatePort) == port && p.IP == loopback && p.PublicPort != 0 && p.Type == "tcp" {
				in.Endpoint = endpoint(int(p.PublicPort))
			}
		}
		out = append(out, in)
	}
	runtime.SortInstances(out)
	return out, nil
}

// foreign explains why a container with these labels is not this runtime's
// to touch, or returns "".
func (r *Runtime) foreign(labels map[string]string) string {
	return runtime.Foreign("container", labels, r.cloud)
}

func publicLabels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l))
	for k, v := range l {
		switch k {
		case LabelSpec, LabelImage, LabelPort, LabelHealth:
		default:
			out[k] = v
		}
	}
	return out
}

// inspect returns the container named name, or nil when there is none.
func (r *Runtime) inspect(ctx context.Context, name string) (*container.InspectResponse, error) {
	c, err := r.cli.ContainerInspect(ctx, name)
	if cerrdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inspect container %s: %w", name, err)
	}
	if c.Config == nil {
		c.Config = &container.Config{}
	}
	return &c, nil
}

// remove force-removes a container and its anonymous volumes; a missing one
// is no error.
func (r *Runtime) remove(ctx context.Context, id string) error {
	err := r.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", shortID(id), err)
	}
	return nil
}

// tail returns the last n log lines of a container (stdout and stderr).
func (r *Runtime) tail(ctx context.Context, id string, n int) string {
	rc, err := r.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n)})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var buf bytes.Buffer
	w := &limitWriter{w: &buf, n: 8 << 10}
	if _, err := stdcopy.StdCopy(w, w, rc); err != nil && buf.Len() == 0 {
		return ""
	}
	return strings.TrimRight(buf.String(), "\n")
}

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if len(q) > l.n {
		q = q[:l.n]
	}
	l.n -= len(q)
	if _, err := l.w.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

// lock serializes operations on one instance name within this Runtime; an
// invalid name is refused.
// Across Runtimes and processes the engine's name uniqueness does the job.
func (r *Runtime) lock(ctx context.Context, name string) (func(), error) {
	if err := runtime.ValidateName(name); err != nil {
		return nil, err
	}
	r.mu.Lock()
	ch, ok := r.locks[name]
	if !ok {
		ch = make(chan struct{}, 1)
		r.locks[name] = ch
	}
	r.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// registryAuth is drift's login for ref's registry as the engine takes it
// ("" : anonymous).
func registryAuth(ref string) (string, error) {
	c, err := driftimage.AuthFor(ref)
	if err != nil || c.Username == "" && c.IdentityToken == "" && c.RegistryToken == "" {
		return "", err
	}
	return registry.EncodeAuthConfig(registry.AuthConfig{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken})
}

// platformOf is the image entry a spec asks for; nil is the engine's own.
func platformOf(spec runtime.Spec) *ocispec.Platform {
	if os, arch, ok := strings.Cut(spec.Platform, "/"); ok {
		return &ocispec.Platform{OS: os, Architecture: arch}
	}
	return nil
}
