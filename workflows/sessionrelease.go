package workflows

import (
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
)

// ErrTypeWrongRelease: an Adopt asked for images that are not the
// session's app's services.
const ErrTypeWrongRelease = "WrongRelease"

// AdoptRequest is the Adopt update's argument: a release of the session's
// app. Its pre-deploys take it at once, and the user reaches it at the
// next handover, on an instance that was ready before the switch: no
// restart under the user.
type AdoptRequest = activities.AdoptRequest

// AdoptResult answers Adopt.
type AdoptResult = activities.AdoptResult

func (s *session) registerAdopt(ctx workflow.Context) error {
	return workflow.SetUpdateHandlerWithOptions(ctx, names.AdoptUpdate,
		func(ctx workflow.Context, r AdoptRequest) (AdoptResult, error) {
			pinned, err := pinImages(withScheduleToStart(ctx, s.in.ScheduleToStart), s.in.App.WithImages(r.Images))
			if err != nil {
				return AdoptResult{}, err
			}
			s.setImages(pinned)
			s.st.Release, s.st.AdoptedAt, s.st.ReplaceAfter, s.dirty = r.Release, workflow.Now(ctx), r.ReplaceAfter, true
			s.logger.Info("release adopted", "release", r.Release, "images", s.runs())
			res := AdoptResult{Release: r.Release, Images: pinned}
			if inst := s.instances[s.st.Serving]; inst != nil {
				res.Serving = inst.Runs
			}
			return res, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, r AdoptRequest) error {
			if s.exit || s.st.Phase != "serving" {
				return fmt.Errorf("session is %s: it adopts a release only while serving", firstOf(s.st.Phase, "starting"))
			}
			want := sortedKeys(s.in.App.Images())
			if got := sortedKeys(r.Images); !slices.Equal(got, want) {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
					"release %q has images for %v; %s's services are %v", r.Release, got, s.in.App.Name, want), ErrTypeWrongRelease, nil)
			}
			if err := s.in.App.WithImages(r.Images).Validate(); err != nil {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("release %q: %v", r.Release, err), ErrTypeWrongRelease, nil)
			}
			return nil
		}},
	)
}

// runs is the session's images as Instance.Runs keeps them: the pinned
// reference, or service=reference of each service of a project.
func (s *session) runs() string {
	if !s.in.App.IsProject() {
		return s.st.Image
	}
	var out []string
	for _, svc := range sortedKeys(s.st.Images) {
		out = append(out, svc+"="+s.st.Images[svc])
	}
	return strings.Join(out, " ")
}

// behind says whether inst was deployed with images other than the
// session's: it predates an adopted release.
func (s *session) behind(inst *Instance) bool {
	return inst.Runs != "" && inst.Runs != s.runs()
}
