package workflows

import (
	"slices"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
)

// A session of a compose project pins every service's image and deploys
// the whole project on each cloud; its endpoints carry the state endpoint.
func TestSessionOfAProject(t *testing.T) {
	st, in := counterSession(t)
	st.at(time.Minute, func() {
		s := st.state()
		if s.Image != "" || s.Images["web"] != pinnedHello || s.Images["store"] != pinnedHello {
			t.Errorf("images %q %v, want both pinned in the center registry", s.Image, s.Images)
		}
		if s.Endpoint.StateURL != "instant://edge-latin/counter-alice-edge-latin/store/state" {
			t.Errorf("serving endpoint %+v", s.Endpoint)
		}
		for _, cloud := range expectedLive("edge-latin") {
			ss := runtimetest.Status(t, st.clouds.runtimes[cloud], "counter-alice-"+cloud)
			if len(ss.Services) != 2 || ss.Services[0].Name != "web" || ss.Services[1].Image != pinnedHello {
				t.Errorf("%s runs %+v", cloud, ss)
			}
		}
		st.move("montmartre", func(r MoveResult, err error) {
			if err != nil || r.Cloud != "edge-montmartre" || r.Endpoint.StateURL == "" {
				t.Errorf("move: %+v %v", r, err)
			}
		})
	})
	st.at(2*time.Minute, func() { st.env.SignalWorkflow(names.ExitSignal, nil) })
	st.env.ExecuteWorkflow(MobilitySession, in)
	rep := st.report()
	if rep.Phase != "ended" || len(rep.Instances) != 0 {
		t.Fatalf("report %+v", rep)
	}
	if live := st.clouds.liveClouds(); len(live) != 0 {
		t.Fatalf("left behind on %v", live)
	}
	if !slices.Contains(st.clouds.deploys, "edge-montmartre/counter-alice-edge-montmartre") {
		t.Errorf("deploys %v", st.clouds.deploys)
	}
}
