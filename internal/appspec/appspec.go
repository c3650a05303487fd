// Package appspec holds what a user asks drift to run for an app: one image
// serving HTTP on one port plus the orchestration info around it. An AppSpec
// is read from a compose file (FromCompose) or given directly (FromImage);
// RuntimeSpec turns it into the runtime.Spec that every runtime deploys, so
// the Docker container config for fog clouds and the Kubernetes Deployment +
// Service for edge clouds are both derived from this one description.
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
	// LabelPort on a compose service names which of its ports is the HTTP
	// service port (default: the first TCP port in file order).
	LabelPort = "drift.port"
	// LabelHealth on a compose service is the HTTP path answered when ready
	// (default: taken from a wget/curl healthcheck, else "/").
	LabelHealth = "drift.health"
	// LabelApp is set by RuntimeSpec to the app name.
	LabelApp = "drift.app"
)

// Environment variables RuntimeSpec sets in every instance; an AppSpec may
// not set them itself.
const (
	EnvCloud = "DRIFT_CLOUD"
	EnvApp   = "DRIFT_APP"
)

// AppSpec is what drift runs for an app. It travels in workflow inputs, so
// it is plain data with JSON tags; maps and slices are never shared between
// the values this package returns.
type AppSpec struct {
	// Name of the app: a DNS-1035 label (the compose service name).
	Name string `json:"name"`
	// Image is a full reference with registry and tag or digest, e.g.
	// 127.0.0.1:5000/hello:v1 (see image.ParseReference).
	Image string `json:"image"`
	// Port the HTTP service listens on inside its container.
	Port int `json:"port"`
	// Env is the container environment. DRIFT_CLOUD and DRIFT_APP are added
	// by RuntimeSpec, and the runtimes set PORT to Port, so Env may not set
	// the first two and may set PORT only to Port.
	Env map[string]string `json:"env,omitempty"`
	// Command is the full argv, replacing the image entrypoint when set
	// (compose entrypoint followed by command).
	Command []string `json:"command,omitempty"`
	// Health is the HTTP path answered when ready; "" means "/".
	Health string `json:"health,omitempty"`
	// Replicas is the Kubernetes replica count; 0 means 1.
	Replicas int `json:"replicas,omitempty"`
	// Hostname of the container or pod (an RFC 1123 label), "" for the
	// runtime's default. Orchestration info: runtime.Spec has no field for it.
	Hostname string `json:"hostname,omitempty"`

	// Orchestration info kept as declared in the compose file; the runtimes
	// do not act on it.

	// Ports lists every port the service declares, in file order (compose
	// ports first, then expose), including Port.
	Ports []Port `json:"ports,omitempty"`
	// Volumes are the service's mounts as declared (paths are not resolved).
	Volumes []Volume `json:"volumes,omitempty"`
	// Networks the service joins, sorted, without compose's implicit
	// "default" network.
	Networks []string `json:"networks,omitempty"`
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
	if msg := checkImage(a.Image); msg != "" {
		p = append(p, msg)
	}
	if a.Port < 1 || a.Port > 65535 {
		p = append(p, fmt.Sprintf("port %d is not in 1..65535", a.Port))
	}
	if a.Replicas < 0 {
		p = append(p, fmt.Sprintf("replicas %d is negative", a.Replicas))
	}
	//workflowcheck:ignore the keys are sorted before use
	for _, k := range slices.Sorted(maps.Keys(a.Env)) {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			p = append(p, fmt.Sprintf("bad environment variable name %q", k))
		case k == EnvCloud || k == EnvApp:
			p = append(p, fmt.Sprintf("environment variable %s is set by drift", k))
		case k == "PORT" && a.Env[k] != strconv.Itoa(a.Port):
			p = append(p, fmt.Sprintf("environment variable PORT=%q differs from port %d (the runtimes set PORT to the service port)", a.Env[k], a.Port))
		case strings.ContainsRune(a.Env[k], 0):
			p = append(p, fmt.Sprintf("environment variable %s holds a NUL byte", k))
		}
	}
	for i, arg := range a.Command {
		if strings.ContainsRune(arg, 0) || (i == 0 && arg == "") {
			p = append(p, fmt.Sprintf("bad command %q", a.Command))
			break
		}
	}
	if a.Health != "" && !healthRE.MatchString(a.Health) {
		p = append(p, fmt.Sprintf("health path %q must start with '/' and hold no spaces, '?' or '#'", a.Health))
	}
	if a.Hostname != "" && !hostnameRE.MatchString(a.Hostname) {
		p = append(p, fmt.Sprintf("hostname %q must be an RFC 1123 label (a-z, 0-9, '-', at most 63 characters)", a.Hostname))
	}
	for _, port := range a.Ports {
		if port.Target < 1 || port.Target > 65535 {
			p = append(p, fmt.Sprintf("declared port %d is not in 1..65535", port.Target))
		}
		switch port.Protocol {
		case "", "tcp", "udp", "sctp":
		default:
			p = append(p, fmt.Sprintf("declared port %d has unknown protocol %q", port.Target, port.Protocol))
		}
	}
	for _, v := range a.Volumes {
		if v.Target == "" {
			p = append(p, fmt.Sprintf("volume %q has no target path", v.Source))
		}
	}
	for _, n := range a.Networks {
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

// RuntimeSpec is the spec one cloud's runtime deploys for this app: the
// app's env plus DRIFT_CLOUD=cloud and DRIFT_APP=name, and labels plus
// drift.cloud=cloud and drift.app=name (these two win over labels). Neither
// the AppSpec's nor the caller's maps are shared with the result.
func (a AppSpec) RuntimeSpec(cloud string, labels map[string]string) runtime.Spec {
	env := make(map[string]string, len(a.Env)+2)
	maps.Copy(env, a.Env) //workflowcheck:ignore copying a map does not depend on order
	env[EnvCloud] = cloud
	env[EnvApp] = a.Name
	l := make(map[string]string, len(labels)+2)
	maps.Copy(l, labels) //workflowcheck:ignore copying a map does not depend on order
	l[runtime.LabelCloud] = cloud
	l[LabelApp] = a.Name
	return runtime.Spec{
		Image:    a.Image,
		Port:     a.Port,
		Env:      env,
		Command:  slices.Clone(a.Command),
		Replicas: a.Replicas,
		Labels:   l,
		Health:   a.Health,
	}
}

// WithImage returns a copy of the spec running ref instead, e.g. once the
// image has been copied to the center registry and is referenced by digest.
// Call Validate to check ref.
func (a AppSpec) WithImage(ref string) AppSpec {
	c := a.clone()
	c.Image = ref
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
	return c
}
