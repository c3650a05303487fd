// Package kubernetes runs drift instances on a Kubernetes cluster (an edge
// cloud). An instance is a Deployment and a ClusterIP Service of the same
// name in the cloud's namespace (drift-<cloud> unless the config names one),
// both server-side applied with field manager "drift" and labelled with
// drift's ownership labels (drift.owned=true, drift.instance=<name>,
// drift.cloud=<cloud> and the spec's labels); the pods select on
// drift.instance.
//
// The Endpoint of an instance is its Service's cluster IP and port
// (http://<clusterIP>:<port>): it is reachable from inside the cluster (and
// from workers that run there), not necessarily from the host that calls
// Deploy. In drift's tests the cluster's nodes are kwok fakes, whose pods
// never run, so tests check the API objects and never dial the endpoint.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/edgedrift/drift/internal/runtime"
)

// pollInterval is how often Deploy and Destroy look at the cluster while they wait.
const pollInterval = 100 * time.Millisecond

// Runtime runs instances as Deployments + Services in one namespace.
type Runtime struct {
	client    kubernetes.Interface
	namespace string
	cloud     string
}

var _ runtime.Runtime = (*Runtime)(nil)

// New connects to the cluster of cfg (its kubeconfig and optional context;
// without a kubeconfig, the default loading rules and then the in-cluster
// config) for cloud. The namespace is cfg.Namespace, or drift-<cloud>.
func New(cfg runtime.Config, cloud string) (*Runtime, error) {
	if cfg.Kind != "" && cfg.Kind != runtime.KindKubernetes {
		return nil, fmt.Errorf("%w: kubernetes runtime for cloud %s given a %q config", runtime.ErrInvalid, cloud, cfg.Kind)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if cfg.Kubeconfig != "" {
		rules.ExplicitPath = cfg.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: cfg.Context}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes runtime for cloud %s: load kubeconfig %q: %w", cloud, cfg.Kubeconfig, err)
	}
	return NewForConfig(rc, cfg.Namespace, cloud)
}

// NewForConfig connects with a client-go config. An empty namespace means
// drift-<cloud>; cloud may be empty (then no drift.cloud label is added).
func NewForConfig(rc *rest.Config, namespace, cloud string) (*Runtime, error) {
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "drift"
	}
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 20, 40
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes runtime for cloud %s: %w", cloud, err)
	}
	return NewForClient(cs, namespace, cloud)
}

// NewForClient uses an existing clientset (tests pass a fake one).
func NewForClient(client kubernetes.Interface, namespace, cloud string) (*Runtime, error) {
	if namespace == "" {
		namespace = namespaceFor(cloud)
	}
	if err := runtime.ValidateName(namespace); err != nil {
		return nil, fmt.Errorf("kubernetes runtime for cloud %s: namespace: %w", cloud, err)
	}
	return &Runtime{client: client, namespace: namespace, cloud: cloud}, nil
}

// Kind is runtime.KindKubernetes.
func (r *Runtime) Kind() string { return runtime.KindKubernetes }

// Namespace is where the runtime's instances live.
func (r *Runtime) Namespace() string { return r.namespace }

// Client is the runtime's clientset.
func (r *Runtime) Client() kubernetes.Interface { return r.client }

// Deploy applies the instance's Deployment and Service and waits for the
// Deployment to roll out. Applying an unchanged spec changes nothing (the
// Deployment's generation stays); a changed one (a new image) rolls it.
func (r *Runtime) Deploy(ctx context.Context, name string, spec runtime.Spec) (runtime.Endpoint, error) {
	labels, err := r.validate(name, spec)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	if err := r.ensureNamespace(ctx); err != nil {
		return runtime.Endpoint{}, err
	}
	// Never take over objects drift does not own; and a Deployment or
	// Service still being deleted (an earlier Destroy that was cut short)
	// would swallow the apply, so wait until it is gone.
	if err := r.waitApplicable(ctx, name); err != nil {
		return runtime.Endpoint{}, err
	}
	if err := r.ensureVolumes(ctx, spec.Volumes); err != nil {
		return runtime.Endpoint{}, err
	}
	apply := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	svc, err := r.client.CoreV1().Services(r.namespace).Apply(ctx, r.serviceFor(name, spec, labels), apply)
	if err != nil {
		return runtime.Endpoint{}, r.apiErr("apply service", name, err)
	}
	dep, err := r.client.AppsV1().Deployments(r.namespace).Apply(ctx, r.deploymentFor(name, spec, labels), apply)
	if err != nil {
		return runtime.Endpoint{}, r.apiErr("apply deployment", name, err)
	}
	if err := r.waitRollout(ctx, dep); err != nil {
		return runtime.Endpoint{}, err
	}
	// The endpoint is the Service: ready once it sends to the pods.
	return endpointOf(svc), r.waitEndpoints(ctx, name, name)
}

