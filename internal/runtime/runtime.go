// Package runtime runs drift instances on one cloud. A Runtime hides whether
// the cloud is a Docker host, a Kubernetes cluster or a plain box that runs
// processes; every implementation is idempotent by instance name and marks
// what it creates with drift's ownership labels so it can always be found.
package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Kinds of runtime a cloud can declare.
const (
	KindDocker     = "docker"
	KindKubernetes = "kubernetes"
	KindProcess    = "process"
)

// Labels every drift-created object carries.
const (
	LabelOwned    = "drift.owned"
	LabelWorkflow = "drift.workflow"
	LabelCloud    = "drift.cloud"
	LabelInstance = "drift.instance"
	LabelService  = "drift.project-service" // the service of a project an object belongs to (activities.LabelService, drift.service, is a component's)
)

// ErrInvalid marks errors caused by bad input (a name or spec no retry can fix).
var ErrInvalid = errors.New("invalid input")

// Spec is what an instance runs: a project of one or more services, owned
// by one label set. It has two forms:
//
//   - the one-service form (every spec before projects, still the form of a
//     plain image): Image, Port, Env, Command, Replicas and Health describe
//     the instance's only service, whose objects are named after the
//     instance itself;
//   - the project form: Services lists the services (started in depends_on
//     order, each reachable by its peers under its name), InstanceVolumes the
//     named volumes each instance gets its own copy of, Serve the service users
//     reach and State where the app's state can be read and replaced.
//
// The one-service fields (and Volumes, which outlive instances) must be
// empty in the project form, and the project fields in the one-service form. Project() reads both forms alike.
type Spec struct {
	Image    string            `json:"image,omitempty"`    // full reference, e.g. 127.0.0.1:5000/hello:v1 or …@sha256:…
	Port     int               `json:"port,omitempty"`     // port the service listens on inside its container/pod; the process runtime passes a free one in $PORT instead
	Env      map[string]string `json:"env,omitempty"`      // extra environment
	Command  []string          `json:"command,omitempty"`  // overrides the image entrypoint when set
	Replicas int               `json:"replicas,omitempty"` // Kubernetes replicas; 0 means 1
	Labels   map[string]string `json:"labels,omitempty"`   // extra labels (drift.workflow, drift.cloud, …); values are sanitised with LabelValue
	Health   string            `json:"health,omitempty"`   // HTTP path answered when ready; "" means "/"
	Volumes  []Volume          `json:"volumes,omitempty"`  // mounted volumes that outlive the instance (runtimes that are Stateful; one-service form)

	Services []Service `json:"services,omitempty"` // the project form's services
	// InstanceVolumes are the project's named volumes: unlike Volumes, each
	// instance gets its own copy, removed with it (a session leaves nothing
	// behind), so they are named after the instance and need no Stateful API.
	InstanceVolumes []string `json:"instanceVolumes,omitempty"`
	Serve           string   `json:"serve,omitempty"` // the service users reach ("": the first)
	State           *State   `json:"state,omitempty"` // where the app's state is read (GET) and replaced (PUT)

	// Platform (os/arch) is the entry of a multi-platform image to run, the
	// cloud's; "" is the runtime host's own.
	Platform string `json:"platform,omitempty"`
}

// Service is one service of a project.
type Service struct {
	// Name is a DNS-1035 label, unique in the project: peers reach the
	// service by it (see the runtimes' package docs for how).
	Name     string            `json:"name"`
	Image    string            `json:"image"`
	Port     int               `json:"port"` // the port drift probes and peers reach
	Env      map[string]string `json:"env,omitempty"`
	Command  []string          `json:"command,omitempty"`
	Replicas int               `json:"replicas,omitempty"`
	Health   string            `json:"health,omitempty"` // HTTP path probed for readiness; "" means "/"
	// Probe is ProbeHTTP ("", GET Health answers below 500) or ProbeTCP
	// (the port accepts connections), for services that speak no HTTP.
	Probe     string   `json:"probe,omitempty"`
	DependsOn []string `json:"dependsOn,omitempty"` // services that must be ready before this one starts
	Mounts    []Mount  `json:"mounts,omitempty"`    // named volumes of the project it mounts
}

// Probes a service's readiness can take.
const (
	ProbeHTTP = "http"
	ProbeTCP  = "tcp"
)

