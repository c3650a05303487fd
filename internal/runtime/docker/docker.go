// Package docker runs drift instances as containers on a Docker Engine: the
// runtime of fog clouds.
//
// An instance in the one-service form is one container named after the
// instance. An instance of a project is one container per service (named
// runtime.ObjectName(instance, service)), a bridge network named after the
// instance on which every container answers to its service name (a network
// alias), so services reach each other by name as under compose, and one
// volume per named volume (runtime.ObjectName(instance, volume)). Every
// container, network and volume carries drift's ownership labels, and
// containers bookkeeping labels (the spec hash, the image reference, the
// service port, the probe, the project's services, its serving service
// and state endpoint). Each service's port is published on 127.0.0.1 with
// a host port chosen by the engine; containers restart unless stopped.
//
// Deploy is idempotent: running containers of the same spec hash are
// reused; anything else of the instance (stopped, crashed, made from
// another spec, a service no longer in the spec) is removed and recreated,
// in depends_on order, each service ready before the next starts. Volumes
// hold the instance's state: a redeploy and a failed deploy keep them, and
// only Destroy removes them. When the runtime is made for a cloud, every
// object is labelled drift.cloud=<cloud> and the runtime only sees objects
// of its own cloud, so several clouds can share one engine (as `drift dev`
// does). Each project instance takes one of the engine's bridge networks,
// whose default address pools hold about 30: configure default-address-pools
// on engines that run more.
package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/volume"
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
	LabelSpec     = "drift.spec"     // hash of the spec the container was made from
	LabelImage    = "drift.image"    // image reference exactly as the spec gave it
	LabelPort     = "drift.port"     // service port inside the container
	LabelHealth   = "drift.health"   // health path ("" means "/")
	LabelProbe    = "drift.probe"    // runtime.ProbeTCP for a service probed by connection
	LabelServices = "drift.services" // a project's services, comma-separated
	LabelServe    = "drift.serve"    // a project's serving service
	LabelState    = "drift.state"    // a project's state endpoint, service:path
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

	// ReadyTimeout bounds the readiness wait of Deploy for each service
	// (DefaultReadyTimeout).
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

// deployment is one Deploy of an instance: what every service's container
// is made from.
type deployment struct {
	name   string
	spec   runtime.Spec
	labels map[string]string // the instance's labels, with the spec hash
	pulled map[string]bool
}

// Deploy makes sure the instance's containers run spec, in start order,
// each answering its probe before the next starts, and returns the serving
// service's loopback endpoint (with the state endpoint, if any).
func (r *Runtime) Deploy(ctx context.Context, name string, spec runtime.Spec) (runtime.Endpoint, error) {
	labels, err := runtime.ValidateSpec(name, r.cloud, spec)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	order, err := runtime.StartOrder(spec.Project())
	if err != nil {
		return runtime.Endpoint{}, err
	}
	labels[LabelSpec] = runtime.SpecHash(spec, labels)
	if spec.IsProject() {
		var names []string
		for _, s := range spec.Services {
			names = append(names, s.Name)
		}
		labels[LabelServices] = strings.Join(names, ",")
		labels[LabelServe] = spec.ServeService().Name
		if st := spec.State; st != nil {
			labels[LabelState] = st.Service + ":" + st.Path
		}
	}
	d := &deployment{name: name, spec: spec, labels: labels, pulled: map[string]bool{}}

	unlock, err := r.lock(ctx, name)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	defer unlock()

	if err := r.prepare(ctx, d); err != nil {
		return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w", name, err)
	}
	eps := map[string]runtime.Endpoint{}
	for _, svc := range order {
		ep, err := r.ensureContainer(ctx, d, svc)
		if err != nil {
			if spec.IsProject() && ctx.Err() == nil {
				// Nothing of a failed project runs on: its other containers
				// and its network go; its volumes keep the state until Destroy.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				if rerr := r.removeRunning(cctx, name); rerr != nil {
					err = fmt.Errorf("%w (and removing the instance's containers failed: %v)", err, rerr)
				}
			}
			return runtime.Endpoint{}, err
		}
		eps[svc.Name] = ep
	}
	ep := eps[spec.ServeService().Name]
	if st := spec.State; st != nil {
		ep = runtime.WithState(ep, spec, eps[st.Service])
	}
	return ep, nil
}