// Status reports the instance's Deployment and Service.
func (r *Runtime) Status(ctx context.Context, name string) (runtime.Status, error) {
	if err := runtime.ValidateName(name); err != nil {
		return runtime.Status{}, err
	}
	dep, err := r.client.AppsV1().Deployments(r.namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		dep, err = nil, nil
	}
	if err != nil {
		return runtime.Status{}, r.apiErr("get deployment", name, err)
	}
	svc, err := r.client.CoreV1().Services(r.namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		svc, err = nil, nil
	}
	if err != nil {
		return runtime.Status{}, r.apiErr("get service", name, err)
	}
	var foreign []string
	if dep != nil {
		if why := r.foreign(dep.Labels); why != "" {
			foreign, dep = append(foreign, "deployment: "+why), nil
		}
	}
	if svc != nil {
		if why := r.foreign(svc.Labels); why != "" {
			foreign, svc = append(foreign, "service: "+why), nil
		}
	}
	if dep == nil && svc == nil {
		return runtime.Status{Message: strings.Join(foreign, "; ")}, nil
	}
	st := runtime.Status{Exists: true}
	if svc != nil {
		st.Endpoint = endpointOf(svc)
	}
	if dep == nil {
		st.Message = "service without deployment"
		return st, nil
	}
	st.Image = imageOf(dep)
	done, msg, err := rolloutStatus(dep)
	switch {
	case err != nil:
		st.Message = err.Error()
	case stopped(dep):
		st.Message = "stopped (scaled to zero)"
	case svc == nil:
		st.Message = "deployment without service"
	default:
		st.Ready = done
		st.Message = msg
	}
	return st, nil
}

// Destroy deletes the instance's Deployment, ReplicaSets, Pods and Service,
// and waits until all of them are gone (on a real cluster that includes the
// pods' graceful termination). Objects of the same name that drift (of this
// cloud) does not own are left alone.
func (r *Runtime) Destroy(ctx context.Context, name string) error {
	if err := runtime.ValidateName(name); err != nil {
		return err
	}
	// Delete only what is ours, and only the version we looked at (a
	// precondition on its UID), so a foreign object of the same name is
	// left alone.
	depOurs, svcOurs := false, false
	dep, err := r.client.AppsV1().Deployments(r.namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return r.apiErr("get deployment", name, err)
	case r.foreign(dep.Labels) == "":
		depOurs = true
		err := r.client.AppsV1().Deployments(r.namespace).Delete(ctx, name, metav1.DeleteOptions{
			PropagationPolicy: &background,
			Preconditions:     &metav1.Preconditions{UID: &dep.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return r.apiErr("delete deployment", name, err)
		}
	}
	svc, err := r.client.CoreV1().Services(r.namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return r.apiErr("get service", name, err)
	case r.foreign(svc.Labels) == "" && svc.Labels[runtime.LabelEndpoint] == "":
		svcOurs = true
		err := r.client.CoreV1().Services(r.namespace).Delete(ctx, name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &svc.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return r.apiErr("delete service", name, err)
		}
	}
	// The garbage collector would delete the ReplicaSets and Pods in its own
	// time (seconds, with its backoff); delete them now. The selector
	// matches only this runtime's objects of this instance.
	owned := metav1.ListOptions{LabelSelector: r.ownedSelector(name)}
	del := metav1.DeleteOptions{PropagationPolicy: &background}
	if err := r.client.AppsV1().ReplicaSets(r.namespace).DeleteCollection(ctx, del, owned); err != nil && !apierrors.IsNotFound(err) {
		return r.apiErr("delete replicasets", name, err)
	}
	if err := r.client.CoreV1().Pods(r.namespace).DeleteCollection(ctx, del, owned); err != nil && !apierrors.IsNotFound(err) {
		return r.apiErr("delete pods", name, err)
	}
	var depUID, svcUID types.UID
	if depOurs {
		depUID = dep.UID
	}
	if svcOurs {
		svcUID = svc.UID
	}
	return r.waitGone(ctx, name, depUID, svcUID)
}

// List returns the instances whose Deployments carry drift's ownership label
// and this runtime's cloud, and match selector.
func (r *Runtime) List(ctx context.Context, selector map[string]string) ([]runtime.Instance, error) {
	set, ok := runtime.ScopeToCloud(runtime.Selector(selector), r.cloud)
	if !ok {
		return []runtime.Instance{}, nil // another cloud's: never here
	}
	sel, err := labels.ValidatedSelectorFromSet(set)
	if err != nil {
		return nil, fmt.Errorf("%w: selector %v: %v", runtime.ErrInvalid, selector, err)
	}
	opts := metav1.ListOptions{LabelSelector: sel.String()}
	deps, err := r.client.AppsV1().Deployments(r.namespace).List(ctx, opts)
	if err != nil {
		return nil, r.apiErr("list deployments", "", err)
	}
	if len(deps.Items) == 0 {
		return []runtime.Instance{}, nil
	}
	svcs, err := r.client.CoreV1().Services(r.namespace).List(ctx, metav1.ListOptions{LabelSelector: runtime.LabelOwned + "=true"})
	if err != nil {
		return nil, r.apiErr("list services", "", err)
	}
	byName := make(map[string]*corev1.Service, len(svcs.Items))
	for i := range svcs.Items {
		byName[svcs.Items[i].Name] = &svcs.Items[i]
	}
	out := make([]runtime.Instance, 0, len(deps.Items))
	for i := range deps.Items {
		d := &deps.Items[i]
		inst := runtime.Instance{Name: d.Name, Image: imageOf(d), Labels: d.Labels}
		svc := byName[d.Name]
		if svc != nil && r.foreign(svc.Labels) != "" {
			svc = nil
		}
		if svc != nil {
			inst.Endpoint = endpointOf(svc)
		}
		done, _, err := rolloutStatus(d)
		inst.Ready = done && err == nil && svc != nil && !stopped(d)
		out = append(out, inst)
	}
	runtime.SortInstances(out)
	return out, nil
}

// ensureNamespace creates the runtime's namespace, labelled drift.owned=true,
// when it does not exist; an existing one is left as it is.
func (r *Runtime) ensureNamespace(ctx context.Context) error {
	_, err := r.client.CoreV1().Namespaces().Get(ctx, r.namespace, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return r.apiErr("get namespace", r.namespace, err)
	}
	l := map[string]string{runtime.LabelOwned: "true"}
	if r.cloud != "" {
		l[runtime.LabelCloud] = runtime.LabelValue(r.cloud)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.namespace, Labels: l}}
	_, err = r.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{FieldManager: FieldManager})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return r.apiErr("create namespace", r.namespace, err)
	}
	return nil
}

