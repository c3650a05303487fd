package workflows

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/edgedrift/drift/internal/runtime"
)

// undeploy runs PipelineUndeploy of hello on clouds over the example
// topology's test clouds.
func undeploy(t *testing.T, clouds *testClouds, app string, from ...string) (UndeployResult, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	clouds.install(env)
	env.ExecuteWorkflow(PipelineUndeploy, UndeployInput{App: app, Clouds: from, Topology: exampleTopology})
	if !env.IsWorkflowCompleted() {
		t.Fatal("undeploy did not complete")
	}
	var res UndeployResult
	err := env.GetWorkflowError()
	var ae *temporal.ApplicationError
	switch {
	case err == nil:
		if gerr := env.GetWorkflowResult(&res); gerr != nil {
			t.Fatal(gerr)
		}
	case errors.As(err, &ae) && ae.HasDetails():
		if derr := ae.Details(&res); derr != nil {
			t.Fatal(derr)
		}
	}
	return res, err
}

// seedPipelineAndSession puts hello's pipeline deployment on fog-north and
// edge-latin, and a session's instance of hello beside it on fog-north.
func seedPipelineAndSession(clouds *testClouds) (session string) {
	spec := runtime.Spec{Image: fakeImage, Port: 8080}
	clouds.seed("fog-north", helloInstance, spec)
	clouds.seed("edge-latin", helloInstance, spec)
	session = runtime.InstanceName("hello", "alice", "fog-north")
	clouds.seed("fog-north", session, spec)
	return session
}

func TestUndeployRemovesThePipelinesDeploymentOnly(t *testing.T) {
	clouds := newTestClouds(t, exampleTopology, 0)
	session := seedPipelineAndSession(clouds)
	res, err := undeploy(t, clouds, "hello", "fog-north", "edge-latin", "fog-south")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Removed, []string{"fog-north", "edge-latin", "fog-south"}) {
		t.Errorf("removed from %v", res.Removed)
	}
	if images := clouds.images(helloInstance); len(images) != 0 {
		t.Errorf("hello's pipeline deployment still on %v", images)
	}
	if images := clouds.images(session); images["fog-north"] != fakeImage {
		t.Errorf("the session's instance is gone: %v", images)
	}
}

// A cloud no worker polls fails within the bound with NoWorker naming its
// queue; the other cloud's deployment is removed all the same.
func TestUndeployFromAnUnpolledCloudFailsNamingItsQueue(t *testing.T) {
	clouds := newTestClouds(t, exampleTopology, 0)
	seedPipelineAndSession(clouds)
	clouds.setPolled("edge-latin", false)
	res, err := undeploy(t, clouds, "hello", "fog-north", "edge-latin")
	if errorType(err) != ErrTypeNoWorker || !strings.Contains(err.Error(), "edge-latin: no worker polls drift.cloud.edge-latin") {
		t.Fatalf("error %v, want NoWorker naming drift.cloud.edge-latin", err)
	}
	if !slices.Equal(res.Removed, []string{"fog-north"}) {
		t.Errorf("removed from %v, want fog-north", res.Removed)
	}
	if images := clouds.images(helloInstance); len(images) != 1 || images["edge-latin"] == "" {
		t.Errorf("hello's pipeline deployment on %v, want edge-latin only", images)
	}
}

func TestUndeployRefusesBadInputBeforeAnyRemoval(t *testing.T) {
	for name, tc := range map[string]struct {
		app    string
		clouds []string
		typ    string
	}{
		"unknown cloud": {"hello", []string{"fog-north", "nowhere"}, ErrTypeUnknownTarget},
		"no cloud":      {"hello", nil, ErrTypeInvalidPipeline},
		"twice":         {"hello", []string{"fog-north", "fog-north"}, ErrTypeInvalidPipeline},
		"bad app":       {"../héllo", []string{"fog-north"}, ErrTypeInvalidPipeline},
		"long app":      {strings.Repeat("a", 300), []string{"fog-north"}, ErrTypeInvalidPipeline},
	} {
		t.Run(name, func(t *testing.T) {
			clouds := newTestClouds(t, exampleTopology, 0)
			seedPipelineAndSession(clouds)
			if _, err := undeploy(t, clouds, tc.app, tc.clouds...); errorType(err) != tc.typ {
				t.Fatalf("error %v, want %s", err, tc.typ)
			}
			if n := clouds.destroyed("fog-north"); n != 0 {
				t.Errorf("%d instances destroyed on fog-north", n)
			}
		})
	}
}
