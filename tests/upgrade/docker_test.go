package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	dockerclient "github.com/docker/docker/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// container is what must not change about a container left alone.
type container struct {
	ID, Image, StartedAt string
	Restarts             int
}

func inspect(t *testing.T, d *dockerclient.Client, name string) container {
	t.Helper()
	c, err := d.ContainerInspect(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return container{ID: c.ID, Image: c.Image, StartedAt: c.State.StartedAt, Restarts: c.RestartCount}
}

// healthOf reads the component's /healthz answer from an endpoint.
func healthOf(t *testing.T, ep runtime.Endpoint) (version, role string) {
	t.Helper()
	code, _, body := harness.HTTPGet(t, ep.URL+demo.CinderHealth)
	var h struct{ Version, Role string }
	if err := json.Unmarshal([]byte(body), &h); code != 200 || err != nil {
		t.Fatalf("%s answered %d %q", ep.URL, code, body)
	}
	return h.Version, h.Role
}

func wantErr(t *testing.T, err error, typ, says string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != typ || !appErr.NonRetryable() || !strings.Contains(err.Error(), says) {
		t.Fatalf("error %v, want non-retryable %s saying %q", err, typ, says)
	}
}

// Upgrades of cinder on a real Docker Engine, with glance running beside it
// on the same cloud: its container, image and uptime never change.
func TestUpgradeOnDocker(t *testing.T) {
	d := harness.Docker(t)
	r := newRig(t, "upgrade-fog", runtime.Config{Kind: runtime.KindDocker})
	ctx := context.Background()
	glanceRepo, err := demo.CinderReleases(ctx, r.reg.Host(), "kolla/glance", "glance", []string{"29.0.0"}, bin)
	if err != nil {
		t.Fatal(err)
	}
	r.install(t, "glance", glanceRepo, "29.0.0", "", false)
	glance := inspect(t, d, "glance-prod")
	oldDriver := r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", "")
	newDriver := r.driver(t, "3.0.0", ">= 25.0.0", "")

	t.Run("24.2 to 28.0 in verified hops keeps the data and the endpoint", func(t *testing.T) {
		upgradeWithData(t, r)
	})

	t.Run("rollback within the window restores 24.2 with every volume", func(t *testing.T) {
		rollbackWithinWindow(t, r)
	})

	t.Run("a precheck failure stops before any side effect", func(t *testing.T) {
		e := r.install(t, "cinder", r.repo, "24.2.0", oldDriver, true)
		vols := e.create(t, 10, "named")
		if _, err := e.do(http.MethodPost, demo.CinderVolumes, map[string]string{"data": "a volume 24.2 lets be made without a name"}); err != nil {
			t.Fatal(err)
		}
		before := map[string]container{"cinder-prod": inspect(t, d, "cinder-prod"), "cinder-volume-prod": inspect(t, d, "cinder-volume-prod")}
		db := e.health(t).Database
		res, err := r.run(t, r.cinderInput(workflows.PolicyPlatform, "3.0.0", newDriver))
		wantErr(t, err, workflows.ErrTypeUpgradeCheckFailed, "without a name cannot move to display_name")
		if len(res.Hops) != 2 || res.Hops[0].Status != workflows.HopFailed || len(res.Attempts) != 0 || res.Endpoint != nil {
			t.Errorf("report %+v", res)
		}
		if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs[prodEnv]) != 2 {
			t.Errorf("cinder envs %v", envs)
		}
		for name, c := range before {
			if after := inspect(t, d, name); after != c {
				t.Errorf("%s changed: %+v → %+v", name, c, after)
			}
		}
		if after := e.health(t).Database; after != db || db.Schema != 1 {
			t.Errorf("database %+v → %+v", db, after)
		}
		e.expectVolumes(t, vols)
	})

	t.Run("a failed hop leaves the last good version serving with the data", func(t *testing.T) {
		e := r.install(t, "cinder", r.repo, "24.2.0", oldDriver, true)
		vols := e.create(t, 30, "before")
		// This build refuses 28: the second hop's upgrade check says so.
		res, err := r.run(t, r.cinderInput(workflows.PolicyPlatform, "2.5.0", r.driver(t, "2.5.0", ">= 25.0.0, < 28.0.0", "")))
		wantErr(t, err, workflows.ErrTypeDriverUnsupported, "driver acme 2.5.0 requires cinder >= 25.0.0, < 28.0.0")
		if res.Serving.Version != "26.1.0" || res.Retired != prodEnv || res.Hops[0].Status != workflows.HopSwitched || res.Hops[1].Status != workflows.HopFailed {
			t.Fatalf("report %+v", res)
		}
		if h := e.health(t); h.Version != "26.1.0" || h.Database.Contracted != 3 {
			t.Errorf("endpoint serves %+v", h)
		}
		e.expectVolumes(t, vols)
		if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs[res.Serving.Name]) != 2 {
			t.Errorf("cinder envs %v", envs)
		}
	})

	t.Run("every attempt of the first hop fails and 24.2 keeps serving on the expanded data", func(t *testing.T) {
		e := r.install(t, "cinder", r.repo, "24.2.0", oldDriver, true)
		vols := e.create(t, 10, "before")
		before := map[string]container{"cinder-prod": inspect(t, d, "cinder-prod"), "cinder-volume-prod": inspect(t, d, "cinder-volume-prod")}
		// This build keeps its volumes under a file: creating one fails.
		in := r.cinderInput(workflows.PolicyPlatform, "3.0.1", r.driver(t, "3.0.1", ">= 25.0.0", "/etc/component/release.json/volumes"))
		in.Attempts = 2
		res, err := r.run(t, in)
		wantErr(t, err, workflows.ErrTypeUpgradeFailed, "stays at 24.2.0")
		if len(res.Attempts) != 2 || res.Serving.Name != prodEnv || res.Phase != "failed" {
			t.Fatalf("report %+v", res)
		}
		for _, a := range res.Attempts {
			if a.Status != workflows.AttemptFailed || !strings.Contains(a.Error, "create volume") {
				t.Errorf("attempt %d: %s %q", a.N, a.Status, a.Error)
			}
		}
		if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs[prodEnv]) != 2 {
			t.Errorf("cinder envs %v, want %s alone", envs, prodEnv)
		}
		for name, c := range before {
			if after := inspect(t, d, name); after != c {
				t.Errorf("%s changed: %+v → %+v", name, c, after)
			}
		}
		// 26.1's db sync expanded the schema; 24.2 serves on, reading and writing.
		if h := e.health(t); h.Version != "24.2.0" || h.Database.Schema != 3 || h.Database.Contracted != 1 {
			t.Errorf("endpoint serves %+v", h)
		}
		e.expectVolumes(t, append(vols, e.create(t, 3, "after")...))
	})

	t.Run("driver policy reads the start-up error", func(t *testing.T) {
		r.install(t, "cinder", r.repo, "24.2.0", oldDriver, false)
		in := r.cinderInput(workflows.PolicyDriver, "2.0.0", r.driver(t, "2.0.0", ">= 26.0.0, < 28.0.0", ""))
		in.Component.Data = workflows.DataSpec{}
		// The component words its errors its own way; drift is told how.
		in.Related.Env["DRIVER_ERROR_FORMAT"] = "FATAL backend {driver}/{driver_version} supports {component} {constraint} only"
		in.Component.ErrorFormat = in.Related.Env["DRIVER_ERROR_FORMAT"]
		res, err := r.run(t, in)
		if err != nil {
			t.Fatal(err)
		}
		if res.DriverError == nil || res.DriverError.Constraint != ">= 26.0.0, < 28.0.0" || !strings.Contains(res.Probe, "FATAL backend acme/2.0.0") {
			t.Fatalf("probe %q → %+v", res.Probe, res.DriverError)
		}
		if !slices.Equal(res.Candidates, []string{"26.0.0", "26.1.0", "27.0.0"}) || res.Serving.Version != "26.0.0" || len(res.Hops) != 1 {
			t.Fatalf("candidates %v, serving %s", res.Candidates, res.Serving.Version)
		}
		for i, ep := range res.Serving.Endpoints {
			if v, role := healthOf(t, ep); v != "26.0.0" || role != []string{"api", "volume"}[i] {
				t.Errorf("%s serves %s as %s", res.Serving.Instances[i], v, role)
			}
		}
		if envs := r.envsOf(t, "cinder"); len(envs) != 1 {
			t.Errorf("cinder envs %v (probe or old env left?)", envs)
		}
	})

	if after := inspect(t, d, "glance-prod"); after != glance {
		t.Errorf("glance changed beside the upgrades: %+v → %+v", glance, after)
	}
}
