package predict

import (
	"fmt"
	"strings"
	"testing"
)

func TestEvaluateByHand(t *testing.T) {
	topo := example(t)
	adjacency := policy(t, "adjacency")
	walk := []string{"montparnasse", "quartier-latin", "quartier-latin", "montparnasse", "quartier-latin", "montparnasse", "montmartre"}
	opts := Options{Mode: Predicted, MinObservations: 1} // Mode is ignored
	res, err := Evaluate(topo, adjacency, opts, [][]string{walk}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Neighbours of edge-montparnasse: edge-latin, fog-south; of edge-latin:
	// edge-bastille, edge-montparnasse, fog-south. Predicted is cold on the
	// first move from each region, then pre-deploys the one cloud seen.
	// The last move, to Montmartre, is cold for both.
	want := Result{
		Policy: "adjacency", Options: Options{Coverage: DefaultCoverage, MinObservations: 1},
		Walks: 1, Moves: 5,
		Neighbours: ModeResult{Mode: Neighbours, Hits: 4, HitRate: 0.8, InstanceSteps: 12, PerStep: 2.4, Deploys: 5},
		Predicted:  ModeResult{Mode: Predicted, Hits: 4, HitRate: 0.8, InstanceSteps: 8, PerStep: 1.6, Deploys: 4, Fallbacks: 2},
	}
	if res != want {
		t.Errorf("got  %+v\nwant %+v", res, want)
	}

	// Training on the first half of the moves: the first two only teach.
	res, err = Evaluate(topo, adjacency, opts, [][]string{walk}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	want = Result{
		Policy: "adjacency", Options: Options{Coverage: DefaultCoverage, MinObservations: 1},
		Walks: 1, Moves: 3, Trained: 2,
		Neighbours: ModeResult{Mode: Neighbours, Hits: 2, HitRate: 2.0 / 3, InstanceSteps: 7, PerStep: 7.0 / 3, Deploys: 4},
		Predicted:  ModeResult{Mode: Predicted, Hits: 2, HitRate: 2.0 / 3, InstanceSteps: 3, PerStep: 1, Deploys: 2},
	}
	if res != want {
		t.Errorf("trained:\ngot  %+v\nwant %+v", res, want)
	}
	if s := res.String(); !strings.Contains(s, "predicted/neighbours: hit rate 100.0%, instance-steps 42.9%") {
		t.Errorf("String:\n%s", s)
	}
}

func TestEvaluateErrors(t *testing.T) {
	topo := example(t)
	adjacency := policy(t, "adjacency")
	if _, err := Evaluate(topo, adjacency, Options{}, [][]string{{"bastille", "atlantis"}}, 0); err == nil {
		t.Error("unknown region accepted")
	}
	for _, f := range []float64{-0.1, 1, 2} {
		if _, err := Evaluate(topo, adjacency, Options{}, nil, f); err == nil {
			t.Errorf("train fraction %v accepted", f)
		}
	}
	if _, err := Evaluate(topo, adjacency, Options{K: -1}, nil, 0); err == nil {
		t.Error("bad options accepted")
	}
	res, err := Evaluate(topo, adjacency, Options{}, [][]string{nil, {"bastille"}}, 0)
	if err != nil || res.Moves != 0 || res.HitRatio() != 1 || res.CostRatio() != 1 {
		t.Errorf("no moves: %+v, %v", res, err)
	}
}

// comparisonWalks are the walks the comparison is stated on: 20 users with
// the default purposeful behaviour, 500 moves each, seeds 1…20.
func comparisonWalks(t testing.TB) [][]string {
	return Walks(example(t), 1, 20, 500, DefaultWalkOptions())
}

// TestEvaluateComparison prints how Predicted compares with Neighbours on
// the example topology and states what holds, learning online from a cold
// start (every prediction made before the move it predicts is seen).
func TestEvaluateComparison(t *testing.T) {
	topo := example(t)
	walks := comparisonWalks(t)
	type point struct {
		policy string
		opts   Options
	}
	run := func(p point, walks [][]string, train float64) Result {
		t.Helper()
		res, err := Evaluate(topo, policy(t, p.policy), p.opts, walks, train)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	var summary strings.Builder
	fmt.Fprintf(&summary, "%-12s %-16s %9s %9s %9s %9s %7s %7s\n", "policy", "predicted opts", "N hit", "N inst/st", "P hit", "P inst/st", "hit %", "cost %")
	line := func(p point, label string, r Result) {
		fmt.Fprintf(&summary, "%-12s %-16s %9.4f %9.3f %9.4f %9.3f %6.1f%% %6.1f%%\n", p.policy, label,
			r.Neighbours.HitRate, r.Neighbours.PerStep, r.Predicted.HitRate, r.Predicted.PerStep, 100*r.HitRatio(), 100*r.CostRatio())
	}
	for _, pol := range []string{"adjacency", "nearest:2", "distance<=5"} {
		for _, o := range []struct {
			label string
			opts  Options
		}{{"default (0.9)", Options{}}, {"coverage 0.6", Options{Coverage: 0.6}}, {"k 1", Options{K: 1}}} {
			p := point{pol, o.opts}
			res := run(p, walks, 0)
			line(p, o.label, res)
			if o.label == "default (0.9)" {
				t.Logf("%s", res)
			}
		}
	}
	t.Logf("purposeful users (DefaultWalkOptions), online from cold:\n%s", summary.String())

	// What holds, on these walks:
	check := func(p point, wantCriterion bool) {
		t.Helper()
		res := run(p, walks, 0)
		// Everywhere: Predicted is warm at least as often, for less.
		if res.HitRatio() < 1 || res.CostRatio() >= 1 {
			t.Errorf("%s %+v: predicted does not dominate neighbours:\n%s", p.policy, p.opts, res)
		}
		// The target: ≥ 97% of the hit rate at ≤ 60% of the instance-steps.
		if wantCriterion && (res.HitRatio() < 0.97 || res.CostRatio() > 0.60) {
			t.Errorf("%s %+v: misses ≥97%% hit rate at ≤60%% instance-steps:\n%s", p.policy, p.opts, res)
		}
	}
	check(point{"adjacency", Options{}}, false)    // ~133% hit rate at ~78% cost
	check(point{"nearest:2", Options{}}, false)    // ~123% at ~83%
	check(point{"distance<=5", Options{}}, true)   // ~109% at ~44%
	check(point{"adjacency", Options{K: 1}}, true) // ~105% at ~49%

	// For contrast, a plain random-waypoint user (no favourite places),
	// and purposeful users with the first half of each walk as training.
	var contrast strings.Builder
	plain := Walks(topo, 1, 20, 500, WalkOptions{})
	for _, pol := range []string{"adjacency", "distance<=5"} {
		p := point{pol, Options{}}
		res := run(p, plain, 0)
		fmt.Fprintf(&contrast, "plain walk  %-12s hit %.4f vs %.4f (%.1f%%), inst/step %.3f vs %.3f (%.1f%%)\n", pol,
			res.Predicted.HitRate, res.Neighbours.HitRate, 100*res.HitRatio(), res.Predicted.PerStep, res.Neighbours.PerStep, 100*res.CostRatio())
		res = run(p, walks, 0.5)
		fmt.Fprintf(&contrast, "trained 50%% %-12s hit %.4f vs %.4f (%.1f%%), inst/step %.3f vs %.3f (%.1f%%)\n", pol,
			res.Predicted.HitRate, res.Neighbours.HitRate, 100*res.HitRatio(), res.Predicted.PerStep, res.Neighbours.PerStep, 100*res.CostRatio())
	}
	t.Logf("default predicted options (predicted vs neighbours):\n%s", contrast.String())
}

func BenchmarkPredict(b *testing.B) {
	topo := example(b)
	var m Model
	for _, w := range comparisonWalks(b) {
		for i := 1; i < len(w); i++ {
			m.Observe(w[i-1], w[i])
		}
	}
	regions := topo.RegionNames()
	i := 0
	for b.Loop() {
		m.Predict(regions[i%len(regions)], DefaultCoverage, 0, DefaultMinObservations)
		i++
	}
}

func BenchmarkPreDeployClouds(b *testing.B) {
	topo := example(b)
	adjacency := policy(b, "adjacency")
	var m Model
	for _, w := range comparisonWalks(b) {
		for i := 1; i < len(w); i++ {
			m.Observe(w[i-1], w[i])
		}
	}
	regions := topo.RegionNames()
	for _, mode := range []Mode{Neighbours, Predicted} {
		b.Run(string(mode), func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, err := PreDeployClouds(topo, &m, adjacency, regions[i%len(regions)], Options{Mode: mode}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkEvaluate replays the comparison walks and reports each mode's
// hit rate and pre-deployed instances per step as metrics.
func BenchmarkEvaluate(b *testing.B) {
	topo := example(b)
	walks := comparisonWalks(b)
	for _, pol := range []string{"adjacency", "distance<=5"} {
		p := policy(b, pol)
		b.Run(pol, func(b *testing.B) {
			var res Result
			for b.Loop() {
				var err error
				if res, err = Evaluate(topo, p, Options{}, walks, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(res.Neighbours.HitRate, "neighbours-hit-rate")
			b.ReportMetric(res.Neighbours.PerStep, "neighbours-instances/step")
			b.ReportMetric(res.Predicted.HitRate, "predicted-hit-rate")
			b.ReportMetric(res.Predicted.PerStep, "predicted-instances/step")
		})
	}
}
