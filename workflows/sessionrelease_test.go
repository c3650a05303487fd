package workflows

import (
	"slices"
	"testing"
	"time"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
)

// pinnedHelloV2 is hello's next release as the center registry pins it.
const pinnedHelloV2 = "center.test/hello@sha256:9999999999999999999999999999999999999999999999999999999999999999"

// adopt sends an Adopt update and checks the answer with check.
func (st *sessionTest) adopt(r AdoptRequest, check func(AdoptResult, error)) {
	sendUpdate(st, names.AdoptUpdate, r, check)
}

// A session adopts a release: its pre-deploys are redeployed with it at
// once, the serving instance keeps its image until the next handover, the
// move switches to an instance already on the release, and the instance
// left behind takes the release once its drain is over. Bad releases
// change nothing.
func TestSessionAdoptsAReleaseAtItsNextHandover(t *testing.T) {
	st := newSessionTest(t)
	st.center.images["registry.test/hello:v2"] = true
	st.center.pins = map[string]string{"registry.test/hello:v2": pinnedHelloV2}
	image := func(cloud string) string {
		return runtimetest.Status(t, st.clouds.runtimes[cloud], "hello-alice-"+cloud).Image
	}
	live := func() map[string]string {
		out := map[string]string{}
		for _, cloud := range st.clouds.liveClouds() {
			out[cloud] = image(cloud)
		}
		return out
	}
	st.at(time.Minute, func() {
		st.adopt(AdoptRequest{Release: "v2", Images: map[string]string{"web": "registry.test/hello:v2"}}, func(_ AdoptResult, err error) {
			if !isType(err, ErrTypeWrongRelease) {
				t.Errorf("a release for another app's services: %v, want %s", err, ErrTypeWrongRelease)
			}
		})
		st.adopt(AdoptRequest{Release: "v3", Images: map[string]string{"hello": "registry.test/hello:v3"}}, func(_ AdoptResult, err error) {
			if !isType(err, activities.ErrTypeUnknownImage) {
				t.Errorf("a release whose image the center cannot find: %v", err)
			}
		})
	})
	st.at(2*time.Minute, func() {
		if s := st.state(); s.Image != pinnedHello || s.Release != "" {
			t.Errorf("bad releases changed the session: image %s, release %q", s.Image, s.Release)
		}
		st.adopt(AdoptRequest{Release: "v2", Images: map[string]string{"hello": "registry.test/hello:v2"}}, func(r AdoptResult, err error) {
			if err != nil || r.Images["hello"] != pinnedHelloV2 || r.Serving != pinnedHello {
				t.Errorf("adopt: %+v %v", r, err)
			}
		})
	})
	st.at(3*time.Minute, func() {
		s := st.state()
		if s.Image != pinnedHelloV2 || s.Release != "v2" {
			t.Errorf("after adopt: image %s, release %q", s.Image, s.Release)
		}
		for cloud, img := range live() {
			want := pinnedHelloV2
			if cloud == "edge-latin" {
				want = pinnedHello // serving: no restart under the user
			}
			if img != want {
				t.Errorf("%s runs %s, want %s", cloud, img, want)
			}
		}
		if d := st.clouds.deployed["edge-latin"]; len(d) != 1 {
			t.Errorf("the serving instance was deployed %d times: %v", len(d), d)
		}
		st.move("bastille", func(r MoveResult, err error) {
			if err != nil || !r.Warm || r.Cloud != "edge-bastille" {
				t.Errorf("warm move after adopt: %+v %v", r, err)
			}
			if img := image("edge-bastille"); img != pinnedHelloV2 {
				t.Errorf("switched to an instance running %s", img)
			}
		})
	})
	st.at(3*time.Minute+time.Second, func() {
		if img := image("edge-latin"); img != pinnedHello {
			t.Errorf("the instance left behind runs %s while it drains", img)
		}
	})
	st.at(4*time.Minute, func() {
		for cloud, img := range live() {
			if img != pinnedHelloV2 {
				t.Errorf("after the handover %s runs %s", cloud, img)
			}
		}
		if got := st.clouds.liveClouds(); !slices.Equal(got, expectedLive("edge-bastille")) {
			t.Errorf("live %v, want %v", got, expectedLive("edge-bastille"))
		}
		for _, inst := range st.state().Instances {
			if inst.Runs != pinnedHelloV2 {
				t.Errorf("instance %s reports it runs %q", inst.Cloud, inst.Runs)
			}
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
	rep := st.report()
	if rep.Release != "v2" || rep.Totals.Warm != 1 {
		t.Errorf("report: release %q, totals %+v", rep.Release, rep.Totals)
	}
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
}
