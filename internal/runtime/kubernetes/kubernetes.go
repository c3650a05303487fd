// Package kubernetes runs drift instances on a Kubernetes cluster (an edge
// cloud), in the cloud's namespace (drift-<cloud> unless the config names
// one). An instance in the one-service form is a Deployment and a ClusterIP
// Service named after the instance, whose pods select on drift.instance.
// An instance of a project is, as Kompose maps compose, a Deployment and a
// ClusterIP Service per service (named runtime.ObjectName(instance,
// service), pods selecting on drift.instance and drift.project-service) and a
// PersistentVolumeClaim per named volume (runtime.ObjectName(instance,
// volume), 1Gi, ReadWriteOnce, the cluster's default storage class). Every
// object is server-side applied with field manager "drift" and labelled
// with drift's ownership labels (drift.owned=true, drift.instance=<name>,
// drift.cloud=<cloud> and the spec's labels): one label set per instance.
//
// All instances of a cloud share its namespace, so a project's Services
// cannot carry the bare service names compose apps use to reach each other;
// instead every pod of the project gets each service name mapped to that
// service's Service cluster IP in its /etc/hosts (hostAliases), and the
// Service's own DNS name is <object>.<namespace>.svc. Deploy applies the
// claims and Services first (for their addresses), then the Deployments in
// depends_on order, each rolled out before the next.
//
// The Endpoint of an instance is its serving Service's cluster IP and port
// (http://<clusterIP>:<port>): it is reachable from inside the cluster (and
// from workers that run there), not necessarily from the host that calls
// Deploy. Most of drift's tests run on kwok's fake nodes, whose pods never
// run, and check the API objects; the Kubernetes harness's real node
// (tests/kube) runs pods, and a project's services reach each other there.
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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

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

// Deploy applies the instance's claims, Services and Deployments and waits
// for each Deployment to roll out, in start order. Applying an unchanged
// spec changes nothing (the Deployments' generations stay); a changed one
// (a new image) rolls them. Objects of services the spec no longer has go;
// claims stay until Destroy, since they hold the instance's state.
func (r *Runtime) Deploy(ctx context.Context, name string, spec runtime.Spec) (runtime.Endpoint, error) {
	labels, err := r.validate(name, spec)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	order, err := runtime.StartOrder(spec.Project())
	if err != nil {
		return runtime.Endpoint{}, err
	}
	if err := r.ensureNamespace(ctx); err != nil {
		return runtime.Endpoint{}, err
	}
	// Never take over objects drift does not own; and an object still being
	// deleted (an earlier Destroy that was cut short) would swallow the
	// apply, so wait until it is gone.
	for _, svc := range spec.Project() {
		if err := r.waitApplicable(ctx, runtime.ObjectName(name, svc.Name)); err != nil {
			return runtime.Endpoint{}, err
		}
	}
	if err := r.ensureVolumes(ctx, spec.Volumes); err != nil {
		return runtime.Endpoint{}, err
	}
	pull, err := r.applyPullSecret(ctx, name, spec.Project(), labels)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	apply := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	// Volumes outlive the instance (claims of their own names, kept by
	// Destroy); a project's instance volumes are claims named after the
	// instance, deleted with it.
	for _, v := range spec.InstanceVolumes {
		claim := runtime.ObjectName(name, v)
		if err := r.waitClaimApplicable(ctx, claim); err != nil {
			return runtime.Endpoint{}, err
		}
		if _, err := r.client.CoreV1().PersistentVolumeClaims(r.namespace).Apply(ctx, r.claimFor(name, v, labels), apply); err != nil {
			return runtime.Endpoint{}, r.apiErr("apply persistentvolumeclaim", claim, err)
		}
	}
	svcs := map[string]*corev1.Service{}
	hosts := map[string]string{}
	for _, svc := range spec.Project() {
		applied, err := r.client.CoreV1().Services(r.namespace).Apply(ctx, r.serviceFor(name, svc, labels), apply)
		if err != nil {
			return runtime.Endpoint{}, r.apiErr("apply service", runtime.ObjectName(name, svc.Name), err)
		}
		svcs[svc.Name] = applied
		if ip := applied.Spec.ClusterIP; svc.Name != "" && ip != "" && ip != corev1.ClusterIPNone {
			hosts[svc.Name] = ip
		}
	}
	for _, svc := range order {
		dep, err := r.client.AppsV1().Deployments(r.namespace).Apply(ctx, r.deploymentFor(name, spec, svc, labels, hosts, pull), apply)
		if err != nil {
			return runtime.Endpoint{}, r.apiErr("apply deployment", runtime.ObjectName(name, svc.Name), err)
		}
		if err := r.waitRollout(ctx, dep); err != nil {
			return runtime.Endpoint{}, err
		}
	}
	if err := r.removeStale(ctx, name, spec); err != nil {
		return runtime.Endpoint{}, err
	}
	// Each service's endpoint is its Service: ready once it sends to the pods.
	for _, svc := range spec.Project() {
		if err := r.waitEndpoints(ctx, runtime.ObjectName(name, svc.Name), name); err != nil {
			return runtime.Endpoint{}, err
		}
	}
	ep := endpointOf(svcs[spec.ServeService().Name])
	if st := spec.State; st != nil {
		ep = runtime.WithState(ep, spec, endpointOf(svcs[st.Service]))
	}
	return ep, nil
}

