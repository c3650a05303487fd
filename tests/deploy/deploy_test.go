// Package deploy checks drift's own deployment files: the Kubernetes
// manifests are applied to a real control plane (tests/kube) and their
// objects read back; the compose file is parsed with compose-go. Both must
// run site workers with --no-central and the center --registry, probe
// /healthz and /readyz, and pin the Temporal server drift's go.mod pins.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/tests/kube"
)

// temporalServerVersion is the go.temporal.io/server version go.mod pins.
func temporalServerVersion(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(harness.RepoRoot(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "go.temporal.io/server" {
			return fields[1]
		}
	}
	t.Fatal("go.mod does not require go.temporal.io/server")
	return ""
}

// flagValue is the value after flag in args ("" when absent).
func flagValue(args []string, flag string) (string, bool) {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return "", false
	}
	return args[i+1], true
}

// checkSiteArgs states what every site worker needs: only its clouds, and
// the center registry, never its own loopback unless the whole shape is on
// one host (loopbackOK).
func checkSiteArgs(t *testing.T, what string, args []string, central, loopbackOK bool) {
	t.Helper()
	if got := slices.Contains(args, "--no-central"); got == central {
		t.Errorf("%s: --no-central present=%v, want %v: %v", what, got, !central, args)
	}
	if clouds, ok := flagValue(args, "--clouds"); !ok || clouds == "" {
		t.Errorf("%s: no --clouds: %v", what, args)
	}
	reg, ok := flagValue(args, "--registry")
	if !ok || reg == "" {
		t.Errorf("%s: no --registry: %v", what, args)
		return
	}
	host, _, _ := strings.Cut(reg, "/")
	if image.IsLoopback(host) != loopbackOK {
		t.Errorf("%s: --registry %s (loopback allowed: %v)", what, reg, loopbackOK)
	}
}

// The compose file runs Temporal at go.mod's version with its schema set up
// by its own tool, drift setup before the workers, the registry with
// htpasswd, and workers with the site flags.
func TestComposeFile(t *testing.T) {
	path := filepath.Join(harness.RepoRoot(), "deploy", "docker-compose.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(path),
		ConfigFiles: []types.ConfigFile{{Filename: path, Content: data}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("drift", true) })
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimPrefix(temporalServerVersion(t), "v")
	for name, want := range map[string]string{"temporal": "temporalio/server:" + version, "temporal-schema": "temporalio/admin-tools:" + version} {
		if s, ok := project.Services[name]; !ok || s.Image != want {
			t.Errorf("service %s image %q, want %q", name, s.Image, want)
		}
	}
	if env := project.Services["temporal"].Environment["DB"]; env == nil || *env != "postgres12" {
		t.Errorf("temporal DB = %v, want postgres12", env)
	}
	if cmd := strings.Join(project.Services["temporal-schema"].Command, " "); !strings.Contains(cmd, "temporal-sql-tool") || !strings.Contains(cmd, "postgresql/v12/") {
		t.Errorf("temporal-schema does not set the schema up with temporal-sql-tool: %s", cmd)
	}
	if ep := project.Services["drift-setup"].Entrypoint; !slices.Equal(ep, []string{"/drift", "setup"}) {
		t.Errorf("drift-setup entrypoint %v", ep)
	}
	reg := project.Services["registry"].Entrypoint
	if !slices.Equal(reg[:3], []string{"/drift", "registry", "serve"}) || !slices.Contains(reg, "--htpasswd") {
		t.Errorf("registry entrypoint %v: want drift registry serve with --htpasswd", reg)
	}
	workers := 0
	for name, s := range project.Services {
		if !strings.HasPrefix(name, "worker-") {
			continue
		}
		workers++
		checkSiteArgs(t, name, s.Command, name == "worker-central", true)
		if dep, ok := s.DependsOn["drift-setup"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s does not wait for drift setup: %+v", name, s.DependsOn)
		}
		if s.NetworkMode != "host" {
			t.Errorf("%s network %q: the registry and Temporal are on the host's loopback", name, s.NetworkMode)
		}
	}
	if workers < 2 {
		t.Errorf("%d workers, want a central one and a site", workers)
	}
}

