package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/topology"
)

// ErrTypeUndeployFailed: the deployment could not be removed from a cloud.
const ErrTypeUndeployFailed = "UndeployFailed"

// UndeployInput names an app whose pipeline deployment (PipelineInstance)
// comes off clouds.
type UndeployInput struct {
	App      string             `json:"app"`
	Clouds   []string           `json:"clouds"`
	Topology *topology.Topology `json:"topology"` // the clouds named are its clouds
	// ScheduleToStart bounds each removal's wait for a worker on a cloud's
	// queue (0: DefaultScheduleToStart); past it that cloud fails with NoWorker.
	ScheduleToStart time.Duration `json:"scheduleToStart,omitempty"`
}

// UndeployResult lists the clouds the deployment is gone from (removing one
// that was not there succeeds).
type UndeployResult struct {
	App     string   `json:"app"`
	Removed []string `json:"removed"`
}

// PipelineUndeploy removes an app's pipeline deployment from every cloud
// named, all at once, each on its cloud's queue. It fails naming every
// cloud it could not remove it from (NoWorker when none was taken by a
// worker); running it again retries those.
func PipelineUndeploy(ctx workflow.Context, in UndeployInput) (UndeployResult, error) {
	if err := validateUndeploy(in); err != nil {
		return UndeployResult{}, err
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		names.AppKey.ValueSet(in.App),
		names.KindKey.ValueSet(names.KindPipeline),
	); err != nil {
		return UndeployResult{}, err
	}
	ctx = withScheduleToStart(ctx, in.ScheduleToStart)
	name := PipelineInstance(in.App)
	removals := make([]workflow.Future, len(in.Clouds))
	for i, cloud := range in.Clouds {
		removals[i] = executeOnCloud(ctx, destroyOptions, cloud, "remove "+name+" from "+cloud, cloudActs.DestroyInstance, name)
	}
	res := UndeployResult{App: in.App}
	var failed []string
	noWorker := true // every failure is a cloud no worker polls
	for i, f := range removals {
		err := f.Get(ctx, nil)
		if err == nil {
			res.Removed = append(res.Removed, in.Clouds[i])
			continue
		}
		failed = append(failed, in.Clouds[i]+": "+errText(err))
		noWorker = noWorker && isType(err, ErrTypeNoWorker)
	}
	if len(failed) > 0 {
		typ := ErrTypeUndeployFailed
		if noWorker {
			typ = ErrTypeNoWorker
		}
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s not removed from %s", name, strings.Join(failed, "; ")), typ, nil, res)
	}
	return res, nil
}

func validateUndeploy(in UndeployInput) error {
	if !pipelinespec.ValidApp(in.App) {
		return invalid(ErrTypeInvalidPipeline, "app %q must be a DNS-1035 label of at most 40 characters", in.App)
	}
	if in.Topology == nil {
		return invalid(ErrTypeInvalidPipeline, "no topology given")
	}
	if len(in.Clouds) == 0 {
		return invalid(ErrTypeInvalidPipeline, "no cloud to remove %s from", in.App)
	}
	for i, cloud := range in.Clouds {
		if _, ok := in.Topology.Cloud(cloud); !ok {
			return invalid(ErrTypeUnknownTarget, "%q is not a cloud of topology %q", cloud, in.Topology.Name())
		}
		if slices.Contains(in.Clouds[:i], cloud) {
			return invalid(ErrTypeInvalidPipeline, "cloud %s named twice", cloud)
		}
	}
	return nil
}
