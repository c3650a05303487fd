// Package upgrade runs component upgrades on real parts: the embedded
// Temporal server, the embedded registry holding the fixture component's
// releases and driver builds, the Docker Engine and the Kubernetes harness.
// Clouds are named upgrade-* so nothing here sees other tests' instances.
package upgrade

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/registry"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/upgrade"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

func TestMain(m *testing.M) { harness.Main(m) }

// topologyYAML has one cloud per runtime kind, named for this package only.
const topologyYAML = `name: upgrade-it
clouds:
  - {id: upgrade-center, tier: center}
  - {id: upgrade-fog, tier: fog, parent: upgrade-center, runtime: {kind: docker}}
  - {id: upgrade-edge, tier: edge, parent: upgrade-fog}
regions:
  upgrade-r: upgrade-fog
`

var (
	binOnce sync.Once
	bin     []byte
	binErr  error
)

// rig is a Temporal server, a registry with the fixture released at every
// version of the shipped index, and a worker for the upgrade-* clouds.
type rig struct {
	c     client.Client
	reg   *registry.Server
	ws    *workerhost.Workers
	cloud string
	rt    runtime.Runtime
	repo  string // the fixture cinder's repository
}

func newRig(t *testing.T, cloud string, cfg runtime.Config) *rig {
	t.Helper()
	_, c := harness.Temporal(t, "")
	reg, repo := publish(t)
	topo, err := topology.Parse([]byte(topologyYAML))
	if err != nil {
		t.Fatal(err)
	}
	ws := harness.Workers(t, c, topo, reg.Host(), func(cl topology.Cloud) runtime.Config {
		if cl.ID == cloud {
			return cfg
		}
		return runtime.Config{Kind: runtime.KindProcess}
	})
	return &rig{c: c, reg: reg, ws: ws, cloud: cloud, rt: ws.Runtimes[cloud], repo: repo}
}

// publish starts a registry and releases the fixture cinder in it at every
// version of the shipped index; it returns the registry and the repository.
func publish(t *testing.T) (*registry.Server, string) {
	t.Helper()
	reg := harness.Registry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	binOnce.Do(func() { bin, binErr = demo.CinderBinary(ctx) })
	if binErr != nil {
		t.Fatal(binErr)
	}
	ix, err := upgrade.ParseIndex(examples.Releases)
	if err != nil {
		t.Fatal(err)
	}
	rels, _, err := ix.Published("cinder")
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, r := range rels {
		tags = append(tags, r.Tag)
	}
	repo, err := demo.CinderReleases(ctx, reg.Host(), "fixture/cinder", "cinder", tags, bin)
	if err != nil {
		t.Fatal(err)
	}
	return reg, repo
}

// driver pushes a build of the acme driver that works with cinder versions
// matching constraint; dir is where it keeps volumes ("" = its own dir).
func (r *rig) driver(t *testing.T, version, constraint, dir string) string {
	t.Helper()
	ref, err := demo.DriverImage(context.Background(), r.reg.Host(), demo.Driver{
		Name: "acme", Version: version, Components: map[string]string{"cinder": constraint}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// env deploys an env of component at version (with the driver layered in
// when driverRef is set) straight through the runtime, as an operator's
// earlier install would have: one instance per role.
func (r *rig) env(t *testing.T, component, repo, version, driverRef string, roles map[string]map[string]string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Pinned by digest, so a changed image would show in the instance.
	img, err := image.Resolve(ctx, repo+":"+version)
	if driverRef != "" {
		img, err = image.Layer(ctx, repo+":"+version, driverRef, repo+"-drivers:"+version+"-installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name, env := range roles {
		spec := runtime.Spec{Image: img, Port: demo.CinderPort, Health: demo.CinderHealth, Env: env, Labels: map[string]string{
			activities.LabelComponent: component, activities.LabelEnv: component + "-prod", activities.LabelVersion: version}}
		if _, err := r.rt.Deploy(ctx, name, spec); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		found, _ := r.rt.List(ctx, map[string]string{activities.LabelComponent: component})
		for _, in := range found {
			r.rt.Destroy(ctx, in.Name)
		}
	})
	return names
}

// cinderInput upgrades the fixture cinder from 24.2.0 with its volume
// service as the related service and the given driver build.
func (r *rig) cinderInput(policy, driverVersion, driverRef string) workflows.UpgradeInput {
	return workflows.UpgradeInput{
		Cloud: r.cloud,
		Component: workflows.ComponentSpec{Name: "cinder", Repository: r.repo, Version: "24.2.0", Port: demo.CinderPort,
			Health: demo.CinderHealth, Env: map[string]string{"ROLE": "api"}},
		Related: workflows.RelatedSpec{Name: "cinder-volume", Env: map[string]string{"ROLE": "volume"}, Health: demo.CinderHealth, Verify: demo.CinderVerify},
		Driver:  workflows.DriverSpec{Name: "acme", Version: driverVersion, Image: driverRef},
		Policy:  policy,
		Index:   string(examples.Releases),
		Backoff: time.Second,
	}
}

// run executes the upgrade and returns its result, or its failure's report.
func (r *rig) run(t *testing.T, in workflows.UpgradeInput) (workflows.UpgradeProgress, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run, err := r.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: names.UpgradeID(in.Cloud, in.Component.Name), TaskQueue: names.TaskQueue,
		StaticSummary: "upgrade " + in.Component.Name + " on " + in.Cloud + " (" + in.Policy + " policy)",
	}, workflows.ComponentUpgrade, in)
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.UpgradeProgress
	err = run.Get(ctx, &res)
	if err != nil {
		v, qerr := r.c.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), names.ProgressQuery)
		if qerr == nil {
			qerr = v.Get(&res)
		}
		if qerr != nil {
			t.Fatalf("progress of the failed upgrade: %v", qerr)
		}
	}
	return res, err
}

// envsOf lists the envs of component on the rig's cloud with their instances.
func (r *rig) envsOf(t *testing.T, component string) map[string][]string {
	t.Helper()
	found, err := r.rt.List(context.Background(), map[string]string{activities.LabelComponent: component})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, in := range found {
		out[in.Labels[activities.LabelEnv]] = append(out[in.Labels[activities.LabelEnv]], in.Name)
	}
	return out
}
