package runtimetest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/runtime"
)

// Case is what Conformance needs to know about one runtime.
type Case struct {
	// Image and Image2 are two different images of the example app (e.g.
	// hello v1 and v2); Image2 drives the "changed spec" case.
	Image, Image2 string
	// Web and Store are the images of the two services of the counter
	// example app (deploy/examples/apps/counter), which the suite deploys
	// as a project.
	Web, Store string
	// Version and Version2, when set, are the versions Image and Image2
	// report in their JSON body (checked only when Serves).
	Version, Version2 string
	// Cloud is the cloud the runtime was made for; instances get it as the
	// drift.cloud label and as DRIFT_CLOUD in their environment.
	Cloud string
	// Prefix starts every instance name the suite makes (a DNS-1035 label
	// prefix, unique per run so parallel runs never collide).
	Prefix string
	// Port and Health of the app; 8080 and /healthz when zero.
	Port   int
	Health string
	// Serves is true when endpoints really serve (Docker, processes): the
	// suite then fetches them and checks the JSON body. It is false for
	// Kubernetes under kwok, whose pods are fake, and for Instant.
	Serves bool
	// Timeout bounds each runtime call (2 minutes when zero).
	Timeout time.Duration
	// Leftovers, when set, asks the runtime's backend itself (not the
	// runtime) for anything drift-owned of this cloud or prefix that
	// remains; the suite ends by requiring it to return nothing.
	Leftovers func(t *testing.T) []string
}

