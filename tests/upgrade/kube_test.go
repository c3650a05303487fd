package upgrade

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/tests/kube"
	"github.com/edgedrift/drift/workflows"
)

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

// The same upgrade on the Kubernetes harness. kwok's pods run nothing, so
// verification is the rollout (every instance ready through the API); the
// HTTP health and driver checks, and the driver policy, whose start-up error
// only a real container prints, are proved on Docker. What this proves:
// the new env is made beside the old as its own Deployments, the old env's
// Deployments go on switch, the bystander's pod is untouched.
func TestUpgradeOnKubernetes(t *testing.T) {
	cluster := kube.Start(t)
	r := newRig(t, "upgrade-edge", runtime.Config{Kind: runtime.KindKubernetes, Kubeconfig: cluster.Kubeconfig})
	ctx := context.Background()
	ns := "drift-upgrade-edge"
	glanceRepo, err := demo.CinderReleases(ctx, r.reg.Host(), "fixture/glance", "glance", []string{"29.0.0"}, bin)
	if err != nil {
		t.Fatal(err)
	}
	r.env(t, "glance", glanceRepo, "29.0.0", "", map[string]map[string]string{"glance-prod": {"ROLE": "api"}})
	glance := podOf(t, cluster, ns, "glance-prod")
	old := r.env(t, "cinder", r.repo, "24.2.0", r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", ""),
		map[string]map[string]string{"cinder-prod": {"ROLE": "api"}, "cinder-volume-prod": {"ROLE": "volume"}})

	in := r.cinderInput(workflows.PolicyPlatform, "3.0.0", r.driver(t, "3.0.0", ">= 25.0.0", ""))
	in.Verify = activities.VerifyRollout
	res, err := r.run(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Serving.Version != "28.0.0" || res.Retired != "cinder-prod" || len(res.Attempts) != 1 {
		t.Fatalf("result %+v", res)
	}
	for _, c := range res.Attempts[0].Verification.Checks {
		if !c.OK || c.Detail != "ready on kubernetes" {
			t.Errorf("check %+v", c)
		}
	}
	for _, name := range res.Serving.Instances {
		dep, err := cluster.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || dep.Status.AvailableReplicas < 1 || dep.Labels[activities.LabelVersion] != "28.0.0" {
			t.Errorf("new env Deployment %s: %v", name, err)
		} else if img := dep.Spec.Template.Spec.Containers[0].Image; img != res.Serving.Image {
			t.Errorf("%s runs %s, want %s", name, img, res.Serving.Image)
		}
	}
	for _, name := range old {
		if _, err := cluster.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			t.Errorf("old env Deployment %s still there after the switch", name)
		}
	}
	if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs[res.Serving.Name]) != 2 {
		t.Errorf("cinder envs %v", envs)
	}
	if after := podOf(t, cluster, ns, "glance-prod"); after != glance {
		t.Errorf("glance's pod changed beside the upgrade: %+v → %+v", glance, after)
	}
}
