// Package appspec holds what a user asks drift to run for an app: a compose
// project of one or more services, each an image serving on one port, plus
// the orchestration info around them. An AppSpec is read from a compose
// file (FromCompose) or given directly (FromImage); RuntimeSpec turns it
// into the runtime.Spec that every runtime deploys, so the Docker
// containers, network and volumes of fog clouds and the Kubernetes
// Deployments, Services and PVCs of edge clouds are all derived from this
// one description.
//
// The package is pure logic: no network, no Temporal, and no file is read
// besides the bytes handed in.
package appspec

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/runtime"
)

// Labels drift reads from a compose service, and the label RuntimeSpec adds.
const (
	// LabelPort on a compose service names which of its ports is the
	// service port (default: the first TCP port in file order).
	LabelPort = "drift.port"
	// LabelHealth on a compose service is the HTTP path answered when ready
	// (default: taken from a wget/curl healthcheck, else "/").
	LabelHealth = "drift.health"
	// LabelServe set to "true" marks the service users reach (default: the
	// first service in file order that publishes a port).
	LabelServe = "drift.serve"
	// LabelState on a compose service is the HTTP path of the app's state
	// endpoint on that service: GET returns the state, PUT replaces it.
	LabelState = "drift.state"
	// LabelStateMerge set to "true" beside LabelState says the state
	// endpoint merges late writes: PATCH {"base": B, "final": F}.
	LabelStateMerge = "drift.state.merge"
	// LabelApp is set by RuntimeSpec to the app name.
	LabelApp = "drift.app"
)

// Environment variables RuntimeSpec sets in every service; an AppSpec may
// not set them itself.
const (
	EnvCloud = "DRIFT_CLOUD"
	EnvApp   = "DRIFT_APP"
)

// AppSpec is what drift runs for an app. It travels in workflow inputs, so
// it is plain data with JSON tags; maps and slices are never shared between
// the values this package returns.
//
// It has two forms, like runtime.Spec. In the one-service form (every spec
// before projects, and a compose file of one service) the fields from Image
// to Build describe the app's only service, named Name. In the project
// form Services lists them and those fields are empty. State may be set in
// both.
type AppSpec struct {
	// Name of the app: a DNS-1035 label (the compose service name in the
	// one-service form, the compose project name otherwise).
	Name string `json:"name"`
	// Image is a full reference with registry and tag or digest, e.g.
	// 127.0.0.1:5000/hello:v1 (see image.ParseReference).
	Image string `json:"image,omitempty"`
	// Port the service listens on inside its container.
	Port int `json:"port,omitempty"`
	// Env is the container environment. DRIFT_CLOUD and DRIFT_APP are added
	// by RuntimeSpec, and the runtimes set PORT to Port, so Env may not set
	// the first two and may set PORT only to Port.
	Env map[string]string `json:"env,omitempty"`
	// Command is the full argv, replacing the image entrypoint when set
	// (compose entrypoint followed by command).
	Command []string `json:"command,omitempty"`
	// Health is the HTTP path answered when ready; "" means "/".
	Health string `json:"health,omitempty"`
	// Probe is runtime.ProbeTCP for a service whose healthcheck is no HTTP
	// probe drift can make: it is ready when its port accepts connections.
	Probe string `json:"probe,omitempty"`
	// Replicas is the Kubernetes replica count; 0 means 1.
	Replicas int `json:"replicas,omitempty"`
	// Hostname of the container or pod (an RFC 1123 label) as declared;
	// the runtimes name their objects themselves and do not apply it.
	Hostname string `json:"hostname,omitempty"`
	// Ports lists every port the service declares, in file order (compose
	// ports first, then expose), including Port.
	Ports []Port `json:"ports,omitempty"`
	// Volumes are the service's mounts. Named volumes (type volume with a
	// source) are created per instance and mounted; a compose file can
	// declare no other kind, and other kinds held by specs from before
	// projects are not applied.
	Volumes []Volume `json:"volumes,omitempty"`
	// Networks the service joins as declared, sorted, without compose's
	// implicit "default": every service of an instance shares one network.
	Networks []string `json:"networks,omitempty"`
	// Build is set when the compose service has a build section: a
	// pipeline builds its image (see pipelinespec), so Image may be empty
	// until the pipeline sets it.
	Build bool `json:"build,omitempty"`

	// Services are the project form's services, in file order.
	Services []Service `json:"services,omitempty"`
	// Serve is the service users reach in the project form.
	Serve string `json:"serve,omitempty"`
	// State is the app's state endpoint, when one service declares it.
	State *runtime.State `json:"state,omitempty"`
}

