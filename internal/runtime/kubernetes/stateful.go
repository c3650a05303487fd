package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/edgedrift/drift/internal/runtime"
)

var (
	_ runtime.Stateful = (*Runtime)(nil)
	_ runtime.Router   = (*Runtime)(nil)
)

// VolumeSize is what the PersistentVolumeClaim of either kind of volume
// requests (compose declares no size).
var VolumeSize = resource.MustParse("1Gi")

// annotationReplicas keeps a stopped Deployment's replicas for Start.
const annotationReplicas = "drift.replicas"

// ensureVolumes creates the PersistentVolumeClaim of each volume that has
// none (ReadWriteOnce, the cluster's default storage class): every env's
// pods mount the same claim.
func (r *Runtime) ensureVolumes(ctx context.Context, vs []runtime.Volume) error {
	for _, v := range vs {
		pvc, err := r.client.CoreV1().PersistentVolumeClaims(r.namespace).Get(ctx, v.Name, metav1.GetOptions{})
		switch {
		case err == nil:
			if why := r.foreign(pvc.Labels); why != "" {
				return fmt.Errorf("%w: kubernetes %s: volume %s is %s", runtime.ErrInvalid, r.namespace, v.Name, why)
			}
			continue
		case !apierrors.IsNotFound(err):
			return r.apiErr("get persistentvolumeclaim", v.Name, err)
		}
		pvc = &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: v.Name, Labels: runtime.VolumeLabels(v, r.cloud)},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: VolumeSize}},
			},
		}
		_, err = r.client.CoreV1().PersistentVolumeClaims(r.namespace).Create(ctx, pvc, metav1.CreateOptions{FieldManager: FieldManager})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return r.apiErr("create persistentvolumeclaim", v.Name, err)
		}
	}
	return nil
}

// Run runs a task as a Job (no retries) and reads its pod's exit code and
// log; the Job and its pods are deleted afterwards. A Job of that name from
// an earlier try is waited for.
func (r *Runtime) Run(ctx context.Context, name string, spec runtime.Spec) (runtime.TaskResult, error) {
	lbls, err := runtime.ValidateTask(name, r.cloud, spec)
	if err != nil {
		return runtime.TaskResult{}, err
	}
	if _, err := r.validate(name, runtime.Spec{Image: spec.Image, Port: 1, Labels: spec.Labels}); err != nil {
		return runtime.TaskResult{}, err
	}
	if err := r.ensureNamespace(ctx); err != nil {
		return runtime.TaskResult{}, err
	}
	jobs := r.client.BatchV1().Jobs(r.namespace)
	job, err := jobs.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if err := r.ensureVolumes(ctx, spec.Volumes); err != nil {
			return runtime.TaskResult{}, err
		}
		pull, err := r.applyPullSecret(ctx, name, spec.Project(), lbls)
		if err != nil {
			return runtime.TaskResult{}, err
		}
		ac := batchv1ac.Job(name, r.namespace).WithLabels(lbls).WithSpec(batchv1ac.JobSpec().
			WithBackoffLimit(0).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(lbls).WithSpec(withPullSecret(corev1ac.PodSpec().
				WithRestartPolicy(corev1.RestartPolicyNever).
				WithContainers(containerFor(name, spec.Project()[0], spec.Volumes)).
				WithVolumes(volumesFor(spec)...), pull))))
		if job, err = jobs.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return runtime.TaskResult{}, r.apiErr("apply job", name, err)
		}
	case err != nil:
		return runtime.TaskResult{}, r.apiErr("get job", name, err)
	case r.foreign(job.Labels) != "" || job.Labels[runtime.LabelTask] != "true":
		return runtime.TaskResult{}, fmt.Errorf("kubernetes %s: task %s: the job name is taken by another job", r.namespace, name)
	}
	uid := job.UID
	err = r.poll(ctx, "task "+name, func() (bool, string, error) {
		j, err := jobs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", r.apiErr("get job", name, err)
		}
		for _, c := range j.Status.Conditions {
			if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("%d active", j.Status.Active), nil
	})
	if err != nil {
		return runtime.TaskResult{}, err
	}
	res, err := r.taskResult(ctx, uid)
	if err != nil {
		return res, err
	}
	if err := r.deleteJob(ctx, name, uid); err != nil {
		return res, err
	}
	return res, r.deletePullSecret(ctx, name)
}