// waitApplicable fails if the instance's Deployment or Service exists but is
// not drift's (of this cloud), and waits while either is being deleted.
func (r *Runtime) waitApplicable(ctx context.Context, name string) error {
	return r.poll(ctx, "earlier deletion of "+name, func() (bool, string, error) {
		dep, err := r.client.AppsV1().Deployments(r.namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, "", r.apiErr("get deployment", name, err)
		}
		if err == nil {
			if why := r.foreign(dep.Labels); why != "" {
				return false, "", fmt.Errorf("kubernetes %s: deploy %s: the deployment name is taken by %s", r.namespace, name, why)
			}
			if dep.DeletionTimestamp != nil {
				return false, "deployment is being deleted", nil
			}
		}
		svc, err := r.client.CoreV1().Services(r.namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, "", r.apiErr("get service", name, err)
		}
		if err == nil {
			if why := r.foreign(svc.Labels); why != "" {
				return false, "", fmt.Errorf("kubernetes %s: deploy %s: the service name is taken by %s", r.namespace, name, why)
			}
			if svc.Labels[runtime.LabelEndpoint] != "" {
				return false, "", fmt.Errorf("%w: kubernetes %s: deploy %s: the service name is taken by a stable endpoint", runtime.ErrInvalid, r.namespace, name)
			}
			if svc.DeletionTimestamp != nil {
				return false, "service is being deleted", nil
			}
		}
		return true, "", nil
	})
}

// foreign explains why an object with these labels is not this runtime's to
// touch, or returns "".
func (r *Runtime) foreign(l map[string]string) string {
	return runtime.Foreign("Kubernetes object", l, r.cloud)
}

// waitRollout waits until dep (as applied) has rolled out.
func (r *Runtime) waitRollout(ctx context.Context, dep *appsv1.Deployment) error {
	name := dep.Name
	first := true
	return r.poll(ctx, "rollout of "+name, func() (bool, string, error) {
		if !first {
			var err error
			dep, err = r.client.AppsV1().Deployments(r.namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, "", r.apiErr("get deployment", name, err)
			}
		}
		first = false
		if dep.DeletionTimestamp != nil {
			return false, "", fmt.Errorf("kubernetes %s/%s: deployment is being deleted", r.namespace, name)
		}
		done, msg, err := rolloutStatus(dep)
		if err != nil {
			return false, "", fmt.Errorf("kubernetes %s/%s: %w", r.namespace, name, err)
		}
		return done, msg, nil
	})
}