// UniqueName returns prefix-<8 hex digits>, a fresh DNS-1035 label per
// call, so runs that share a backend never collide.
func UniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// Conformance runs the behaviour every runtime.Runtime must have, in the
// order a workflow would meet it. Everything it deploys is destroyed in
// t.Cleanup, even when an assertion fails.
func Conformance(t *testing.T, rt runtime.Runtime, c Case) {
	if c.Port == 0 {
		c.Port = 8080
	}
	if c.Health == "" {
		c.Health = "/healthz"
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.Prefix == "" {
		c.Prefix = UniqueName("conf")
	}
	nameA, nameB := c.Prefix+"-a", c.Prefix+"-b"
	workflow := "conformance/" + c.Prefix
	call := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), c.Timeout)
	}
	t.Cleanup(func() {
		for _, n := range []string{nameA, nameB} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := rt.Destroy(ctx, n); err != nil {
				t.Errorf("cleanup: destroy %s: %v", n, err)
			}
			cancel()
		}
	})
	spec := func(image string) runtime.Spec {
		return runtime.Spec{
			Image:  image,
			Port:   c.Port,
			Health: c.Health,
			Env:    map[string]string{"DRIFT_CLOUD": c.Cloud},
			Labels: map[string]string{runtime.LabelCloud: c.Cloud, runtime.LabelWorkflow: workflow},
		}
	}
	ctx, cancel := call()
	defer cancel()

	if rt.Kind() == "" {
		t.Error("Kind is empty")
	}
	before := Names(t, rt, nil)

	t.Log("bad input is rejected before any side effect")
	bad := map[string]struct {
		name string
		spec runtime.Spec
	}{
		"invalid name":  {"Not_A_Label", spec(c.Image)},
		"empty image":   {nameA, spec("")},
		"port 0":        {nameA, func() runtime.Spec { s := spec(c.Image); s.Port = 0; return s }()},
		"port too high": {nameA, func() runtime.Spec { s := spec(c.Image); s.Port = 65536; return s }()},
	}
	for what, b := range bad {
		if _, err := rt.Deploy(ctx, b.name, b.spec); !errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("Deploy with %s: got %v, want an error wrapping runtime.ErrInvalid", what, err)
		}
	}
	if after := Names(t, rt, nil); !slices.Equal(after, before) {
		t.Fatalf("rejected deploys changed List(nil): %v -> %v", before, after)
	}
	if st := Status(t, rt, nameA); st.Exists {
		t.Fatalf("rejected deploy left %s: %+v", nameA, st)
	}

	t.Log("deploy returns a ready endpoint")
	ep := Deploy(t, rt, nameA, spec(c.Image), c.Timeout)
	if c.Serves {
		ExpectServes(t, ep, c.Cloud, c.Version)
	}

	t.Log("deploying the same spec again reuses the instance")
	again := Deploy(t, rt, nameA, spec(c.Image), c.Timeout)
	if again != ep {
		t.Errorf("second Deploy of the same spec moved the endpoint: %+v -> %+v", ep, again)
	}
	if got := Names(t, rt, map[string]string{runtime.LabelInstance: nameA}); !slices.Equal(got, []string{nameA}) {
		t.Errorf("after two Deploys, instances named %s: %v", nameA, got)
	}

	st := Status(t, rt, nameA)
	if !st.Exists || !st.Ready || st.Image != c.Image {
		t.Errorf("Status(%s) = %+v, want exists, ready, image %s", nameA, st, c.Image)
	}
	if st.Endpoint != ep {
		t.Errorf("Status endpoint %+v, Deploy said %+v", st.Endpoint, ep)
	}

	t.Log("a redeploy whose caller gave up leaves the instance alone")
	gone, stop := context.WithCancel(context.Background())
	stop()
	if _, err := rt.Deploy(gone, nameA, spec(c.Image)); err == nil {
		t.Log("Deploy with a cancelled context succeeded (allowed: nothing to do)")
	}
	if st := Status(t, rt, nameA); !st.Exists || !st.Ready || st.Endpoint != ep {
		t.Errorf("after a cancelled Deploy, Status(%s) = %+v", nameA, st)
	}

	t.Log("list by selector")
	all := List(t, rt, nil)
	a, ok := Find(all, nameA)
	if !ok {
		t.Fatalf("List(nil) lacks %s: %+v", nameA, all)
	}
	if !a.Ready || a.Image != c.Image || a.Endpoint != ep {
		t.Errorf("List(nil) reports %+v, want ready, image %s, endpoint %+v", a, c.Image, ep)
	}
	for k, v := range map[string]string{
		runtime.LabelOwned:    "true",
		runtime.LabelInstance: nameA,
		runtime.LabelCloud:    runtime.LabelValue(c.Cloud),
		runtime.LabelWorkflow: runtime.LabelValue(workflow),
	} {
		if a.Labels[k] != v {
			t.Errorf("instance label %s=%q, want %q (labels %v)", k, a.Labels[k], v, a.Labels)
		}
	}
	if got := Names(t, rt, map[string]string{runtime.LabelCloud: c.Cloud}); !slices.Contains(got, nameA) {
		t.Errorf("List(drift.cloud=%s) = %v, lacks %s", c.Cloud, got, nameA)
	}
	if got := Names(t, rt, map[string]string{runtime.LabelWorkflow: workflow}); !slices.Equal(got, []string{nameA}) {
		t.Errorf("List(drift.workflow=%s) = %v, want [%s]", workflow, got, nameA)
	}
	for _, sel := range []map[string]string{
		{runtime.LabelCloud: c.Cloud + "-elsewhere"},
		{runtime.LabelWorkflow: workflow + "-other"},
		{runtime.LabelWorkflow: workflow, "drift.session": "nobody"},
	} {
		if got := Names(t, rt, sel); slices.Contains(got, nameA) {
			t.Errorf("List(%v) = %v, must not hold %s", sel, got, nameA)
		}
	}

	t.Log("a second instance is listed next to the first")
	epB := Deploy(t, rt, nameB, spec(c.Image), c.Timeout)
	if got := Names(t, rt, map[string]string{runtime.LabelWorkflow: workflow}); !slices.Equal(got, []string{nameA, nameB}) {
		t.Errorf("List(drift.workflow) = %v, want [%s %s]", got, nameA, nameB)
	}
	if c.Serves {
		if epB == ep {
			t.Errorf("two instances share endpoint %+v", ep)
		}
		ExpectServes(t, epB, c.Cloud, c.Version)
	}

	t.Log("a changed spec redeploys: another image")
	ep2 := Deploy(t, rt, nameA, spec(c.Image2), c.Timeout)
	if st := Status(t, rt, nameA); !st.Exists || !st.Ready || st.Image != c.Image2 || st.Endpoint != ep2 {
		t.Errorf("after redeploy with %s: Status = %+v (Deploy said %+v)", c.Image2, st, ep2)
	}
	if c.Serves {
		ExpectServes(t, ep2, c.Cloud, c.Version2)
	}
	if got := Names(t, rt, map[string]string{runtime.LabelInstance: nameA}); !slices.Equal(got, []string{nameA}) {
		t.Errorf("after redeploy, instances named %s: %v", nameA, got)
	}

	t.Log("a changed spec redeploys: other environment")
	moved := spec(c.Image)
	moved.Env["DRIFT_CLOUD"] = c.Cloud + "-moved"
	epB2 := Deploy(t, rt, nameB, moved, c.Timeout)
	if c.Serves {
		ExpectServes(t, epB2, c.Cloud+"-moved", c.Version)
	}
	if got := Names(t, rt, map[string]string{runtime.LabelInstance: nameB}); !slices.Equal(got, []string{nameB}) {
		t.Errorf("after redeploy, instances named %s: %v", nameB, got)
	}

	t.Log("destroy")
	for _, n := range []string{nameA, nameB} {
		if err := rt.Destroy(ctx, n); err != nil {
			t.Fatalf("Destroy(%s): %v", n, err)
		}
		if st := Status(t, rt, n); st.Exists {
			t.Errorf("after Destroy, Status(%s) = %+v", n, st)
		}
		if got := Names(t, rt, map[string]string{runtime.LabelInstance: n}); len(got) != 0 {
			t.Errorf("after Destroy, List(drift.instance=%s) = %v", n, got)
		}
		if err := rt.Destroy(ctx, n); err != nil {
			t.Errorf("second Destroy(%s): %v", n, err)
		}
	}
	if c.Serves {
		for _, e := range []runtime.Endpoint{ep2, epB2} {
			if err := Get(e.URL+c.Health, nil); err == nil {
				t.Errorf("%s still answers after Destroy", e.URL)
			}
		}
	}

	project(t, rt, c, workflow)

	t.Log("nothing of ours is left")
	if got := Names(t, rt, map[string]string{runtime.LabelCloud: c.Cloud}); len(got) != 0 {
		// Other suites may share the backend, but not this cloud id.
		t.Errorf("List(drift.cloud=%s) after Destroy = %v", c.Cloud, got)
	}
	if after := Names(t, rt, nil); !slices.Equal(after, before) {
		t.Errorf("List(nil): before %v, after %v", before, after)
	}
	if c.Leftovers != nil {
		if left := c.Leftovers(t); len(left) != 0 {
			t.Errorf("the backend still holds drift-owned objects: %v", left)
		}
	}
}