// taskResult reads the exit code and log of the pod of the Job with uid.
func (r *Runtime) taskResult(ctx context.Context, uid types.UID) (runtime.TaskResult, error) {
	pods, err := r.client.CoreV1().Pods(r.namespace).List(ctx, metav1.ListOptions{LabelSelector: batchv1.ControllerUidLabel + "=" + string(uid)})
	if err != nil {
		return runtime.TaskResult{}, r.apiErr("list pods", "", err)
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil {
				res := runtime.TaskResult{ExitCode: int(t.ExitCode)}
				tail := int64(50)
				b, err := r.client.CoreV1().Pods(r.namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
				if err != nil {
					res.Output = "(no log: " + err.Error() + ")"
				} else {
					res.Output = strings.TrimRight(string(b), "\n")
				}
				return res, nil
			}
		}
	}
	return runtime.TaskResult{}, fmt.Errorf("kubernetes %s: task ended without a terminated container", r.namespace)
}

func (r *Runtime) deleteJob(ctx context.Context, name string, uid types.UID) error {
	err := r.client.BatchV1().Jobs(r.namespace).Delete(ctx, name, metav1.DeleteOptions{
		PropagationPolicy: &background, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return r.apiErr("delete job", name, err)
	}
	sel := metav1.ListOptions{LabelSelector: batchv1.ControllerUidLabel + "=" + string(uid)}
	if err := r.client.CoreV1().Pods(r.namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil && !apierrors.IsNotFound(err) {
		return r.apiErr("delete pods", name, err)
	}
	return r.poll(ctx, "deletion of task "+name, func() (bool, string, error) {
		j, err := r.client.BatchV1().Jobs(r.namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil && j.UID == uid {
			return false, "job still there", nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return false, "", r.apiErr("get job", name, err)
		}
		pods, err := r.client.CoreV1().Pods(r.namespace).List(ctx, sel)
		if err != nil {
			return false, "", r.apiErr("list pods", name, err)
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pod(s) left", len(pods.Items)), nil
	})
}

// Stop scales the instance's Deployment to zero and keeps it, noting its
// replicas for Start.
func (r *Runtime) Stop(ctx context.Context, name string) error {
	dep, err := r.ownDeployment(ctx, name)
	if err != nil || dep == nil || stopped(dep) {
		return err
	}
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	if err := r.scale(ctx, name, 0, map[string]string{annotationReplicas: strconv.Itoa(int(want))}); err != nil {
		return err
	}
	return r.waitPodsGone(ctx, name)
}

// stopSettle bounds how long Stop waits for the pods to end: their grace
// period (30 s unless the spec says) and some.
const stopSettle = 2 * time.Minute

// waitPodsGone waits until no pod of the instance is left, so a stopped
// instance serves nothing any more (a Service may still send to a
// terminating pod until it ends).
func (r *Runtime) waitPodsGone(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, stopSettle)
	defer cancel()
	return r.poll(ctx, "the pods of "+name+" to end", func() (bool, string, error) {
		pods, err := r.client.CoreV1().Pods(r.namespace).List(ctx, metav1.ListOptions{LabelSelector: runtime.LabelInstance + "=" + name})
		if err != nil {
			return false, "", r.apiErr("list pods", name, err)
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pod(s) left", len(pods.Items)), nil
	})
}

// Start scales a stopped Deployment back and waits for the rollout.
func (r *Runtime) Start(ctx context.Context, name string) (runtime.Endpoint, error) {
	dep, err := r.ownDeployment(ctx, name)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	if dep == nil {
		return runtime.Endpoint{}, fmt.Errorf("kubernetes %s: start %s: no such instance", r.namespace, name)
	}
	if stopped(dep) {
		want, err := strconv.Atoi(dep.Annotations[annotationReplicas])
		if err != nil || want < 1 {
			want = 1
		}
		if err := r.scale(ctx, name, int32(want), nil); err != nil {
			return runtime.Endpoint{}, err
		}
		if dep, err = r.client.AppsV1().Deployments(r.namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return runtime.Endpoint{}, r.apiErr("get deployment", name, err)
		}
	}
	if err := r.waitRollout(ctx, dep); err != nil {
		return runtime.Endpoint{}, err
	}
	st, err := r.Status(ctx, name)
	return st.Endpoint, err
}

func (r *Runtime) scale(ctx context.Context, name string, replicas int32, annotations map[string]string) error {
	patch := map[string]any{"spec": map[string]any{"replicas": replicas}}
	if annotations != nil {
		patch["metadata"] = map[string]any{"annotations": annotations}
	}
	b, _ := json.Marshal(patch)
	_, err := r.client.AppsV1().Deployments(r.namespace).Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: FieldManager + "-scale"})
	if err != nil {
		return r.apiErr("scale deployment", name, err)
	}
	return nil
}

// ownDeployment returns the instance's Deployment when drift (of this
// cloud) owns it, nil when there is none.
func (r *Runtime) ownDeployment(ctx context.Context, name string) (*appsv1.Deployment, error) {
	if err := runtime.ValidateName(name); err != nil {
		return nil, err
	}
	dep, err := r.client.AppsV1().Deployments(r.namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, r.apiErr("get deployment", name, err)
	}
	if why := r.foreign(dep.Labels); why != "" {
		return nil, fmt.Errorf("kubernetes %s: %s is %s", r.namespace, name, why)
	}
	return dep, nil
}

// stopped reports whether a Deployment was scaled to zero.
func stopped(dep *appsv1.Deployment) bool { return dep.Spec.Replicas != nil && *dep.Spec.Replicas == 0 }

// Volumes lists the PersistentVolumeClaims drift made for volumes.
func (r *Runtime) Volumes(ctx context.Context, selector map[string]string) ([]runtime.Volume, error) {
	sel, err := r.selector(selector, runtime.LabelVolume)
	if err != nil || sel == "" {
		return []runtime.Volume{}, err
	}
	pvcs, err := r.client.CoreV1().PersistentVolumeClaims(r.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, r.apiErr("list persistentvolumeclaims", "", err)
	}
	out := []runtime.Volume{}
	for _, p := range pvcs.Items {
		out = append(out, runtime.Volume{Name: p.Name, Labels: p.Labels})
	}
	return out, nil
}

// RemoveVolume deletes a volume's claim and waits until it is gone (the
// cluster keeps it while a pod uses it).
func (r *Runtime) RemoveVolume(ctx context.Context, name string) error {
	pvcs := r.client.CoreV1().PersistentVolumeClaims(r.namespace)
	pvc, err := pvcs.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return r.apiErr("get persistentvolumeclaim", name, err)
	}
	if r.foreign(pvc.Labels) != "" || pvc.Labels[runtime.LabelVolume] == "" {
		return nil
	}
	err = pvcs.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pvc.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return r.apiErr("delete persistentvolumeclaim", name, err)
	}
	return r.poll(ctx, "deletion of volume "+name, func() (bool, string, error) {
		got, err := pvcs.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || err == nil && got.UID != pvc.UID {
			return true, "", nil
		}
		if err != nil {
			return false, "", r.apiErr("get persistentvolumeclaim", name, err)
		}
		return false, "claim still there", nil
	})
}