// prepare removes what the instance has that spec does not want (the
// containers of services it lacks, or of the other form) and, for a
// project, makes its network and volumes; it refuses objects of those
// names that drift (of this cloud) does not own.
func (r *Runtime) prepare(ctx context.Context, d *deployment) error {
	want := map[string]bool{}
	for _, svc := range d.spec.Project() {
		want[runtime.ObjectName(d.name, svc.Name)] = true
	}
	cs, err := r.instanceContainers(ctx, d.name)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if !want[containerName(c)] {
			if err := r.remove(ctx, c.ID); err != nil {
				return err
			}
		}
	}
	if !d.spec.IsProject() {
		return r.removeNetwork(ctx, d.name)
	}
	owned := runtime.OwnedLabels(d.name, nil)
	for k, v := range d.labels {
		if !bookkeeping(k) {
			owned[k] = v
		}
	}
	if err := r.ensureNetwork(ctx, d.name, owned); err != nil {
		return err
	}
	for _, v := range d.spec.InstanceVolumes {
		if err := r.ensureVolume(ctx, runtime.ObjectName(d.name, v), owned); err != nil {
			return err
		}
	}
	return nil
}

// ensureNetwork makes the instance's network unless it is there.
func (r *Runtime) ensureNetwork(ctx context.Context, name string, labels map[string]string) error {
	for attempt := 0; ; attempt++ {
		n, err := r.cli.NetworkInspect(ctx, name, network.InspectOptions{})
		if err == nil {
			if why := r.foreignObject("network", n.Labels); why != "" {
				return fmt.Errorf("the network name %s is taken by %s", name, why)
			}
			return nil
		}
		if !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("inspect network %s: %w", name, err)
		}
		_, err = r.cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: labels})
		if err == nil {
			return nil
		}
		if !cerrdefs.IsConflict(err) || attempt > 3 {
			return fmt.Errorf("create network %s: %w", name, err)
		}
		// Another worker made it between our inspect and create: look again.
	}
}

// ensureVolume makes a volume of the instance unless it is there. The
// engine would hand back an existing volume of that name whoever made it,
// so it is inspected first.
func (r *Runtime) ensureVolume(ctx context.Context, name string, labels map[string]string) error {
	v, err := r.cli.VolumeInspect(ctx, name)
	if err == nil {
		if why := r.foreignObject("volume", v.Labels); why != "" {
			return fmt.Errorf("the volume name %s is taken by %s", name, why)
		}
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect volume %s: %w", name, err)
	}
	if _, err := r.cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Labels: labels}); err != nil {
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	return nil
}

// ensureContainer makes sure the container of one service runs the
// deployment's spec and answers its probe, and returns its loopback
// endpoint.
func (r *Runtime) ensureContainer(ctx context.Context, d *deployment, svc runtime.Service) (runtime.Endpoint, error) {
	cname := runtime.ObjectName(d.name, svc.Name)
	labels := make(map[string]string, len(d.labels)+5)
	for k, v := range d.labels {
		labels[k] = v
	}
	if svc.Name != "" {
		labels[runtime.LabelService] = svc.Name
	}
	labels[LabelImage] = svc.Image
	labels[LabelPort] = strconv.Itoa(svc.Port)
	labels[LabelHealth] = svc.Health
	if svc.Probe == runtime.ProbeTCP {
		labels[LabelProbe] = runtime.ProbeTCP
	}
	hash := labels[LabelSpec]

	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		c, err := r.inspect(ctx, cname)
		if err != nil {
			return runtime.Endpoint{}, err
		}
		if c != nil {
			if why := r.foreign(c.Config.Labels); why != "" {
				return runtime.Endpoint{}, fmt.Errorf("deploy %s: the container name %s is taken by %s", d.name, cname, why)
			}
			if c.Config.Labels[LabelSpec] == hash && c.Config.Labels[runtime.LabelService] == labels[runtime.LabelService] && c.State != nil &&
				(c.State.Running && !c.State.Restarting || c.State.Status == string(container.StateCreated)) {
				return r.startAndWait(ctx, d.name, c.ID, svc, true)
			}
			if err := r.remove(ctx, c.ID); err != nil {
				lastErr = err
				if err := sleep(ctx, 200*time.Millisecond); err != nil {
					return runtime.Endpoint{}, err
				}
				continue
			}
		}
		if !d.pulled[svc.Image] {
			if err := r.pull(ctx, svc.Image, d.spec.Platform); err != nil {
				return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w", d.name, err)
			}
			d.pulled[svc.Image] = true
		}
		id, err := r.create(ctx, d, cname, svc, labels)
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
			return runtime.Endpoint{}, fmt.Errorf("deploy %s: create container %s: %w", d.name, cname, err)
		}
		return r.startAndWait(ctx, d.name, id, svc, false)
	}
	return runtime.Endpoint{}, fmt.Errorf("deploy %s: container name %s kept conflicting: %w", d.name, cname, lastErr)
}

