package predict

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/topology"
)

func example(t testing.TB) *topology.Topology {
	t.Helper()
	topo, err := topology.Parse(examples.Topology)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func policy(t testing.TB, s string) topology.Policy {
	t.Helper()
	p, err := topology.ParsePolicy(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPreDeployClouds(t *testing.T) {
	topo := example(t)
	adjacency := policy(t, "adjacency")

	var m Model
	// From the Latin Quarter: cloud masses edge-montparnasse 0.6,
	// edge-bastille 0.3 (two regions), edge-montmartre 0.1.
	observe(&m, 6, "quartier-latin", "montparnasse")
	observe(&m, 2, "quartier-latin", "bastille")
	observe(&m, 1, "quartier-latin", "le-marais")
	observe(&m, 1, "quartier-latin", "montmartre")
	// From Bastille: half the moves stay on edge-bastille (le-marais).
	observe(&m, 5, "bastille", "le-marais")
	observe(&m, 3, "bastille", "quartier-latin")
	observe(&m, 2, "bastille", "montmartre")
	// Montmartre: too few moves to trust.
	observe(&m, 2, "montmartre", "la-defense")
	// From Montparnasse, mostly to a region the topology lost.
	observe(&m, 8, "montparnasse", "versailles")
	observe(&m, 2, "montparnasse", "quartier-latin")

	cases := []struct {
		name   string
		region string
		opts   Options
		want   Plan
	}{
		{"neighbours by default", "quartier-latin", Options{},
			Plan{Mode: Neighbours, Serving: "edge-latin", Clouds: []string{"edge-bastille", "edge-montparnasse", "fog-south"}, Observations: 10, Covered: 0.9}},
		{"neighbours asked", "montmartre", Options{Mode: Neighbours},
			Plan{Mode: Neighbours, Serving: "edge-montmartre", Clouds: []string{"fog-north"}, Observations: 2, Covered: 1}},
		{"predicted, default coverage 0.9", "quartier-latin", Options{Mode: Predicted},
			Plan{Mode: Predicted, Serving: "edge-latin", Clouds: []string{"edge-montparnasse", "edge-bastille"}, Observations: 10, Covered: 0.9}},
		{"predicted, coverage 0.6", "quartier-latin", Options{Mode: Predicted, Coverage: 0.6},
			Plan{Mode: Predicted, Serving: "edge-latin", Clouds: []string{"edge-montparnasse"}, Observations: 10, Covered: 0.6}},
		{"predicted, coverage 1", "quartier-latin", Options{Mode: Predicted, Coverage: 1},
			Plan{Mode: Predicted, Serving: "edge-latin", Clouds: []string{"edge-montparnasse", "edge-bastille", "edge-montmartre"}, Observations: 10, Covered: 1}},
		{"predicted, k 1", "quartier-latin", Options{Mode: Predicted, Coverage: 1, K: 1},
			Plan{Mode: Predicted, Serving: "edge-latin", Clouds: []string{"edge-montparnasse"}, Observations: 10, Covered: 0.6}},
		{"serving cloud's own regions are covered for free", "bastille", Options{Mode: Predicted, Coverage: 0.8},
			Plan{Mode: Predicted, Serving: "edge-bastille", Clouds: []string{"edge-latin"}, Observations: 10, Covered: 0.8}},
		{"free mass can be enough", "bastille", Options{Mode: Predicted, Coverage: 0.5},
			Plan{Mode: Predicted, Serving: "edge-bastille", Clouds: []string{}, Observations: 10, Covered: 0.5}},
		{"cold falls back to neighbours", "montmartre", Options{Mode: Predicted},
			Plan{Mode: Neighbours, Cold: true, Serving: "edge-montmartre", Clouds: []string{"fog-north"}, Observations: 2, Covered: 1}},
		{"min observations lowered", "montmartre", Options{Mode: Predicted, MinObservations: 2},
			Plan{Mode: Predicted, Serving: "edge-montmartre", Clouds: []string{"fog-north"}, Observations: 2, Covered: 1}},
		{"never seen", "la-defense", Options{Mode: Predicted, MinObservations: 1},
			Plan{Mode: Neighbours, Cold: true, Serving: "fog-north", Clouds: []string{"center", "edge-bastille", "edge-montmartre"}}},
		{"regions the topology lost are skipped", "montparnasse", Options{Mode: Predicted},
			Plan{Mode: Predicted, Serving: "edge-montparnasse", Clouds: []string{"edge-latin"}, Observations: 10, Covered: 0.2}},
	}
	for _, c := range cases {
		got, err := PreDeployClouds(topo, &m, adjacency, c.region, c.opts)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if math.Abs(got.Covered-c.want.Covered) < 1e-9 {
			got.Covered = c.want.Covered
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}

	// Another policy shapes the fallback and Neighbours mode.
	got, err := PreDeployClouds(topo, nil, policy(t, "nearest:2,geo"), "quartier-latin", Options{Mode: Predicted})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"edge-bastille", "edge-montparnasse"}; got.Mode != Neighbours || !got.Cold || !reflect.DeepEqual(got.Clouds, want) {
		t.Errorf("nil model, nearest:2,geo: %+v, want a cold fallback to %v", got, want)
	}
}

func TestPreDeployCloudsErrors(t *testing.T) {
	topo := example(t)
	adjacency := policy(t, "adjacency")
	if _, err := PreDeployClouds(topo, nil, adjacency, "atlantis", Options{}); !errors.Is(err, topology.ErrUnknownRegion) {
		t.Errorf("unknown region: %v, want ErrUnknownRegion", err)
	}
	for _, o := range []Options{
		{Mode: "psychic"},
		{Coverage: -0.1},
		{Coverage: 1.5},
		{Coverage: math.NaN()},
		{K: -1},
		{MinObservations: -1},
	} {
		if _, err := PreDeployClouds(topo, nil, adjacency, "bastille", o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if _, err := PreDeployClouds(topo, nil, topology.Policy{Kind: "nearest"}, "bastille", Options{}); err == nil {
		t.Error("invalid policy accepted")
	}
}
