// Package upgrade runs component upgrades on real parts: the embedded
// Temporal server, the embedded registry holding the example component's
// releases and driver builds, the Docker Engine, local processes and the
// Kubernetes harness. Clouds are named upgrade-* so nothing here sees other
// tests' instances.
package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/demo"
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

// The example component's data as every test installs it.
const (
	dataVolume = "cinder-data"
	prodEnv    = "cinder-prod"
)

var (
	binOnce sync.Once
	bin     []byte
	binErr  error
)

// rig is a Temporal server, a registry with the example component released
// at every version of the shipped index, and a worker for the upgrade-*
// clouds.
type rig struct {
	c      client.Client
	reg    *registry.Server
	ws     *workerhost.Workers
	cloud  string
	rt     runtime.Runtime
	router runtime.Router
	repo   string        // the example cinder's repository
	drain  time.Duration // of the upgrades it runs
	serves bool          // endpoints answer (not on kwok's fake nodes)
}

func newRig(t *testing.T, cloud string, cfg runtime.Config) *rig {
	t.Helper()
	reg, repo := publish(t)
	return startRig(t, reg, repo, cloud, cfg)
}

// startRig is newRig with the registry published already.
func startRig(t *testing.T, reg *registry.Server, repo, cloud string, cfg runtime.Config, edit ...func(*workerhost.WorkerOptions)) *rig {
	t.Helper()
	_, c := harness.Temporal(t, "")
	topo, err := topology.Parse([]byte(topologyYAML))
	if err != nil {
		t.Fatal(err)
	}
	ws := harness.Workers(t, c, topo, reg.Host(), func(cl topology.Cloud) runtime.Config {
		if cl.ID == cloud {
			return cfg
		}
		return runtime.Config{Kind: runtime.KindProcess}
	}, edit...)
	return &rig{c: c, reg: reg, ws: ws, cloud: cloud, rt: ws.Runtimes[cloud], router: ws.Routers[cloud], repo: repo, drain: time.Second, serves: true}
}

// publish starts a registry and releases the example cinder in it at every
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
	repo, err := demo.CinderReleases(ctx, reg.Host(), "kolla/cinder", "cinder", tags, bin)
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

