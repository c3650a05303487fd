package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/runtime"
	kuberuntime "github.com/edgedrift/drift/internal/runtime/kubernetes"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/tests/internal/proc"
)

// Pods on the real node run the example app for real: one from an image
// imported into containerd (imagePullPolicy Never), one pulled from a
// registry on loopback over plain HTTP. Each answers HTTP on its pod IP, on
// its Service's ClusterIP and on its NodePort; drift's Kubernetes runtime's
// endpoint serves too; the cluster's Stop leaves nothing on the host.
func TestRealNodeServesHTTP(t *testing.T) {
	reg := harness.Registry(t)
	pulled := harness.HelloImage(t, reg, "pulled")
	c := Start(t, WithRealNode(), WithNodes(1), WithInsecureRegistry(reg.Host()))
	n := c.Real
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	node, err := c.Clientset.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.Labels[RealNodeLabel] != "true" || node.Annotations[NodeAnnotation] != "" {
		t.Errorf("real node labels %v, annotations %v", node.Labels, node.Annotations)
	}

	imported := "drift.test/hello:imported"
	bin := harness.HelloBinary(t, goruntime.GOARCH, "imported")
	img, err := image.Build(v1.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		[]image.File{{Path: "/hello", Mode: 0o755, Data: bin}}, image.Config{Entrypoint: []string{"/hello"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ImportImage(ctx, img, imported); err != nil {
		t.Fatal(err)
	}

	const ns = "real"
	if _, err := c.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, app := range []struct {
		name, image, version string
		policy               corev1.PullPolicy
	}{
		{"imported", imported, "imported", corev1.PullNever},
		{"pulled", pulled, "pulled", corev1.PullIfNotPresent},
	} {
		t.Run(app.name, func(t *testing.T) {
			began := time.Now()
			pod, svc := deployHello(t, ctx, c, ns, app.name, app.image, app.policy)
			t.Logf("pod %s Running on %s with IP %s after %s", pod.Name, pod.Spec.NodeName, pod.Status.PodIP, time.Since(began).Round(time.Millisecond))
			_, podNet, _ := net.ParseCIDR(n.PodCIDR)
			if ip := net.ParseIP(pod.Status.PodIP); ip == nil || !podNet.Contains(ip) {
				t.Errorf("pod IP %q not in %s", pod.Status.PodIP, n.PodCIDR)
			}
			_, svcNet, _ := net.ParseCIDR(n.ServiceCIDR)
			if ip := net.ParseIP(svc.Spec.ClusterIP); ip == nil || !svcNet.Contains(ip) {
				t.Errorf("ClusterIP %q not in %s", svc.Spec.ClusterIP, n.ServiceCIDR)
			}
			for _, url := range []string{
				"http://" + net.JoinHostPort(pod.Status.PodIP, "8080") + "/",
				"http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/",
				"http://" + net.JoinHostPort(n.IP, strconv.Itoa(int(svc.Spec.Ports[0].NodePort))) + "/",
			} {
				body := getOK(t, ctx, url)
				var got struct{ Version, Host string }
				if err := json.Unmarshal([]byte(body), &got); err != nil || got.Version != app.version || got.Host != pod.Name {
					t.Errorf("GET %s: %s, want version %s from %s", url, body, app.version, pod.Name)
				}
			}
		})
	}

	// Pods with no scheduling hints go to the real node; pods that tolerate
	// the fake nodes' taint and select them go there.
	t.Run("choosing-nodes", func(t *testing.T) {
		plain := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: ns},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: PauseImage, ImagePullPolicy: corev1.PullNever}}},
		}
		fake := plain.DeepCopy()
		fake.Name = "fake"
		fake.Spec.NodeSelector = map[string]string{"type": "kwok"}
		fake.Spec.Tolerations = []corev1.Toleration{{Key: FakeNodeTaint, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
		for pod, node := range map[*corev1.Pod]string{plain: n.Name, fake: c.Nodes[0]} {
			if _, err := c.Clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			var got string
			if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				p, err := c.Clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
				got = p.Spec.NodeName
				return err == nil && got != "", err
			}); err != nil || got != node {
				t.Errorf("pod %s on %q (%v), want %s", pod.Name, got, err, node)
			}
			if err := c.Clientset.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
				t.Fatal(err)
			}
		}
	})

	// drift's own Kubernetes runtime deploys here unchanged, and the
	// endpoint it returns (the Service's ClusterIP) serves from this host.
	t.Run("drift-runtime", func(t *testing.T) {
		rt, err := kuberuntime.NewForClient(c.Clientset, "", "edge-real")
		if err != nil {
			t.Fatal(err)
		}
		ep, err := rt.Deploy(ctx, "hello-real", runtime.Spec{Image: pulled, Port: 8080, Health: "/healthz"})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("endpoint %s", ep.URL)
		if body := getOK(t, ctx, ep.URL+"/"); !strings.Contains(body, `"version":"pulled"`) {
			t.Errorf("GET %s: %s", ep.URL, body)
		}
		if err := rt.Destroy(ctx, "hello-real"); err != nil {
			t.Fatal(err)
		}
	})

	// The workloads go, and their pods with them.
	for _, name := range []string{"imported", "pulled"} {
		if err := c.Clientset.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, err
	}); err != nil {
		t.Fatalf("pods not gone: %v", err)
	}

	// Stop (which t.Cleanup would call) undoes everything on the host.
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if left := n.Leftovers(); len(left) > 0 {
		t.Errorf("left after Stop: %v", left)
	}
	if ps, err := proc.In(c.Dir); err != nil || len(ps) > 0 {
		t.Errorf("processes left in %s: %v (%v)", c.Dir, ps, err)
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory" + n.cgroupRoot); err == nil {
		t.Errorf("cgroup %s left", n.cgroupRoot)
	}
}

