package kubernetes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/edgedrift/drift/internal/runtime"
)

func newFake(t *testing.T, objs ...metav1.Object) (*Runtime, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *appsv1.Deployment:
			_, err = cs.AppsV1().Deployments(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		case *corev1.Service:
			_, err = cs.CoreV1().Services(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected %T", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cs.ClearActions()
	r, err := NewForClient(cs, "", "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	return r, cs
}

func goodSpec() runtime.Spec {
	return runtime.Spec{Image: "127.0.0.1:5000/hello:v1", Port: 8080}
}

func TestKindAndNamespace(t *testing.T) {
	r, _ := newFake(t)
	if r.Kind() != runtime.KindKubernetes {
		t.Errorf("Kind = %q", r.Kind())
	}
	if r.Namespace() != "drift-edge-1" {
		t.Errorf("Namespace = %q, want drift-edge-1", r.Namespace())
	}
	for cloud, want := range map[string]string{"": "drift", "Edge_2": "drift-edge-2-"} {
		got := namespaceFor(cloud)
		if !strings.HasPrefix(got, want) || runtime.ValidateName(got) != nil {
			t.Errorf("namespaceFor(%q) = %q, want a valid name starting %q", cloud, got, want)
		}
	}
	r2, err := NewForClient(fake.NewClientset(), "custom", "edge-1")
	if err != nil || r2.Namespace() != "custom" {
		t.Errorf("explicit namespace: %v %v", r2, err)
	}
	if _, err := NewForClient(fake.NewClientset(), "Bad_NS", "edge-1"); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("bad namespace: err = %v, want ErrInvalid", err)
	}
}

func TestNewFromKubeconfig(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	const doc = `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
- name: b
  cluster: {server: "https://127.0.0.1:2", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: secret}
contexts:
- name: a
  context: {cluster: a, user: u}
- name: b
  context: {cluster: b, user: u}
current-context: a
`
	if err := os.WriteFile(kc, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := New(runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: kc, Context: "b", Namespace: "apps"}, "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Namespace() != "apps" {
		t.Errorf("namespace %q", r.Namespace())
	}
	if _, err := New(runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: filepath.Join(t.TempDir(), "missing")}, "edge-1"); err == nil {
		t.Error("missing kubeconfig: no error")
	}
	if _, err := New(runtime.Config{Kind: runtime.KindDocker}, "edge-1"); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("docker config: err = %v, want ErrInvalid", err)
	}
}

// Bad input fails with ErrInvalid before the runtime talks to the cluster.
func TestDeployRejectsBadInputBeforeAnyCall(t *testing.T) {
	cases := map[string]struct {
		name string
		spec func(*runtime.Spec)
	}{
		"empty name":       {"", nil},
		"upper-case name":  {"Web", nil},
		"leading digit":    {"1web", nil},
		"name too long":    {strings.Repeat("a", 64), nil},
		"empty image":      {"web", func(s *runtime.Spec) { s.Image = "" }},
		"blank image":      {"web", func(s *runtime.Spec) { s.Image = "  " }},
		"port 0":           {"web", func(s *runtime.Spec) { s.Port = 0 }},
		"port 65536":       {"web", func(s *runtime.Spec) { s.Port = 65536 }},
		"negative port":    {"web", func(s *runtime.Spec) { s.Port = -1 }},
		"negative replica": {"web", func(s *runtime.Spec) { s.Replicas = -1 }},
		"env name with =":  {"web", func(s *runtime.Spec) { s.Env = map[string]string{"A=B": "x"} }},
		"bad label key":    {"web", func(s *runtime.Spec) { s.Labels = map[string]string{"no spaces": "x"} }},
		"foreign instance": {"web", func(s *runtime.Spec) { s.Labels = map[string]string{runtime.LabelInstance: "other"} }},
		"owned=false":      {"web", func(s *runtime.Spec) { s.Labels = map[string]string{runtime.LabelOwned: "false"} }},
		"other cloud":      {"web", func(s *runtime.Spec) { s.Labels = map[string]string{runtime.LabelCloud: "edge-2"} }},
		"bad image ref":    {"web", func(s *runtime.Spec) { s.Image = "Hello:v1" }},
		"bad health path":  {"web", func(s *runtime.Spec) { s.Health = "/a?b" }},
		"empty command":    {"web", func(s *runtime.Spec) { s.Command = []string{""} }},
	}
	for what, tc := range cases {
		t.Run(what, func(t *testing.T) {
			r, cs := newFake(t)
			spec := goodSpec()
			if tc.spec != nil {
				tc.spec(&spec)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := r.Deploy(ctx, tc.name, spec)
			if !errors.Is(err, runtime.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if a := cs.Actions(); len(a) != 0 {
				t.Errorf("%d API calls before rejecting, first %v", len(a), a[0])
			}
		})
	}
	r, cs := newFake(t)
	if _, err := r.Status(context.Background(), "Bad"); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("Status: err = %v", err)
	}
	if err := r.Destroy(context.Background(), "Bad"); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("Destroy: err = %v", err)
	}
	if a := cs.Actions(); len(a) != 0 {
		t.Errorf("%d API calls for bad names", len(a))
	}
}