// removeStale deletes the Deployments and Services of the instance that
// spec does not want (services it lacks, or the objects of the other form).
func (r *Runtime) removeStale(ctx context.Context, name string, spec runtime.Spec) error {
	want := map[string]bool{}
	for _, svc := range spec.Project() {
		want[runtime.ObjectName(name, svc.Name)] = true
	}
	objs, err := r.owned(ctx, name)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if (o.kind == "deployment" || o.kind == "service") && !want[o.name] {
			if err := o.delete(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Status reports the instance's Deployments and Services: ready when every
// service has rolled out and has its Service.
func (r *Runtime) Status(ctx context.Context, name string) (runtime.Status, error) {
	if err := runtime.ValidateName(name); err != nil {
		return runtime.Status{}, err
	}
	sel := metav1.ListOptions{LabelSelector: r.ownedSelector(name)}
	deps, err := r.client.AppsV1().Deployments(r.namespace).List(ctx, sel)
	if err != nil {
		return runtime.Status{}, r.apiErr("list deployments", name, err)
	}
	svcs, err := r.client.CoreV1().Services(r.namespace).List(ctx, sel)
	if err != nil {
		return runtime.Status{}, r.apiErr("list services", name, err)
	}
	if len(deps.Items) == 0 && len(svcs.Items) == 0 {
		return runtime.Status{Message: r.whyTaken(ctx, name)}, nil
	}
	p := project(deps.Items, svcs.Items)
	st := runtime.Status{Exists: true, Ready: true}
	eps := map[string]runtime.Endpoint{}
	for _, service := range p.services {
		ss := runtime.ServiceStatus{Name: service}
		dep, svc := p.deps[service], p.svcs[service]
		if svc != nil {
			eps[service] = endpointOf(svc)
		}
		if dep != nil {
			ss.Image = imageOf(dep)
		}
		done, msg, err := false, "", error(nil)
		switch {
		case dep == nil && svc == nil:
			msg = "no deployment and no service"
		case dep == nil:
			msg = "service without deployment"
		default:
			done, msg, err = rolloutStatus(dep)
			switch {
			case err != nil:
				msg = err.Error()
			case stopped(dep):
				done, msg = false, "stopped (scaled to zero)"
			case svc == nil:
				done, msg = false, "deployment without service"
			}
		}
		ss.Ready, ss.Message = done, msg
		st.Ready = st.Ready && done
		if service == p.serve {
			st.Image, st.Endpoint = ss.Image, eps[service]
		}
		if service == "" {
			st.Message = msg
		} else {
			st.Services = append(st.Services, ss)
		}
	}
	if p.stateService != "" && st.Endpoint.URL != "" && eps[p.stateService].URL != "" {
		st.Endpoint.StateURL = eps[p.stateService].URL + p.statePath
	}
	if len(st.Services) > 0 {
		st.Message = runtime.ServicesMessage(st.Services)
	}
	return st, nil
}

// whyTaken says why the objects named after an instance that has none of
// its own are another's, or "".
func (r *Runtime) whyTaken(ctx context.Context, name string) string {
	var why []string
	if dep, err := r.client.AppsV1().Deployments(r.namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
		if w := r.foreign(dep.Labels); w != "" {
			why = append(why, "deployment: "+w)
		}
	}
	if svc, err := r.client.CoreV1().Services(r.namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
		if w := r.foreign(svc.Labels); w != "" {
			why = append(why, "service: "+w)
		}
	}
	return strings.Join(why, "; ")
}

// projectView is an instance as its objects tell it.
type projectView struct {
	services                []string // "" alone in the one-service form
	serve                   string
	stateService, statePath string
	deps                    map[string]*appsv1.Deployment // by service
	svcs                    map[string]*corev1.Service
}

// project reads the objects of one instance.
func project(deps []appsv1.Deployment, svcs []corev1.Service) projectView {
	p := projectView{services: []string{""}, deps: map[string]*appsv1.Deployment{}, svcs: map[string]*corev1.Service{}}
	for i := range deps {
		d := &deps[i]
		p.deps[d.Labels[runtime.LabelService]] = d
		if a := d.Annotations[AnnotationServices]; a != "" {
			p.services = strings.Split(a, ",")
			p.serve = d.Annotations[AnnotationServe]
			p.stateService, p.statePath, _ = strings.Cut(d.Annotations[AnnotationState], ":")
		}
	}
	for i := range svcs {
		p.svcs[svcs[i].Labels[runtime.LabelService]] = &svcs[i]
	}
	return p
}

// Destroy deletes the instance's Deployments, Services, claims, ReplicaSets
// and Pods, found by its labels, and waits until all of them are gone (on a
// real cluster that includes the pods' graceful termination). Objects that
// drift (of this cloud) does not own do not carry those labels and are left
// alone.
func (r *Runtime) Destroy(ctx context.Context, name string) error {
	if err := runtime.ValidateName(name); err != nil {
		return err
	}
	objs, err := r.owned(ctx, name)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := o.delete(ctx); err != nil {
			return err
		}
	}
	// The garbage collector would delete the ReplicaSets and Pods in its own
	// time (seconds, with its backoff); delete them now. The selector
	// matches only this runtime's objects of this instance. Its Service is
	// gone, so its pods skip the drain a rollout gives them.
	owned := metav1.ListOptions{LabelSelector: r.ownedSelector(name)}
	del := metav1.DeleteOptions{PropagationPolicy: &background}
	if err := r.client.AppsV1().ReplicaSets(r.namespace).DeleteCollection(ctx, del, owned); err != nil && !apierrors.IsNotFound(err) {
		return r.apiErr("delete replicasets", name, err)
	}
	podDel := metav1.DeleteOptions{PropagationPolicy: &background, GracePeriodSeconds: ptr.To[int64](1)}
	if err := r.client.CoreV1().Pods(r.namespace).DeleteCollection(ctx, podDel, owned); err != nil && !apierrors.IsNotFound(err) {
		return r.apiErr("delete pods", name, err)
	}
	return r.waitGone(ctx, name)
}

// ownedObject is one Deployment, Service, Secret or claim of an instance.
type ownedObject struct {
	kind, name string
	delete     func(context.Context) error
}

// owned lists the instance's Deployments, Services, Secrets and claims, each with
// how to delete that very object (a precondition on its UID).
func (r *Runtime) owned(ctx context.Context, name string) ([]ownedObject, error) {
	sel := metav1.ListOptions{LabelSelector: r.ownedSelector(name)}
	var out []ownedObject
	gone := func(kind, n string, err error) error {
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return r.apiErr("delete "+kind, n, err)
		}
		return nil
	}
	deps, err := r.client.AppsV1().Deployments(r.namespace).List(ctx, sel)
	if err != nil {
		return nil, r.apiErr("list deployments", name, err)
	}
	for _, d := range deps.Items {
		out = append(out, ownedObject{"deployment", d.Name, func(ctx context.Context) error {
			return gone("deployment", d.Name, r.client.AppsV1().Deployments(r.namespace).Delete(ctx, d.Name, metav1.DeleteOptions{
				PropagationPolicy: &background, Preconditions: &metav1.Preconditions{UID: &d.UID}}))
		}})
	}
	svcs, err := r.client.CoreV1().Services(r.namespace).List(ctx, sel)
	if err != nil {
		return nil, r.apiErr("list services", name, err)
	}
	for _, s := range svcs.Items {
		if s.Labels[runtime.LabelEndpoint] != "" {
			continue // a stable endpoint (Router) is no instance's
		}
		out = append(out, ownedObject{"service", s.Name, func(ctx context.Context) error {
			return gone("service", s.Name, r.client.CoreV1().Services(r.namespace).Delete(ctx, s.Name, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: &s.UID}}))
		}})
	}
	secrets, err := r.client.CoreV1().Secrets(r.namespace).List(ctx, sel)
	if err != nil {
		return nil, r.apiErr("list secrets", name, err)
	}
	for _, s := range secrets.Items {
		out = append(out, ownedObject{"secret", s.Name, func(ctx context.Context) error {
			return gone("secret", s.Name, r.client.CoreV1().Secrets(r.namespace).Delete(ctx, s.Name, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: &s.UID}}))
		}})
	}
	claims, err := r.client.CoreV1().PersistentVolumeClaims(r.namespace).List(ctx, sel)
	if err != nil {
		return nil, r.apiErr("list persistentvolumeclaims", name, err)
	}
	for _, c := range claims.Items {
		out = append(out, ownedObject{"persistentvolumeclaim", c.Name, func(ctx context.Context) error {
			return gone("persistentvolumeclaim", c.Name, r.client.CoreV1().PersistentVolumeClaims(r.namespace).Delete(ctx, c.Name, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: &c.UID}}))
		}})
	}
	return out, nil
}

