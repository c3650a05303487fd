package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/edgedrift/drift/internal/image"
)

// ValidateSpec checks an instance's name and spec before any side effect and
// returns the labels the instance will carry; a runtime made for a cloud
// (cloud != "") labels it with that cloud and refuses another. Every error
// wraps ErrInvalid.
func ValidateSpec(name, cloud string, spec Spec) (map[string]string, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if strings.TrimSpace(spec.Image) == "" {
		return nil, fmt.Errorf("%w: instance %s: empty image reference", ErrInvalid, name)
	}
	if _, err := image.ParseReference(spec.Image); err != nil {
		return nil, fmt.Errorf("%w: instance %s: %v", ErrInvalid, name, err)
	}
	if spec.Port < 1 || spec.Port > 65535 {
		return nil, fmt.Errorf("%w: instance %s: port %d is not in 1..65535", ErrInvalid, name, spec.Port)
	}
	if spec.Replicas < 0 {
		return nil, fmt.Errorf("%w: instance %s: negative replicas %d", ErrInvalid, name, spec.Replicas)
	}
	for k, v := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("%w: instance %s: bad environment variable %q", ErrInvalid, name, k)
		}
	}
	for i, a := range spec.Command {
		if strings.ContainsRune(a, 0) || (i == 0 && a == "") {
			return nil, fmt.Errorf("%w: instance %s: bad command %q", ErrInvalid, name, spec.Command)
		}
	}
	if strings.ContainsAny(spec.Health, " \t\r\n\x00?#") {
		return nil, fmt.Errorf("%w: instance %s: bad health path %q", ErrInvalid, name, spec.Health)
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

// SpecHash identifies everything about a spec that shapes an instance, so a
// changed spec is noticed and the instance is recreated. (A spec without
// volumes hashes as it did before specs had them.)
func SpecHash(spec Spec, labels map[string]string) string {
	b, _ := json.Marshal(struct {
		Image    string            `json:"image"`
		Port     int               `json:"port"`
		Env      map[string]string `json:"env"`
		Command  []string          `json:"command"`
		Labels   map[string]string `json:"labels"`
		Health   string            `json:"health"`
		Volumes  []Volume          `json:"volumes,omitempty"`
		Platform string            `json:"platform,omitempty"`
	}{spec.Image, spec.Port, spec.Env, spec.Command, labels, spec.Health, spec.Volumes, spec.Platform})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}
