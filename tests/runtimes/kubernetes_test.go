package runtimes

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/runtime"
	kuberuntime "github.com/edgedrift/drift/internal/runtime/kubernetes"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/tests/kube"
)

// TestKubernetes runs the Kubernetes runtime against a real control plane
// (tests/kube: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// kwok fake nodes), one cluster for all subtests, stopped when the test ends.
// kwok fakes the kubelet, so pods never run the image: the endpoint is a
// cluster IP nobody dials, and these tests prove API behaviour.
func TestKubernetes(t *testing.T) {
	cluster := kube.Start(t)
	reg := harness.Registry(t)
	v1 := harness.HelloImage(t, reg, "v1")
	v2 := harness.HelloImage(t, reg, "v2")
	web, store := harness.CounterImages(t, reg, "v1")
	cs := cluster.Clientset

	cloud := runtimetest.UniqueName("edge")
	prefix := runtimetest.UniqueName("k8")
	rt := newKube(t, cluster, cloud)
	if rt.Namespace() != "drift-"+cloud {
		t.Errorf("namespace %q, want drift-%s", rt.Namespace(), cloud)
	}
	// The cloud's namespace outlives its instances: the test removes it
	// (and then checks for it) at its end.
	leftovers := func(t *testing.T) []string {
		return slices.DeleteFunc(clusterLeftovers(t, cs, cloud, prefix), func(o string) bool { return strings.HasPrefix(o, "namespace/") })
	}
	t.Cleanup(func() {
		for _, name := range clusterLeftovers(t, cs, cloud, prefix) {
			t.Errorf("%s left behind", name)
		}
	})
	// The harness has no storage provisioner: volumes for the projects'
	// claims to bind (one per claim the test makes).
	harness.PersistentVolumes(t, cs, prefix, 4)

	t.Run("conformance", func(t *testing.T) {
		runtimetest.Conformance(t, rt, runtimetest.Case{
			Image: v1, Image2: v2, Web: web, Store: store,
			Cloud: cloud, Prefix: prefix + "-c", Serves: false,
			Timeout:   time.Minute,
			Leftovers: leftovers,
		})
	})

	t.Run("objects", func(t *testing.T) {
		ctx := context.Background()
		name := prefix + "-obj"
		destroyAtEnd(t, rt, name)
		spec := runtime.Spec{
			Image: v1, Port: 8080, Health: "/healthz", Replicas: 2,
			Env:    map[string]string{"DRIFT_CLOUD": cloud, "PORT": "9999"},
			Labels: map[string]string{runtime.LabelWorkflow: "session/alice/hello"},
		}
		ep := runtimetest.Deploy(t, rt, name, spec, time.Minute)
		ns := rt.Namespace()
		want := map[string]string{
			runtime.LabelOwned:    "true",
			runtime.LabelInstance: name,
			runtime.LabelCloud:    cloud, // added by the runtime: the spec had none
			runtime.LabelWorkflow: runtime.LabelValue("session/alice/hello"),
		}

		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		expectLabels(t, "deployment", dep.Labels, want)
		expectLabels(t, "pod template", dep.Spec.Template.Labels, want)
		expectLabels(t, "service", svc.Labels, want)
		if !slices.ContainsFunc(dep.ManagedFields, func(m metav1.ManagedFieldsEntry) bool {
			return m.Manager == kuberuntime.FieldManager && m.Operation == metav1.ManagedFieldsOperationApply
		}) {
			t.Errorf("deployment not applied by field manager %q: %v", kuberuntime.FieldManager, dep.ManagedFields)
		}
		if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.Selector[runtime.LabelInstance] != name ||
			len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].TargetPort.IntValue() != 8080 {
			t.Errorf("service spec %+v", svc.Spec)
		}
		if ep.Host != svc.Spec.ClusterIP || ep.Port != 8080 || ep.URL != "http://"+svc.Spec.ClusterIP+":8080" {
			t.Errorf("endpoint %+v, service cluster IP %s", ep, svc.Spec.ClusterIP)
		}
		if _, cidr, _ := net.ParseCIDR("10.96.0.0/16"); !cidr.Contains(net.ParseIP(ep.Host)) {
			t.Errorf("endpoint host %s is not a cluster IP", ep.Host)
		}
		c := dep.Spec.Template.Spec.Containers
		if len(c) != 1 || c[0].Image != v1 {
			t.Fatalf("containers %+v", c)
		}
		if !slices.Contains(c[0].Env, corev1.EnvVar{Name: "PORT", Value: "8080"}) ||
			!slices.Contains(c[0].Env, corev1.EnvVar{Name: "DRIFT_CLOUD", Value: cloud}) ||
			slices.Contains(c[0].Env, corev1.EnvVar{Name: "PORT", Value: "9999"}) {
			t.Errorf("env %v", c[0].Env)
		}
		if p := c[0].ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.IntValue() != 8080 {
			t.Errorf("readiness probe %+v", p)
		}

		pods := ownedPods(t, cs, ns, name)
		if len(pods) != 2 {
			t.Fatalf("%d pods, want 2", len(pods))
		}
		for _, p := range pods {
			expectLabels(t, "pod "+p.Name, p.Labels, want)
			if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName != cluster.Nodes[0] || !podReady(&p) {
				t.Errorf("pod %s: phase %s, ready %v, node %q; want Running and Ready on %s", p.Name, p.Status.Phase, podReady(&p), p.Spec.NodeName, cluster.Nodes[0])
			}
		}

		t.Log("the same spec again changes nothing")
		runtimetest.Deploy(t, rt, name, spec, time.Minute)
		dep2, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if dep2.Generation != dep.Generation || dep2.ResourceVersion != dep.ResourceVersion {
			t.Errorf("redeploying the same spec changed the deployment: generation %d -> %d, resourceVersion %s -> %s",
				dep.Generation, dep2.Generation, dep.ResourceVersion, dep2.ResourceVersion)
		}
		if got := ownedPods(t, cs, ns, name); !slices.Equal(podNames(got), podNames(pods)) {
			t.Errorf("pods changed: %v -> %v", podNames(pods), podNames(got))
		}

		t.Log("a new image rolls the deployment")
		spec.Image = v2
		runtimetest.Deploy(t, rt, name, spec, time.Minute)
		dep3, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if dep3.Generation <= dep.Generation || dep3.Status.ObservedGeneration < dep3.Generation ||
			dep3.Status.UpdatedReplicas != 2 || dep3.Status.AvailableReplicas != 2 || dep3.Status.Replicas != 2 {
			t.Errorf("after a new image: generation %d (was %d), status %+v", dep3.Generation, dep.Generation, dep3.Status)
		}
		rolled := ownedPods(t, cs, ns, name)
		if len(rolled) != 2 {
			t.Errorf("%d pods after the roll, want 2", len(rolled))
		}
		for _, p := range rolled {
			if p.Spec.Containers[0].Image != v2 || p.Status.Phase != corev1.PodRunning {
				t.Errorf("pod %s after the roll: image %s, phase %s", p.Name, p.Spec.Containers[0].Image, p.Status.Phase)
			}
			if slices.Contains(podNames(pods), p.Name) {
				t.Errorf("pod %s survived the roll", p.Name)
			}
		}
		rss, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: runtime.LabelInstance + "=" + name})
		if err != nil {
			t.Fatal(err)
		}
		if len(rss.Items) != 2 {
			t.Errorf("%d replicasets after one roll, want 2", len(rss.Items))
		}
		for _, rs := range rss.Items {
			expectLabels(t, "replicaset "+rs.Name, rs.Labels, want)
			img := rs.Spec.Template.Spec.Containers[0].Image
			if n := *rs.Spec.Replicas; (img == v2) != (n == 2) || (img == v1) != (n == 0) {
				t.Errorf("replicaset %s of %s has %d replicas", rs.Name, img, n)
			}
		}
		if st := runtimetest.Status(t, rt, name); !st.Ready || st.Image != v2 || st.Endpoint != ep {
			t.Errorf("status after the roll %+v (endpoint was %+v)", st, ep)
		}

		t.Log("destroy returns when everything is gone")
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := rt.Destroy(dctx, name); err != nil {
			t.Fatal(err)
		}
		if left := ownedEverywhere(t, cs, name); len(left) != 0 {
			t.Errorf("right after Destroy: %v", left)
		}
	})

	t.Run("invalid input creates nothing", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// A runtime for a cloud of its own, whose namespace must not appear either.
		fresh := newKube(t, cluster, runtimetest.UniqueName("edge"))
		name := prefix + "-bad"
		for what, tc := range map[string]struct {
			name string
			spec runtime.Spec
		}{
			"upper-case name":   {"Bad_Name", runtime.Spec{Image: v1, Port: 8080}},
			"empty image":       {name, runtime.Spec{Port: 8080}},
			"port 0":            {name, runtime.Spec{Image: v1}},
			"port 70000":        {name, runtime.Spec{Image: v1, Port: 70000}},
			"negative replicas": {name, runtime.Spec{Image: v1, Port: 8080, Replicas: -1}},
			"another cloud":     {name, runtime.Spec{Image: v1, Port: 8080, Labels: map[string]string{runtime.LabelCloud: "elsewhere"}}},
		} {
			if _, err := fresh.Deploy(ctx, tc.name, tc.spec); !errors.Is(err, runtime.ErrInvalid) {
				t.Errorf("%s: err = %v, want one wrapping runtime.ErrInvalid", what, err)
			}
		}
		if _, err := cs.CoreV1().Namespaces().Get(ctx, fresh.Namespace(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s: err = %v, want not found", fresh.Namespace(), err)
		}
		if left := ownedEverywhere(t, cs, name); len(left) != 0 {
			t.Errorf("rejected deploys created %v", left)
		}
	})

	t.Run("objects drift does not own are left alone", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		name := prefix + "-foreign"
		ns := rt.Namespace() // exists by now
		one := int32(1)
		sel := map[string]string{"app": name}
		foreign := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: sel},
			Spec: appsv1.DeploymentSpec{
				Replicas: &one,
				Selector: &metav1.LabelSelector{MatchLabels: sel},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: sel},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: v1}}},
				},
			},
		}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			bg := metav1.DeletePropagationBackground
			_ = cs.AppsV1().Deployments(ns).Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: &bg})
		})
		if _, err := rt.Deploy(ctx, name, runtime.Spec{Image: v2, Port: 8080}); err == nil {
			t.Error("Deploy took over a deployment drift does not own")
		}
		if st := runtimetest.Status(t, rt, name); st.Exists {
			t.Errorf("Status of a foreign deployment: %+v", st)
		}
		if err := rt.Destroy(ctx, name); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the foreign deployment is gone: %v", err)
		}
		if d.DeletionTimestamp != nil || d.Spec.Template.Spec.Containers[0].Image != v1 || d.Labels[runtime.LabelOwned] != "" {
			t.Errorf("the foreign deployment was touched: %+v", d.ObjectMeta)
		}
		if _, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("a service was made for the refused deploy: %v", err)
		}
	})

	t.Run("project", func(t *testing.T) {
		kubeProject(t, cs, rt, cloud, prefix+"-proj", web, store)
	})

	t.Run("registry logins become the pods' pull secret", func(t *testing.T) {
		kubePullSecret(t, cs, rt, reg.Host(), prefix+"-pull", v1)
	})

	// The cloud's namespace is shared by all its instances and outlives
	// them; this test's cloud is done with it.
	deleteNamespace(t, cs, rt.Namespace())

	t.Run("nothing drift-owned is left anywhere", func(t *testing.T) {
		if left := ownedEverywhere(t, cs, ""); len(left) != 0 {
			t.Errorf("left: %v", left)
		}
		if err := cluster.Check(); err != nil {
			t.Error(err)
		}
	})
}