// selector is a label selector for this runtime's objects that carry key,
// matching sel; "" when sel asks for another cloud.
func (r *Runtime) selector(sel map[string]string, key string) (string, error) {
	set, ok := runtime.ScopeToCloud(runtime.Selector(sel), r.cloud)
	if !ok {
		return "", nil
	}
	s, err := labels.ValidatedSelectorFromSet(set)
	if err != nil {
		return "", fmt.Errorf("%w: selector %v: %v", runtime.ErrInvalid, sel, err)
	}
	return s.String() + "," + key, nil
}

// Route applies a Service name whose selector is the instance's pods: the
// switch is one update of the selector.
func (r *Runtime) Route(ctx context.Context, name, instance string, extra map[string]string) (runtime.Route, error) {
	if err := runtime.ValidateName(name); err != nil {
		return runtime.Route{}, err
	}
	target, err := r.client.CoreV1().Services(r.namespace).Get(ctx, instance, metav1.GetOptions{})
	if err != nil {
		return runtime.Route{}, r.apiErr("get service", instance, err)
	}
	if why := r.foreign(target.Labels); why != "" || len(target.Spec.Ports) == 0 {
		return runtime.Route{}, fmt.Errorf("%w: kubernetes %s: route %s to %s: not a drift instance of this cloud", runtime.ErrInvalid, r.namespace, name, instance)
	}
	svc, err := r.client.CoreV1().Services(r.namespace).Get(ctx, name, metav1.GetOptions{})
	if err == nil && (r.foreign(svc.Labels) != "" || svc.Labels[runtime.LabelEndpoint] == "") {
		return runtime.Route{}, fmt.Errorf("%w: kubernetes %s: route %s: the service name is taken", runtime.ErrInvalid, r.namespace, name)
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return runtime.Route{}, r.apiErr("get service", name, err)
	}
	l := runtime.OwnedLabels(name, extra)
	delete(l, runtime.LabelInstance)
	l[runtime.LabelEndpoint] = name
	if r.cloud != "" {
		l[runtime.LabelCloud] = runtime.LabelValue(r.cloud)
	}
	port := target.Spec.Ports[0]
	ac := corev1ac.Service(name, r.namespace).WithLabels(l).WithSpec(corev1ac.ServiceSpec().
		WithType(corev1.ServiceTypeClusterIP).
		WithSelector(selectorFor(instance, runtime.Service{})).
		WithPorts(corev1ac.ServicePort().WithName(portName).WithProtocol(corev1.ProtocolTCP).WithPort(port.Port).WithTargetPort(port.TargetPort)))
	svc, err = r.client.CoreV1().Services(r.namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return runtime.Route{}, r.apiErr("apply service", name, err)
	}
	return routeOf(svc), r.waitEndpoints(ctx, name, instance)
}

