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

// Annotations on a project's Deployments: what Status and List need to
// know about the whole project from any one of its objects.
const (
	AnnotationServices = "drift.services" // the project's services, comma-separated
	AnnotationServe    = "drift.serve"    // the serving service
	AnnotationState    = "drift.state"    // the state endpoint, service:path
)

// selectorFor selects the pods of one service of an instance. The
// one-service form's pods select on the instance alone, as before projects
// (a Deployment's selector cannot change).
func selectorFor(name string, svc runtime.Service) map[string]string {
	s := map[string]string{runtime.LabelInstance: name}
	if svc.Name != "" {
		s[runtime.LabelService] = svc.Name
	}
	return s
}

// serviceLabels are the labels of one service's objects.
func serviceLabels(labels map[string]string, svc runtime.Service) map[string]string {
	l := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		l[k] = v
	}
	if svc.Name != "" {
		l[runtime.LabelService] = svc.Name
	}
	return l
}

func replicasOf(svc runtime.Service) int32 {
	if svc.Replicas <= 0 {
		return 1
	}
	return int32(svc.Replicas)
}

// envFor is the service's Env in key order, then PORT (which always wins).
func envFor(svc runtime.Service) []*corev1ac.EnvVarApplyConfiguration {
	keys := make([]string, 0, len(svc.Env))
	for k := range svc.Env {
		if k != "PORT" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	env := make([]*corev1ac.EnvVarApplyConfiguration, 0, len(keys)+1)
	for _, k := range keys {
		env = append(env, corev1ac.EnvVar().WithName(k).WithValue(svc.Env[k]))
	}
	return append(env, corev1ac.EnvVar().WithName("PORT").WithValue(strconv.Itoa(svc.Port)))
}

// probeFor is the readiness probe of a service: GET of its health path, or
// a TCP connection.
func probeFor(svc runtime.Service) *corev1ac.ProbeApplyConfiguration {
	p := corev1ac.Probe().WithPeriodSeconds(2).WithTimeoutSeconds(2).WithFailureThreshold(3)
	if svc.Probe == runtime.ProbeTCP {
		return p.WithTCPSocket(corev1ac.TCPSocketAction().WithPort(intstr.FromInt32(int32(svc.Port))))
	}
	path := svc.HealthURL(runtime.Endpoint{})
	return p.WithHTTPGet(corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromInt32(int32(svc.Port))))
}

// rolloutDrainSeconds is how long a pod replaced by a rollout keeps serving
// after it leaves its Service's endpoints: every node's kube-proxy still
// sends it connections until it has reprogrammed its rules (about a second,
// several under load), and a pod gone by then would leave those hanging.
const rolloutDrainSeconds = 5

// deploymentFor is the Deployment drift applies for one service of an
// instance. hosts maps every service of a project to its Service's cluster
// IP: each pod's /etc/hosts gets them (hostAliases), so services reach each
// other by service name although all instances of the cloud share one
// namespace (and so their Services need instance-qualified names).
func (r *Runtime) deploymentFor(name string, spec runtime.Spec, svc runtime.Service, labels map[string]string, hosts map[string]string, pullSecret string) *appsv1ac.DeploymentApplyConfiguration {
	container := containerFor(containerName(name, svc), svc, spec.Volumes).
		WithPorts(corev1ac.ContainerPort().WithName(portName).WithContainerPort(int32(svc.Port)).WithProtocol(corev1.ProtocolTCP)).
		WithReadinessProbe(probeFor(svc)).
		WithLifecycle(corev1ac.Lifecycle().WithPreStop(corev1ac.LifecycleHandler().WithSleep(corev1ac.SleepAction().WithSeconds(rolloutDrainSeconds))))
	pod := withPullSecret(corev1ac.PodSpec().WithVolumes(volumesFor(spec)...), pullSecret).
		WithTerminationGracePeriodSeconds(rolloutDrainSeconds + 10)
	for i, m := range svc.Mounts {
		vol := fmt.Sprintf("volume-%d", i)
		container.WithVolumeMounts(corev1ac.VolumeMount().WithName(vol).WithMountPath(m.Path).WithReadOnly(m.ReadOnly))
		pod.WithVolumes(corev1ac.Volume().WithName(vol).WithPersistentVolumeClaim(
			corev1ac.PersistentVolumeClaimVolumeSource().WithClaimName(runtime.ObjectName(name, m.Volume)).WithReadOnly(m.ReadOnly)))
	}
	for _, s := range spec.Services {
		if ip := hosts[s.Name]; ip != "" {
			pod.WithHostAliases(corev1ac.HostAlias().WithIP(ip).WithHostnames(s.Name))
		}
	}
	pod.WithContainers(container)
	l := serviceLabels(labels, svc)
	dep := appsv1ac.Deployment(runtime.ObjectName(name, svc.Name), r.namespace).
		WithLabels(l).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(replicasOf(svc)).
			WithRevisionHistoryLimit(3).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorFor(name, svc))).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(l).
				WithSpec(pod)))
	if spec.IsProject() {
		var names []string
		for _, s := range spec.Services {
			names = append(names, s.Name)
		}
		a := map[string]string{AnnotationServices: strings.Join(names, ","), AnnotationServe: spec.ServeService().Name}
		if st := spec.State; st != nil {
			a[AnnotationState] = st.Service + ":" + st.Path
		}
		dep.WithAnnotations(a)
	}
	return dep
}

// containerFor is the container of an instance's or a task's pods: image,
// environment, command and the mounts of volumes that outlive it (a
// project's instance volumes are mounted by deploymentFor).
func containerFor(name string, svc runtime.Service, vs []runtime.Volume) *corev1ac.ContainerApplyConfiguration {
	c := corev1ac.Container().WithName(name).WithImage(svc.Image).WithEnv(envFor(svc)...)
	if len(svc.Command) > 0 {
		c.WithCommand(svc.Command...)
	}
	for _, v := range vs {
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

// containerName is the pod's container: the instance's name in the
// one-service form (as before projects), the service's in a project.
func containerName(name string, svc runtime.Service) string {
	if svc.Name == "" {
		return name
	}
	return svc.Name
}

// serviceFor is the ClusterIP Service drift applies for one service of an
// instance.
func (r *Runtime) serviceFor(name string, svc runtime.Service, labels map[string]string) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(runtime.ObjectName(name, svc.Name), r.namespace).
		WithLabels(serviceLabels(labels, svc)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(selectorFor(name, svc)).
			WithPorts(corev1ac.ServicePort().
				WithName(portName).
				WithProtocol(corev1.ProtocolTCP).
				WithPort(int32(svc.Port)).
				WithTargetPort(intstr.FromInt32(int32(svc.Port)))))
}

// claimFor is the PersistentVolumeClaim of one named volume of an instance,
// from the cluster's default storage class.
func (r *Runtime) claimFor(name, volume string, labels map[string]string) *corev1ac.PersistentVolumeClaimApplyConfiguration {
	return corev1ac.PersistentVolumeClaim(runtime.ObjectName(name, volume), r.namespace).
		WithLabels(labels).
		WithSpec(corev1ac.PersistentVolumeClaimSpec().
			WithAccessModes(corev1.ReadWriteOnce).
			WithResources(corev1ac.VolumeResourceRequirements().
				WithRequests(corev1.ResourceList{corev1.ResourceStorage: VolumeSize})))
}

// namespaceFor is the namespace of a cloud's instances when the config names none.
func namespaceFor(cloud string) string {
	if cloud == "" {
		return "drift"
	}
	return runtime.InstanceName("drift", cloud)
}