// kubeProject deploys the counter app as one instance and checks its
// objects through the API: a Deployment and a Service per service, whose
// selectors pick that service's pods of this instance; a claim for the
// store's volume, mounted at /data; every pod of the project mapping each
// service name to its Service's cluster IP (how web reaches
// http://store:8081); one label set; and nothing left after Destroy.
func kubeProject(t *testing.T, cs kubernetes.Interface, rt *kuberuntime.Runtime, cloud, name, web, store string) {
	destroyAtEnd(t, rt, name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := rt.Namespace()
	workflow := "session/alice/counter"
	spec := runtimetest.CounterSpec(t, web, store, cloud, map[string]string{runtime.LabelWorkflow: workflow})
	ep := runtimetest.Deploy(t, rt, name, spec, 2*time.Minute)
	want := map[string]string{
		runtime.LabelOwned:    "true",
		runtime.LabelInstance: name,
		runtime.LabelCloud:    cloud,
		runtime.LabelWorkflow: runtime.LabelValue(workflow),
	}

	claimName := runtime.ObjectName(name, "counter-data")
	claim, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claimName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the store's claim: %v", err)
	}
	expectLabels(t, "claim", claim.Labels, want)
	if claim.Status.Phase != corev1.ClaimBound || !slices.Contains(claim.Spec.AccessModes, corev1.ReadWriteOnce) {
		t.Errorf("claim %s: phase %s, access %v", claimName, claim.Status.Phase, claim.Spec.AccessModes)
	}

	ips := map[string]string{}
	svcs := map[string]*corev1.Service{}
	for _, service := range []string{"web", "store"} {
		obj := runtime.ObjectName(name, service)
		svc, err := cs.CoreV1().Services(ns).Get(ctx, obj, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Service of %s: %v", service, err)
		}
		expectLabels(t, "service "+service, svc.Labels, want)
		sel := map[string]string{runtime.LabelInstance: name, runtime.LabelService: service}
		if !maps.Equal(svc.Spec.Selector, sel) || svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.ClusterIP == "" {
			t.Errorf("Service %s: selector %v, type %s, cluster IP %q; want selector %v", obj, svc.Spec.Selector, svc.Spec.Type, svc.Spec.ClusterIP, sel)
		}
		ips[service], svcs[service] = svc.Spec.ClusterIP, svc
		t.Logf("service %s: Service %s, DNS name %s.%s.svc, cluster IP %s", service, obj, obj, ns, svc.Spec.ClusterIP)
	}
	if len(svcs["store"].Spec.Ports) != 1 || svcs["store"].Spec.Ports[0].Port != 8081 {
		t.Errorf("the store's Service ports %+v, want 8081", svcs["store"].Spec.Ports)
	}
	if ep.URL != fmt.Sprintf("http://%s:8080", ips["web"]) || ep.StateURL != fmt.Sprintf("http://%s:8081/state", ips["store"]) {
		t.Errorf("endpoint %+v; Services web %s, store %s", ep, ips["web"], ips["store"])
	}

	for _, s := range []struct{ service, image string }{{"web", web}, {"store", store}} {
		obj := runtime.ObjectName(name, s.service)
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, obj, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Deployment of %s: %v", s.service, err)
		}
		expectLabels(t, "deployment "+s.service, dep.Labels, want)
		expectLabels(t, "pod template "+s.service, dep.Spec.Template.Labels, want)
		sel := map[string]string{runtime.LabelInstance: name, runtime.LabelService: s.service}
		if !maps.Equal(dep.Spec.Selector.MatchLabels, sel) || !maps.Equal(svcs[s.service].Spec.Selector, sel) {
			t.Errorf("deployment %s selects %v, its Service %v; want %v", obj, dep.Spec.Selector.MatchLabels, svcs[s.service].Spec.Selector, sel)
		}
		pod := dep.Spec.Template.Spec
		if c := pod.Containers; len(c) != 1 || c[0].Image != s.image {
			t.Errorf("deployment %s containers %+v", obj, c)
		}
		hosts := map[string]string{}
		for _, h := range pod.HostAliases {
			for _, n := range h.Hostnames {
				hosts[n] = h.IP
			}
		}
		if !maps.Equal(hosts, ips) {
			t.Errorf("deployment %s maps service names %v, want %v (the Services' cluster IPs)", obj, hosts, ips)
		}
		if s.service == "store" {
			if len(pod.Volumes) != 1 || pod.Volumes[0].PersistentVolumeClaim == nil || pod.Volumes[0].PersistentVolumeClaim.ClaimName != claimName ||
				len(pod.Containers[0].VolumeMounts) != 1 || pod.Containers[0].VolumeMounts[0].MountPath != "/data" {
				t.Errorf("store's pod volumes %+v, mounts %+v", pod.Volumes, pod.Containers[0].VolumeMounts)
			}
		}
		pods := ownedPods(t, cs, ns, name)
		running := 0
		for _, p := range pods {
			if p.Labels[runtime.LabelService] == s.service && p.Status.Phase == corev1.PodRunning && podReady(&p) {
				running++
			}
		}
		if running != 1 {
			t.Errorf("%d running pods of %s, want 1", running, s.service)
		}
	}
	st := runtimetest.Status(t, rt, name)
	if !st.Ready || len(st.Services) != 2 || st.Endpoint != ep {
		t.Errorf("Status %+v", st)
	}

	t.Log("a changed spec rolls every Deployment; the claim stays")
	spec.Services[1].Env["GREETING"] = "changed"
	runtimetest.Deploy(t, rt, name, spec, 2*time.Minute)
	if again, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claimName, metav1.GetOptions{}); err != nil || again.UID != claim.UID {
		t.Errorf("the claim was replaced by a redeploy: %v", err)
	}

	if err := rt.Destroy(ctx, name); err != nil {
		t.Fatal(err)
	}
	if left := ownedEverywhere(t, cs, name); len(left) != 0 {
		t.Errorf("right after Destroy: %v", left)
	}
}

