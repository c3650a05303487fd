package predict

import (
	"slices"
	"testing"

	"github.com/edgedrift/drift/internal/topology"
)

func TestWalkDeterministic(t *testing.T) {
	topo := example(t)
	for _, opts := range []WalkOptions{{}, DefaultWalkOptions(), {Places: 2, Wander: 0.3, Detour: 0.5, Nearby: 1}} {
		a := Walk(topo, 42, 200, opts)
		b := Walk(topo, 42, 200, opts)
		if !slices.Equal(a, b) {
			t.Errorf("%+v: seed 42 gave two walks:\n%v\n%v", opts, a, b)
		}
		if c := Walk(topo, 43, 200, opts); slices.Equal(a, c) {
			t.Errorf("%+v: seeds 42 and 43 gave the same walk", opts)
		}
		// A shorter walk is a prefix: each step draws the same numbers.
		if short := Walk(topo, 42, 50, opts); !slices.Equal(short, a[:51]) {
			t.Errorf("%+v: 50 steps are not a prefix of 200", opts)
		}
	}
	walks := Walks(topo, 7, 3, 20, DefaultWalkOptions())
	for i, w := range walks {
		if !slices.Equal(w, Walk(topo, 7+uint64(i), 20, DefaultWalkOptions())) {
			t.Errorf("Walks[%d] is not Walk with seed %d", i, 7+i)
		}
	}
}

func TestWalkValid(t *testing.T) {
	topo := example(t)
	regions := topo.RegionNames()
	for seed := range uint64(20) {
		for _, opts := range []WalkOptions{{}, DefaultWalkOptions(), {Places: 1, Wander: 1, Detour: 1}} {
			w := Walk(topo, seed, 300, opts)
			if len(w) != 301 {
				t.Fatalf("seed %d: %d regions for 300 steps, want 301", seed, len(w))
			}
			for i, r := range w {
				if !slices.Contains(regions, r) {
					t.Fatalf("seed %d: step %d is %q, not a region", seed, i, r)
				}
				if i > 0 && w[i-1] == r {
					t.Fatalf("seed %d: step %d stays in %q", seed, i, r)
				}
			}
		}
	}
	if w := Walk(topo, 1, 0, WalkOptions{}); len(w) != 1 {
		t.Errorf("0 steps: %v, want just the start", w)
	}
	if w := Walk(topo, 1, -1, WalkOptions{}); w != nil {
		t.Errorf("-1 steps: %v, want nil", w)
	}
}

func TestWalkRoutes(t *testing.T) {
	topo := example(t)
	// Without randomness in routing, a far destination is reached through
	// the regions on the way: Montparnasse → Montmartre or La Défense never
	// jumps, it goes through the Latin Quarter.
	seen := map[string]bool{}
	w := Walk(topo, 3, 2000, WalkOptions{})
	for i := 1; i < len(w); i++ {
		seen[w[i-1]+">"+w[i]] = true
	}
	for _, jump := range []string{"montparnasse>la-defense", "la-defense>montparnasse", "la-defense>quartier-latin", "montparnasse>montmartre"} {
		if seen[jump] {
			t.Errorf("plain walk jumped %s", jump)
		}
	}
	for _, hop := range []string{"montparnasse>quartier-latin", "quartier-latin>montparnasse", "montmartre>la-defense", "bastille>le-marais"} {
		if !seen[hop] {
			t.Errorf("plain walk never moved %s", hop)
		}
	}
}

func TestWalkPurpose(t *testing.T) {
	// A user with favourite places moves with purpose: the most common
	// next region after each region is much more common than under the
	// plain random waypoint.
	topo := example(t)
	top := func(opts WalkOptions) float64 {
		total := 0.0
		for seed := range uint64(10) {
			var m Model
			w := Walk(topo, seed, 500, opts)
			for i := 1; i < len(w); i++ {
				m.Observe(w[i-1], w[i])
			}
			best, all := 0, 0
			for _, r := range m.Regions() {
				best += m.Transitions(r)[0].Count
				all += m.Observations(r)
			}
			total += float64(best) / float64(all)
		}
		return total / 10
	}
	plain, purposeful := top(WalkOptions{}), top(DefaultWalkOptions())
	t.Logf("share of moves to the most common next region: plain %.3f, purposeful %.3f", plain, purposeful)
	if purposeful < plain+0.1 {
		t.Errorf("favourite places do not sharpen transitions: plain %.3f, purposeful %.3f", plain, purposeful)
	}
}

func TestWalkLocations(t *testing.T) {
	topo, err := topology.Parse([]byte(`
name: t
clouds:
  - {id: c, tier: center, location: {lat: 0, lon: 0}}
  - {id: a, tier: edge, parent: c, location: {lat: 0, lon: 0.01}}
  - {id: b, tier: edge, parent: c, location: {lat: 0.01, lon: 0}}
  - {id: lost, tier: edge, parent: c}
regions: {ra: a, rb: b, rc: c, nowhere: lost}
`))
	if err != nil {
		t.Fatal(err)
	}
	w := Walk(topo, 1, 100, DefaultWalkOptions())
	if len(w) != 101 || slices.Contains(w, "nowhere") {
		t.Errorf("walk %v: want 101 regions, never the one without a location", w)
	}

	one, err := topology.Parse([]byte(`
name: one
clouds:
  - {id: c, tier: center, location: {lat: 0, lon: 0}}
  - {id: lost, tier: edge, parent: c}
regions: {here: c, nowhere: lost}
`))
	if err != nil {
		t.Fatal(err)
	}
	if w := Walk(one, 1, 10, WalkOptions{}); w != nil {
		t.Errorf("one located region: walk %v, want nil", w)
	}
}