// startAndWait starts container id (a no-op when it runs) and waits until it
// is ready. On failure the container is removed, so nothing is left
// half-deployed, and the error carries its last log lines; but a reused
// container is left alone when it is the caller's ctx that ended.
func (r *Runtime) startAndWait(ctx context.Context, name, id string, svc runtime.Service, reused bool) (runtime.Endpoint, error) {
	what := name
	if svc.Name != "" {
		what = name + " service " + svc.Name
	}
	err := r.cli.ContainerStart(ctx, id, container.StartOptions{})
	var ep runtime.Endpoint
	if err == nil {
		ep, err = r.waitReady(ctx, id, svc)
		if err == nil {
			return ep, nil
		}
	} else {
		err = fmt.Errorf("start container: %w", err)
	}
	if reused && ctx.Err() != nil {
		return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w", what, err)
	}
	// ctx may be what ended; clean up on a fresh one.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	logs := r.tail(cctx, id, 20)
	if rerr := r.remove(cctx, id); rerr != nil {
		err = fmt.Errorf("%w (and removing the container failed: %v)", err, rerr)
	}
	if logs != "" {
		return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w; last log lines:\n%s", what, err, logs)
	}
	return runtime.Endpoint{}, fmt.Errorf("deploy %s: %w (no log output)", what, err)
}

// waitReady waits until the container answers its probe, failing early
// when it stops or restarts.
func (r *Runtime) waitReady(ctx context.Context, id string, svc runtime.Service) (runtime.Endpoint, error) {
	timeout := r.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var ep runtime.Endpoint
	var probeAt runtime.Endpoint
	for {
		c, err := r.cli.ContainerInspect(ctx, id)
		if err != nil {
			return ep, fmt.Errorf("inspect container: %w", err)
		}
		if err := stopped(c); err != nil {
			return ep, err
		}
		if ep, err = endpointOf(c.NetworkSettings, svc.Port); err == nil {
			if probeAt, err = probeAddr(c, svc, ep); err == nil {
				break
			}
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return ep, fmt.Errorf("container publishes no port for %d/tcp: %w", svc.Port, err)
		}
	}

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	done := make(chan error, 1)
	go func() { done <- runtime.WaitService(wctx, svc, probeAt) }()
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

// probeAddr is where a service's probe goes: its published loopback port,
// or for a TCP probe the container's own address, since the engine's proxy
// accepts connections on the published port before the service listens.
func probeAddr(c container.InspectResponse, svc runtime.Service, published runtime.Endpoint) (runtime.Endpoint, error) {
	if svc.Probe != runtime.ProbeTCP {
		return published, nil
	}
	if c.NetworkSettings != nil {
		for _, n := range c.NetworkSettings.Networks {
			if n != nil && n.IPAddress != "" {
				return runtime.Endpoint{Host: n.IPAddress, Port: svc.Port}, nil
			}
		}
	}
	return runtime.Endpoint{}, errors.New("container has no address yet")
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

// create makes the container of one service: on the instance's network
// under its service name and with its volumes, for a project.
func (r *Runtime) create(ctx context.Context, d *deployment, cname string, svc runtime.Service, labels map[string]string) (string, error) {
	port := nat.Port(fmt.Sprintf("%d/tcp", svc.Port))
	hostname := cname
	if svc.Name != "" {
		hostname = svc.Name
	}
	cfg := &container.Config{
		Hostname:     hostname,
		Image:        svc.Image,
		Env:          environ(svc),
		Labels:       labels,
		ExposedPorts: nat.PortSet{port: struct{}{}},
	}
	if len(svc.Command) > 0 {
		// Like Kubernetes' command: replaces the entrypoint and drops the
		// image's CMD.
		cfg.Entrypoint = append([]string(nil), svc.Command...)
	}
	hc := &container.HostConfig{
		PortBindings:  nat.PortMap{port: {{HostIP: loopback, HostPort: ""}}},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
	}
	var nc *network.NetworkingConfig
	if d.spec.IsProject() {
		hc.NetworkMode = container.NetworkMode(d.name)
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			d.name: {Aliases: []string{svc.Name}},
		}}
		for _, m := range svc.Mounts {
			hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Source: runtime.ObjectName(d.name, m.Volume), Target: m.Path, ReadOnly: m.ReadOnly})
		}
	}
	// Volumes that outlive the instance (one-service form) are made on
	// first use and kept; a project's instance volumes were made by
	// prepare and go with the instance.
	if err := r.mountVolumes(ctx, hc, d.spec.Volumes); err != nil {
		return "", err
	}
	resp, err := r.cli.ContainerCreate(ctx, cfg, hc, nc, platformOf(d.spec), cname)
	if err != nil {
		return "", err
	}
	return resp.ID, nil
}