// routeSettle bounds how long Route waits for the cluster's endpoints.
const routeSettle = 30 * time.Second

// waitEndpoints waits until the Service's EndpointSlices list the
// instance's ready pods and no other: the switch as far as the API shows
// it (kube-proxy follows them on every node).
func (r *Runtime) waitEndpoints(ctx context.Context, name, instance string) error {
	ctx, cancel := context.WithTimeout(ctx, routeSettle)
	defer cancel()
	return r.poll(ctx, "the endpoints of "+name+" to be "+instance+"'s", func() (bool, string, error) {
		pods, err := r.client.CoreV1().Pods(r.namespace).List(ctx, metav1.ListOptions{LabelSelector: runtime.LabelInstance + "=" + instance})
		if err != nil {
			return false, "", r.apiErr("list pods", instance, err)
		}
		ours := map[string]bool{}
		for _, p := range pods.Items {
			ours[p.Name] = true
		}
		eps, err := r.client.DiscoveryV1().EndpointSlices(r.namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		if err != nil {
			return false, "", r.apiErr("list endpointslices", name, err)
		}
		ready, other := 0, 0
		for _, sl := range eps.Items {
			for _, ep := range sl.Endpoints {
				switch {
				case ep.TargetRef == nil || !ours[ep.TargetRef.Name]:
					other++
				case ep.Conditions.Ready == nil || *ep.Conditions.Ready:
					ready++
				}
			}
		}
		return ready > 0 && other == 0, fmt.Sprintf("%d ready endpoint(s) of %s, %d of others", ready, instance, other), nil
	})
}

// Routes lists the stable endpoints' Services.
func (r *Runtime) Routes(ctx context.Context, selector map[string]string) ([]runtime.Route, error) {
	sel, err := r.selector(selector, runtime.LabelEndpoint)
	if err != nil || sel == "" {
		return []runtime.Route{}, err
	}
	svcs, err := r.client.CoreV1().Services(r.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, r.apiErr("list services", "", err)
	}
	out := []runtime.Route{}
	for i := range svcs.Items {
		out = append(out, routeOf(&svcs.Items[i]))
	}
	return out, nil
}

// Unroute deletes an endpoint's Service.
func (r *Runtime) Unroute(ctx context.Context, name string) error {
	svc, err := r.client.CoreV1().Services(r.namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return r.apiErr("get service", name, err)
	}
	if r.foreign(svc.Labels) != "" || svc.Labels[runtime.LabelEndpoint] == "" {
		return nil
	}
	err = r.client.CoreV1().Services(r.namespace).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &svc.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return r.apiErr("delete service", name, err)
	}
	return nil
}

func routeOf(svc *corev1.Service) runtime.Route {
	return runtime.Route{Name: svc.Name, Instance: svc.Spec.Selector[runtime.LabelInstance], Endpoint: endpointOf(svc), Labels: svc.Labels}
}