// The Kubernetes manifests apply to a real control plane; the worker's
// Deployment rolls out (on a kwok node) with the site flags, the registry's
// credentials, /healthz liveness, /readyz readiness and go.mod's Temporal
// version; deleting them leaves nothing.
func TestKubernetesManifests(t *testing.T) {
	cluster := kube.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cs := cluster.Clientset
	objs := decodeManifests(t, filepath.Join(harness.RepoRoot(), "deploy", "kubernetes", "worker.yaml"))
	// The secrets the manifest's comment tells the operator to create.
	objs = append(objs,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry-auth", Namespace: "drift"}, StringData: map[string]string{"config.json": `{"auths":{}}`}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "edge-kubeconfig", Namespace: "drift"}, StringData: map[string]string{"config": "apiVersion: v1\nkind: Config\n"}},
	)
	for _, o := range objs {
		if err := apply(ctx, cs, o, true); err != nil {
			t.Fatalf("apply %T: %v", o, err)
		}
	}
	defer func() {
		for i := len(objs) - 1; i >= 0; i-- {
			if err := apply(ctx, cs, objs[i], false); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete %T: %v", objs[i], err)
			}
		}
		waitGone(t, ctx, func() error {
			_, err := cs.CoreV1().Namespaces().Get(ctx, "drift", metav1.GetOptions{})
			return err
		})
		if _, err := cs.RbacV1().ClusterRoles().Get(ctx, "drift-worker", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("cluster role drift-worker still there (%v)", err)
		}
	}()

	var dep *appsv1.Deployment
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		d, err := cs.AppsV1().Deployments("drift").Get(ctx, "drift-worker", metav1.GetOptions{})
		if err == nil && d.Status.AvailableReplicas == 1 {
			dep = d
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drift-worker did not roll out: %v %+v", err, d.Status)
		}
	}
	c := dep.Spec.Template.Spec.Containers[0]
	checkSiteArgs(t, "deployment drift-worker", c.Args, false, false)
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe %+v, want GET /healthz", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %+v, want GET /readyz", c.ReadinessProbe)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["DOCKER_CONFIG"] == "" || !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == env["DOCKER_CONFIG"] }) {
		t.Errorf("no registry credentials mounted at DOCKER_CONFIG %q", env["DOCKER_CONFIG"])
	}
	if got, want := dep.Spec.Template.Annotations["drift.edgedrift.io/temporal-server"], temporalServerVersion(t); got != want {
		t.Errorf("temporal-server annotation %q, want go.mod's %s", got, want)
	}
	pods, err := cs.CoreV1().Pods("drift").List(ctx, metav1.ListOptions{LabelSelector: "app=drift-worker"})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Spec.ServiceAccountName != "drift-worker" {
		t.Fatalf("pods %v (%v)", pods, err)
	}
}

// decodeManifests reads every object of a multi-document YAML file.
func decodeManifests(t *testing.T, path string) []runtime.Object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, obj)
	}
}

// apply creates (or deletes) one of the kinds the manifests hold.
func apply(ctx context.Context, cs kubernetes.Interface, obj runtime.Object, create bool) error {
	c, d := metav1.CreateOptions{}, metav1.DeleteOptions{}
	var err error
	switch o := obj.(type) {
	case *corev1.Namespace:
		if create {
			_, err = cs.CoreV1().Namespaces().Create(ctx, o, c)
		} else {
			err = cs.CoreV1().Namespaces().Delete(ctx, o.Name, d)
		}
	case *corev1.ServiceAccount:
		if create {
			_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, c)
		} else {
			err = cs.CoreV1().ServiceAccounts(o.Namespace).Delete(ctx, o.Name, d)
		}
	case *corev1.ConfigMap:
		if create {
			_, err = cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, c)
		} else {
			err = cs.CoreV1().ConfigMaps(o.Namespace).Delete(ctx, o.Name, d)
		}
	case *corev1.Secret:
		if create {
			_, err = cs.CoreV1().Secrets(o.Namespace).Create(ctx, o, c)
		} else {
			err = cs.CoreV1().Secrets(o.Namespace).Delete(ctx, o.Name, d)
		}
	case *rbacv1.ClusterRole:
		if create {
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, o, c)
		} else {
			err = cs.RbacV1().ClusterRoles().Delete(ctx, o.Name, d)
		}
	case *rbacv1.ClusterRoleBinding:
		if create {
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, c)
		} else {
			err = cs.RbacV1().ClusterRoleBindings().Delete(ctx, o.Name, d)
		}
	case *appsv1.Deployment:
		if create {
			_, err = cs.AppsV1().Deployments(o.Namespace).Create(ctx, o, c)
		} else {
			err = cs.AppsV1().Deployments(o.Namespace).Delete(ctx, o.Name, d)
		}
	default:
		return errors.New("the manifests hold a kind this test does not apply: add it")
	}
	return err
}

// waitGone waits until get reports NotFound.
func waitGone(t *testing.T, ctx context.Context, get func() error) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		err := get()
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still there after 2m (%v)", err)
		}
	}
}