// deleteNamespace deletes ns and waits until it is gone.
func deleteNamespace(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	for {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("namespace %s still there", ns)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// newKube makes a Kubernetes runtime for cloud the way a worker does: from
// the cluster's kubeconfig file.
func newKube(t *testing.T, c *kube.Cluster, cloud string) *kuberuntime.Runtime {
	t.Helper()
	cfg := runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: c.Kubeconfig}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rt, err := kuberuntime.New(cfg, cloud)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func expectLabels(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: label %s=%q, want %q (labels %v)", what, k, got[k], v, got)
		}
	}
}

func ownedPods(t *testing.T, cs kubernetes.Interface, ns, name string) []corev1.Pod {
	t.Helper()
	l, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: runtime.LabelOwned + "=true," + runtime.LabelInstance + "=" + name,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func podNames(pods []corev1.Pod) []string {
	var n []string
	for _, p := range pods {
		n = append(n, p.Name)
	}
	slices.Sort(n)
	return n
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ownedEverywhere lists the Deployments, Services, ReplicaSets, Pods,
// claims and namespaces labelled drift.owned=true in every namespace (only those of instance name,
// when not empty), as kind/namespace/name.
func ownedEverywhere(t *testing.T, cs kubernetes.Interface, name string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sel := runtime.LabelOwned + "=true"
	if name != "" {
		sel += "," + runtime.LabelInstance + "=" + name
	}
	return ownedObjects(t, ctx, cs, sel, func(metav1.Object) bool { return true })
}

// clusterLeftovers asks the API server for drift-owned objects of this cloud
// or with this name prefix, in any namespace.
func clusterLeftovers(t *testing.T, cs kubernetes.Interface, cloud, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return ownedObjects(t, ctx, cs, runtime.LabelOwned+"=true", func(o metav1.Object) bool {
		return o.GetLabels()[runtime.LabelCloud] == runtime.LabelValue(cloud) || strings.HasPrefix(o.GetName(), prefix)
	})
}

func ownedObjects(t *testing.T, ctx context.Context, cs kubernetes.Interface, sel string, keep func(metav1.Object) bool) []string {
	t.Helper()
	opts := metav1.ListOptions{LabelSelector: sel}
	var out []string
	add := func(kind string, o metav1.Object) {
		if keep(o) {
			out = append(out, kind+"/"+o.GetNamespace()+"/"+o.GetName())
		}
	}
	deps, err := cs.AppsV1().Deployments("").List(ctx, opts)
	if err != nil {
		t.Errorf("list deployments: %v", err)
		return nil
	}
	for i := range deps.Items {
		add("deployment", &deps.Items[i])
	}
	svcs, err := cs.CoreV1().Services("").List(ctx, opts)
	if err != nil {
		t.Errorf("list services: %v", err)
		return nil
	}
	for i := range svcs.Items {
		add("service", &svcs.Items[i])
	}
	rss, err := cs.AppsV1().ReplicaSets("").List(ctx, opts)
	if err != nil {
		t.Errorf("list replicasets: %v", err)
		return nil
	}
	for i := range rss.Items {
		add("replicaset", &rss.Items[i])
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, opts)
	if err != nil {
		t.Errorf("list pods: %v", err)
		return nil
	}
	for i := range pods.Items {
		add("pod", &pods.Items[i])
	}
	claims, err := cs.CoreV1().PersistentVolumeClaims("").List(ctx, opts)
	if err != nil {
		t.Errorf("list persistentvolumeclaims: %v", err)
		return nil
	}
	for i := range claims.Items {
		add("persistentvolumeclaim", &claims.Items[i])
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, opts)
	if err != nil {
		t.Errorf("list namespaces: %v", err)
		return nil
	}
	for i := range nss.Items {
		add("namespace", &nss.Items[i])
	}
	return out
}

// TestKubernetesOnARealNode runs the conformance suite with Serves: the
// cluster's only node is real (kubelet, containerd, kube-proxy: tests/kube
// WithRealNode), it pulls hello from drift's registry on loopback, and every
// endpoint the runtime returns (the Service's ClusterIP, routed from this
// host by kube-proxy, as from a site worker on the node) answers HTTP.
func TestKubernetesOnARealNode(t *testing.T) {
	reg := harness.Registry(t)
	v1 := harness.HelloImage(t, reg, "v1")
	v2 := harness.HelloImage(t, reg, "v2")
	web, store := harness.CounterImages(t, reg, "v1")
	cluster := kube.Start(t, kube.WithRealNode(), kube.WithInsecureRegistry(reg.Host()))
	cs := cluster.Clientset
	cloud := runtimetest.UniqueName("edge")
	prefix := runtimetest.UniqueName("kr")
	rt := newKube(t, cluster, cloud)
	// The cloud's namespace outlives its instances: the test removes it
	// (and then checks for it) at its end.
	leftovers := func(t *testing.T) []string {
		return slices.DeleteFunc(clusterLeftovers(t, cs, cloud, prefix), func(o string) bool { return strings.HasPrefix(o, "namespace/") })
	}
	t.Cleanup(func() {
		for _, name := range clusterLeftovers(t, cs, cloud, prefix) {
			t.Errorf("%s left behind", name)
		}
	})
	// No storage provisioner on the node either: volumes for the
	// project's claims to bind.
	harness.PersistentVolumes(t, cs, prefix, 2)
	runtimetest.Conformance(t, rt, runtimetest.Case{
		Image: v1, Image2: v2, Version: "v1", Version2: "v2", Web: web, Store: store,
		Cloud: cloud, Prefix: prefix + "-c", Serves: true,
		Timeout:   3 * time.Minute,
		Leftovers: leftovers,
	})
	deleteNamespace(t, cs, rt.Namespace())
}

// kubePullSecret deploys with a login for the image's registry: the pods
// pull with a dockerconfigjson Secret of the instance holding it, which no
// status or listing shows and Destroy removes; without a login there is none.
func kubePullSecret(t *testing.T, cs kubernetes.Interface, rt *kuberuntime.Runtime, host, name, img string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const password = "pull-Secret-8a1"
	image.SetCredentials(host, "puller", password)
	t.Cleanup(func() { image.SetCredentials(host, "", "") })
	destroyAtEnd(t, rt, name)
	runtimetest.Deploy(t, rt, name, runtime.Spec{Image: img, Port: 8080}, 2*time.Minute)

	secretName := name + ".registry"
	secret, err := cs.CoreV1().Secrets(rt.Namespace()).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("pull secret: %v", err)
	}
	var config struct {
		Auths map[string]struct{ Username, Password, Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(secret.Data[corev1.DockerConfigJsonKey], &config); err != nil || secret.Type != corev1.SecretTypeDockerConfigJson {
		t.Fatalf("secret %s of type %s: %v", secretName, secret.Type, err)
	}
	if a := config.Auths[host]; a.Username != "puller" || a.Password != password || a.Auth != base64.StdEncoding.EncodeToString([]byte("puller:"+password)) {
		t.Errorf("login for %s: %+v", host, config.Auths)
	}
	if secret.Labels[runtime.LabelOwned] != "true" || secret.Labels[runtime.LabelInstance] != name {
		t.Errorf("secret labels %v", secret.Labels)
	}
	dep, err := cs.AppsV1().Deployments(rt.Namespace()).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ps := dep.Spec.Template.Spec.ImagePullSecrets; len(ps) != 1 || ps[0].Name != secretName {
		t.Errorf("pods pull with %v, want %s", ps, secretName)
	}
	st, _ := rt.Status(ctx, name)
	list, _ := rt.List(ctx, nil)
	if shown, _ := json.Marshal([]any{st, list, dep.Spec}); strings.Contains(string(shown), password) || strings.Contains(string(shown), base64.StdEncoding.EncodeToString([]byte("puller:"+password))) {
		t.Error("the password shows in a status, listing or the Deployment")
	}

	// Without a login the next deploy drops it; Destroy removes it anyway.
	image.SetCredentials(host, "", "")
	runtimetest.Deploy(t, rt, name, runtime.Spec{Image: img, Port: 8080}, 2*time.Minute)
	if _, err := cs.CoreV1().Secrets(rt.Namespace()).Get(ctx, secretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("an anonymous deploy keeps the pull secret: %v", err)
	}
	image.SetCredentials(host, "puller", password)
	runtimetest.Deploy(t, rt, name, runtime.Spec{Image: img, Port: 8080}, 2*time.Minute)
	if err := rt.Destroy(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(rt.Namespace()).Get(ctx, secretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Destroy left the pull secret: %v", err)
	}
}