// Service is one service of a project. Its fields mean what the AppSpec
// fields of the same name mean in the one-service form.
type Service struct {
	Name     string            `json:"name"`
	Image    string            `json:"image,omitempty"`
	Port     int               `json:"port"`
	Env      map[string]string `json:"env,omitempty"`
	Command  []string          `json:"command,omitempty"`
	Health   string            `json:"health,omitempty"`
	Probe    string            `json:"probe,omitempty"`
	Replicas int               `json:"replicas,omitempty"`
	Hostname string            `json:"hostname,omitempty"`
	Ports    []Port            `json:"ports,omitempty"`
	Volumes  []Volume          `json:"volumes,omitempty"`
	Networks []string          `json:"networks,omitempty"`
	Build    bool              `json:"build,omitempty"`
	// DependsOn are the services that must be ready before this one starts.
	DependsOn []string `json:"dependsOn,omitempty"`
}

// Port is one declared port of a service.
type Port struct {
	Target    int    `json:"target"`              // port inside the container
	Published string `json:"published,omitempty"` // host port or range, "" when not published
	HostIP    string `json:"host_ip,omitempty"`   // host address it is published on, "" for all
	Protocol  string `json:"protocol,omitempty"`  // tcp, udp or sctp; "" means tcp
}

// Volume is one declared mount of a service.
type Volume struct {
	Type     string `json:"type"`             // volume, bind, tmpfs, …
	Source   string `json:"source,omitempty"` // volume name or host path as written
	Target   string `json:"target"`           // path inside the container
	ReadOnly bool   `json:"read_only,omitempty"`
}

// FromImage is the "image reference plus orchestration info" form: an app
// named name serving HTTP on port from image.
func FromImage(name, image string, port int) (AppSpec, error) {
	a := AppSpec{Name: name, Image: image, Port: port}
	if err := a.Validate(); err != nil {
		return AppSpec{}, err
	}
	return a, nil
}

// IsProject reports whether the spec is in the project form.
func (a AppSpec) IsProject() bool { return len(a.Services) > 0 }

// Project returns the app's services: the project form's, or the one
// service of the one-service form, named Name.
func (a AppSpec) Project() []Service {
	if a.IsProject() {
		return a.Services
	}
	return []Service{{
		Name: a.Name, Image: a.Image, Port: a.Port, Env: a.Env, Command: a.Command, Health: a.Health, Probe: a.Probe,
		Replicas: a.Replicas, Hostname: a.Hostname, Ports: a.Ports, Volumes: a.Volumes, Networks: a.Networks, Build: a.Build,
	}}
}

var (
	healthRE   = regexp.MustCompile(`^/[^\s?#\x00]*$`)
	hostnameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
)

// Validate reports every problem of the spec in one error wrapping
// runtime.ErrInvalid, or nil when the runtimes will accept it.
func (a AppSpec) Validate() error {
	if p := a.problems(); len(p) > 0 {
		return fmt.Errorf("%w: app %q: %s", runtime.ErrInvalid, a.Name, strings.Join(p, "; "))
	}
	return nil
}

