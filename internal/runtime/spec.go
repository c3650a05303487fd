package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/edgedrift/drift/internal/image"
)

// ValidateSpec checks an instance's name and spec, in either form, before
// any side effect and returns the labels the instance will carry; a runtime
// made for a cloud (cloud != "") labels it with that cloud and refuses
// another. Every error wraps ErrInvalid.
func ValidateSpec(name, cloud string, spec Spec) (map[string]string, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if msg := specProblem(spec); msg != "" {
		return nil, fmt.Errorf("%w: instance %s: %s", ErrInvalid, name, msg)
	}
	if err := validateVolumes(name, spec.Volumes); err != nil {
		return nil, err
	}
	for k := range spec.Labels {
		if k == "" {
			return nil, fmt.Errorf("%w: instance %s: empty label key", ErrInvalid, name)
		}
	}
	if v, ok := spec.Labels[LabelOwned]; ok && v != "true" {
		return nil, fmt.Errorf("%w: instance %s: label %s is reserved", ErrInvalid, name, LabelOwned)
	}
	if v, ok := spec.Labels[LabelInstance]; ok && v != name {
		return nil, fmt.Errorf("%w: instance %s: label %s=%q differs from the instance name", ErrInvalid, name, LabelInstance, v)
	}
	if _, ok := spec.Labels[LabelService]; ok {
		return nil, fmt.Errorf("%w: instance %s: label %s is set by the runtime on each service's objects", ErrInvalid, name, LabelService)
	}
	labels := OwnedLabels(name, spec.Labels)
	if cloud != "" {
		want := LabelValue(cloud)
		if got, ok := labels[LabelCloud]; ok && got != want {
			return nil, fmt.Errorf("%w: instance %s: label %s=%q but this runtime serves cloud %q", ErrInvalid, name, LabelCloud, got, cloud)
		}
		labels[LabelCloud] = want
	}
	return labels, nil
}

var (
	pathRE   = regexp.MustCompile(`^/[^\s?#\x00]*$`)
	volumeRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
)

// specProblem says what is wrong with a spec, or "".
func specProblem(spec Spec) string {
	if !spec.IsProject() {
		if len(spec.InstanceVolumes) > 0 || spec.Serve != "" || spec.State != nil {
			return "instance volumes, serve and state belong to the project form (services)"
		}
		return serviceProblem(spec.Project()[0])
	}
	if spec.Image != "" || spec.Port != 0 || len(spec.Env) > 0 || len(spec.Command) > 0 || spec.Replicas != 0 || spec.Health != "" {
		return "image, port, env, command, replicas and health belong to the one-service form: set them on each service"
	}
	if len(spec.Volumes) > 0 {
		// A project's volumes are its instance's own (InstanceVolumes);
		// volumes that outlive instances serve the one-service form.
		return "volumes that outlive the instance belong to the one-service form: a project declares instanceVolumes"
	}
	volumes := map[string]bool{}
	for _, v := range spec.InstanceVolumes {
		if !volumeRE.MatchString(v) {
			return fmt.Sprintf("volume name %q must be 1-63 characters of a-z, A-Z, 0-9, '_', '.', '-', starting with a letter or digit", v)
		}
		if volumes[v] {
			return fmt.Sprintf("volume %q is declared twice", v)
		}
		volumes[v] = true
	}
	names := map[string]bool{}
	for _, svc := range spec.Services {
		if ValidateName(svc.Name) != nil {
			return fmt.Sprintf("service name %q must be a DNS-1035 label (a-z, 0-9, '-', start with a letter, at most 63 characters)", svc.Name)
		}
		if names[svc.Name] {
			return fmt.Sprintf("service %q is declared twice", svc.Name)
		}
		names[svc.Name] = true
		if msg := serviceProblem(svc); msg != "" {
			return fmt.Sprintf("service %s: %s", svc.Name, msg)
		}
		paths := map[string]bool{}
		for _, m := range svc.Mounts {
			switch {
			case !volumes[m.Volume]:
				return fmt.Sprintf("service %s mounts volume %q, which the spec does not declare", svc.Name, m.Volume)
			case !MountPathOK(m.Path):
				return fmt.Sprintf("service %s mounts volume %q at %q: want a clean absolute path other than /", svc.Name, m.Volume, m.Path)
			case paths[m.Path]:
				return fmt.Sprintf("service %s mounts two volumes at %s", svc.Name, m.Path)
			}
			paths[m.Path] = true
		}
	}
	if spec.Serve != "" && !names[spec.Serve] {
		return fmt.Sprintf("serve names %q, which is not a service of the project", spec.Serve)
	}
	if st := spec.State; st != nil {
		if !names[st.Service] {
			return fmt.Sprintf("state names service %q, which is not a service of the project", st.Service)
		}
		if !pathRE.MatchString(st.Path) {
			return fmt.Sprintf("state path %q must start with '/' and hold no spaces, '?' or '#'", st.Path)
		}
	}
	if _, err := StartOrder(spec.Services); err != nil {
		return strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
	}
	return ""
}

// serviceProblem says what is wrong with one service, or "".
func serviceProblem(svc Service) string {
	if strings.TrimSpace(svc.Image) == "" {
		return "empty image reference"
	}
	if _, err := image.ParseReference(svc.Image); err != nil {
		return err.Error()
	}
	if svc.Port < 1 || svc.Port > 65535 {
		return fmt.Sprintf("port %d is not in 1..65535", svc.Port)
	}
	if svc.Replicas < 0 {
		return fmt.Sprintf("negative replicas %d", svc.Replicas)
	}
	for k, v := range svc.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return fmt.Sprintf("bad environment variable %q", k)
		}
	}
	for i, a := range svc.Command {
		if strings.ContainsRune(a, 0) || (i == 0 && a == "") {
			return fmt.Sprintf("bad command %q", svc.Command)
		}
	}
	if strings.ContainsAny(svc.Health, " \t\r\n\x00?#") {
		return fmt.Sprintf("bad health path %q", svc.Health)
	}
	if svc.Probe != "" && svc.Probe != ProbeHTTP && svc.Probe != ProbeTCP {
		return fmt.Sprintf("probe %q: want %s or %s", svc.Probe, ProbeHTTP, ProbeTCP)
	}
	return ""
}

// SpecHash identifies everything about a spec that shapes an instance, so a
// changed spec is noticed and the instance is recreated. (A spec without
// volumes hashes as it did before specs had them.)
func SpecHash(spec Spec, labels map[string]string) string {
	// The project fields are left out when empty, so a one-service spec
	// hashes as it did before projects and its instances are reused.
	b, _ := json.Marshal(struct {
		Image           string            `json:"image"`
		Port            int               `json:"port"`
		Env             map[string]string `json:"env"`
		Command         []string          `json:"command"`
		Labels          map[string]string `json:"labels"`
		Health          string            `json:"health"`
		Volumes         []Volume          `json:"volumes,omitempty"`
		Services        []Service         `json:"services,omitempty"`
		InstanceVolumes []string          `json:"instanceVolumes,omitempty"`
		Serve           string            `json:"serve,omitempty"`
		State           *State            `json:"state,omitempty"`
		Platform        string            `json:"platform,omitempty"`
	}{spec.Image, spec.Port, spec.Env, spec.Command, labels, spec.Health, spec.Volumes, spec.Services, spec.InstanceVolumes, spec.Serve, spec.State, spec.Platform})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}
