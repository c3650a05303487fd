package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	dockerclient "github.com/docker/docker/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// container is what must not change about a bystander container.
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

// healthOf reads the fixture's /healthz answer from an endpoint.
func healthOf(t *testing.T, ep runtime.Endpoint) (version, role string) {
	t.Helper()
	code, _, body := harness.HTTPGet(t, ep.URL+demo.CinderHealth)
	var h struct{ Version, Role string }
	if err := json.Unmarshal([]byte(body), &h); code != 200 || err != nil {
		t.Fatalf("%s answered %d %q", ep.URL, code, body)
	}
	return h.Version, h.Role
}

// Upgrades of cinder on a real Docker Engine, with glance running beside it
// on the same cloud: its container, image and uptime never change.
func TestUpgradeOnDocker(t *testing.T) {
	d := harness.Docker(t)
	r := newRig(t, "upgrade-fog", runtime.Config{Kind: runtime.KindDocker})
	ctx := context.Background()
	glanceRepo, err := demo.CinderReleases(ctx, r.reg.Host(), "fixture/glance", "glance", []string{"29.0.0"}, bin)
	if err != nil {
		t.Fatal(err)
	}
	r.env(t, "glance", glanceRepo, "29.0.0", "", map[string]map[string]string{"glance-prod": {"ROLE": "api"}})
	glance := inspect(t, d, "glance-prod")
	oldDriver := r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", "")

	t.Run("platform policy switches to the latest series", func(t *testing.T) {
		r.env(t, "cinder", r.repo, "24.2.0", oldDriver, map[string]map[string]string{"cinder-prod": {"ROLE": "api"}, "cinder-volume-prod": {"ROLE": "volume"}})
		res, err := r.run(t, r.cinderInput(workflows.PolicyPlatform, "3.0.0", r.driver(t, "3.0.0", ">= 25.0.0", "")))
		if err != nil {
			t.Fatal(err)
		}
		if res.Series != "gazpacho" || res.Serving.Version != "28.0.0" || len(res.Attempts) != 1 || res.Retired != "cinder-prod" {
			t.Fatalf("result %+v", res)
		}
		checks := res.Attempts[0].Verification.Checks
		if len(checks) != 3 || !strings.Contains(checks[2].Detail, `"deleted":true`) {
			t.Errorf("verification %+v", checks)
		}
		if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs[res.Serving.Name]) != 2 {
			t.Errorf("cinder envs %v, want only %s", envs, res.Serving.Name)
		}
		for i, ep := range res.Serving.Endpoints {
			if v, role := healthOf(t, ep); v != "28.0.0" || role != []string{"api", "volume"}[i] {
				t.Errorf("%s serves %s as %s", res.Serving.Instances[i], v, role)
			}
		}
		if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
			harness.RecordHistory(t, context.Background(), r.c, names.UpgradeID(r.cloud, "cinder"), path)
		}
	})

	t.Run("driver policy reads the start-up error", func(t *testing.T) {
		r.env(t, "cinder", r.repo, "24.2.0", oldDriver, map[string]map[string]string{"cinder-prod": {"ROLE": "api"}, "cinder-volume-prod": {"ROLE": "volume"}})
		in := r.cinderInput(workflows.PolicyDriver, "2.0.0", r.driver(t, "2.0.0", ">= 26.0.0, < 28.0.0", ""))
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
		if !slices.Equal(res.Candidates, []string{"26.0.0", "26.1.0", "27.0.0"}) || res.Serving.Version != "26.0.0" {
			t.Fatalf("candidates %v, serving %s", res.Candidates, res.Serving.Version)
		}
		if v, _ := healthOf(t, res.Serving.Endpoints[1]); v != "26.0.0" {
			t.Errorf("volume service runs %s", v)
		}
		if envs := r.envsOf(t, "cinder"); len(envs) != 1 {
			t.Errorf("cinder envs %v (probe or old env left?)", envs)
		}
	})

	t.Run("every attempt fails and the old env keeps serving", func(t *testing.T) {
		old := r.env(t, "cinder", r.repo, "24.2.0", oldDriver, map[string]map[string]string{"cinder-prod": {"ROLE": "api"}, "cinder-volume-prod": {"ROLE": "volume"}})
		before := map[string]container{}
		for _, name := range old {
			before[name] = inspect(t, d, name)
		}
		// This build keeps its volumes under a file: creating one fails.
		in := r.cinderInput(workflows.PolicyPlatform, "3.0.1", r.driver(t, "3.0.1", ">= 25.0.0", "/etc/component/release.json/volumes"))
		in.Attempts = 2
		res, err := r.run(t, in)
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeUpgradeFailed {
			t.Fatalf("error %v, want %s", err, workflows.ErrTypeUpgradeFailed)
		}
		if len(res.Attempts) != 2 || res.Serving.Name != "cinder-prod" || res.Phase != "failed" {
			t.Fatalf("report %+v", res)
		}
		for _, a := range res.Attempts {
			if a.Status != workflows.AttemptFailed || !strings.Contains(a.Error, "create volume") {
				t.Errorf("attempt %d: %s %q", a.N, a.Status, a.Error)
			}
		}
		if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs["cinder-prod"]) != 2 {
			t.Errorf("cinder envs %v, want cinder-prod alone", envs)
		}
		for _, name := range old {
			if after := inspect(t, d, name); after != before[name] {
				t.Errorf("%s changed: %+v → %+v", name, before[name], after)
			}
		}
		for _, ep := range res.Serving.Endpoints {
			if v, _ := healthOf(t, ep); v != "24.2.0" {
				t.Errorf("old env answers %s", v)
			}
		}
	})

	if after := inspect(t, d, "glance-prod"); after != glance {
		t.Errorf("glance changed beside the upgrades: %+v → %+v", glance, after)
	}
}