// problems lists what is wrong with the spec, in a stable order.
func (a AppSpec) problems() []string {
	var p []string
	if runtime.ValidateName(a.Name) != nil {
		p = append(p, fmt.Sprintf("app name %q must be a DNS-1035 label (a-z, 0-9, '-', start with a letter, at most 63 characters)", a.Name))
	}
	services := a.Project()
	if !a.IsProject() {
		p = append(p, services[0].problems()...)
	} else {
		if a.Image != "" || a.Port != 0 || len(a.Env) > 0 || len(a.Command) > 0 || a.Health != "" || a.Probe != "" ||
			a.Replicas != 0 || a.Hostname != "" || len(a.Ports) > 0 || len(a.Volumes) > 0 || len(a.Networks) > 0 || a.Build {
			p = append(p, "the fields of the one-service form must be empty when services are listed")
		}
		seen := map[string]bool{}
		for _, s := range services {
			if runtime.ValidateName(s.Name) != nil {
				p = append(p, fmt.Sprintf("service name %q must be a DNS-1035 label", s.Name))
			}
			if seen[s.Name] {
				p = append(p, fmt.Sprintf("service %q is listed twice", s.Name))
			}
			seen[s.Name] = true
			for _, msg := range s.problems() {
				p = append(p, "service "+s.Name+": "+msg)
			}
		}
		if _, err := runtime.StartOrder(a.runtimeServices("", "")); err != nil {
			p = append(p, strings.TrimPrefix(err.Error(), runtime.ErrInvalid.Error()+": "))
		}
		if a.Serve != "" && !seen[a.Serve] {
			p = append(p, fmt.Sprintf("serve names %q, which is not a service of the app", a.Serve))
		}
	}
	if st := a.State; st != nil {
		if !slices.ContainsFunc(services, func(s Service) bool { return s.Name == st.Service }) {
			p = append(p, fmt.Sprintf("state names service %q, which is not a service of the app", st.Service))
		}
		if !healthRE.MatchString(st.Path) {
			p = append(p, fmt.Sprintf("state path %q must start with '/' and hold no spaces, '?' or '#'", st.Path))
		}
	}
	p = append(p, publishConflicts(services)...)
	return p
}

// problems lists what is wrong with one service.
func (s Service) problems() []string {
	var p []string
	switch {
	case s.Image == "" && s.Build:
		p = append(p, "no image yet: it has a build section, so release it through a pipeline (or name its image under image:)")
	default:
		if msg := checkImage(s.Image); msg != "" {
			p = append(p, msg)
		}
	}
	if s.Port < 1 || s.Port > 65535 {
		p = append(p, fmt.Sprintf("port %d is not in 1..65535", s.Port))
	}
	if s.Replicas < 0 {
		p = append(p, fmt.Sprintf("replicas %d is negative", s.Replicas))
	}
	//workflowcheck:ignore the keys are sorted before use
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			p = append(p, fmt.Sprintf("bad environment variable name %q", k))
		case k == EnvCloud || k == EnvApp:
			p = append(p, fmt.Sprintf("environment variable %s is set by drift", k))
		case k == "PORT" && s.Env[k] != strconv.Itoa(s.Port):
			p = append(p, fmt.Sprintf("environment variable PORT=%q differs from port %d (the runtimes set PORT to the service port)", s.Env[k], s.Port))
		case strings.ContainsRune(s.Env[k], 0):
			p = append(p, fmt.Sprintf("environment variable %s holds a NUL byte", k))
		}
	}
	for i, arg := range s.Command {
		if strings.ContainsRune(arg, 0) || (i == 0 && arg == "") {
			p = append(p, fmt.Sprintf("bad command %q", s.Command))
			break
		}
	}
	if s.Health != "" && !healthRE.MatchString(s.Health) {
		p = append(p, fmt.Sprintf("health path %q must start with '/' and hold no spaces, '?' or '#'", s.Health))
	}
	if s.Probe != "" && s.Probe != runtime.ProbeHTTP && s.Probe != runtime.ProbeTCP {
		p = append(p, fmt.Sprintf("probe %q: want %s or %s", s.Probe, runtime.ProbeHTTP, runtime.ProbeTCP))
	}
	if s.Hostname != "" && !hostnameRE.MatchString(s.Hostname) {
		p = append(p, fmt.Sprintf("hostname %q must be an RFC 1123 label (a-z, 0-9, '-', at most 63 characters)", s.Hostname))
	}
	for _, port := range s.Ports {
		if port.Target < 1 || port.Target > 65535 {
			p = append(p, fmt.Sprintf("declared port %d is not in 1..65535", port.Target))
		}
		switch port.Protocol {
		case "", "tcp", "udp", "sctp":
		default:
			p = append(p, fmt.Sprintf("declared port %d has unknown protocol %q", port.Target, port.Protocol))
		}
	}
	for _, v := range s.Volumes {
		if v.Target == "" {
			p = append(p, fmt.Sprintf("volume %q has no target path", v.Source))
		}
	}
	for _, n := range s.Networks {
		if n == "" {
			p = append(p, "empty network name")
		}
	}
	return p
}

