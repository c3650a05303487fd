// Package production runs drift in its production shape on one host, as the
// README's "Production" section tells an operator to: a standalone Temporal
// server on PostgreSQL (temporalpg), drift setup, a standalone registry
// with htpasswd auth, and three drift-worker sites, driven by the drift CLI.
package production

import (
	"os"
	"path/filepath"
	"strings"
)

// Steps are the README's Production commands, in order, exactly as the
// README shows them between the markers below: the test runs each with
// bash (lines ending in " &" as long-running processes), with the
// variables of Env set, from the repository's root. TestReadmeShowsTheSteps
// fails when the README and this list differ, so they stay the same.
var Steps = []string{
	`drift setup`,
	`head -c 24 /dev/urandom | base64 > $DATA/registry-password`,
	`drift registry adduser drift --htpasswd $DATA/htpasswd --docker-config $DOCKER_CONFIG --registry $DRIFT_REGISTRY < $DATA/registry-password`,
	`drift registry serve --addr $DRIFT_REGISTRY --data-dir $DATA/registry --htpasswd $DATA/htpasswd &`,
	`drift-worker -t deploy/production/topology.yaml --clouds center --registry $DRIFT_REGISTRY --data-dir $DATA/central --metrics-addr $METRICS_CENTRAL &`,
	`drift-worker -t deploy/production/topology.yaml --no-central --clouds fog-1,fog-2 --registry $DRIFT_REGISTRY --data-dir $DATA/fog --metrics-addr $METRICS_FOG &`,
	`drift-worker -t deploy/production/topology.yaml --no-central --clouds edge-1,edge-2 --registry $DRIFT_REGISTRY --data-dir $DATA/edge --metrics-addr $METRICS_EDGE &`,
	`drift pipeline run -f deploy/production/pipeline.yaml -t deploy/production/topology.yaml --repo $REPO --run r1`,
	`drift session start -t deploy/production/topology.yaml --schedule-to-start 30s --user alice --app hello --image $IMAGE --region downtown`,
	`drift session move harbour --user alice --app hello`,
	`drift session exit --user alice --app hello`,
	`drift pipeline undeploy hello -f deploy/production/pipeline.yaml -t deploy/production/topology.yaml`,
}

// The steps by what they do, for the test to name them.
const (
	stepSetup = iota
	stepPassword
	stepAddUser
	stepRegistry
	stepCentral
	stepFog
	stepEdge
	stepPipeline
	stepSessionStart
	stepMove
	stepExit
	stepUndeploy
)

// Env lists the variables the steps read, as the README explains them.
var Env = []string{
	"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "DRIFT_REGISTRY", "DOCKER_CONFIG",
	"DATA", "REPO", "IMAGE", "METRICS_CENTRAL", "METRICS_FOG", "METRICS_EDGE",
}

// README markers around the steps' block.
const (
	readmeBegin = "<!-- production steps: tests/production/steps.go -->\n```sh\n"
	readmeEnd   = "```\n<!-- end of production steps -->"
)

// readmeSteps returns the command lines between the README's markers.
func readmeSteps(root string) ([]string, bool) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		return nil, false
	}
	_, rest, ok := strings.Cut(string(b), readmeBegin)
	if !ok {
		return nil, false
	}
	block, _, ok := strings.Cut(rest, readmeEnd)
	if !ok {
		return nil, false
	}
	return strings.Split(strings.TrimSuffix(block, "\n"), "\n"), true
}
