package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
	"github.com/edgedrift/drift/internal/topology"
)

// testClouds runs the real cloud activities (activities.Cloud) for every
// cloud of a topology, each on its own in-memory runtimetest.Instant and
// with the capacity the topology gives it. The testsuite runs every
// activity in one environment, whatever queue the workflow scheduled it on,
// so each method picks its cloud by that queue (drift.cloud.<id>), where a
// real deployment has one worker per cloud. Its exported methods are the
// activities; the unexported ones are for the tests.
type testClouds struct {
	t          *testing.T
	clouds     map[string]*activities.Cloud
	runtimes   map[string]*runtimetest.Instant
	deployTime time.Duration // workflow time a DeployInstance takes

	mu       sync.Mutex
	deploys  []string            // "cloud/name" of every DeployInstance, in order
	deployed map[string][]string // cloud → images DeployInstance was given, in order
	sweeps   []string            // "cloud selector" of every DestroyOwned, in order
	states   map[string]string   // state URL → the state its instance holds
	refused  map[string]bool     // state URLs that answer non-2xx
	silent   map[string]bool     // clouds whose worker is gone: their watches time out
	unpolled map[string]bool     // clouds no worker polls
}

func newTestClouds(t *testing.T, topo *topology.Topology, deployTime time.Duration) *testClouds {
	c := &testClouds{t: t, clouds: map[string]*activities.Cloud{}, runtimes: map[string]*runtimetest.Instant{},
		deployTime: deployTime, deployed: map[string][]string{}, unpolled: map[string]bool{},
		states: map[string]string{}, refused: map[string]bool{}, silent: map[string]bool{}}
	for _, cl := range topo.Clouds() {
		c.runtimes[cl.ID] = runtimetest.NewInstant(cl.ID)
		c.clouds[cl.ID] = &activities.Cloud{ID: cl.ID, Runtime: c.runtimes[cl.ID], Capacity: cl.Capacity}
	}
	return c
}

// install registers the cloud activities in env.
func (c *testClouds) install(env *testsuite.TestWorkflowEnvironment) {
	env.RegisterActivity(c)
	if c.deployTime > 0 {
		// Only a mock makes the test clock wait: this one runs the real
		// activity once deployTime has passed.
		env.OnActivity(cloudActs.DeployInstance, mock.Anything, mock.Anything).Return(c.DeployInstance).After(c.deployTime)
	}
	// A watch looks once, after watchTime of workflow time.
	env.OnActivity(cloudActs.WatchInstance, mock.Anything, mock.Anything).Return(c.WatchInstance).After(watchTime)
}

// watchTime is how much workflow time one WatchInstance takes in tests.
const watchTime = 2 * time.Second

// WatchInstance reports the instance down once its runtime no longer has
// it, and a silent cloud's worker as a heartbeat timeout.
func (c *testClouds) WatchInstance(ctx context.Context, req activities.WatchRequest) error {
	cloud, err := c.on(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	silent := c.silent[cloud.ID]
	c.mu.Unlock()
	if silent {
		return temporal.NewTimeoutError(enums.TIMEOUT_TYPE_HEARTBEAT, nil)
	}
	st, err := cloud.Runtime.Status(ctx, req.Instance)
	if err != nil {
		return err
	}
	if !st.Exists {
		return temporal.NewNonRetryableApplicationError(req.Instance+" is gone", activities.ErrTypeInstanceDown, nil)
	}
	return nil
}

func (c *testClouds) ReadState(ctx context.Context, req activities.ReadStateRequest) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refused[req.URL] {
		return nil, temporal.NewNonRetryableApplicationError("GET "+req.URL+" answered 500", activities.ErrTypeStateRefused, nil)
	}
	return []byte(c.states[req.URL]), nil
}

func (c *testClouds) WriteState(ctx context.Context, req activities.WriteStateRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refused[req.URL] {
		return temporal.NewNonRetryableApplicationError("PUT "+req.URL+" answered 500", activities.ErrTypeStateRefused, nil)
	}
	c.states[req.URL] = string(req.State)
	return nil
}

// MergeState adds final-base to the count the serving instance holds, as
// the counter's store does.
func (c *testClouds) MergeState(ctx context.Context, req activities.MergeStateRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refused[req.URL] {
		return temporal.NewNonRetryableApplicationError("PATCH "+req.URL+" answered 500", activities.ErrTypeStateRefused, nil)
	}
	count := func(state string) (n int) {
		fmt.Sscanf(state, `{"count":%d}`, &n)
		return n
	}
	c.states[req.URL] = fmt.Sprintf(`{"count":%d}`, count(c.states[req.URL])+count(string(req.Final))-count(string(req.Base)))
	return nil
}

