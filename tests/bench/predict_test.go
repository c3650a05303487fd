package bench

import (
	"time"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/predict"
	"github.com/edgedrift/drift/internal/topology"
)

// stepDuration is how long the prediction comparison assumes a user stays
// in a region between moves, to turn instance-steps into instance-seconds.
// It scales both modes alike, so it does not change their ratio.
const stepDuration = 5 * time.Minute

// The walks the comparison runs on are internal/predict's: 20 purposeful
// users (DefaultWalkOptions), 500 moves each, seeds 1…20, learnt online
// from a cold start (no training prefix).
const (
	walkSeed  = 1
	walkUsers = 20
	walkMoves = 500
)

// predictionPoint is one (policy, options) setting compared.
type predictionPoint struct {
	Label  string
	Policy string
	Opts   predict.Options
	Result predict.Result
}

// Met is the goal: ≥ 97% of the hit rate at ≤ 60% of the instance-seconds.
func (p predictionPoint) Met() bool {
	return p.Result.HitRatio() >= 0.97 && p.Result.CostRatio() <= 0.60
}

// measurePrediction evaluates the settings internal/predict's tests found
// to meet the goal (adjacency with K 1; distance<=5 with the defaults) on
// the example topology.
func measurePrediction() ([]predictionPoint, error) {
	topo, err := topology.Parse(examples.Topology)
	if err != nil {
		return nil, err
	}
	walks := predict.Walks(topo, walkSeed, walkUsers, walkMoves, predict.DefaultWalkOptions())
	points := []predictionPoint{
		{Label: "adjacency, K 1", Policy: "adjacency", Opts: predict.Options{K: 1}},
		{Label: "distance<=5, defaults", Policy: "distance<=5", Opts: predict.Options{}},
	}
	for i := range points {
		pol, err := topology.ParsePolicy(points[i].Policy)
		if err != nil {
			return nil, err
		}
		if points[i].Result, err = predict.Evaluate(topo, pol, points[i].Opts, walks, 0); err != nil {
			return nil, err
		}
	}
	return points, nil
}