// List returns the instances whose Deployments carry drift's ownership label
// and this runtime's cloud, and match selector: one per instance, ready
// when every service has rolled out and has its Service.
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
	depsOf := map[string][]appsv1.Deployment{}
	for _, d := range deps.Items {
		depsOf[d.Labels[runtime.LabelInstance]] = append(depsOf[d.Labels[runtime.LabelInstance]], d)
	}
	svcsOf := map[string][]corev1.Service{}
	for _, s := range svcs.Items {
		if r.foreign(s.Labels) == "" {
			svcsOf[s.Labels[runtime.LabelInstance]] = append(svcsOf[s.Labels[runtime.LabelInstance]], s)
		}
	}
	out := make([]runtime.Instance, 0, len(depsOf))
	for name, ds := range depsOf {
		p := project(ds, svcsOf[name])
		inst := runtime.Instance{Name: name, Ready: true}
		for _, service := range p.services {
			dep, svc := p.deps[service], p.svcs[service]
			done := false
			if dep != nil {
				var err error
				done, _, err = rolloutStatus(dep)
				done = done && err == nil && !stopped(dep)
			}
			inst.Ready = inst.Ready && done && svc != nil
			if service != p.serve {
				continue
			}
			if dep != nil {
				inst.Image = imageOf(dep)
				inst.Labels = instanceLabels(dep.Labels)
			}
			if svc != nil {
				inst.Endpoint = endpointOf(svc)
			}
		}
		if inst.Labels == nil {
			inst.Labels = instanceLabels(ds[0].Labels)
		}
		out = append(out, inst)
	}
	runtime.SortInstances(out)
	return out, nil
}