// Mount puts a named volume of the project at Path inside a service.
type Mount struct {
	Volume   string `json:"volume"`
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// State is where an instance keeps the app's state: an HTTP path of one of
// its services that answers GET with the state and accepts PUT of a state
// read from another instance of the same app.
type State struct {
	Service string `json:"service"`
	Path    string `json:"path"`
	// Merge: the endpoint also takes PATCH {"base": B, "final": F}, adding
	// to what it holds the writes an instance left behind took after B was
	// read from it (F is its state at the end of its drain).
	Merge bool `json:"merge,omitempty"`
}

// IsProject reports whether the spec is in the project form.
func (s Spec) IsProject() bool { return len(s.Services) > 0 }

// Project returns the spec's services in the order given; the one-service
// form is one service with an empty name, whose objects are named after the
// instance.
func (s Spec) Project() []Service {
	if s.IsProject() {
		return s.Services
	}
	return []Service{{Image: s.Image, Port: s.Port, Env: s.Env, Command: s.Command, Replicas: s.Replicas, Health: s.Health}}
}

// ServeService is the service users reach: Serve, or the first service.
func (s Spec) ServeService() Service {
	for _, svc := range s.Services {
		if svc.Name == s.Serve {
			return svc
		}
	}
	return s.Project()[0]
}

// Endpoint is where an instance serves.
type Endpoint struct {
	URL  string `json:"url"` // e.g. http://127.0.0.1:32768
	Host string `json:"host"`
	Port int    `json:"port"`
	// StateURL is the full URL of the instance's state endpoint (see
	// State), "" when the app declares none. It is reached like URL: from
	// the worker of the instance's cloud.
	StateURL string `json:"stateUrl,omitempty"`
}

// Instance is one drift-owned instance found on a runtime.
type Instance struct {
	Name     string            `json:"name"`
	Image    string            `json:"image"` // the serving service's image
	Labels   map[string]string `json:"labels"`
	Ready    bool              `json:"ready"`
	Endpoint Endpoint          `json:"endpoint"`
}

// Status tells whether an instance exists and is ready: Ready only when
// every service of it is.
type Status struct {
	Exists   bool     `json:"exists"`
	Ready    bool     `json:"ready"`
	Image    string   `json:"image,omitempty"` // the serving service's image
	Endpoint Endpoint `json:"endpoint"`
	Message  string   `json:"message,omitempty"`
	// Services reports each service of a project (nil in the one-service
	// form), in the spec's order.
	Services []ServiceStatus `json:"services,omitempty"`
}

// ServiceStatus is one service of an instance.
type ServiceStatus struct {
	Name    string `json:"name"`
	Image   string `json:"image,omitempty"`
	Ready   bool   `json:"ready"`
	Message string `json:"message,omitempty"`
}

// ServicesMessage says how many of an instance's services are ready and
// why the others are not.
func ServicesMessage(services []ServiceStatus) string {
	var notReady []string
	for _, ss := range services {
		if !ss.Ready {
			notReady = append(notReady, ss.Name+": "+ss.Message)
		}
	}
	msg := fmt.Sprintf("%d of %d services ready", len(services)-len(notReady), len(services))
	if len(notReady) > 0 {
		msg += "; " + strings.Join(notReady, "; ")
	}
	return msg
}

// Runtime runs instances on one cloud.
type Runtime interface {
	// Kind is one of KindDocker, KindKubernetes, KindProcess.
	Kind() string
	// Deploy creates the instance (every service of its project, in
	// depends_on order), or reuses it when one with this name and spec
	// already exists, and returns once every service is ready: the serving
	// service's endpoint, with the state endpoint when the spec declares one.
	Deploy(ctx context.Context, name string, spec Spec) (Endpoint, error)
	// Status reports an instance, probing every service; a missing one is
	// Exists=false, not an error.
	Status(ctx context.Context, name string) (Status, error)
	// Destroy removes the instance and all it owns (every service, its
	// network and volumes); a missing one is no error.
	Destroy(ctx context.Context, name string) error
	// List returns the drift-owned instances whose labels match selector
	// (nil selector: all drift-owned instances).
	List(ctx context.Context, selector map[string]string) ([]Instance, error)
}

var nameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ValidateName checks that name is usable on every runtime: a DNS-1035
// label (lowercase letters, digits and '-', starting with a letter, ≤63).
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: instance name %q must be a DNS-1035 label (a-z, 0-9, '-', start with a letter, at most 63 characters)", ErrInvalid, name)
	}
	return nil
}

// InstanceName derives a valid, stable instance name from its parts (such as
// workflow identity and cloud), so a retry finds what an earlier try made.
// Long or unusual inputs keep a hash suffix so distinct inputs never collide.
func InstanceName(parts ...string) string {
	joined := strings.Join(parts, "-")
	clean := sanitize(strings.ToLower(joined), "-")
	clean = strings.TrimLeft(clean, "-0123456789")
	if clean == "" {
		clean = "i"
	}
	if clean == joined && len(clean) <= 63 {
		return clean
	}
	return hashed(clean, strings.Join(parts, "\x00"))
}

