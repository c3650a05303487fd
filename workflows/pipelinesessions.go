package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
)

// sessionsAdoptRelease is the workflow.GetVersion change ID under which a
// run whose spec names sessions (deploy.sessions) tells them its release
// once every target runs it.
const sessionsAdoptRelease = "sessions-adopt-release"

// sessionsOptions: Adopt to each session named, one after the other (each
// bounded on its own); adopting again is harmless, so a lost attempt is
// tried again.
var sessionsOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 15 * time.Minute,
	RetryPolicy:         retry(3, 30*time.Second),
}

// adoptSessions tells the sessions the spec names that the release is out:
// each runs it from its next handover. Only a rollout that succeeded gets
// here, so a failed one leaves them as they were. A session that is not
// open or refuses is reported; the release stands either way.
func (p *pipeline) adoptSessions(ctx workflow.Context) {
	users := p.in.Spec.Deploy.Sessions
	if len(users) == 0 || workflow.GetVersion(ctx, sessionsAdoptRelease, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	images := map[string]string{p.in.Spec.App: p.pr.Image}
	if p.project {
		images = map[string]string{}
		for _, img := range p.pr.Images {
			images[img.Service] = img.Image
		}
	}
	req := activities.ReleaseToSessions{App: p.in.Spec.App, Users: users,
		AdoptRequest: activities.AdoptRequest{Release: p.pr.ID, Images: images, ReplaceAfter: p.in.Spec.Deploy.SessionsReplaceAfter}}
	actx := central(ctx, sessionsOptions, fmt.Sprintf("tell the sessions of %s (%s) about this release", p.in.Spec.App, strings.Join(users, ", ")))
	deploy := &p.pr.Steps[p.idx[StepDeploy]]
	if err := workflow.ExecuteActivity(actx, sessionActs.AdoptRelease, req).Get(ctx, &p.pr.Sessions); err != nil {
		deploy.Detail += "; sessions not told: " + errText(err)
		return
	}
	deploy.Detail += "; " + sessionsSummary(p.pr.Sessions)
}

// sessionsSummary counts how sessions took a release, and what their
// serving instances run until their next handover.
func sessionsSummary(got []activities.SessionAdoption) string {
	adopted, serving := 0, map[string]int{}
	for _, a := range got {
		if a.Adopted {
			adopted++
			serving[a.Serving]++
		}
	}
	out := fmt.Sprintf("%d of %d session(s) adopt it at their next handover", adopted, len(got))
	var parts []string
	for _, ref := range sortedKeys(serving) {
		parts = append(parts, fmt.Sprintf("%d on %s", serving[ref], ref))
	}
	if len(parts) > 0 {
		out += " (serving until then: " + strings.Join(parts, ", ") + ")"
	}
	return out
}