// waitGone waits until the instance's Deployment and Service (the ones with
// these UIDs, when not empty) and its ReplicaSets and Pods are gone.
func (r *Runtime) waitGone(ctx context.Context, name string, depUID, svcUID types.UID) error {
	owned := r.ownedSelector(name)
	return r.poll(ctx, "deletion of "+name, func() (bool, string, error) {
		if depUID != "" {
			dep, err := r.client.AppsV1().Deployments(r.namespace).Get(ctx, name, metav1.GetOptions{})
			if err == nil && dep.UID == depUID {
				return false, "deployment still there", nil
			}
			if err != nil && !apierrors.IsNotFound(err) {
				return false, "", r.apiErr("get deployment", name, err)
			}
		}
		if svcUID != "" {
			svc, err := r.client.CoreV1().Services(r.namespace).Get(ctx, name, metav1.GetOptions{})
			if err == nil && svc.UID == svcUID {
				return false, "service still there", nil
			}
			if err != nil && !apierrors.IsNotFound(err) {
				return false, "", r.apiErr("get service", name, err)
			}
		}
		rss, err := r.client.AppsV1().ReplicaSets(r.namespace).List(ctx, metav1.ListOptions{LabelSelector: owned})
		if err != nil {
			return false, "", r.apiErr("list replicasets", name, err)
		}
		if n := len(rss.Items); n > 0 {
			return false, fmt.Sprintf("%d replicaset(s) still there", n), nil
		}
		pods, err := r.client.CoreV1().Pods(r.namespace).List(ctx, metav1.ListOptions{LabelSelector: owned})
		if err != nil {
			return false, "", r.apiErr("list pods", name, err)
		}
		if n := len(pods.Items); n > 0 {
			return false, fmt.Sprintf("%d pod(s) still there", n), nil
		}
		return true, "", nil
	})
}

// ownedSelector selects this runtime's objects of instance name.
func (r *Runtime) ownedSelector(name string) string {
	set := map[string]string{runtime.LabelOwned: "true", runtime.LabelInstance: name}
	if r.cloud != "" {
		set[runtime.LabelCloud] = runtime.LabelValue(r.cloud)
	}
	return labels.SelectorFromSet(set).String()
}

// background is the propagation policy of every delete.
var background = metav1.DeletePropagationBackground

// poll calls cond every pollInterval until it is done, fails, or ctx ends;
// the error then says what was awaited and the last progress message.
func (r *Runtime) poll(ctx context.Context, what string, cond func() (done bool, msg string, err error)) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		done, msg, err := cond()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			if msg == "" {
				msg = "not done"
			}
			return fmt.Errorf("kubernetes %s: waiting for %s: %s: %w", r.namespace, what, msg, ctx.Err())
		case <-tick.C:
		}
	}
}

// apiErr wraps an API error with what was done; errors the API server calls
// invalid wrap runtime.ErrInvalid, since no retry can fix them.
func (r *Runtime) apiErr(op, name string, err error) error {
	where := r.namespace
	if name != "" {
		where += "/" + name
	}
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		return fmt.Errorf("%w: kubernetes %s %s: %w", runtime.ErrInvalid, op, where, err)
	}
	return fmt.Errorf("kubernetes %s %s: %w", op, where, err)
}

// errRolloutFailed marks a Deployment that exceeded its progress deadline.
var errRolloutFailed = errors.New("rollout failed")

// rolloutStatus tells whether dep has rolled out, as `kubectl rollout
// status` does: the controller has seen the latest generation, every replica
// is updated and available and no old one is left. A Deployment past its
// progress deadline is an error.
func rolloutStatus(dep *appsv1.Deployment) (done bool, msg string, err error) {
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	s := dep.Status
	for _, c := range s.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, "", fmt.Errorf("%w: %s", errRolloutFailed, strings.TrimSpace(c.Message))
		}
	}
	switch {
	case s.ObservedGeneration < dep.Generation:
		return false, fmt.Sprintf("controller has seen generation %d of %d", s.ObservedGeneration, dep.Generation), nil
	case s.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas updated", s.UpdatedReplicas, want), nil
	case s.Replicas > s.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas pending termination", s.Replicas-s.UpdatedReplicas), nil
	case s.AvailableReplicas < want || s.UpdatedReplicas != want:
		return false, fmt.Sprintf("%d of %d updated replicas available", s.AvailableReplicas, want), nil
	}
	return true, fmt.Sprintf("%d/%d replicas available", s.AvailableReplicas, want), nil
}

func imageOf(dep *appsv1.Deployment) string {
	if cs := dep.Spec.Template.Spec.Containers; len(cs) > 0 {
		return cs[0].Image
	}
	return ""
}

func endpointOf(svc *corev1.Service) runtime.Endpoint {
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
		return runtime.Endpoint{}
	}
	port := int(svc.Spec.Ports[0].Port)
	host := ip
	if strings.Contains(ip, ":") {
		host = "[" + ip + "]"
	}
	return runtime.Endpoint{URL: fmt.Sprintf("http://%s:%d", host, port), Host: ip, Port: port}
}