// CounterSpec is the runtime spec of the counter example app, read from its
// compose file, with images web and store, for cloud.
func CounterSpec(t testing.TB, web, store, cloud string, labels map[string]string) runtime.Spec {
	t.Helper()
	app, err := appspec.FromCompose(examples.CounterCompose, "")
	if err != nil {
		t.Fatal(err)
	}
	app = app.WithImages(map[string]string{"web": web, "store": store})
	if err := app.Validate(); err != nil {
		t.Fatal(err)
	}
	return app.RuntimeSpec(cloud, labels)
}

// project is the suite's part on compose projects: the counter app's two
// services deployed as one instance, whose web service reaches its store
// by name and whose state endpoint answers, reused, redeployed with its
// volume kept, reported service by service, listed once and destroyed
// whole; and bad projects refused before any side effect.
func project(t *testing.T, rt runtime.Runtime, c Case, workflow string) {
	if c.Web == "" || c.Store == "" {
		t.Fatal("Case.Web and Case.Store: the suite needs the counter app's images")
	}
	name := c.Prefix + "-p"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rt.Destroy(ctx, name); err != nil {
			t.Errorf("cleanup: destroy %s: %v", name, err)
		}
	})
	spec := func() runtime.Spec {
		return CounterSpec(t, c.Web, c.Store, c.Cloud, map[string]string{runtime.LabelWorkflow: workflow})
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	before := Names(t, rt, nil)

	t.Log("project: bad projects are refused before any side effect")
	for what, edit := range map[string]func(*runtime.Spec){
		"cyclic depends_on":        func(s *runtime.Spec) { s.Services[1].DependsOn = []string{"web"} },
		"unknown dependency":       func(s *runtime.Spec) { s.Services[0].DependsOn = []string{"db"} },
		"state on no service":      func(s *runtime.Spec) { s.State = &runtime.State{Service: "db", Path: "/state"} },
		"state path":               func(s *runtime.Spec) { s.State.Path = "state" },
		"undeclared volume":        func(s *runtime.Spec) { s.InstanceVolumes = nil },
		"two services of one name": func(s *runtime.Spec) { s.Services[1].Name = "web" },
		"a service without image":  func(s *runtime.Spec) { s.Services[1].Image = "" },
		"both forms":               func(s *runtime.Spec) { s.Image = c.Image },
	} {
		s := spec()
		edit(&s)
		if _, err := rt.Deploy(ctx, name, s); !errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("Deploy of a project with %s: got %v, want an error wrapping runtime.ErrInvalid", what, err)
		}
	}
	if after := Names(t, rt, nil); !slices.Equal(after, before) {
		t.Fatalf("rejected projects changed List(nil): %v -> %v", before, after)
	}
	if st := Status(t, rt, name); st.Exists {
		t.Fatalf("a rejected project left %s: %+v", name, st)
	}

	t.Log("project: deploy returns the serving endpoint and the state endpoint")
	ep := Deploy(t, rt, name, spec(), c.Timeout)
	if ep.StateURL == "" || ep.StateURL == ep.URL {
		t.Errorf("Deploy of a project with a state endpoint returned %+v", ep)
	}
	if c.Serves {
		expectCount(t, ep, c.Cloud, "POST", 1)
		expectCount(t, ep, c.Cloud, "POST", 2)
		var state struct{ Count int }
		if err := Get(ep.StateURL, &state); err != nil || state.Count != 2 {
			t.Errorf("GET %s = %+v, %v; want count 2", ep.StateURL, state, err)
		}
		if err := Put(ep.StateURL, `{"count":41}`); err != nil {
			t.Errorf("PUT %s: %v", ep.StateURL, err)
		}
		expectCount(t, ep, c.Cloud, "GET", 41)
	}

	t.Log("project: deploying it again reuses it")
	if again := Deploy(t, rt, name, spec(), c.Timeout); again != ep {
		t.Errorf("second Deploy of the same project moved the endpoint: %+v -> %+v", ep, again)
	}
	st := Status(t, rt, name)
	if !st.Exists || !st.Ready || st.Image != c.Web || st.Endpoint != ep || len(st.Services) != 2 {
		t.Errorf("Status(%s) = %+v, want exists, ready, image %s, endpoint %+v, two services", name, st, c.Web, ep)
	}
	for i, want := range []struct{ name, image string }{{"web", c.Web}, {"store", c.Store}} {
		if i < len(st.Services) && (st.Services[i].Name != want.name || st.Services[i].Image != want.image || !st.Services[i].Ready) {
			t.Errorf("service %d: %+v, want %s ready with %s", i, st.Services[i], want.name, want.image)
		}
	}
	listed := List(t, rt, map[string]string{runtime.LabelInstance: name})
	if len(listed) != 1 || !listed[0].Ready || listed[0].Image != c.Web || listed[0].Endpoint.URL != ep.URL ||
		listed[0].Labels[runtime.LabelWorkflow] != runtime.LabelValue(workflow) || listed[0].Labels[runtime.LabelService] != "" {
		t.Errorf("List(drift.instance=%s) = %+v, want one ready instance of %s at %s", name, listed, c.Web, ep.URL)
	}
	if got := Names(t, rt, map[string]string{runtime.LabelWorkflow: workflow}); !slices.Equal(got, []string{name}) {
		t.Errorf("List(drift.workflow=%s) = %v, want [%s]", workflow, got, name)
	}

	t.Log("project: a changed spec redeploys every service and keeps the volume")
	changed := spec()
	changed.Services[0].Env["GREETING"] = "changed"
	ep2 := Deploy(t, rt, name, changed, c.Timeout)
	if st := Status(t, rt, name); !st.Ready || st.Endpoint != ep2 {
		t.Errorf("after redeploy: Status = %+v (Deploy said %+v)", st, ep2)
	}
	if c.Serves {
		expectCount(t, ep2, c.Cloud, "GET", 41)
	}

	t.Log("project: destroy removes it whole")
	if err := rt.Destroy(ctx, name); err != nil {
		t.Fatalf("Destroy(%s): %v", name, err)
	}
	if st := Status(t, rt, name); st.Exists {
		t.Errorf("after Destroy, Status(%s) = %+v", name, st)
	}
	if got := Names(t, rt, map[string]string{runtime.LabelInstance: name}); len(got) != 0 {
		t.Errorf("after Destroy, List(drift.instance=%s) = %v", name, got)
	}
	if err := rt.Destroy(ctx, name); err != nil {
		t.Errorf("second Destroy(%s): %v", name, err)
	}
	if c.Serves {
		for _, u := range []string{ep2.URL + "/healthz", ep2.StateURL} {
			if err := Get(u, nil); err == nil {
				t.Errorf("%s still answers after Destroy", u)
			}
		}
		t.Log("project: a new instance of the same name starts from an empty volume")
		ep3 := Deploy(t, rt, name, spec(), c.Timeout)
		expectCount(t, ep3, c.Cloud, "GET", 0)
		if err := rt.Destroy(ctx, name); err != nil {
			t.Fatalf("Destroy(%s): %v", name, err)
		}
	}
}