// environ is the service's Env in a stable order plus PORT=<its port>,
// which wins over a PORT in Env.
func environ(svc runtime.Service) []string {
	keys := make([]string, 0, len(svc.Env))
	for k := range svc.Env {
		if k != "PORT" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys)+1)
	for _, k := range keys {
		env = append(env, k+"="+svc.Env[k])
	}
	return append(env, "PORT="+strconv.Itoa(svc.Port))
}

// Status reports the instance's containers, probing each service.
func (r *Runtime) Status(ctx context.Context, name string) (runtime.Status, error) {
	if err := runtime.ValidateName(name); err != nil {
		return runtime.Status{}, err
	}
	cs, err := r.instanceContainers(ctx, name)
	if err != nil {
		return runtime.Status{}, err
	}
	if len(cs) == 0 {
		c, err := r.inspect(ctx, name)
		if err != nil {
			return runtime.Status{}, err
		}
		if c != nil {
			if why := r.foreign(c.Config.Labels); why != "" {
				return runtime.Status{Message: "the name is taken by " + why}, nil
			}
		}
		if left, err := r.leftovers(ctx, name); err != nil || len(left) == 0 {
			return runtime.Status{}, err
		}
		return runtime.Status{Exists: true, Message: "no containers: its volumes are kept until Destroy"}, nil
	}
	byService := map[string]string{} // service → container id
	for _, c := range cs {
		byService[c.Labels[runtime.LabelService]] = c.ID
	}
	first := cs[0].Labels
	services := []string{""}
	if first[LabelServices] != "" {
		services = strings.Split(first[LabelServices], ",")
	}
	st := runtime.Status{Exists: true, Ready: true}
	eps := map[string]runtime.Endpoint{}
	for _, svc := range services {
		ss, ep, image := r.serviceStatus(ctx, byService[svc], svc)
		eps[svc] = ep
		st.Ready = st.Ready && ss.Ready
		if svc == first[LabelServe] || svc == "" {
			st.Image, st.Endpoint = image, ep
		}
		if svc == "" {
			st.Message = ss.Message
		} else {
			st.Services = append(st.Services, ss)
		}
	}
	if service, path, ok := strings.Cut(first[LabelState], ":"); ok && st.Endpoint.URL != "" && eps[service].URL != "" {
		st.Endpoint.StateURL = eps[service].URL + path
	}
	if len(st.Services) > 0 {
		var notReady []string
		for _, ss := range st.Services {
			if !ss.Ready {
				notReady = append(notReady, ss.Name+": "+ss.Message)
			}
		}
		st.Message = fmt.Sprintf("%d of %d services ready", len(st.Services)-len(notReady), len(st.Services))
		if len(notReady) > 0 {
			st.Message += "; " + strings.Join(notReady, "; ")
		}
	}
	return st, nil
}