func TestObjects(t *testing.T) {
	r, _ := newFake(t)
	spec := runtime.Spec{
		Image:   "127.0.0.1:5000/hello@sha256:" + strings.Repeat("ab", 32),
		Port:    9090,
		Env:     map[string]string{"B": "2", "A": "1", "PORT": "1"},
		Command: []string{"/hello", "-v"},
		Labels:  map[string]string{runtime.LabelWorkflow: "session/alice/web", runtime.LabelInstance: "web"},
		Health:  "healthz",
	}
	labels, err := r.validate("web", spec)
	if err != nil {
		t.Fatal(err)
	}
	dep := r.deploymentFor("web", spec, spec.Project()[0], labels, nil, "")
	svc := r.serviceFor("web", spec.Project()[0], labels)

	wantLabels := map[string]string{
		runtime.LabelOwned:    "true",
		runtime.LabelInstance: "web",
		runtime.LabelCloud:    "edge-1",
		runtime.LabelWorkflow: runtime.LabelValue("session/alice/web"),
	}
	for what, got := range map[string]map[string]string{
		"deployment":   dep.Labels,
		"pod template": dep.Spec.Template.Labels,
		"service":      svc.Labels,
	} {
		if !reflect.DeepEqual(got, wantLabels) {
			t.Errorf("%s labels = %v, want %v", what, got, wantLabels)
		}
	}
	sel := map[string]string{runtime.LabelInstance: "web"}
	if !reflect.DeepEqual(dep.Spec.Selector.MatchLabels, sel) || !reflect.DeepEqual(svc.Spec.Selector, sel) {
		t.Errorf("selectors %v / %v, want %v", dep.Spec.Selector.MatchLabels, svc.Spec.Selector, sel)
	}
	if *dep.Name != "web" || *dep.Namespace != "drift-edge-1" || *svc.Name != "web" || *svc.Namespace != "drift-edge-1" {
		t.Errorf("names: %s/%s, %s/%s", *dep.Namespace, *dep.Name, *svc.Namespace, *svc.Name)
	}
	if *dep.Spec.Replicas != 1 {
		t.Errorf("replicas = %d, want 1 for 0", *dep.Spec.Replicas)
	}
	c := dep.Spec.Template.Spec.Containers
	if len(c) != 1 {
		t.Fatalf("%d containers", len(c))
	}
	if *c[0].Image != spec.Image || !reflect.DeepEqual(c[0].Command, spec.Command) {
		t.Errorf("image %s command %v", *c[0].Image, c[0].Command)
	}
	var env []string
	for _, e := range c[0].Env {
		env = append(env, *e.Name+"="+*e.Value)
	}
	if want := []string{"A=1", "B=2", "PORT=9090"}; !reflect.DeepEqual(env, want) {
		t.Errorf("env = %v, want %v", env, want)
	}
	if len(c[0].Ports) != 1 || *c[0].Ports[0].ContainerPort != 9090 {
		t.Errorf("ports %v", c[0].Ports)
	}
	probe := c[0].ReadinessProbe.HTTPGet
	if *probe.Path != "/healthz" || probe.Port.IntValue() != 9090 {
		t.Errorf("probe %s:%v", *probe.Path, probe.Port)
	}
	// A pod a rollout replaces keeps serving while kube-proxy catches up.
	if pre := c[0].Lifecycle.PreStop; pre == nil || pre.Sleep == nil || *pre.Sleep.Seconds != rolloutDrainSeconds ||
		*dep.Spec.Template.Spec.TerminationGracePeriodSeconds <= rolloutDrainSeconds {
		t.Errorf("lifecycle %+v, grace %v: want a preStop sleep of %d s inside the grace period", c[0].Lifecycle, dep.Spec.Template.Spec.TerminationGracePeriodSeconds, rolloutDrainSeconds)
	}
	if *svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Ports) != 1 || *svc.Spec.Ports[0].Port != 9090 || svc.Spec.Ports[0].TargetPort.IntValue() != 9090 {
		t.Errorf("service spec %+v", svc.Spec)
	}

	spec.Replicas, spec.Health, spec.Command = 3, "", nil
	dep = r.deploymentFor("web", spec, spec.Project()[0], labels, nil, "")
	c = dep.Spec.Template.Spec.Containers
	if *dep.Spec.Replicas != 3 || *c[0].ReadinessProbe.HTTPGet.Path != "/" || c[0].Command != nil {
		t.Errorf("replicas %d, probe %s, command %v", *dep.Spec.Replicas, *c[0].ReadinessProbe.HTTPGet.Path, c[0].Command)
	}
}

