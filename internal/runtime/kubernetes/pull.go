package kubernetes

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/runtime"
)

// pullSecretName is the Secret with the registry logins of an instance's
// (or a task's) pods. The dot keeps it apart from every object named after
// a service, which are DNS labels.
func pullSecretName(name string) string { return name + ".registry" }

// applyPullSecret gives the pods of name the logins drift has for the
// registries of their images, as a kubernetes.io/dockerconfigjson Secret
// labelled like the instance (so it is deleted with it); it returns the
// Secret's name, or "" (and deletes an earlier one) when every image is
// pulled anonymously.
func (r *Runtime) applyPullSecret(ctx context.Context, name string, services []runtime.Service, labels map[string]string) (string, error) {
	type login struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Auth     string `json:"auth"`
	}
	auths := map[string]login{}
	for _, svc := range services {
		ref, err := image.ParseReference(svc.Image)
		if err != nil {
			return "", fmt.Errorf("%w: image %q: %v", runtime.ErrInvalid, svc.Image, err)
		}
		a, err := image.AuthFor(svc.Image)
		if err != nil {
			return "", err
		}
		if a.Username == "" && a.Password == "" {
			continue // anonymous (token logins are for Docker's own helpers)
		}
		auths[ref.Context().RegistryStr()] = login{a.Username, a.Password, base64.StdEncoding.EncodeToString([]byte(a.Username + ":" + a.Password))}
	}
	secretName := pullSecretName(name)
	secrets := r.client.CoreV1().Secrets(r.namespace)
	old, err := secrets.Get(ctx, secretName, metav1.GetOptions{})
	switch {
	case err != nil && !apierrors.IsNotFound(err):
		return "", r.apiErr("get secret", secretName, err)
	case err == nil && r.foreign(old.Labels) != "":
		return "", fmt.Errorf("kubernetes %s: deploy %s: the secret name %s is taken by %s", r.namespace, name, secretName, r.foreign(old.Labels))
	}
	if len(auths) == 0 {
		if err == nil {
			return "", r.deletePullSecret(ctx, name)
		}
		return "", nil
	}
	config, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return "", err
	}
	ac := corev1ac.Secret(secretName, r.namespace).WithLabels(labels).
		WithType(corev1.SecretTypeDockerConfigJson).
		WithData(map[string][]byte{corev1.DockerConfigJsonKey: config})
	if _, err := secrets.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return "", r.apiErr("apply secret", secretName, err)
	}
	return secretName, nil
}

// deletePullSecret deletes the registry logins of name's pods, if any.
func (r *Runtime) deletePullSecret(ctx context.Context, name string) error {
	err := r.client.CoreV1().Secrets(r.namespace).Delete(ctx, pullSecretName(name), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return r.apiErr("delete secret", pullSecretName(name), err)
	}
	return nil
}

// withPullSecret makes pod pull with the logins of secret ("" : none).
func withPullSecret(pod *corev1ac.PodSpecApplyConfiguration, secret string) *corev1ac.PodSpecApplyConfiguration {
	if secret != "" {
		pod.WithImagePullSecrets(corev1ac.LocalObjectReference().WithName(secret))
	}
	return pod
}