// serviceStatus inspects and probes the container of one service ("" id:
// there is none).
func (r *Runtime) serviceStatus(ctx context.Context, id, service string) (runtime.ServiceStatus, runtime.Endpoint, string) {
	ss := runtime.ServiceStatus{Name: service}
	if id == "" {
		ss.Message = "no container"
		return ss, runtime.Endpoint{}, ""
	}
	c, err := r.inspect(ctx, id)
	if err != nil || c == nil {
		ss.Message = fmt.Sprintf("container gone (%v)", err)
		return ss, runtime.Endpoint{}, ""
	}
	labels := c.Config.Labels
	ss.Image = labels[LabelImage]
	if c.State == nil {
		ss.Message = "no state"
		return ss, runtime.Endpoint{}, ss.Image
	}
	ss.Message = c.State.Status
	svc := runtime.Service{Name: service, Health: labels[LabelHealth], Probe: labels[LabelProbe]}
	svc.Port, _ = strconv.Atoi(labels[LabelPort])
	ep, err := endpointOf(c.NetworkSettings, svc.Port)
	if err != nil {
		if c.State.Running {
			ss.Message = err.Error()
		}
		return ss, ep, ss.Image
	}
	if c.State.Running && !c.State.Restarting {
		at, err := probeAddr(*c, svc, ep)
		if err == nil {
			err = runtime.ProbeService(ctx, svc, at)
		}
		if err != nil {
			ss.Message = "running, not answering: " + err.Error()
		} else {
			ss.Ready = true
		}
	}
	return ss, ep, ss.Image
}

// Destroy force-removes the instance's containers (and their anonymous
// volumes), its network and its volumes. A missing instance, or objects
// drift (of this cloud) does not own, are no error (and are left alone).
func (r *Runtime) Destroy(ctx context.Context, name string) error {
	unlock, err := r.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.removeRunning(ctx, name); err != nil {
		return fmt.Errorf("destroy %s: %w", name, err)
	}
	vols, err := r.instanceVolumes(ctx, name)
	if err != nil {
		return fmt.Errorf("destroy %s: %w", name, err)
	}
	for _, v := range vols {
		if err := r.cli.VolumeRemove(ctx, v, true); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("destroy %s: remove volume %s: %w", name, v, err)
		}
	}
	return nil
}

// removeRunning removes the instance's containers and its network, which
// is what runs; its volumes stay.
func (r *Runtime) removeRunning(ctx context.Context, name string) error {
	cs, err := r.instanceContainers(ctx, name)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := r.remove(ctx, c.ID); err != nil {
			return err
		}
	}
	return r.removeNetwork(ctx, name)
}

// removeNetwork removes the instance's network, if it has one of its own.
func (r *Runtime) removeNetwork(ctx context.Context, name string) error {
	n, err := r.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if cerrdefs.IsNotFound(err) || err == nil && !r.ownedBy(n.Labels, name) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect network %s: %w", name, err)
	}
	if err := r.cli.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	return nil
}

// List returns this runtime's drift-owned instances whose labels match
// selector, sorted by name: one per instance, however many containers it
// has, and also an instance of which only volumes or a network are left
// (not ready), so that destroying by label finds it.
func (r *Runtime) List(ctx context.Context, selector map[string]string) ([]runtime.Instance, error) {
	sel, ok := runtime.ScopeToCloud(runtime.Selector(selector), r.cloud)
	if !ok {
		return []runtime.Instance{}, nil
	}
	f := labelFilter(sel)
	cs, err := r.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	byName := map[string]*runtime.Instance{}
	want := map[string][]string{}           // instance → its services
	running := map[string]map[string]bool{} // instance → its running services
	for _, c := range cs {
		name := c.Labels[runtime.LabelInstance]
		if name == "" && len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		in := byName[name]
		if in == nil {
			in = &runtime.Instance{Name: name, Labels: publicLabels(c.Labels)}
			byName[name], running[name], want[name] = in, map[string]bool{}, []string{""}
			if c.Labels[LabelServices] != "" {
				want[name] = strings.Split(c.Labels[LabelServices], ",")
			}
		}
		service := c.Labels[runtime.LabelService]
		if c.State == container.StateRunning {
			running[name][service] = true
		}
		if service != c.Labels[LabelServe] {
			continue
		}
		in.Image = c.Labels[LabelImage]
		port, _ := strconv.Atoi(c.Labels[LabelPort])
		for _, p := range c.Ports {
			if int(p.PrivatePort) == port && p.IP == loopback && p.PublicPort != 0 && p.Type == "tcp" {
				in.Endpoint = endpoint(int(p.PublicPort))
			}
		}
	}
	for name, in := range byName {
		in.Ready = true
		for _, s := range want[name] {
			in.Ready = in.Ready && running[name][s]
		}
	}
	left, err := r.leftoverLabels(ctx, f)
	if err != nil {
		return nil, err
	}
	for name, l := range left {
		if byName[name] == nil {
			byName[name] = &runtime.Instance{Name: name, Labels: publicLabels(l)}
		}
	}
	out := make([]runtime.Instance, 0, len(byName))
	for _, in := range byName {
		out = append(out, *in)
	}
	runtime.SortInstances(out)
	return out, nil
}

