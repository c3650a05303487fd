package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/predict"
)

// AppModel learns where the users of one app go next: every session of the
// app signals its handovers here, and sessions that pre-deploy by
// prediction read the model with a query. It runs until cancelled,
// continuing as new when its history grows.
func AppModel(ctx workflow.Context, in activities.AppModelInput) error {
	model := in.Model
	if err := workflow.SetQueryHandler(ctx, names.ModelQuery, func() (predict.Model, error) {
		return model.Clone(), nil
	}); err != nil {
		return err
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		names.AppKey.ValueSet(in.App),
		names.KindKey.ValueSet("model"),
	); err != nil {
		return err
	}
	moves := workflow.GetSignalChannel(ctx, names.ObserveSignal)
	for {
		var mv activities.RegionMove
		moves.Receive(ctx, &mv)
		model.Observe(mv.From, mv.To)
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("last move %s → %s; %d moves seen from %s", mv.From, mv.To, model.Observations(mv.From), mv.From))
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() && moves.Len() == 0 {
			return workflow.NewContinueAsNewError(ctx, AppModel, activities.AppModelInput{App: in.App, Model: model})
		}
	}
}