// kubelet plays the controllers: it marks the instance's Deployment as rolled
// out (or failed) once Deploy has applied it, and makes its pod and the
// EndpointSlice that sends its Service there.
func kubelet(t *testing.T, cs *fake.Clientset, ns, name string, mutate func(*appsv1.Deployment)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			mutate(d)
			if _, err := cs.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
				t.Error(err)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-pod", Namespace: ns, Labels: map[string]string{runtime.LabelInstance: d.Spec.Template.Labels[runtime.LabelInstance]}}}
			cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name + "-slice", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
				Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: pod.Name}}}}
			cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Error("deployment never applied")
}

func rolledOut(d *appsv1.Deployment) {
	n := *d.Spec.Replicas
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
}

func TestDeployWaitsForRollout(t *testing.T) {
	r, cs := newFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec := goodSpec()
	spec.Replicas = 2
	go kubelet(t, cs, r.Namespace(), "web", rolledOut)
	if _, err := r.Deploy(ctx, "web", spec); err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, r.Namespace(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Labels[runtime.LabelOwned] != "true" || ns.Labels[runtime.LabelCloud] != "edge-1" {
		t.Errorf("namespace labels %v", ns.Labels)
	}
	st, err := r.Status(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Exists || !st.Ready || st.Image != spec.Image {
		t.Errorf("status %+v", st)
	}
	list, err := r.List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "web" || !list[0].Ready || list[0].Image != spec.Image || list[0].Labels[runtime.LabelInstance] != "web" {
		t.Errorf("list %+v", list)
	}

	// Once rolled out, a second Deploy of the same spec returns at once.
	if _, err := r.Deploy(ctx, "web", spec); err != nil {
		t.Fatal(err)
	}
}

func TestDeployFailsPastProgressDeadline(t *testing.T) {
	r, cs := newFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go kubelet(t, cs, r.Namespace(), "web", func(d *appsv1.Deployment) {
		d.Status.ObservedGeneration = d.Generation
		d.Status.Conditions = []appsv1.DeploymentCondition{{
			Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
			Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "web-1" has timed out progressing.`,
		}}
	})
	_, err := r.Deploy(ctx, "web", goodSpec())
	if !errors.Is(err, errRolloutFailed) || errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("err = %v, want a rollout failure", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Deploy waited for the context instead of failing")
	}
	st, err := r.Status(ctx, "web")
	if err != nil || !st.Exists || st.Ready || !strings.Contains(st.Message, "timed out") {
		t.Errorf("status %+v, %v", st, err)
	}
}

func TestDeployRespectsDeadline(t *testing.T) {
	r, _ := newFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := r.Deploy(ctx, "web", goodSpec())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("returned after %s", d)
	}
	if !strings.Contains(err.Error(), "rollout of web") {
		t.Errorf("error does not say what it waited for: %v", err)
	}
}

func TestMissingInstance(t *testing.T) {
	r, _ := newFake(t)
	ctx := context.Background()
	st, err := r.Status(ctx, "web")
	if err != nil || st.Exists || st.Ready {
		t.Errorf("status %+v, %v", st, err)
	}
	if err := r.Destroy(ctx, "web"); err != nil {
		t.Errorf("destroy: %v", err)
	}
	list, err := r.List(ctx, nil)
	if err != nil || len(list) != 0 {
		t.Errorf("list %v, %v", list, err)
	}
}

func deployment(ns, name string, l map[string]string) *appsv1.Deployment {
	one := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: l},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "img-" + name}}}},
		},
		Status: appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1},
	}
}

func TestListSelects(t *testing.T) {
	ns := "drift-edge-1"
	owned := func(name string, extra map[string]string) map[string]string {
		l := runtime.OwnedLabels(name, extra)
		if _, ok := l[runtime.LabelCloud]; !ok {
			l[runtime.LabelCloud] = "edge-1"
		}
		return l
	}
	r, _ := newFake(t,
		deployment(ns, "b", owned("b", map[string]string{runtime.LabelWorkflow: "session/alice/web"})),
		deployment(ns, "a", owned("a", map[string]string{runtime.LabelWorkflow: "session/alice/web"})),
		deployment(ns, "c", owned("c", map[string]string{runtime.LabelWorkflow: "session/bob/web"})),
		deployment(ns, "foreign", map[string]string{"app": "foreign"}),
		deployment(ns, "other-cloud", owned("other-cloud", map[string]string{runtime.LabelCloud: "edge-2"})),
		deployment("elsewhere", "d", owned("d", nil)),
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: ns, Labels: owned("a", nil)},
			Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Port: 8080}}},
		},
	)
	ctx := context.Background()
	names := func(sel map[string]string) []string {
		t.Helper()
		list, err := r.List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, i := range list {
			n = append(n, i.Name)
		}
		return n
	}
	if got := names(nil); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("all = %v", got)
	}
	// Values are sanitised the same way as when the labels were set.
	if got := names(map[string]string{runtime.LabelWorkflow: "session/alice/web"}); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("alice = %v", got)
	}
	if got := names(map[string]string{runtime.LabelWorkflow: "nobody"}); len(got) != 0 {
		t.Errorf("nobody = %v", got)
	}
	if got := names(map[string]string{runtime.LabelCloud: "edge-1"}); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("edge-1 = %v", got)
	}
	if got := names(map[string]string{runtime.LabelCloud: "edge-2"}); len(got) != 0 {
		t.Errorf("edge-2 = %v (another cloud's instances, even in this namespace)", got)
	}
	list, _ := r.List(ctx, map[string]string{runtime.LabelInstance: "a"})
	want := runtime.Endpoint{URL: "http://10.96.0.10:8080", Host: "10.96.0.10", Port: 8080}
	if len(list) != 1 || list[0].Endpoint != want || !list[0].Ready || list[0].Image != "img-a" {
		t.Errorf("a = %+v", list)
	}
	if _, err := r.List(ctx, map[string]string{"bad key!": "x"}); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("bad selector: err = %v", err)
	}
}

func TestRolloutStatus(t *testing.T) {
	two := int32(2)
	base := appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: appsv1.DeploymentSpec{Replicas: &two}}
	cases := []struct {
		what   string
		status appsv1.DeploymentStatus
		done   bool
	}{
		{"old generation", appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}, false},
		{"not updated", appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 1, AvailableReplicas: 2}, false},
		{"old replicas left", appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 2, AvailableReplicas: 2}, false},
		{"not available", appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 1}, false},
		{"done", appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}, true},
	}
	for _, tc := range cases {
		d := base
		d.Status = tc.status
		done, msg, err := rolloutStatus(&d)
		if err != nil || done != tc.done || msg == "" {
			t.Errorf("%s: done %v msg %q err %v", tc.what, done, msg, err)
		}
	}
}

func TestEndpointOf(t *testing.T) {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "fd00::10", Ports: []corev1.ServicePort{{Port: 80}}}}
	if ep := endpointOf(svc); ep.URL != "http://[fd00::10]:80" || ep.Host != "fd00::10" || ep.Port != 80 {
		t.Errorf("ipv6 %+v", ep)
	}
	svc.Spec.ClusterIP = corev1.ClusterIPNone
	if ep := endpointOf(svc); ep != (runtime.Endpoint{}) {
		t.Errorf("headless %+v", ep)
	}
}

// Objects of the same name that drift (of this cloud) does not own are
// neither reported, taken over nor deleted.
func TestForeignObjectsAreLeftAlone(t *testing.T) {
	ns := "drift-edge-1"
	otherCloud := runtime.OwnedLabels("theirs", map[string]string{runtime.LabelCloud: "edge-2"})
	r, cs := newFake(t,
		deployment(ns, "foreign", map[string]string{"app": "foreign"}),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "foreign", Namespace: ns, Labels: map[string]string{"app": "foreign"}}},
		deployment(ns, "theirs", otherCloud),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, name := range []string{"foreign", "theirs"} {
		if _, err := r.Deploy(ctx, name, goodSpec()); err == nil || errors.Is(err, runtime.ErrInvalid) || ctx.Err() != nil {
			t.Errorf("Deploy over %s: err = %v, want a prompt refusal", name, err)
		}
		st, err := r.Status(ctx, name)
		if err != nil || st.Exists {
			t.Errorf("Status(%s) = %+v, %v", name, st, err)
		}
		if err := r.Destroy(ctx, name); err != nil {
			t.Errorf("Destroy(%s): %v", name, err)
		}
		if _, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("%s is gone: %v", name, err)
		}
	}
	if _, err := cs.CoreV1().Services(ns).Get(ctx, "foreign", metav1.GetOptions{}); err != nil {
		t.Errorf("foreign service is gone: %v", err)
	}
	d, _ := cs.AppsV1().Deployments(ns).Get(ctx, "foreign", metav1.GetOptions{})
	if d.Labels[runtime.LabelOwned] != "" || imageOf(d) != "img-foreign" {
		t.Errorf("foreign deployment was changed: %v %s", d.Labels, imageOf(d))
	}
}

// A project's objects: per service a Deployment and a Service named from
// (instance, service) that select that service's pods of this instance,
// every pod mapping each service name to its Service's address, and a claim
// per named volume; the Deployments carry what Status needs of the project.
func TestProjectObjects(t *testing.T) {
	r, _ := newFake(t)
	spec := runtime.Spec{
		Services: []runtime.Service{
			{Name: "web", Image: "127.0.0.1:5000/web:v1", Port: 8080, DependsOn: []string{"db"}},
			{Name: "db", Image: "127.0.0.1:5000/db:v1", Port: 5432, Probe: runtime.ProbeTCP, Mounts: []runtime.Mount{{Volume: "db_data", Path: "/var/lib/db"}}},
		},
		InstanceVolumes: []string{"db_data"},
		Serve:           "web",
		State:           &runtime.State{Service: "db", Path: "/state"},
	}
	labels, err := r.validate("shop", spec)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]string{"web": "10.96.0.1", "db": "10.96.0.2"}
	for _, svc := range spec.Services {
		obj := runtime.ObjectName("shop", svc.Name)
		dep := r.deploymentFor("shop", spec, svc, labels, hosts, "")
		s := r.serviceFor("shop", svc, labels)
		sel := map[string]string{runtime.LabelInstance: "shop", runtime.LabelService: svc.Name}
		if *dep.Name != obj || *s.Name != obj || !reflect.DeepEqual(dep.Spec.Selector.MatchLabels, sel) || !reflect.DeepEqual(s.Spec.Selector, sel) {
			t.Errorf("%s: names %s/%s, selectors %v / %v, want %s and %v", svc.Name, *dep.Name, *s.Name, dep.Spec.Selector.MatchLabels, s.Spec.Selector, obj, sel)
		}
		for what, l := range map[string]map[string]string{"deployment": dep.Labels, "pod": dep.Spec.Template.Labels, "service": s.Labels} {
			if l[runtime.LabelService] != svc.Name || l[runtime.LabelInstance] != "shop" || l[runtime.LabelOwned] != "true" {
				t.Errorf("%s %s labels %v", svc.Name, what, l)
			}
		}
		got := map[string]string{}
		for _, h := range dep.Spec.Template.Spec.HostAliases {
			got[h.Hostnames[0]] = *h.IP
		}
		if !reflect.DeepEqual(got, hosts) {
			t.Errorf("%s hostAliases %v, want %v", svc.Name, got, hosts)
		}
		if a := dep.Annotations; a[AnnotationServices] != "web,db" || a[AnnotationServe] != "web" || a[AnnotationState] != "db:/state" {
			t.Errorf("%s annotations %v", svc.Name, a)
		}
		c := dep.Spec.Template.Spec.Containers[0]
		if *c.Name != svc.Name || *c.Image != svc.Image {
			t.Errorf("%s container %s %s", svc.Name, *c.Name, *c.Image)
		}
		if svc.Name == "db" {
			if c.ReadinessProbe.TCPSocket == nil || c.ReadinessProbe.HTTPGet != nil {
				t.Errorf("db probe %+v, want TCP", c.ReadinessProbe)
			}
			v := dep.Spec.Template.Spec.Volumes
			if len(v) != 1 || *v[0].PersistentVolumeClaim.ClaimName != runtime.ObjectName("shop", "db_data") ||
				len(c.VolumeMounts) != 1 || *c.VolumeMounts[0].MountPath != "/var/lib/db" || *c.VolumeMounts[0].Name != *v[0].Name {
				t.Errorf("db volumes %+v mounts %+v", v, c.VolumeMounts)
			}
		}
	}
	claim := r.claimFor("shop", "db_data", labels)
	if *claim.Name != runtime.ObjectName("shop", "db_data") || claim.Labels[runtime.LabelInstance] != "shop" ||
		claim.Spec.AccessModes[0] != corev1.ReadWriteOnce || claim.Spec.Resources.Requests.Storage().Cmp(VolumeSize) != 0 {
		t.Errorf("claim %+v", claim)
	}
}

// Status, List and Destroy see a project whole.
func TestProjectLifecycle(t *testing.T) {
	r, cs := newFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec := runtime.Spec{
		Services: []runtime.Service{
			{Name: "web", Image: "127.0.0.1:5000/web:v1", Port: 8080, DependsOn: []string{"store"}},
			{Name: "store", Image: "127.0.0.1:5000/store:v1", Port: 8081, Mounts: []runtime.Mount{{Volume: "data", Path: "/data"}}},
		},
		InstanceVolumes: []string{"data"},
	}
	ns := r.Namespace()
	go kubelet(t, cs, ns, runtime.ObjectName("shop", "store"), rolledOut)
	go kubelet(t, cs, ns, runtime.ObjectName("shop", "web"), rolledOut)
	if _, err := r.Deploy(ctx, "shop", spec); err != nil {
		t.Fatal(err)
	}
	st, err := r.Status(ctx, "shop")
	if err != nil || !st.Exists || !st.Ready || st.Image != "127.0.0.1:5000/web:v1" || len(st.Services) != 2 || st.Services[1].Name != "store" || !st.Services[1].Ready {
		t.Errorf("status %+v, %v", st, err)
	}
	list, err := r.List(ctx, nil)
	if err != nil || len(list) != 1 || list[0].Name != "shop" || !list[0].Ready || list[0].Labels[runtime.LabelService] != "" {
		t.Errorf("list %+v, %v", list, err)
	}
	// A store that is not rolled out makes the instance not ready.
	d, _ := cs.AppsV1().Deployments(ns).Get(ctx, runtime.ObjectName("shop", "store"), metav1.GetOptions{})
	d.Status.AvailableReplicas = 0
	if _, err := cs.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Status(ctx, "shop"); st.Ready || st.Services[1].Ready || !st.Services[0].Ready || !strings.Contains(st.Message, "1 of 2 services ready") {
		t.Errorf("status with the store down %+v", st)
	}
	if err := r.Destroy(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	for what, n := range map[string]int{
		"deployments": len(must(cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})).Items),
		"services":    len(must(cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})).Items),
		"claims":      len(must(cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})).Items),
	} {
		if n != 0 {
			t.Errorf("%d %s left", n, what)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
