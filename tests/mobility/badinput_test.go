package mobility

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/appspec"
	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// Bad input ends a session before anything is deployed, with an error that
// says what was wrong and is not retried.
func TestBadInputDeploysNothing(t *testing.T) {
	_, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	image := harness.HelloImage(t, reg, "v1")
	topo := harness.ExampleTopology(t)
	ws := harness.Workers(t, c, topo, reg.Host(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	good, err := appspec.FromImage("hello", image, 8080)
	if err != nil {
		t.Fatal(err)
	}
	missing := good
	missing.Image = reg.Host() + "/nobody/nothing:v1"
	malformed := good
	malformed.Image = "Not An Image"
	for _, c2 := range []struct {
		name, user, region string
		app                appspec.AppSpec
		errType, says      string
	}{
		{"unknown region", "bad-region", "atlantis", good, workflows.ErrTypeUnknownRegion, "atlantis"},
		{"unknown image", "bad-image", "bastille", missing, "UnknownImage", "nobody/nothing"},
		{"malformed image", "bad-ref", "bastille", malformed, "InvalidSpec", "Not An Image"},
	} {
		t.Run(c2.name, func(t *testing.T) {
			_, err := drift.New(c).OpenSession(ctx, drift.Open{User: c2.user, App: c2.app, Region: c2.region, Topology: topo,
				Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNeighbours})
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != c2.errType || !appErr.NonRetryable() || !strings.Contains(err.Error(), c2.says) {
				t.Fatalf("error %v, want non-retryable %s naming %q", err, c2.errType, c2.says)
			}
		})
	}
	for cloud, rt := range ws.Runtimes {
		if in, err := rt.List(ctx, nil); err != nil || len(in) > 0 {
			t.Errorf("%s holds %v (%v) after bad input", cloud, in, err)
		}
	}
}