// expectCount asks the counter app at ep (GET / or POST /count) and checks
// the count it answers, which its web service got from its store.
func expectCount(t *testing.T, ep runtime.Endpoint, cloud, method string, want int) {
	t.Helper()
	url := ep.URL + "/"
	if method == http.MethodPost {
		url = ep.URL + "/count"
	}
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A refused connection reached no one, so it is tried again (a real
	// node's kube-proxy routes a new ClusterIP a few seconds after the
	// Service has its endpoints, as ExpectServes allows for, and rejects
	// with "no route to host" while a rollout leaves it none).
	resp, err := httpClient.Do(req)
	reachedNoOne := func(err error) bool {
		return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH)
	}
	for began := time.Now(); reachedNoOne(err) && time.Since(began) < serveWithin; resp, err = httpClient.Do(req) {
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return
	}
	defer resp.Body.Close()
	var body struct {
		App, Cloud string
		Count      int
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("%s %s: %s, %v", method, url, resp.Status, err)
		return
	}
	if body.App != "counter" || body.Cloud != cloud || body.Count != want {
		t.Errorf("%s %s = %+v, want app counter, cloud %s, count %d", method, url, body, cloud, want)
	}
}

// Put sends body to url with PUT and expects 200.
func Put(url, body string) error {
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %s", url, resp.Status)
	}
	return nil
}