// instanceLabels are an object's labels without the service it belongs to.
func instanceLabels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l))
	for k, v := range l {
		if k != runtime.LabelService {
			out[k] = v
		}
	}
	return out
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

// waitClaimApplicable fails if the claim exists but is not drift's (of this
// cloud), and waits while it is being deleted.
func (r *Runtime) waitClaimApplicable(ctx context.Context, name string) error {
	return r.poll(ctx, "earlier deletion of "+name, func() (bool, string, error) {
		c, err := r.client.CoreV1().PersistentVolumeClaims(r.namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		if err != nil {
			return false, "", r.apiErr("get persistentvolumeclaim", name, err)
		}
		if why := r.foreign(c.Labels); why != "" {
			return false, "", fmt.Errorf("kubernetes %s: the persistentvolumeclaim name %s is taken by %s", r.namespace, name, why)
		}
		if c.DeletionTimestamp != nil {
			return false, "persistentvolumeclaim is being deleted", nil
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

// waitGone waits until the instance's Deployments, Services, claims,
// ReplicaSets and Pods are gone.
func (r *Runtime) waitGone(ctx context.Context, name string) error {
	owned := metav1.ListOptions{LabelSelector: r.ownedSelector(name)}
	return r.poll(ctx, "deletion of "+name, func() (bool, string, error) {
		counts := []struct {
			kind string
			list func() (int, error)
		}{
			{"deployment", func() (int, error) {
				l, err := r.client.AppsV1().Deployments(r.namespace).List(ctx, owned)
				return len(l.Items), err
			}},
			{"service", func() (int, error) {
				l, err := r.client.CoreV1().Services(r.namespace).List(ctx, owned)
				return len(l.Items), err
			}},
			{"persistentvolumeclaim", func() (int, error) {
				l, err := r.client.CoreV1().PersistentVolumeClaims(r.namespace).List(ctx, owned)
				return len(l.Items), err
			}},
			{"replicaset", func() (int, error) {
				l, err := r.client.AppsV1().ReplicaSets(r.namespace).List(ctx, owned)
				return len(l.Items), err
			}},
			{"pod", func() (int, error) {
				l, err := r.client.CoreV1().Pods(r.namespace).List(ctx, owned)
				return len(l.Items), err
			}},
		}
		for _, c := range counts {
			n, err := c.list()
			if err != nil {
				return false, "", r.apiErr("list "+c.kind+"s", name, err)
			}
			if n > 0 {
				return false, fmt.Sprintf("%d %s(s) still there", n, c.kind), nil
			}
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