// leftoverLabels finds the networks and volumes matching filter f, by
// instance.
func (r *Runtime) leftoverLabels(ctx context.Context, f filters.Args) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	ns, err := r.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range ns {
		out[n.Labels[runtime.LabelInstance]] = n.Labels
	}
	vs, err := r.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	for _, v := range vs.Volumes {
		out[v.Labels[runtime.LabelInstance]] = v.Labels
	}
	delete(out, "")
	return out, nil
}

// leftovers names the network and volumes of instance name.
func (r *Runtime) leftovers(ctx context.Context, name string) ([]string, error) {
	l, err := r.leftoverLabels(ctx, r.instanceFilter(name))
	if err != nil || len(l) == 0 {
		return nil, err
	}
	vols, err := r.instanceVolumes(ctx, name)
	return append(vols, name), err
}

// instanceFilter selects the objects of instance name of this runtime's
// cloud.
func (r *Runtime) instanceFilter(name string) filters.Args {
	sel, _ := runtime.ScopeToCloud(runtime.Selector(map[string]string{runtime.LabelInstance: name}), r.cloud)
	return labelFilter(sel)
}

func labelFilter(sel map[string]string) filters.Args {
	f := filters.NewArgs()
	for k, v := range sel {
		f.Add("label", k+"="+v)
	}
	return f
}

// instanceContainers lists the containers of instance name, any state.
func (r *Runtime) instanceContainers(ctx context.Context, name string) ([]container.Summary, error) {
	cs, err := r.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: r.instanceFilter(name)})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", name, err)
	}
	return cs, nil
}

// instanceVolumes names the volumes of instance name.
func (r *Runtime) instanceVolumes(ctx context.Context, name string) ([]string, error) {
	vs, err := r.cli.VolumeList(ctx, volume.ListOptions{Filters: r.instanceFilter(name)})
	if err != nil {
		return nil, fmt.Errorf("list volumes of %s: %w", name, err)
	}
	var out []string
	for _, v := range vs.Volumes {
		out = append(out, v.Name)
	}
	slices.Sort(out)
	return out, nil
}

func containerName(c container.Summary) string {
	if len(c.Names) > 0 {
		return strings.TrimPrefix(c.Names[0], "/")
	}
	return ""
}

// foreign explains why a container with these labels is not this runtime's
// to touch, or returns "".
func (r *Runtime) foreign(labels map[string]string) string {
	return runtime.Foreign("container", labels, r.cloud)
}

func (r *Runtime) foreignObject(what string, labels map[string]string) string {
	return runtime.Foreign(what, labels, r.cloud)
}

// ownedBy reports whether an object with these labels is instance name's
// (of this runtime's cloud).
func (r *Runtime) ownedBy(labels map[string]string, name string) bool {
	return r.foreignObject("object", labels) == "" && labels[runtime.LabelInstance] == name
}

// bookkeeping reports whether a label is one of this runtime's own.
func bookkeeping(k string) bool {
	switch k {
	case LabelSpec, LabelImage, LabelPort, LabelHealth, LabelProbe, LabelServices, LabelServe, LabelState:
		return true
	}
	return false
}

func publicLabels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l))
	for k, v := range l {
		if !bookkeeping(k) && k != runtime.LabelService {
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