// checkImage returns what is wrong with an image reference, or "".
func checkImage(ref string) string {
	if strings.TrimSpace(ref) == "" {
		return "no image"
	}
	if _, err := image.ParseReference(ref); err != nil {
		return fmt.Sprintf("%v (drift needs a full reference with registry and tag or digest, e.g. 127.0.0.1:5000/hello:v1)", err)
	}
	return ""
}

// publishConflicts reports every two declared ports that publish the same
// host port (same protocol, overlapping ranges, the same or any address):
// compose could not start such a project on one host.
func publishConflicts(services []Service) []string {
	type published struct {
		service          string
		lo, hi           int
		hostIP, protocol string
	}
	var all []published
	var p []string
	for _, s := range services {
		for _, port := range s.Ports {
			if port.Published == "" {
				continue
			}
			lo, hi, err := portRange(port.Published)
			if err != nil {
				p = append(p, fmt.Sprintf("service %s: published port %q: %v", s.Name, port.Published, err))
				continue
			}
			proto := port.Protocol
			if proto == "" {
				proto = "tcp"
			}
			pub := published{s.Name, lo, hi, port.HostIP, proto}
			for _, q := range all {
				if q.protocol == pub.protocol && q.lo <= pub.hi && pub.lo <= q.hi &&
					(q.hostIP == pub.hostIP || q.hostIP == "" || pub.hostIP == "") {
					p = append(p, fmt.Sprintf("services %s and %s both publish port %s/%s", q.service, s.Name, port.Published, proto))
				}
			}
			all = append(all, pub)
		}
	}
	return p
}

// portRange reads "8080" or "8000-8010".
func portRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err = strconv.Atoi(a)
	hi = lo
	if err == nil && isRange {
		hi, err = strconv.Atoi(b)
	}
	if err != nil || lo < 1 || hi > 65535 || hi < lo {
		return 0, 0, fmt.Errorf("not a port or port range")
	}
	return lo, hi, nil
}

// RuntimeSpec is the spec one cloud's runtime deploys for this app: every
// service's env plus DRIFT_CLOUD=cloud and DRIFT_APP=name, and labels plus
// drift.cloud=cloud and drift.app=name (these two win over labels). An app
// of one service that needs nothing of the project form (no named volume,
// no state endpoint, an HTTP probe) gets the one-service form, exactly as
// before projects. Neither the AppSpec's nor the caller's maps are shared
// with the result.
func (a AppSpec) RuntimeSpec(cloud string, labels map[string]string) runtime.Spec {
	l := make(map[string]string, len(labels)+2)
	maps.Copy(l, labels) //workflowcheck:ignore copying a map does not depend on order
	l[runtime.LabelCloud] = cloud
	l[LabelApp] = a.Name
	services := a.runtimeServices(cloud, a.Name)
	var volumes []string
	for _, s := range services {
		for _, m := range s.Mounts {
			if !slices.Contains(volumes, m.Volume) {
				volumes = append(volumes, m.Volume)
			}
		}
	}
	if !a.IsProject() && len(volumes) == 0 && a.State == nil && a.Probe == "" {
		s := services[0]
		return runtime.Spec{Image: s.Image, Port: s.Port, Env: s.Env, Command: s.Command, Replicas: s.Replicas, Labels: l, Health: s.Health}
	}
	spec := runtime.Spec{Services: services, InstanceVolumes: volumes, Serve: a.Serve, Labels: l}
	if !a.IsProject() {
		spec.Serve = a.Name
	}
	if a.State != nil {
		st := *a.State
		spec.State = &st
	}
	return spec
}