// install deploys the prod env of component at version straight through
// the runtime, as an operator's earlier install would have (demo.Install);
// the test's end removes everything of the component — instances,
// endpoint, data volume — and proves it gone.
func (r *rig) install(t *testing.T, component, repo, version, driverRef string, data bool) *endpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() { r.remove(t, component) })
	route, err := demo.InstallComponent(ctx, r.rt, r.router, demo.Install{Component: component, Repo: repo, Version: version, Driver: driverRef, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	e := &endpoint{url: route.Endpoint.URL}
	// A cluster's proxies take a moment to pick a new Service up.
	for _, err := e.do(http.MethodGet, demo.CinderHealth, nil); err != nil && r.serves; _, err = e.do(http.MethodGet, demo.CinderHealth, nil) {
		if ctx.Err() != nil {
			t.Fatalf("the endpoint of %s never answered: %v", component, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return e
}

// remove takes a component off the rig's cloud and fails the test when
// anything of it is left.
func (r *rig) remove(t *testing.T, component string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := demo.RemoveComponent(ctx, r.rt, r.router, component); err != nil {
		t.Errorf("on %s: %v", r.cloud, err)
	}
}

// cinderInput upgrades the example cinder from 24.2.0 with its volume
// service as the related service, the given driver build and its data.
func (r *rig) cinderInput(policy, driverVersion, driverRef string) workflows.UpgradeInput {
	return workflows.UpgradeInput{
		Cloud: r.cloud,
		Component: workflows.ComponentSpec{Name: "cinder", Repository: r.repo, Version: "24.2.0", Port: demo.CinderPort,
			Health: demo.CinderHealth, Env: map[string]string{"ROLE": "api"},
			Data: workflows.DataSpec{Volume: dataVolume, Path: demo.CinderData, Manage: []string{demo.CinderManage}, List: demo.CinderVolumes}},
		Related: workflows.RelatedSpec{Name: "cinder-volume", Env: map[string]string{"ROLE": "volume"}, Health: demo.CinderHealth, Verify: demo.CinderVerify},
		Driver:  workflows.DriverSpec{Name: "acme", Version: driverVersion, Image: driverRef},
		Policy:  policy,
		Index:   string(examples.Releases),
		Backoff: time.Second,
		Drain:   r.drain,
	}
}

// start starts an upgrade.
func (r *rig) start(t *testing.T, in workflows.UpgradeInput) client.WorkflowRun {
	t.Helper()
	run, err := r.c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: names.UpgradeID(in.Cloud, in.Component.Name), TaskQueue: names.TaskQueue,
		StaticSummary: "upgrade " + in.Component.Name + " on " + in.Cloud + " (" + in.Policy + " policy)",
	}, workflows.ComponentUpgrade, in)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// result waits for an upgrade and returns its result, or its failure's report.
func (r *rig) result(t *testing.T, run client.WorkflowRun) (workflows.UpgradeProgress, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var res workflows.UpgradeProgress
	err := run.Get(ctx, &res)
	if err != nil {
		res = r.progressOf(t, run.GetID())
	}
	return res, err
}

// run executes the upgrade and returns its result, or its failure's report.
func (r *rig) run(t *testing.T, in workflows.UpgradeInput) (workflows.UpgradeProgress, error) {
	t.Helper()
	return r.result(t, r.start(t, in))
}

// progress is the progress of the upgrade of cinder on the rig's cloud.
func (r *rig) progress(t *testing.T) workflows.UpgradeProgress {
	t.Helper()
	return r.progressOf(t, names.UpgradeID(r.cloud, "cinder"))
}

func (r *rig) progressOf(t *testing.T, id string) workflows.UpgradeProgress {
	t.Helper()
	v, err := r.c.QueryWorkflow(context.Background(), id, "", names.ProgressQuery)
	var p workflows.UpgradeProgress
	if err == nil {
		err = v.Get(&p)
	}
	if err != nil {
		t.Fatalf("progress: %v", err)
	}
	return p
}

// waitPhase polls the upgrade's progress until ok says so.
func (r *rig) waitPhase(t *testing.T, what string, ok func(workflows.UpgradeProgress) bool) workflows.UpgradeProgress {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		p := r.progress(t)
		if ok(p) {
			return p
		}
		if time.Now().After(deadline) || p.Phase == "failed" || p.Phase == "done" {
			t.Fatalf("never %s: %+v", what, p)
		}
		time.Sleep(100 * time.Millisecond)
	}
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

// endpoint is the component's stable endpoint as a consumer uses it.
type endpoint struct {
	url string
	c   http.Client
}

// volume is one volume a consumer made and the data it wrote.
type volume = demo.Volume

// consumer is the endpoint as demo.Consumer.
func (e *endpoint) consumer() demo.Consumer {
	e.c.Timeout = 30 * time.Second
	return demo.Consumer{URL: e.url, Client: &e.c}
}

func (e *endpoint) do(method, path string, body any) ([]byte, error) {
	return e.consumer().Do(context.Background(), method, path, body)
}

// create makes n volumes through the endpoint.
func (e *endpoint) create(t *testing.T, n int, prefix string) []volume {
	t.Helper()
	var out []volume
	for i := range n {
		v, err := e.consumer().Create(context.Background(), fmt.Sprintf("%s-%03d", prefix, i), fmt.Sprintf("%s data %d %x", prefix, i, rand.Uint64()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// expectVolumes wants every volume listed, under its name, and its data
// read back unchanged through the endpoint.
func (e *endpoint) expectVolumes(t *testing.T, vols []volume) {
	t.Helper()
	bad, err := e.consumer().Missing(context.Background(), vols)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad[:min(len(bad), 5)] {
		t.Error(b)
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d volumes not listed or not readable", len(bad), len(vols))
	}
}

// health is what the endpoint's /healthz says.
type health struct {
	Version  string
	Schema   int
	Database struct{ Schema, Migrated, Contracted int }
}

func (e *endpoint) health(t *testing.T) health {
	t.Helper()
	b, err := e.do(http.MethodGet, demo.CinderHealth, nil)
	var h health
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// watcher is a consumer using the endpoint all the time: it reads volumes
// and now and then makes one, counting failed requests and the longest gap
// between two answered ones.
type watcher struct {
	e        *endpoint
	mu       sync.Mutex
	ok, bad  int
	errs     []string
	maxGap   time.Duration
	made     []volume
	versions map[string]int
	stop     chan struct{}
	done     chan struct{}
}

func (e *endpoint) watch(t *testing.T, vols []volume) *watcher {
	w := &watcher{e: e, versions: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := time.Now()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			var err error
			switch {
			case i%10 == 0:
				v := volume{Name: fmt.Sprintf("during-%04d", i), Data: fmt.Sprintf("made during the upgrade %d", i)}
				var b []byte
				if b, err = e.do(http.MethodPost, demo.CinderVolumes, map[string]string{"name": v.Name, "data": v.Data}); err == nil {
					var got struct{ ID string }
					json.Unmarshal(b, &got)
					v.ID = got.ID
					w.mu.Lock()
					w.made = append(w.made, v)
					w.mu.Unlock()
				}
			case i%10 == 5:
				var b []byte
				if b, err = e.do(http.MethodGet, demo.CinderHealth, nil); err == nil {
					var h health
					json.Unmarshal(b, &h)
					w.mu.Lock()
					w.versions[h.Version]++
					w.mu.Unlock()
				}
			default:
				v := vols[i%len(vols)]
				var b []byte
				if b, err = e.do(http.MethodGet, demo.CinderVolumes+"/"+v.ID+"/data", nil); err == nil && string(b) != v.Data {
					err = fmt.Errorf("volume %s reads %q", v.ID, b)
				}
			}
			now := time.Now()
			w.mu.Lock()
			if err != nil {
				w.bad++
				w.errs = append(w.errs, now.Format("15:04:05.000")+" "+err.Error())
			} else {
				w.ok++
				w.maxGap = max(w.maxGap, now.Sub(last))
				last = now
			}
			w.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(w.end)
	return w
}

// end stops the consumer.
func (w *watcher) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}
