package upgrade

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgedrift/drift/activities"
	driftclient "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/tests/kube"
	"github.com/edgedrift/drift/workflows"
)

// storage gives the cluster one volume for the component's claim (the
// harness has no provisioner): a directory of the host, removed with the
// volume when the test ends.
func storage(t *testing.T, cluster *kube.Cluster) {
	t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "upgrade-edge-data"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: t.TempDir()}},
		},
	}
	if _, err := cluster.Clientset.CoreV1().PersistentVolumes().Create(context.Background(), pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Clientset.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete the persistent volume: %v", err)
		}
	})
}

// On the real node pods run: the upgrade with data and the rollback of
// Docker and the process runtime, on Kubernetes. The images are pulled from
// the registry; the data volume is a claim on a directory of the node both
// envs' pods and the task Jobs mount; the stable endpoint is a Service
// (kube-proxy) whose selector flips, with no failed request at it.
func TestUpgradeWithDataOnARealKubernetesNode(t *testing.T) {
	reg, repo := publish(t)
	cluster := kube.Start(t, kube.WithRealNode(), kube.WithInsecureRegistry(reg.Host()))
	r := startRig(t, reg, repo, "upgrade-edge", runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: cluster.Kubeconfig})
	r.drain = 5 * time.Second // kube-proxy has the old pods' endpoints out of its rules by then
	t.Run("100 volumes through 24.2 → 26.1 → 28.0", func(t *testing.T) {
		storage(t, cluster)
		upgradeWithData(t, r)
	})
	t.Run("rollback within the window restores 24.2 with every volume", func(t *testing.T) {
		storage(t, cluster)
		rollbackWithinWindow(t, r)
	})
}

// pod is what must not change about a bystander's pod.
type pod struct {
	Deployment, UID, Image, Started string
	Generation                      int64
}

func podOf(t *testing.T, cluster *kube.Cluster, ns, instance string) pod {
	t.Helper()
	ctx := context.Background()
	dep, err := cluster.Clientset.AppsV1().Deployments(ns).Get(ctx, instance, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := cluster.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: runtime.LabelInstance + "=" + instance})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of %s: %d (%v)", instance, len(pods.Items), err)
	}
	p := pods.Items[0]
	return pod{Deployment: string(dep.UID), UID: string(p.UID), Image: p.Spec.Containers[0].Image, Started: p.Status.StartTime.String(), Generation: dep.Generation}
}

// The upgrade with data on the Kubernetes harness. kwok's pods run
// nothing, so what is proven is in the API: the data volume is one
// PersistentVolumeClaim that both envs' pods and every task Job mount;
// the tools run as Jobs (kwok completes them with exit 0); the stable
// endpoint is a Service whose selector flips to the new env's API pods;
// the env upgraded from is scaled to zero for the window; a rollback scales
// it back and flips the selector back; the bystander's pod never changes.
// The data itself and the endpoint without failed requests are proved on
// Docker and the process runtime.
func TestUpgradeOnKubernetes(t *testing.T) {
	cluster := kube.Start(t)
	r := newRig(t, "upgrade-edge", runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: cluster.Kubeconfig})
	r.serves = false
	ctx := context.Background()
	ns := "drift-upgrade-edge"
	// The cluster's storage: one volume for the component's claim (the
	// harness has no provisioner), removed when the test ends.
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "upgrade-edge-data"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: t.TempDir()}},
		},
	}
	if _, err := cluster.Clientset.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cluster.Clientset.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})

	glanceRepo, err := demo.CinderReleases(ctx, r.reg.Host(), "kolla/glance", "glance", []string{"29.0.0"}, bin)
	if err != nil {
		t.Fatal(err)
	}
	r.install(t, "glance", glanceRepo, "29.0.0", "", false)
	glance := podOf(t, cluster, ns, "glance-prod")
	r.install(t, "cinder", r.repo, "24.2.0", r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", ""), true)

	in := r.cinderInput(workflows.PolicyPlatform, "3.0.0", r.driver(t, "3.0.0", ">= 25.0.0", ""))
	in.Verify, in.Window = activities.VerifyRollout, 10*time.Minute
	run := r.start(t, in)
	p := r.waitPhase(t, "in the rollback window", func(p workflows.UpgradeProgress) bool { return p.Phase == "window" })

	selector := func() string {
		svc, err := cluster.Clientset.CoreV1().Services(ns).Get(ctx, "cinder", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return svc.Spec.Selector[runtime.LabelInstance]
	}
	replicas := func(name string) int32 {
		dep, err := cluster.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *dep.Spec.Replicas
	}
	claims := func(name string) []string {
		dep, err := cluster.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				out = append(out, v.PersistentVolumeClaim.ClaimName)
			}
		}
		return out
	}
	if p.Serving.Version != "28.0.0" || len(p.Hops) != 2 || p.Kept == nil || p.Kept.Name != prodEnv {
		t.Fatalf("in the window: %+v", p)
	}
	for _, h := range p.Hops {
		if h.Status != workflows.HopSwitched || len(h.Checks) != 4 || !h.Checks[2].OK {
			t.Errorf("hop %d: %s %+v", h.N, h.Status, h.Checks)
		}
	}
	if got := selector(); got != p.Serving.Instances[0] {
		t.Errorf("the endpoint selects %s, want the new env's %s", got, p.Serving.Instances[0])
	}
	for _, name := range append([]string{"cinder-prod", "cinder-volume-prod"}, p.Serving.Instances...) {
		if got := claims(name); len(got) != 1 || got[0] != dataVolume {
			t.Errorf("%s mounts claims %v, want %s", name, got, dataVolume)
		}
	}
	for _, name := range []string{"cinder-prod", "cinder-volume-prod"} {
		if n := replicas(name); n != 0 {
			t.Errorf("kept %s has %d replicas, want 0", name, n)
		}
	}
	pvc, err := cluster.Clientset.CoreV1().PersistentVolumeClaims(ns).Get(ctx, dataVolume, metav1.GetOptions{})
	if err != nil || pvc.Status.Phase != corev1.ClaimBound || pvc.Labels[activities.LabelComponent] != "cinder" {
		t.Errorf("claim %+v %v", pvc, err)
	}
	jobs, err := cluster.Clientset.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(jobs.Items) != 0 {
		t.Errorf("task jobs left: %d (%v)", len(jobs.Items), err)
	}

	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rolled, err := driftclient.New(r.c).RollbackUpgrade(cctx, r.cloud, "cinder", workflows.Decision{Who: "carol", Why: "try the API path"})
	if err != nil || rolled.Phase != "rolled back" {
		t.Fatalf("rollback: %v %s", err, rolled.Phase)
	}
	if _, err := r.result(t, run); err != nil {
		t.Fatal(err)
	}
	if got := selector(); got != "cinder-prod" {
		t.Errorf("after the rollback the endpoint selects %s", got)
	}
	for _, name := range []string{"cinder-prod", "cinder-volume-prod"} {
		if n := replicas(name); n != 1 {
			t.Errorf("%s has %d replicas after the rollback", name, n)
		}
	}
	for _, name := range p.Serving.Instances {
		if _, err := cluster.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			t.Errorf("the new env's Deployment %s is still there", name)
		}
	}
	if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs[prodEnv]) != 2 {
		t.Errorf("cinder envs %v", envs)
	}
	if after := podOf(t, cluster, ns, "glance-prod"); after != glance {
		t.Errorf("glance's pod changed beside the upgrade: %+v → %+v", glance, after)
	}
}
