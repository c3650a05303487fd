package upgrade

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgedrift/drift/activities"
	driftclient "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// upgradeWithData makes 100 volumes through the stable endpoint of cinder
// 24.2.0, keeps a consumer on the endpoint, and upgrades to 28.0.0: two
// verified hops. The consumer sees no failed request and every release in
// turn; afterwards every volume, those made during the upgrade too, is
// listed and reads back; the env upgraded from was kept, stopped, during
// the window and is gone after it, with the data contracted; the data
// volume outlives the envs.
func upgradeWithData(t *testing.T, r *rig) workflows.UpgradeProgress {
	e := r.install(t, "cinder", r.repo, "24.2.0", r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", ""), true)
	vols := e.create(t, 100, "before")
	w := e.watch(t, vols)
	in := r.cinderInput(workflows.PolicyPlatform, "3.0.0", r.driver(t, "3.0.0", ">= 25.0.0", ""))
	in.Window = 5 * time.Second
	run := r.start(t, in)

	p := r.waitPhase(t, "in the rollback window", func(p workflows.UpgradeProgress) bool { return p.Phase == "window" })
	if p.Kept == nil || p.Kept.Name != prodEnv {
		t.Errorf("kept %+v, want %s", p.Kept, prodEnv)
	}
	for _, name := range []string{"cinder-prod", "cinder-volume-prod"} {
		if st, err := r.rt.Status(context.Background(), name); err != nil || !st.Exists || st.Ready {
			t.Errorf("%s during the window: %+v %v, want kept and stopped", name, st, err)
		}
	}
	res, err := r.result(t, run)
	w.end()
	if err != nil {
		t.Fatalf("%v\n%s", err, report(res))
	}
	if res.Phase != "done" || res.Serving.Version != "28.0.0" || res.Retired != prodEnv || len(res.Hops) != 2 {
		t.Fatalf("result %+v", res)
	}
	for _, h := range res.Hops {
		if h.Status != workflows.HopSwitched || !h.Skip || len(h.Checks) != 4 {
			t.Errorf("hop %d %s → %s: %s, checks %+v", h.N, h.From, h.To, h.Status, h.Checks)
		}
		for _, c := range h.Checks {
			if !c.OK {
				t.Errorf("hop %d check %+v", h.N, c)
			}
		}
	}
	if uc := res.Hops[1].Checks[2]; !strings.Contains(uc.Detail, "Skip level") || !strings.Contains(uc.Detail, "schema 3 to 5") {
		t.Errorf("hop 2's upgrade check ran on the data after hop 1: %s", uc.Detail)
	}
	for _, a := range res.Attempts {
		var data *activities.Check
		for i, c := range a.Verification.Checks {
			if strings.HasSuffix(c.Name, " data") {
				data = &a.Verification.Checks[i]
			}
		}
		if data == nil || !data.OK || !strings.Contains(data.Detail, "20 sampled read back unchanged") {
			t.Errorf("attempt %s: data check %+v", a.Version, data)
		}
		if len(a.Migration) != 2 || !a.Migration[0].OK || !a.Migration[1].OK {
			t.Errorf("attempt %s: migration %+v", a.Version, a.Migration)
		}
	}
	t.Logf("consumer: %d answered, %d failed, longest gap %s, versions seen %v", w.ok, w.bad, w.maxGap, w.versions)
	if w.bad > 0 {
		t.Errorf("%d failed requests at the stable endpoint: %v", w.bad, w.errs[:min(len(w.errs), 10)])
	}
	for _, v := range []string{"24.2.0", "26.1.0", "28.0.0"} {
		if w.versions[v] == 0 {
			t.Errorf("the consumer never met %s at the endpoint (%v)", v, w.versions)
		}
	}
	if h := e.health(t); h.Version != "28.0.0" || h.Database.Schema != 5 || h.Database.Migrated != 5 || h.Database.Contracted != 5 {
		t.Errorf("endpoint after the upgrade: %+v", h)
	}
	if len(w.made) < 5 {
		t.Errorf("only %d volumes made during the upgrade", len(w.made))
	}
	e.expectVolumes(t, append(vols, w.made...))
	if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs[res.Serving.Name]) != 2 {
		t.Errorf("cinder envs %v, want only %s", envs, res.Serving.Name)
	}
	vs, err := r.rt.(runtime.Stateful).Volumes(context.Background(), map[string]string{activities.LabelComponent: "cinder"})
	if err != nil || len(vs) != 1 || vs[0].Name != dataVolume {
		t.Errorf("data volumes %v %v", vs, err)
	}
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, context.Background(), r.c, names.UpgradeID(r.cloud, "cinder"), path)
	}
	return res
}

// The same upgrade on the process runtime: the data volume is a directory
// the instances' trees link to, the endpoint a proxy process.
func TestUpgradeWithDataOnProcesses(t *testing.T) {
	r := newRig(t, "upgrade-edge", runtime.Config{Kind: runtime.KindProcess})
	upgradeWithData(t, r)
}