// runtimeServices maps the app's services to the runtime's, adding
// DRIFT_CLOUD and DRIFT_APP to each environment.
func (a AppSpec) runtimeServices(cloud, app string) []runtime.Service {
	var out []runtime.Service
	for _, s := range a.Project() {
		env := make(map[string]string, len(s.Env)+2)
		maps.Copy(env, s.Env) //workflowcheck:ignore copying a map does not depend on order
		env[EnvCloud] = cloud
		env[EnvApp] = app
		rs := runtime.Service{
			Name: s.Name, Image: s.Image, Port: s.Port, Env: env, Command: slices.Clone(s.Command),
			Replicas: s.Replicas, Health: s.Health, Probe: s.Probe, DependsOn: slices.Clone(s.DependsOn),
		}
		for _, v := range s.Volumes {
			if v.Type == "volume" && v.Source != "" {
				rs.Mounts = append(rs.Mounts, runtime.Mount{Volume: v.Source, Path: v.Target, ReadOnly: v.ReadOnly})
			}
		}
		out = append(out, rs)
	}
	return out
}

// WithImage returns a copy of the one-service spec running ref instead,
// e.g. once the image has been copied to the center registry and is
// referenced by digest. Call Validate to check ref.
func (a AppSpec) WithImage(ref string) AppSpec {
	c := a.clone()
	c.Image = ref
	return c
}

// Images returns each service's image by service name, in both forms.
func (a AppSpec) Images() map[string]string {
	out := map[string]string{}
	for _, s := range a.Project() {
		out[s.Name] = s.Image
	}
	return out
}

// WithImages returns a copy of the spec whose services named in images run
// those instead (in both forms; the one-service form's service is named
// Name). Call Validate to check them.
func (a AppSpec) WithImages(images map[string]string) AppSpec {
	c := a.clone()
	if ref, ok := images[c.Name]; ok && !c.IsProject() {
		c.Image = ref
	}
	for i := range c.Services {
		if ref, ok := images[c.Services[i].Name]; ok {
			c.Services[i].Image = ref
		}
	}
	return c
}

// clone deep-copies the spec so no map or slice is shared.
func (a AppSpec) clone() AppSpec {
	c := a
	if a.Env != nil {
		c.Env = maps.Clone(a.Env)
	}
	c.Command = slices.Clone(a.Command)
	c.Ports = slices.Clone(a.Ports)
	c.Volumes = slices.Clone(a.Volumes)
	c.Networks = slices.Clone(a.Networks)
	if a.State != nil {
		st := *a.State
		c.State = &st
	}
	if a.Services != nil {
		c.Services = make([]Service, len(a.Services))
		for i, s := range a.Services {
			if s.Env != nil {
				s.Env = maps.Clone(s.Env)
			}
			s.Command = slices.Clone(s.Command)
			s.Ports = slices.Clone(s.Ports)
			s.Volumes = slices.Clone(s.Volumes)
			s.Networks = slices.Clone(s.Networks)
			s.DependsOn = slices.Clone(s.DependsOn)
			c.Services[i] = s
		}
	}
	return c
}
