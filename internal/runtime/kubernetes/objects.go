package kubernetes

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/edgedrift/drift/internal/runtime"
)

// FieldManager is the server-side apply field manager of everything drift applies.
const FieldManager = "drift"

// portName names the container and Service port.
const portName = "http"

// validate rejects a name or spec no retry can fix, before any API call, and
// returns the labels of the instance's objects. Kubernetes is stricter about
// label keys than the other runtimes. Every error wraps runtime.ErrInvalid.
func (r *Runtime) validate(name string, spec runtime.Spec) (map[string]string, error) {
	labels, err := runtime.ValidateSpec(name, r.cloud, spec)
	if err != nil {
		return nil, err
	}
	for k := range spec.Labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("%w: instance %s: label key %q: %s", runtime.ErrInvalid, name, k, strings.Join(errs, "; "))
		}
	}
	return labels, nil
}

// selectorFor selects the pods of one instance.
func selectorFor(name string) map[string]string {
	return map[string]string{runtime.LabelInstance: name}
}

func replicasOf(spec runtime.Spec) int32 {
	if spec.Replicas <= 0 {
		return 1
	}
	return int32(spec.Replicas)
}

func healthPath(spec runtime.Spec) string {
	p := spec.Health
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	return p
}

// envFor is spec.Env in key order, then PORT (which always wins).
func envFor(spec runtime.Spec) []*corev1ac.EnvVarApplyConfiguration {
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		if k != "PORT" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	env := make([]*corev1ac.EnvVarApplyConfiguration, 0, len(keys)+1)
	for _, k := range keys {
		env = append(env, corev1ac.EnvVar().WithName(k).WithValue(spec.Env[k]))
	}
	return append(env, corev1ac.EnvVar().WithName("PORT").WithValue(strconv.Itoa(spec.Port)))
}

// deploymentFor is the Deployment drift applies for an instance.
func (r *Runtime) deploymentFor(name string, spec runtime.Spec, labels map[string]string) *appsv1ac.DeploymentApplyConfiguration {
	container := containerFor(name, spec).
		WithPorts(corev1ac.ContainerPort().WithName(portName).WithContainerPort(int32(spec.Port)).WithProtocol(corev1.ProtocolTCP)).
		WithReadinessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath(healthPath(spec)).WithPort(intstr.FromInt32(int32(spec.Port)))).
			WithPeriodSeconds(2).
			WithTimeoutSeconds(2).
			WithFailureThreshold(3))
	return appsv1ac.Deployment(name, r.namespace).
		WithLabels(labels).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(replicasOf(spec)).
			WithRevisionHistoryLimit(3).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorFor(name))).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(labels).
				WithSpec(corev1ac.PodSpec().WithContainers(container).WithVolumes(volumesFor(spec)...))))
}

// containerFor is the container of an instance's or a task's pods: image,
// environment, command and volume mounts.
func containerFor(name string, spec runtime.Spec) *corev1ac.ContainerApplyConfiguration {
	c := corev1ac.Container().WithName(name).WithImage(spec.Image).WithEnv(envFor(spec)...)
	if len(spec.Command) > 0 {
		c.WithCommand(spec.Command...)
	}
	for _, v := range spec.Volumes {
		c.WithVolumeMounts(corev1ac.VolumeMount().WithName(v.Name).WithMountPath(v.Path))
	}
	return c
}

// volumesFor are the pod volumes of spec's volumes: each its
// PersistentVolumeClaim of the same name.
func volumesFor(spec runtime.Spec) []*corev1ac.VolumeApplyConfiguration {
	var out []*corev1ac.VolumeApplyConfiguration
	for _, v := range spec.Volumes {
		out = append(out, corev1ac.Volume().WithName(v.Name).
			WithPersistentVolumeClaim(corev1ac.PersistentVolumeClaimVolumeSource().WithClaimName(v.Name)))
	}
	return out
}

// serviceFor is the ClusterIP Service drift applies for an instance.
func (r *Runtime) serviceFor(name string, spec runtime.Spec, labels map[string]string) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(name, r.namespace).
		WithLabels(labels).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(selectorFor(name)).
			WithPorts(corev1ac.ServicePort().
				WithName(portName).
				WithProtocol(corev1.ProtocolTCP).
				WithPort(int32(spec.Port)).
				WithTargetPort(intstr.FromInt32(int32(spec.Port)))))
}

// namespaceFor is the namespace of a cloud's instances when the config names none.
func namespaceFor(cloud string) string {
	if cloud == "" {
		return "drift"
	}
	return runtime.InstanceName("drift", cloud)
}