// LabelValue turns any string into a valid Kubernetes label value, the same
// way on every runtime so selectors match everywhere.
func LabelValue(s string) string {
	clean := strings.Trim(sanitize(s, "-_."), "-_.")
	if clean == s && len(s) <= 63 {
		return s
	}
	sum := shortHash(s)
	if len(clean) > 63-len(sum)-1 {
		clean = strings.Trim(clean[:63-len(sum)-1], "-_.")
	}
	if clean == "" {
		return sum
	}
	return clean + "-" + sum
}

// OwnedLabels returns the labels an instance carries: drift's ownership
// label, the instance name and the spec's labels, all values sanitised.
func OwnedLabels(name string, extra map[string]string) map[string]string {
	l := map[string]string{LabelOwned: "true", LabelInstance: name}
	for k, v := range extra {
		l[k] = LabelValue(v)
	}
	return l
}

// Selector returns selector with drift's ownership label added and values
// sanitised like OwnedLabels does.
func Selector(selector map[string]string) map[string]string {
	s := map[string]string{LabelOwned: "true"}
	for k, v := range selector {
		s[k] = LabelValue(v)
	}
	return s
}

// Matches reports whether labels satisfy a selector built by Selector.
func Matches(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Foreign says why an object carrying labels is not a runtime's to touch:
// drift does not own it, or it belongs to another cloud than cloud, the
// one the runtime was made for. It returns "" for the runtime's own
// objects; a runtime made for no cloud (cloud "") owns every cloud's. what
// names the object in the answer ("container", …). Every runtime whose
// backend may hold objects it did not make refuses to deploy over them,
// hides them from Status and leaves them to Destroy by this one rule.
func Foreign(what string, labels map[string]string, cloud string) string {
	if labels[LabelOwned] != "true" {
		return fmt.Sprintf("a %s drift does not own", what)
	}
	if cloud != "" && labels[LabelCloud] != LabelValue(cloud) {
		return fmt.Sprintf("a drift %s of cloud %q", what, labels[LabelCloud])
	}
	return ""
}

// ScopeToCloud is Foreign's rule for listing: it adds cloud to a selector
// built by Selector, so a runtime made for cloud lists its own instances
// only. ok is false when the selector asks for another cloud, whose
// instances such a runtime never has. A runtime made for no cloud (cloud
// "") lists every cloud's.
func ScopeToCloud(sel map[string]string, cloud string) (scoped map[string]string, ok bool) {
	if cloud == "" {
		return sel, true
	}
	want := LabelValue(cloud)
	if v, ok := sel[LabelCloud]; ok && v != want {
		return nil, false
	}
	sel[LabelCloud] = want
	return sel, true
}

// SortInstances orders instances by name so List output is stable.
func SortInstances(in []Instance) {
	sort.Slice(in, func(i, j int) bool { return in[i].Name < in[j].Name })
}

// sanitize replaces every rune that is not an ASCII letter, digit or one of
// extra with '-'.
func sanitize(s, extra string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(extra, r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:10]
}

// Config is how a cloud's runtime is reached; it is the `runtime:` block of
// a cloud in the topology file. An empty Kind means the process runtime.
type Config struct {
	Kind string `yaml:"kind,omitempty" json:"kind,omitempty"` // docker | kubernetes | process
	// Docker: engine address (DOCKER_HOST syntax); "" uses the environment.
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
	// Kubernetes: kubeconfig file, optional context, namespace ("" = drift-<cloud>).
	Kubeconfig string `yaml:"kubeconfig,omitempty" json:"kubeconfig,omitempty"`
	Context    string `yaml:"context,omitempty" json:"context,omitempty"`
	Namespace  string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	// Process: directory holding instance records and unpacked images
	// ("" = <data dir>/process/<cloud>).
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
}

// Validate rejects unknown kinds and missing connection details.
func (c Config) Validate() error {
	switch c.Kind {
	case "", KindProcess, KindDocker:
		return nil
	case KindKubernetes:
		if c.Kubeconfig == "" {
			return fmt.Errorf("%w: kubernetes runtime needs a kubeconfig", ErrInvalid)
		}
		return nil
	default:
		return fmt.Errorf("%w: unknown runtime kind %q (want docker, kubernetes or process)", ErrInvalid, c.Kind)
	}
}