// A real node whose start fails half-way (here: a registry it must not
// trust) takes its bridge and the rest of the cluster down with it.
func TestRealNodeFailedStartLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	c, err := New(context.Background(), WithDir(dir), WithRealNode(), WithInsecureRegistry("registry.invalid:5000"))
	if err == nil {
		c.Stop()
		t.Fatal("a real node trusted a registry off this host")
	}
	t.Logf("error, as wanted: %.300s", err)
	if !strings.Contains(err.Error(), "want a loopback host:port") {
		t.Errorf("the error does not say why: %v", err)
	}
	if ps, perr := proc.In(dir); perr != nil || len(ps) > 0 {
		t.Errorf("processes left in %s: %v (%v)", dir, ps, perr)
	}
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name, "dk-") {
			t.Errorf("bridge %s left", i.Name)
		}
	}
}

// deployHello runs the example app as a one-replica Deployment on the real
// node with a NodePort Service (port 80 → 8080), and returns its Running,
// Ready pod and the Service.
func deployHello(t *testing.T, ctx context.Context, c *Cluster, ns, name, img string, policy corev1.PullPolicy) (*corev1.Pod, *corev1.Service) {
	t.Helper()
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector:                  map[string]string{RealNodeLabel: "true"},
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					Containers: []corev1.Container{{
						Name: "hello", Image: img, ImagePullPolicy: policy,
						Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	if _, err := c.Clientset.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: labels,
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	svc, err := c.Clientset.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	why := ""
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil || len(pods.Items) != 1 {
			why = fmt.Sprintf("%d pods (%v)", len(pods.Items), err)
			return false, nil
		}
		p := &pods.Items[0]
		why = podState(p)
		if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName != c.Real.Name {
			return false, nil
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				pod = p
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s not Running and Ready on %s: %s (%v)", name, c.Real.Name, why, err)
	}
	return pod, svc
}

// podState says where a pod is on its way to Running.
func podState(p *corev1.Pod) string {
	s := fmt.Sprintf("phase %s on %q", p.Status.Phase, p.Spec.NodeName)
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			s += fmt.Sprintf(", %s waiting: %s %s", cs.Name, w.Reason, w.Message)
		}
	}
	for _, cond := range p.Status.Conditions {
		if cond.Status != corev1.ConditionTrue && cond.Message != "" {
			s += fmt.Sprintf(", %s: %s", cond.Type, cond.Message)
		}
	}
	return s
}

// getOK GETs url until it answers 200 (a Service's rules can lag its
// pod's readiness by a moment) and returns the body. Each try is a new
// connection, so one made before kube-proxy's rules cannot answer for them.
func getOK(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("GET %s: %s (%v)", url, last, err)
	}
	t.Logf("GET %s: %s", url, last)
	return strings.TrimPrefix(last, "200 OK: ")
}