// Deploy deploys spec as name, failing the test on an error or an empty
// endpoint.
func Deploy(t *testing.T, rt runtime.Runtime, name string, spec runtime.Spec, timeout time.Duration) runtime.Endpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	ep, err := rt.Deploy(ctx, name, spec)
	if err != nil {
		t.Fatalf("Deploy(%s, %s): %v", name, spec.ServeService().Image, err)
	}
	t.Logf("Deploy(%s) -> %s in %v", name, ep.URL, time.Since(start).Round(time.Millisecond))
	if spec.IsProject() && spec.State != nil && ep.StateURL == "" {
		t.Fatalf("Deploy(%s) of a project with a state endpoint returned none: %+v", name, ep)
	}
	if ep.URL == "" {
		t.Fatalf("Deploy(%s) returned an empty endpoint", name)
	}
	return ep
}

// Status reports name, failing the test on an error.
func Status(t *testing.T, rt runtime.Runtime, name string) runtime.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := rt.Status(ctx, name)
	if err != nil {
		t.Fatalf("Status(%s): %v", name, err)
	}
	return st
}

// List lists the instances matching sel, failing the test on an error and
// flagging a list not sorted by name.
func List(t *testing.T, rt runtime.Runtime, sel map[string]string) []runtime.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := rt.List(ctx, sel)
	if err != nil {
		t.Fatalf("List(%v): %v", sel, err)
	}
	if !slices.IsSortedFunc(in, func(a, b runtime.Instance) int { return cmp.Compare(a.Name, b.Name) }) {
		t.Errorf("List(%v) is not sorted by name", sel)
	}
	return in
}

