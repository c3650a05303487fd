package kube

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/edgedrift/drift/tests/internal/proc"
)

// The Go constant and the tools module must name the same Kubernetes, or
// BinDir and build.sh would disagree about the cache dir.
func TestVersionsMatchToolsModule(t *testing.T) {
	gomod, err := os.ReadFile(filepath.Join(sourceDir(), "tools", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "require k8s.io/kubernetes " + KubernetesVersion + "\n"; !strings.Contains(string(gomod), want) {
		t.Errorf("tools/go.mod lacks %q", strings.TrimSpace(want))
	}
	script, err := os.ReadFile(BuildScript())
	if err != nil {
		t.Fatal(err)
	}
	if want := `KWOK_VERSION="${KWOK_VERSION:-` + KwokVersion + `}"`; !strings.Contains(string(script), want) {
		t.Errorf("build.sh lacks %s", want)
	}
}

func TestSmokeDeployment(t *testing.T) {
	c := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The kubeconfig works on its own, as a user of the cluster would load it.
	if cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil || cfg.Host != c.RESTConfig.Host {
		t.Fatalf("kubeconfig %s: host %v, err %v", c.Kubeconfig, cfg, err)
	}
	ver, err := c.Clientset.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server version %s", ver.GitVersion)

	const ns = "smoke"
	if _, err := c.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example.invalid/web:1"}}},
			},
		},
	}
	if _, err := c.Clientset.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		d, err := c.Clientset.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.AvailableReplicas != 2 || d.Status.UpdatedReplicas != 2 {
			return false, nil
		}
		pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == c.Nodes[0] {
				running++
			}
		}
		return running == 2, nil
	})
	if err != nil {
		t.Fatalf("deployment did not roll out to 2 Running pods: %v", err)
	}
	t.Logf("rolled out in %s", time.Since(began).Round(time.Millisecond))
	// kwok reacts to watch events within milliseconds; tens of seconds mean
	// it only sees changes when it relists (see WatchList in kube.go).
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("rollout took %s", d)
	}

	if err := c.Clientset.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := c.Clientset.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err == nil {
			return false, nil
		}
		if !apierrors.IsNotFound(err) {
			return false, err
		}
		pods, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		rss, err := c.Clientset.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return len(pods.Items) == 0 && len(rss.Items) == 0, nil
	})
	if err != nil {
		t.Fatalf("pods not gone after deleting the deployment: %v", err)
	}
	t.Logf("deleted in %s", time.Since(began).Round(time.Millisecond))
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("deletion took %s", d)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.procs {
		if log := p.LogTail(1000); strings.Contains(log, "a watch stream was requested by the client") {
			t.Errorf("%s's watches fail:\n%s", p.Name, proc.Tail(log, 5))
		}
	}

	// Stop (which t.Cleanup would call) leaves no process of any component.
	if len(c.procs) != 5 {
		t.Fatalf("%d components, want 5", len(c.procs))
	}
	began = time.Now()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %s", time.Since(began).Round(time.Millisecond))
	for _, p := range c.procs {
		if done, _ := p.Exited(); !done || proc.GroupAlive(p.Pid()) {
			t.Errorf("%s (pid %d) still alive after Stop", p.Name, p.Pid())
		}
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}
