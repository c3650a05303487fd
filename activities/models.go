package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/predict"
)

// The per-app mobility model lives in a long-running workflow, one per app
// (names.ModelID): durable, replayable, and fed by every session of the app.

// RegionMove is one handover a session saw, by region.
type RegionMove struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// AppModelInput starts (or continues) an app's model workflow.
type AppModelInput struct {
	App   string        `json:"app"`
	Model predict.Model `json:"model"`
}

// Models reads and feeds the per-app model workflows.
type Models struct {
	Client client.Client
}

// RecordMove adds a handover to the app's model, starting its workflow on
// first use.
func (m *Models) RecordMove(ctx context.Context, app string, mv RegionMove) error {
	_, err := m.Client.SignalWithStartWorkflow(ctx, names.ModelID(app), names.ObserveSignal, mv,
		client.StartWorkflowOptions{
			ID:            names.ModelID(app),
			TaskQueue:     names.TaskQueue,
			StaticSummary: fmt.Sprintf("where users of %s go next: the model behind predicted pre-deploys", app),
		}, names.AppModelWorkflow, AppModelInput{App: app})
	return err
}

// ModelSnapshot returns the app's model; an app no session has moved in yet
// has an empty one.
func (m *Models) ModelSnapshot(ctx context.Context, app string) (predict.Model, error) {
	var model predict.Model
	v, err := m.Client.QueryWorkflow(ctx, names.ModelID(app), "", names.ModelQuery)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return model, nil
	}
	if err != nil {
		return model, err
	}
	return model, v.Get(&model)
}