// Within the window a rollback switches back to 24.2.0, started again,
// with every volume: those made before and those made through 26.1.0
// after the switch. No contract ran, so 24.2.0 reads them all.
func rollbackWithinWindow(t *testing.T, r *rig) {
	e := r.install(t, "cinder", r.repo, "24.2.0", r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", ""), true)
	before := e.create(t, 100, "before")
	in := r.cinderInput(workflows.PolicyPlatform, "3.0.0", r.driver(t, "3.0.0", ">= 25.0.0", ""))
	in.Target, in.Window = "26.1.0", 10*time.Minute
	run := r.start(t, in)
	r.waitPhase(t, "in the rollback window", func(p workflows.UpgradeProgress) bool { return p.Phase == "window" })
	if h := e.health(t); h.Version != "26.1.0" || h.Database.Schema != 3 {
		t.Fatalf("after the switch the endpoint serves %+v", h)
	}
	after := e.create(t, 20, "after")
	w := e.watch(t, append(slices.Clone(before), after...))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rolled, err := driftclient.New(r.c).RollbackUpgrade(ctx, r.cloud, "cinder", workflows.Decision{Who: "bob", Why: "26.1 misbehaves"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.result(t, run)
	w.end()
	if err != nil || res.Phase != "rolled back" || rolled.Phase != "rolled back" || res.Rollback == nil || res.Rollback.Who != "bob" {
		t.Fatalf("rollback: %v, update answered %s, result %+v", err, rolled.Phase, res)
	}
	if w.bad > 0 {
		t.Errorf("%d failed requests across the rollback: %v", w.bad, w.errs[:min(len(w.errs), 10)])
	}
	if hh := e.health(t); hh.Version != "24.2.0" || hh.Database.Contracted != 1 {
		t.Errorf("after the rollback the endpoint serves %+v", hh)
	}
	e.expectVolumes(t, append(append(before, after...), w.made...))
	if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs[prodEnv]) != 2 {
		t.Errorf("cinder envs %v, want %s alone", envs, prodEnv)
	}
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, context.Background(), r.c, names.UpgradeID(r.cloud, "cinder"), path)
	}
}

func TestUpgradeRollbackOnProcesses(t *testing.T) {
	rollbackWithinWindow(t, newRig(t, "upgrade-edge", runtime.Config{Kind: runtime.KindProcess}))
}

// report is an upgrade's hops and attempts, for a failure's message.
func report(p workflows.UpgradeProgress) string {
	var b strings.Builder
	for _, h := range p.Hops {
		fmt.Fprintf(&b, "hop %d %s → %s: %s %s\n", h.N, h.From, h.To, h.Status, h.Error)
		for _, c := range h.Checks {
			fmt.Fprintf(&b, "  check %s ok=%v: %s\n", c.Name, c.OK, c.Detail)
		}
	}
	for _, a := range p.Attempts {
		fmt.Fprintf(&b, "attempt %d (hop %d) %s: %s %s migration %+v\n", a.N, a.Hop, a.Version, a.Status, a.Error, a.Migration)
	}
	return b.String()
}

// With the promotion gate the new env waits, verified, while the endpoint
// keeps serving 24.2.0; the promotion (who and why) lets the switch go.
func TestUpgradePromotionGateOnProcesses(t *testing.T) {
	r := newRig(t, "upgrade-edge", runtime.Config{Kind: runtime.KindProcess})
	e := r.install(t, "cinder", r.repo, "24.2.0", r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", ""), true)
	vols := e.create(t, 20, "before")
	in := r.cinderInput(workflows.PolicyPlatform, "3.0.0", r.driver(t, "3.0.0", ">= 25.0.0", ""))
	in.Target, in.Gate, in.GateTimeout = "26.1.0", true, 10*time.Minute
	run := r.start(t, in)
	r.waitPhase(t, "at the gate", func(p workflows.UpgradeProgress) bool { return p.Phase == "awaiting promotion" })
	if h := e.health(t); h.Version != "24.2.0" {
		t.Errorf("at the gate the endpoint serves %s, want 24.2.0", h.Version)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := driftclient.New(r.c).PromoteUpgrade(ctx, r.cloud, "cinder", workflows.Decision{Who: "alice", Why: "26.1 looks fine"}); err != nil {
		t.Fatal(err)
	}
	res, err := r.result(t, run)
	if err != nil || res.Serving.Version != "26.1.0" || len(res.Promotions) != 1 || res.Promotions[0].Who != "alice" {
		t.Fatalf("%v: %+v", err, res)
	}
	if h := e.health(t); h.Version != "26.1.0" {
		t.Errorf("after the promotion the endpoint serves %s", h.Version)
	}
	e.expectVolumes(t, vols)
}