// The counter app (a compose project) through drift's Kubernetes runtime on
// the real node: its pods really run, readiness waits for both services'
// health paths, web reaches the store by its service name (mapped to the
// store's ClusterIP, which kube-proxy routes), the count lives on the
// store's claim across a redeploy, and Destroy and Stop leave nothing.
func TestRealNodeRunsAComposeProject(t *testing.T) {
	reg := harness.Registry(t)
	web, store := harness.CounterImages(t, reg, "real")
	c := Start(t, WithRealNode(), WithInsecureRegistry(reg.Host()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// In a subtest, so that its cleanups run before the cluster stops.
	t.Run("counter", func(t *testing.T) { projectOnRealNode(t, ctx, c, web, store) })
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if left := c.Real.Leftovers(); len(left) > 0 {
		t.Errorf("left after Stop: %v", left)
	}
	if ps, err := proc.In(c.Dir); err != nil || len(ps) > 0 {
		t.Errorf("processes left in %s: %v (%v)", c.Dir, ps, err)
	}
}

// projectOnRealNode deploys the counter app with drift's Kubernetes runtime
// on the real node, counts through it, redeploys it and destroys it.
func projectOnRealNode(t *testing.T, ctx context.Context, c *Cluster, web, store string) {
	const cloud, name = "edge-real", "counter-real"
	rt, err := kuberuntime.NewForClient(c.Clientset, "", cloud)
	if err != nil {
		t.Fatal(err)
	}
	// The claim's volume: a directory on this host, which is the node.
	prefix := runtimetest.UniqueName("realpv")
	dir := filepath.Join("/tmp", prefix+"-pv-0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	harness.PersistentVolumes(t, c.Clientset, prefix, 1)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := rt.Destroy(cctx, name); err != nil {
			t.Errorf("cleanup: destroy %s: %v", name, err)
		}
	})

	spec := runtimetest.CounterSpec(t, web, store, cloud, nil)
	ep, err := rt.Deploy(ctx, name, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("endpoint %s, state %s", ep.URL, ep.StateURL)
	for i := 1; i <= 3; i++ {
		if body := postOK(t, ctx, ep.URL+"/count", ep.StateURL); !strings.Contains(body, fmt.Sprintf(`"count":%d`, i)) || !strings.Contains(body, `"cloud":"`+cloud+`"`) {
			t.Fatalf("POST %s/count: %s, want count %d from %s", ep.URL, body, i, cloud)
		}
	}
	if body := getOK(t, ctx, ep.StateURL); strings.TrimSpace(body) != `{"count":3}` {
		t.Errorf("GET %s: %s", ep.StateURL, body)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
		t.Errorf("the store's state is not on its claim's volume: %v", err)
	}

	t.Log("a changed spec rolls both services; the count stays on the claim")
	spec.Services[1].Env["GREETING"] = "changed"
	ep2, err := rt.Deploy(ctx, name, spec)
	if err != nil {
		t.Fatal(err)
	}
	if body := getOK(t, ctx, ep2.URL+"/"); !strings.Contains(body, `"count":3`) {
		t.Errorf("after the redeploy GET %s/: %s, want count 3", ep2.URL, body)
	}

	if err := rt.Destroy(ctx, name); err != nil {
		t.Fatal(err)
	}
	sel := metav1.ListOptions{LabelSelector: runtime.LabelInstance + "=" + name}
	ns := rt.Namespace()
	deps, err1 := c.Clientset.AppsV1().Deployments(ns).List(ctx, sel)
	svcs, err2 := c.Clientset.CoreV1().Services(ns).List(ctx, sel)
	claims, err3 := c.Clientset.CoreV1().PersistentVolumeClaims(ns).List(ctx, sel)
	if err := errors.Join(err1, err2, err3); err != nil || len(deps.Items)+len(svcs.Items)+len(claims.Items) > 0 {
		t.Errorf("after Destroy: %d Deployments, %d Services, %d claims (%v)", len(deps.Items), len(svcs.Items), len(claims.Items), err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, sel)
		return err == nil && len(pods.Items) == 0, err
	}); err != nil {
		t.Errorf("the project's pods are not gone: %v", err)
	}
}

// postOK POSTs to url until it answers 200 (a Service's rules may lag its
// pods by a moment) and returns the body. On failure it says whether the
// peer at also answers from here, and which Service rules the host has.
func postOK(t *testing.T, ctx context.Context, url, also string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var last string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
		resp, err := client.Do(req)
		was := last
		if err != nil {
			last = err.Error()
		} else {
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		if last != was && (err != nil || resp.StatusCode != http.StatusOK) {
			t.Logf("POST %s: %s", url, last)
		}
		return err == nil && resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		answers := func(u string) string {
			resp, err := client.Get(u)
			if err != nil {
				return err.Error()
			}
			resp.Body.Close()
			return resp.Status
		}
		peer := answers(also) + "; GET " + url[:strings.LastIndex(url, "/")] + "/healthz from here: " + answers(url[:strings.LastIndex(url, "/")]+"/healthz")
		// Every real node's kube-proxy owns the host's KUBE- chains: another
		// test's real node on this host removes this one's Service rules.
		rules, _ := exec.Command("iptables", "-t", "nat", "-S", "KUBE-SERVICES").CombinedOutput()
		proxies, _ := exec.Command("pgrep", "-a", "kube-proxy").CombinedOutput()
		t.Fatalf("POST %s: %s (%v); GET %s from here: %s; the host's KUBE-SERVICES rules:\n%s\nkube-proxy processes on this host:\n%s", url, last, err, also, peer, rules, proxies)
	}
	return strings.TrimPrefix(last, "200 OK: ")
}