// on is the cloud whose queue the running activity was scheduled on.
func (c *testClouds) on(ctx context.Context) (*activities.Cloud, error) {
	queue := activity.GetInfo(ctx).TaskQueue
	for id, cloud := range c.clouds {
		if names.CloudQueue(id) == queue && c.isUnpolled(id) {
			// What the server says once the schedule-to-start bound is up.
			return nil, temporal.NewTimeoutError(enums.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
		}
		if names.CloudQueue(id) == queue {
			return cloud, nil
		}
	}
	return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("no test cloud polls queue %q", queue), "Test", nil)
}

func (c *testClouds) DeployInstance(ctx context.Context, req activities.DeployRequest) (runtime.Endpoint, error) {
	cloud, err := c.on(ctx)
	if err != nil {
		return runtime.Endpoint{}, err
	}
	c.mu.Lock()
	c.deploys = append(c.deploys, cloud.ID+"/"+req.Name)
	c.deployed[cloud.ID] = append(c.deployed[cloud.ID], req.Spec.ServeService().Image)
	c.mu.Unlock()
	return cloud.DeployInstance(ctx, req)
}

func (c *testClouds) DestroyInstance(ctx context.Context, name string) error {
	cloud, err := c.on(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	silent := c.silent[cloud.ID]
	c.mu.Unlock()
	if silent {
		return errors.New("no worker of " + cloud.ID + " answers")
	}
	return cloud.DestroyInstance(ctx, name)
}

func (c *testClouds) DestroyOwned(ctx context.Context, selector map[string]string) (int, error) {
	cloud, err := c.on(ctx)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.sweeps = append(c.sweeps, fmt.Sprint(cloud.ID, " ", selector))
	c.mu.Unlock()
	return cloud.DestroyOwned(ctx, selector)
}

func (c *testClouds) InstanceStatus(ctx context.Context, name string) (runtime.Status, error) {
	cloud, err := c.on(ctx)
	if err != nil {
		return runtime.Status{}, err
	}
	return cloud.InstanceStatus(ctx, name)
}

func (c *testClouds) Room(ctx context.Context) (int, error) {
	cloud, err := c.on(ctx)
	if err != nil {
		return 0, err
	}
	return cloud.Room(ctx)
}

func (c *testClouds) ListInstances(ctx context.Context, selector map[string]string) ([]runtime.Instance, error) {
	cloud, err := c.on(ctx)
	if err != nil {
		return nil, err
	}
	return cloud.ListInstances(ctx, selector)
}

// seed deploys an instance on cloud before the workflow runs: something an
// earlier run, or another user, left there.
func (c *testClouds) seed(cloud, name string, spec runtime.Spec) {
	c.t.Helper()
	if _, err := c.runtimes[cloud].Deploy(context.Background(), name, spec); err != nil {
		c.t.Fatalf("seed %s on %s: %v", name, cloud, err)
	}
}

// copyFrom gives every cloud the instances it has in other, as a run that
// continued as new finds them.
func (c *testClouds) copyFrom(other *testClouds) {
	for id, rt := range other.runtimes {
		for _, in := range runtimetest.List(c.t, rt, nil) {
			c.seed(id, in.Name, runtime.Spec{Image: in.Image, Port: in.Endpoint.Port, Labels: in.Labels})
		}
	}
}

// fill makes cloud full: room for one instance, which another user's
// session of hello, on image, takes.
func (c *testClouds) fill(cloud, image string) {
	c.clouds[cloud].Capacity = 1
	c.seed(cloud, runtime.InstanceName("hello", "bob", cloud), runtime.Spec{Image: image, Port: 8080,
		Labels: map[string]string{runtime.LabelWorkflow: names.SessionID("bob", "hello")}})
}

// failDeploys makes every deploy on cloud fail for good, saying why (with
// the error type given, or "Test").
func (c *testClouds) failDeploys(cloud, why string, typ ...string) {
	t := "Test"
	if len(typ) > 0 {
		t = typ[0]
	}
	c.runtimes[cloud].OnDeploy = func(context.Context, string, runtime.Spec) error {
		return temporal.NewNonRetryableApplicationError(why, t, nil)
	}
}

// setPolled says whether a worker polls cloud's queue.
func (c *testClouds) setPolled(cloud string, polled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unpolled[cloud] = !polled
}

func (c *testClouds) isUnpolled(cloud string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unpolled[cloud]
}

// liveClouds lists the clouds that hold an instance, sorted.
func (c *testClouds) liveClouds() []string {
	var out []string
	for id, rt := range c.runtimes {
		if rt.Len() > 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// images maps every cloud that holds instance name to the image it runs.
func (c *testClouds) images(name string) map[string]string {
	out := map[string]string{}
	for id, rt := range c.runtimes {
		if st := runtimetest.Status(c.t, rt, name); st.Exists {
			out[id] = st.Image
		}
	}
	return out
}

// destroyed is how many instances were destroyed on cloud.
func (c *testClouds) destroyed(cloud string) int64 {
	_, n := c.runtimes[cloud].Counts()
	return n
}
