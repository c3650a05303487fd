package workflows

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/amsi"
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
		// At the next move only: the user is not replaced under while quiet.
		st.adopt(AdoptRequest{Release: "v2", Images: map[string]string{"hello": "registry.test/hello:v2"}, ReplaceAfter: -1}, func(r AdoptResult, err error) {
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

// A user who does not move gets the release too: once the session has had
// no move for replaceAfter, a second instance of the release is deployed
// beside the serving one on its cloud, given its state, and switched to
// (a move of its own that subscribers hear of); the old one drains, its
// late writes are carried, and it goes. Moves go on as before.
func TestSessionReplacesItsServingInstanceWhenQuiet(t *testing.T) {
	st, in := counterSession(t)
	in.Continuity.Drain = 10 * time.Second
	v2 := map[string]string{"web": "registry.test/counter-web:v2", "store": "registry.test/counter-store:v2"}
	st.center.pins = map[string]string{}
	for svc, ref := range v2 {
		st.center.images[ref] = true
		st.center.pins[ref] = "registry.test/counter-" + svc + "@sha256:" + strings.Repeat("2", 64)
	}
	spareURL := "instant://edge-latin/counter-alice-edge-latin-b/store/state"
	exists := func(name string) bool { return runtimetest.Status(t, st.clouds.runtimes["edge-latin"], name).Exists }
	st.at(time.Minute, func() {
		st.clouds.states[stateURL("edge-latin")] = `{"count":5}`
		st.adopt(AdoptRequest{Release: "v2", Images: v2, ReplaceAfter: 2 * time.Minute}, func(r AdoptResult, err error) {
			if err != nil {
				t.Errorf("adopt: %v", err)
			}
		})
	})
	st.at(2*time.Minute+50*time.Second, func() { // quiet for less than 2 minutes
		if s := st.state(); s.Serving != "edge-latin" || exists("counter-alice-edge-latin-b") || len(s.Moves) != 0 {
			t.Errorf("before the quiet time: serving %s, moves %+v, a spare deployed: %v", s.Serving, s.Moves, exists("counter-alice-edge-latin-b"))
		}
	})
	var replaced MoveRecord
	st.at(3*time.Minute+2*time.Second, func() {
		s := st.state()
		for _, inst := range s.Instances {
			if inst.Cloud == "edge-latin" && inst.Role == RoleServe && (inst.Name != "counter-alice-edge-latin-b" || !strings.Contains(inst.Runs, "sha256:222")) {
				t.Errorf("serving instance %+v, want counter-alice-edge-latin-b on the release", inst)
			}
		}
		if n := len(s.Moves); n == 0 || s.Moves[n-1].Source != FromReplace || s.Moves[n-1].Status != MoveCompleted {
			t.Fatalf("moves %+v, want the replacement completed", s.Moves)
		}
		replaced = s.Moves[len(s.Moves)-1]
		if s.Endpoint != replaced.Endpoint || s.Endpoint.StateURL != spareURL || st.clouds.states[spareURL] != `{"count":5}` {
			t.Errorf("endpoint %+v, record %+v, state %s", s.Endpoint, replaced, st.clouds.states[spareURL])
		}
		if !exists("counter-alice-edge-latin") {
			t.Error("the old instance went at the switch: no drain")
		}
		// The client's last writes to the old instance, a first one to the new.
		st.clouds.states[stateURL("edge-latin")] = `{"count":7}`
		st.clouds.states[spareURL] = `{"count":6}`
	})
	st.at(3*time.Minute+40*time.Second, func() {
		if exists("counter-alice-edge-latin") {
			t.Error("the replaced instance is still up after its drain")
		}
		if got := st.clouds.states[spareURL]; got != `{"count":8}` {
			t.Errorf("the new instance holds %s, want 6 + the 2 late writes", got)
		}
		st.move("bastille", func(r MoveResult, err error) {
			if err != nil || !r.Warm || st.clouds.states[stateURL("edge-bastille")] != `{"count":8}` {
				t.Errorf("a move after the replacement: %+v %v, edge-bastille holds %s", r, err, st.clouds.states[stateURL("edge-bastille")])
			}
		})
	})
	st.at(5*time.Minute, func() {
		if d := st.clouds.deployed["edge-latin"]; len(d) != 2 {
			t.Errorf("edge-latin deployed %d times (%v), want the first and its replacement only", len(d), d)
		}
		st.env.SignalWorkflow(names.ExitSignal, nil)
	})
	st.env.ExecuteWorkflow(MobilitySession, in)
	st.report()
	var events []string
	for _, e := range st.center.events {
		if e.MoveID == replaced.ID {
			events = append(events, fmt.Sprint(e.Status, " ", e.Instance))
		}
	}
	if want := []string{fmt.Sprint(amsi.MoveTriggered, " counter-alice-edge-latin-b"), fmt.Sprint(amsi.MoveCompleted, " counter-alice-edge-latin-b")}; !slices.Equal(events, want) {
		t.Errorf("subscribers heard %q of the replacement, want %q", events, want)
	}
}

// A replacement under way is given up when the user moves (the move goes
// on as usual) and when the session exits: its spare is destroyed, its
// record says why, and nothing of it is left.
func TestAReplacementGivesWayToAMoveAndToExit(t *testing.T) {
	for _, then := range []string{"move", "exit"} {
		t.Run(then, func(t *testing.T) {
			st := newSessionTest(t)
			st.center.images["registry.test/hello:v2"] = true
			st.center.pins = map[string]string{"registry.test/hello:v2": pinnedHelloV2}
			st.at(time.Minute, func() {
				st.adopt(AdoptRequest{Release: "v2", Images: map[string]string{"hello": "registry.test/hello:v2"}, ReplaceAfter: time.Minute}, func(_ AdoptResult, err error) {
					if err != nil {
						t.Error(err)
					}
				})
			})
			st.at(2*time.Minute+time.Second, func() { // the spare is deploying
				if s := st.state(); len(s.Moves) != 1 || s.Moves[0].Source != FromReplace || s.Moves[0].Status != MoveTriggered {
					t.Fatalf("moves %+v, want the replacement under way", s.Moves)
				}
				if then == "exit" {
					st.env.SignalWorkflow(names.ExitSignal, nil)
					return
				}
				st.move("bastille", func(r MoveResult, err error) {
					if err != nil || r.Cloud != "edge-bastille" {
						t.Errorf("move during the replacement: %+v %v", r, err)
					}
				})
			})
			st.at(4*time.Minute, func() {
				if then == "exit" {
					return
				}
				s := st.state()
				if s.Moves[0].Status != MoveFailed || s.Moves[0].Error != "the session moved on meanwhile" {
					t.Errorf("replacement record %+v", s.Moves[0])
				}
				if runtimetest.Status(t, st.clouds.runtimes["edge-latin"], "hello-alice-edge-latin-b").Exists {
					t.Error("the spare is still up")
				}
				st.env.SignalWorkflow(names.ExitSignal, nil)
			})
			st.env.ExecuteWorkflow(MobilitySession, sessionInput("quartier-latin"))
			st.report()
			if live := st.clouds.liveClouds(); len(live) != 0 {
				t.Errorf("left on %v", live)
			}
		})
	}
}