// Names is List's instance names.
func Names(t *testing.T, rt runtime.Runtime, sel map[string]string) []string {
	t.Helper()
	var out []string
	for _, in := range List(t, rt, sel) {
		out = append(out, in.Name)
	}
	return out
}

// Find picks the instance called name out of in.
func Find(in []runtime.Instance, name string) (runtime.Instance, bool) {
	for _, i := range in {
		if i.Name == name {
			return i, true
		}
	}
	return runtime.Instance{}, false
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// Get fetches url and decodes a JSON body into v (when v is not nil).
func Get(url string, v any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// serveWithin is how long ExpectServes gives an endpoint to answer as
// wanted: a Kubernetes Service's ClusterIP reaches the new pods once
// kube-proxy has programmed the new endpoints, a second or a few after the
// rollout is ready (until then a new ClusterIP refuses and an old one
// reaches the replaced pods, which keep serving while they drain); Docker
// and processes answer at once.
const serveWithin = 15 * time.Second

// ExpectServes checks that the example app answers at ep as itself, for
// cloud, in version (when not empty), within serveWithin.
func ExpectServes(t *testing.T, ep runtime.Endpoint, cloud, version string) {
	t.Helper()
	var body struct {
		App, Cloud, Version string
	}
	wanted := func() bool {
		return body.App == "hello" && body.Cloud == cloud && (version == "" || body.Version == version)
	}
	began := time.Now()
	err := Get(ep.URL+"/", &body)
	for ; (err != nil || !wanted()) && time.Since(began) < serveWithin; err = Get(ep.URL+"/", &body) {
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("fetch %s: %v (for %s)", ep.URL, err, serveWithin)
		return
	}
	if waited := time.Since(began); waited > time.Second {
		t.Logf("%s answered as wanted %s after Deploy returned", ep.URL, waited.Round(time.Millisecond))
	}
	if !wanted() {
		t.Errorf("%s answered %+v for %s, want app hello, cloud %s, version %q", ep.URL, body, serveWithin, cloud, version)
	}
}

// DeployConcurrently deploys one instance through several runtimes (as
// several workers would) at once, checks they all got the same endpoint and
// returns it.
func DeployConcurrently(t *testing.T, name string, spec runtime.Spec, rts ...runtime.Runtime) runtime.Endpoint {
	t.Helper()
	eps := make([]runtime.Endpoint, len(rts))
	errs := make([]error, len(rts))
	var wg sync.WaitGroup
	for i, r := range rts {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			eps[i], errs[i] = r.Deploy(ctx, name, spec)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Deploy %d: %v", i, err)
		}
		if eps[i] != eps[0] {
			t.Errorf("Deploy %d returned %+v, Deploy 0 %+v", i, eps[i], eps[0])
		}
	}
	return eps[0]
}
