package workflows

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/pipelinespec"
)

// adoptions stands in for the sessions: it records what each AdoptRelease
// asked and answers that alice's session adopts and bob has none open.
type adoptions struct {
	asked []activities.ReleaseToSessions
}

func (a *adoptions) install(pt *pipelineTest) {
	pt.env.RegisterActivity(&activities.Sessions{})
	pt.env.OnActivity(sessionActs.AdoptRelease, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.ReleaseToSessions) ([]activities.SessionAdoption, error) {
			a.asked = append(a.asked, req)
			return []activities.SessionAdoption{
				{Session: "session/alice/hello", Adopted: true, Serving: oldImage},
				{Session: "session/bob/hello", Error: "no open session"},
			}, nil
		})
}

// A release whose spec names sessions tells them once every target runs it,
// with the run's pinned image, and says how they took it; a rollout that
// fails tells them nothing.
func TestPipelineTellsItsSessionsOnlyAfterASuccessfulRollout(t *testing.T) {
	pt := newPipelineTest(t)
	a := &adoptions{}
	a.install(pt)
	pt.env.OnActivity(cloudActs.Analyze, mock.Anything, mock.Anything).Return(pt.clouds.Analyze).After(time.Minute)
	var rejected error
	pt.decide(2*time.Minute, "Approve", ApprovalDecision{Who: "dave"}, &rejected)
	spec := wavesSpec(t)
	spec.Deploy.Sessions = []string{"alice", "bob"}
	pr, err := pt.run(spec, nil)
	if err != nil || rejected != nil {
		t.Fatal(err, rejected)
	}
	if len(a.asked) != 1 {
		t.Fatalf("AdoptRelease asked %d times", len(a.asked))
	}
	req := a.asked[0]
	if req.App != "hello" || req.Release != pr.ID || req.Images["hello"] != pr.Image || pr.Image == "" || len(req.Users) != 2 {
		t.Errorf("asked %+v; the run pushed %s", req, pr.Image)
	}
	if len(pr.Sessions) != 2 || !pr.Sessions[0].Adopted || pr.Sessions[1].Adopted {
		t.Errorf("progress sessions %+v", pr.Sessions)
	}
	deploy := pr.Steps[slices.IndexFunc(pr.Steps, func(s StepProgress) bool { return s.Name == StepDeploy })].Detail
	if !strings.Contains(deploy, "1 of 2 session(s) adopt it at their next handover (serving until then: 1 on "+oldImage+")") {
		t.Errorf("deploy step says %q", deploy)
	}

	failed := newPipelineTest(t)
	b := &adoptions{}
	b.install(failed)
	failed.env.OnActivity(cloudActs.Analyze, mock.Anything, mock.Anything).Return(
		activities.AnalysisResult{Requests: 60, Failures: 30, P95: time.Millisecond, LastFail: "answered 500"}, nil).After(time.Minute)
	if _, err := failed.run(spec, nil); errorType(err) != ErrTypeRolledBack {
		t.Fatalf("error %v, want RolledBack", err)
	}
	if len(b.asked) != 0 {
		t.Errorf("a rolled-back release was offered to sessions: %+v", b.asked)
	}
}

func TestPipelineSpecChecksItsSessions(t *testing.T) {
	spec := wavesSpec(t)
	spec.Deploy.Sessions = []string{"alice", "*", ".."}
	if err := spec.Validate(); err == nil || !strings.Contains(err.Error(), "deploy.sessions") {
		t.Errorf("Validate = %v, want the bad user named", err)
	}
	spec.Deploy.Sessions = []string{"alice", pipelinespec.AllSessions}
	if err := spec.Validate(); err != nil {
		t.Error(err)
	}
}
