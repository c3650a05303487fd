package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/appspec"
)

// composeProjectSessions is the workflow.GetVersion change ID under which a
// session of a compose project pins the image of every service; sessions
// of one image pin theirs as before.
const composeProjectSessions = "compose-project-sessions"

// ensureImage puts the app's images in the center registry, pinned by
// digest.
func (s *session) ensureImage(ctx workflow.Context) error {
	if s.in.App.IsProject() && workflow.GetVersion(ctx, composeProjectSessions, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		// Only code that knows projects can have started a session of one.
		return invalid(ErrTypeInvalidSession, "this session of a compose project was started by a worker that cannot run projects")
	}
	pinned, err := pinImages(ctx, s.in.App)
	if err != nil {
		return err
	}
	s.setImages(pinned)
	return nil
}

// pinImages puts the image of every service of app in the center registry
// and answers them pinned by digest, by service name (an app of one image:
// its name).
func pinImages(ctx workflow.Context, app appspec.AppSpec) (map[string]string, error) {
	services := app.Project()
	futures := make([]workflow.Future, len(services))
	for i, svc := range services {
		summary := "ensure image " + svc.Image + " of " + svc.Name + " is in the center registry"
		if !app.IsProject() {
			summary = "ensure image " + svc.Image + " is in the center registry"
		}
		futures[i] = workflow.ExecuteActivity(central(ctx, lookupOptions, summary), imageActs.EnsureImage, svc.Image)
	}
	pinned := map[string]string{}
	for i, svc := range services {
		var ref string
		if err := futures[i].Get(ctx, &ref); err != nil {
			return nil, err
		}
		pinned[svc.Name] = ref
	}
	return pinned, nil
}

// setImages makes pinned (by service name) the images the session deploys
// from now on.
func (s *session) setImages(pinned map[string]string) {
	if s.in.App.IsProject() {
		s.st.Images = pinned
		return
	}
	s.st.Image = pinned[s.in.App.Name]
}

// app is the app as the session deploys it: with its images pinned in the
// center registry.
func (s *session) app() appspec.AppSpec {
	if s.in.App.IsProject() {
		return s.in.App.WithImages(s.st.Images)
	}
	return s.in.App.WithImage(s.st.Image)
}
