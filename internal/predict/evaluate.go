package predict

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/edgedrift/drift/internal/topology"
)

// Result compares the two modes over the same moves.
type Result struct {
	Policy     string     `json:"policy"`
	Options    Options    `json:"options"`
	Walks      int        `json:"walks"`
	Moves      int        `json:"moves"`      // moves scored
	Trained    int        `json:"trained"`    // moves only learned from, not scored
	Neighbours ModeResult `json:"neighbours"` // Neighbours mode
	Predicted  ModeResult `json:"predicted"`  // Predicted mode
}

// ModeResult is how one mode did over the scored moves.
type ModeResult struct {
	Mode Mode `json:"mode"`
	// Hits counts warm moves: the next region's first cloud was the serving
	// cloud or pre-deployed.
	Hits    int     `json:"hits"`
	HitRate float64 `json:"hitRate"`
	// InstanceSteps sums the pre-deployed instances held at each step (the
	// serving instance, the same in both modes, is not counted). Times a
	// step's duration it is instance-seconds.
	InstanceSteps int `json:"instanceSteps"`
	// PerStep is InstanceSteps per move.
	PerStep float64 `json:"perStep"`
	// Deploys counts instances started, serving or pre-deployed: clouds in
	// a step's set that the step before did not hold (the first step of a
	// walk starts all of its set).
	Deploys int `json:"deploys"`
	// Fallbacks counts steps where Predicted fell back to Neighbours
	// because the model was cold.
	Fallbacks int `json:"fallbacks,omitempty"`
}

// Evaluate replays walks (each one user's sequence of regions) and scores
// both modes on the same moves, with opts' coverage, K and minimum
// observations (opts.Mode is ignored).
//
// Every walk has its own model, as every session does. The first
// trainFraction of a walk's moves only train it; after that the replay is
// online: at each step both modes choose from the model as it is, the move
// is scored, and only then the model observes it — a prediction never sees
// the move it predicts. trainFraction 0 is purely online, cold start
// included. Repeated regions in a walk are not moves and are skipped.
func Evaluate(topo *topology.Topology, policy topology.Policy, opts Options, walks [][]string, trainFraction float64) (Result, error) {
	if err := opts.Validate(); err != nil {
		return Result{}, err
	}
	if err := policy.Validate(); err != nil {
		return Result{}, err
	}
	if !(trainFraction >= 0 && trainFraction < 1) {
		return Result{}, fmt.Errorf("train fraction %v must be in [0, 1)", trainFraction)
	}
	res := Result{
		Policy:     policy.String(),
		Options:    opts.withDefaults(),
		Walks:      len(walks),
		Neighbours: ModeResult{Mode: Neighbours},
		Predicted:  ModeResult{Mode: Predicted},
	}
	res.Options.Mode = ""
	for wi, walk := range walks {
		walk = slices.Compact(slices.Clone(walk))
		for _, r := range walk {
			if _, err := topo.FirstCloud(r); err != nil {
				return Result{}, fmt.Errorf("walk %d: %w", wi, err)
			}
		}
		moves := max(len(walk)-1, 0)
		train := int(trainFraction * float64(moves))
		var model Model
		for i := range train {
			model.Observe(walk[i], walk[i+1])
		}
		res.Trained += train
		modes := []*ModeResult{&res.Neighbours, &res.Predicted}
		held := make([][]string, len(modes)) // per mode, the clouds of the step before
		for i := train; i < moves; i++ {
			from, to := walk[i], walk[i+1]
			next, _ := topo.FirstCloud(to)
			for mi, mr := range modes {
				o := opts
				o.Mode = mr.Mode
				plan, err := PreDeployClouds(topo, &model, policy, from, o)
				if err != nil {
					return Result{}, fmt.Errorf("walk %d step %d: %w", wi, i, err)
				}
				if next.ID == plan.Serving || slices.Contains(plan.Clouds, next.ID) {
					mr.Hits++
				}
				mr.InstanceSteps += len(plan.Clouds)
				if plan.Cold {
					mr.Fallbacks++
				}
				set := append([]string{plan.Serving}, plan.Clouds...)
				for _, c := range set {
					if !slices.Contains(held[mi], c) {
						mr.Deploys++
					}
				}
				held[mi] = set
			}
			model.Observe(from, to)
			res.Moves++
		}
	}
	for _, mr := range []*ModeResult{&res.Neighbours, &res.Predicted} {
		if res.Moves > 0 {
			mr.HitRate = float64(mr.Hits) / float64(res.Moves)
			mr.PerStep = float64(mr.InstanceSteps) / float64(res.Moves)
		}
	}
	return res, nil
}

// String renders the comparison as a table, with Predicted relative to
// Neighbours.
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy %s, coverage %g, k %d, min observations %d: %d walks, %d moves scored, %d trained\n",
		r.Policy, r.Options.Coverage, r.Options.K, r.Options.MinObservations, r.Walks, r.Moves, r.Trained)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\thits\thit rate\tinstance-steps\tper step\tdeploys\tfallbacks\t")
	for _, m := range []ModeResult{r.Neighbours, r.Predicted} {
		fmt.Fprintf(tw, "%s\t%d\t%.4f\t%d\t%.3f\t%d\t%d\t\n", m.Mode, m.Hits, m.HitRate, m.InstanceSteps, m.PerStep, m.Deploys, m.Fallbacks)
	}
	tw.Flush()
	fmt.Fprintf(&b, "predicted/neighbours: hit rate %.1f%%, instance-steps %.1f%%\n",
		100*ratio(r.Predicted.HitRate, r.Neighbours.HitRate), 100*ratio(float64(r.Predicted.InstanceSteps), float64(r.Neighbours.InstanceSteps)))
	return b.String()
}

// HitRatio is Predicted's hit rate over Neighbours' (1 when both are 0).
func (r Result) HitRatio() float64 { return ratio(r.Predicted.HitRate, r.Neighbours.HitRate) }

// CostRatio is Predicted's instance-steps over Neighbours' (1 when both
// are 0).
func (r Result) CostRatio() float64 {
	return ratio(float64(r.Predicted.InstanceSteps), float64(r.Neighbours.InstanceSteps))
}

func ratio(a, b float64) float64 {
	if b == 0 {
		if a == 0 {
			return 1
		}
		return a / b // +Inf
	}
	return a / b
}
