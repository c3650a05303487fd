package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/appspec"
)

// composeProjectSessions is the workflow.GetVersion change ID under which a
// session of a compose project pins the image of every service; sessions
// of one image pin theirs as before.
const composeProjectSessions = "compose-project-sessions"

// ensureProjectImages puts the image of every service of the session's
// project in the center registry, pinned by digest, in the project's order.
func (s *session) ensureProjectImages(ctx workflow.Context) error {
	if workflow.GetVersion(ctx, composeProjectSessions, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		// Only code that knows projects can have started a session of one.
		return invalid(ErrTypeInvalidSession, "this session of a compose project was started by a worker that cannot run projects")
	}
	futures := make([]workflow.Future, len(s.in.App.Services))
	for i, svc := range s.in.App.Services {
		actx := central(ctx, lookupOptions, "ensure image "+svc.Image+" of "+svc.Name+" is in the center registry")
		futures[i] = workflow.ExecuteActivity(actx, imageActs.EnsureImage, svc.Image)
	}
	images := map[string]string{}
	for i, svc := range s.in.App.Services {
		var pinned string
		if err := futures[i].Get(ctx, &pinned); err != nil {
			return err
		}
		images[svc.Name] = pinned
	}
	s.st.Images = images
	return nil
}

// app is the app as the session deploys it: with its images pinned in the
// center registry.
func (s *session) app() appspec.AppSpec {
	if s.in.App.IsProject() {
		return s.in.App.WithImages(s.st.Images)
	}
	return s.in.App.WithImage(s.st.Image)
}
