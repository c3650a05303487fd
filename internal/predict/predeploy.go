package predict

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/edgedrift/drift/internal/topology"
)

// Mode says how the clouds to pre-deploy are chosen.
type Mode string

// Modes.
const (
	// Neighbours pre-deploys to every neighbour of the serving cloud that
	// the neighbour policy picks.
	Neighbours Mode = "neighbours"
	// Predicted pre-deploys to the first clouds of the regions the model
	// expects next, and behaves as Neighbours while the model is cold.
	Predicted Mode = "predicted"
)

// Defaults for the zero values of Options.
const (
	DefaultCoverage        = 0.9
	DefaultMinObservations = 3
)

// Options configure PreDeployClouds. The zero value is Neighbours mode;
// zero Coverage and MinObservations mean their defaults.
type Options struct {
	Mode Mode `json:"mode,omitempty"` // "" is Neighbours
	// Coverage is the probability the pre-deployed clouds (with the
	// serving cloud) should cover that the next move lands on; in (0, 1],
	// 0 means DefaultCoverage.
	Coverage float64 `json:"coverage,omitempty"`
	// K caps the number of clouds pre-deployed in Predicted mode; 0 is no
	// cap.
	K int `json:"k,omitempty"`
	// MinObservations is how many moves from the serving region the model
	// needs before Predicted mode trusts it; 0 means DefaultMinObservations.
	MinObservations int `json:"minObservations,omitempty"`
}

// Validate rejects an unknown mode and out-of-range numbers.
func (o Options) Validate() error {
	switch o.Mode {
	case "", Neighbours, Predicted:
	default:
		return fmt.Errorf("unknown pre-deploy mode %q (want %s or %s)", o.Mode, Neighbours, Predicted)
	}
	if !(o.Coverage >= 0 && o.Coverage <= 1) {
		return fmt.Errorf("coverage %v must be in [0, 1] (0: default %v)", o.Coverage, DefaultCoverage)
	}
	if o.K < 0 {
		return fmt.Errorf("k %d must be ≥ 0 (0: no cap)", o.K)
	}
	if o.MinObservations < 0 {
		return fmt.Errorf("minObservations %d must be ≥ 0 (0: default %d)", o.MinObservations, DefaultMinObservations)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Mode == "" {
		o.Mode = Neighbours
	}
	if o.Coverage == 0 {
		o.Coverage = DefaultCoverage
	}
	if o.MinObservations == 0 {
		o.MinObservations = DefaultMinObservations
	}
	return o
}

// Plan is what PreDeployClouds chose.
type Plan struct {
	// Mode is the mode actually used: Neighbours when it was asked for,
	// or when Predicted was asked for but the model is cold.
	Mode Mode `json:"mode"`
	// Cold is true when Predicted was asked for and fell back.
	Cold bool `json:"cold,omitempty"`
	// Serving is the serving region's first cloud.
	Serving string `json:"serving"`
	// Clouds are the cloud ids to pre-deploy to, never Serving.
	Clouds []string `json:"clouds"`
	// Observations is the number of moves the model has seen from the
	// serving region.
	Observations int `json:"observations"`
	// Covered is the model's probability that the next move lands on
	// Serving or one of Clouds (0 when the model has no observations).
	Covered float64 `json:"covered"`
}

// PreDeployClouds chooses the clouds to pre-deploy a session's service to
// while the user is in servingRegion.
//
// Neighbours mode returns the serving cloud's neighbours under policy, in
// the order Topology.Neighbours gives them.
//
// Predicted mode works on clouds rather than regions: it maps each region
// the model saw after servingRegion to its first cloud and adds up the
// probabilities per cloud, since two regions served by one cloud need one
// instance. A move to a region the serving cloud itself serves is warm for
// free, so its probability counts as covered at no cost. The remaining
// clouds, most likely first (ties by id), are taken until the covered
// probability reaches opts.Coverage or opts.K clouds are chosen. Regions the
// topology no longer has are skipped. While the model has fewer than
// opts.MinObservations moves from servingRegion (or model is nil), Predicted
// falls back to Neighbours mode, and the Plan says so.
func PreDeployClouds(topo *topology.Topology, model *Model, policy topology.Policy, servingRegion string, opts Options) (Plan, error) {
	if err := opts.Validate(); err != nil {
		return Plan{}, err
	}
	opts = opts.withDefaults()
	serving, err := topo.FirstCloud(servingRegion)
	if err != nil {
		return Plan{}, err
	}
	plan := Plan{Mode: opts.Mode, Serving: serving.ID, Clouds: []string{}}
	var trans []Transition
	if model != nil {
		plan.Observations = model.Observations(servingRegion)
		trans = model.Transitions(servingRegion)
	}
	if opts.Mode == Predicted && (plan.Observations == 0 || plan.Observations < opts.MinObservations) {
		plan.Mode, plan.Cold = Neighbours, true
	}
	if plan.Mode == Neighbours {
		ns, err := topo.Neighbours(serving.ID, policy)
		if err != nil {
			return Plan{}, err
		}
		for _, n := range ns {
			plan.Clouds = append(plan.Clouds, n.Cloud.ID)
		}
		plan.Covered = covered(topo, trans, serving.ID, plan.Clouds)
		return plan, nil
	}

	// Probability per cloud, in first-seen order of the sorted transitions.
	type mass struct {
		cloud string
		n     int
	}
	var clouds []mass
	free := 0 // moves the serving cloud serves itself
	for _, t := range trans {
		c, err := topo.FirstCloud(t.To)
		if err != nil {
			continue // a region the topology dropped
		}
		if c.ID == serving.ID {
			free += t.Count
			continue
		}
		if i := slices.IndexFunc(clouds, func(m mass) bool { return m.cloud == c.ID }); i >= 0 {
			clouds[i].n += t.Count
		} else {
			clouds = append(clouds, mass{c.ID, t.Count})
		}
	}
	slices.SortStableFunc(clouds, func(a, b mass) int {
		return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.cloud, b.cloud))
	})
	total := float64(plan.Observations)
	cum := float64(free) / total
	for _, m := range clouds {
		if cum >= opts.Coverage-coverageSlack || (opts.K > 0 && len(plan.Clouds) >= opts.K) {
			break
		}
		plan.Clouds = append(plan.Clouds, m.cloud)
		cum += float64(m.n) / total
	}
	plan.Covered = math.Min(cum, 1)
	return plan, nil
}

// covered is the model's probability that the next move from a region
// served by serving lands on serving or one of clouds.
func covered(topo *topology.Topology, trans []Transition, serving string, clouds []string) float64 {
	hit, total := 0, 0
	for _, t := range trans {
		total += t.Count
		c, err := topo.FirstCloud(t.To)
		if err == nil && (c.ID == serving || slices.Contains(clouds, c.ID)) {
			hit += t.Count
		}
	}
	if total == 0 {
		return 0
	}
	return float64(hit) / float64(total)
}
