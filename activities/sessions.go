package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/pipelinespec"
)

// AdoptRequest is a session's Adopt update argument: a release of its app.
type AdoptRequest struct {
	// Release names it for the record (a pipeline run, a version).
	Release string `json:"release"`
	// Images by service name (an app of one image: the app's name), every
	// service of the app.
	Images map[string]string `json:"images"`
	// ReplaceAfter: the serving instance is replaced with the release, on
	// its cloud and make before break, once the session has had no move
	// for this long (0: the session's default; <0: at the next move only).
	ReplaceAfter time.Duration `json:"replaceAfter,omitempty"`
}

// AdoptResult answers Adopt: the release's images as the session pinned
// them, and what the serving instance runs until the next handover.
type AdoptResult struct {
	Release string            `json:"release"`
	Images  map[string]string `json:"images"`
	Serving string            `json:"serving"` // the serving instance's images, as the session's Instance.Runs
}

// ReleaseToSessions asks sessions of App to adopt a release.
type ReleaseToSessions struct {
	App   string   `json:"app"`
	Users []string `json:"users"` // pipelinespec.AllSessions: every open session of the app
	AdoptRequest
}

// SessionAdoption is how one session took a release.
type SessionAdoption struct {
	Session string `json:"session"`
	Adopted bool   `json:"adopted"`
	// Serving is what its serving instance runs until its next handover.
	Serving string `json:"serving,omitempty"`
	Error   string `json:"error,omitempty"`
}

// adoptTimeout bounds one session's Adopt (it pins the images first).
const adoptTimeout = 2 * time.Minute

// Sessions acts on mobility sessions for other workflows.
type Sessions struct {
	Client client.Client
}

// AdoptRelease sends Adopt to each session asked for and says how each took
// it; a session that is not open or refuses is reported, not retried.
func (s *Sessions) AdoptRelease(ctx context.Context, req ReleaseToSessions) ([]SessionAdoption, error) {
	ids, err := s.sessionIDs(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make([]SessionAdoption, 0, len(ids))
	for _, id := range ids {
		a := SessionAdoption{Session: id}
		res, err := s.adopt(ctx, id, req.AdoptRequest)
		var notFound *serviceerror.NotFound
		switch {
		case errors.As(err, &notFound):
			a.Error = "no open session"
		case err != nil:
			a.Error = err.Error()
		default:
			a.Adopted, a.Serving = true, res.Serving
		}
		out = append(out, a)
	}
	return out, nil
}

func (s *Sessions) adopt(ctx context.Context, id string, r AdoptRequest) (AdoptResult, error) {
	ctx, cancel := context.WithTimeout(ctx, adoptTimeout)
	defer cancel()
	var res AdoptResult
	h, err := s.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: names.AdoptUpdate, Args: []any{r}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &res)
	}
	return res, err
}

// sessionIDs are the sessions req names: its users' sessions of the app,
// or every open one.
func (s *Sessions) sessionIDs(ctx context.Context, req ReleaseToSessions) ([]string, error) {
	var ids []string
	all := false
	for _, u := range req.Users {
		if u == pipelinespec.AllSessions {
			all = true
			continue
		}
		ids = append(ids, names.SessionID(u, req.App))
	}
	if !all {
		return ids, nil
	}
	query := fmt.Sprintf("%s = '%s' AND %s = '%s' AND ExecutionStatus = 'Running'",
		names.KindKey.GetName(), names.KindSession, names.AppKey.GetName(), req.App)
	var token []byte
	for {
		resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list the open sessions of %s: %w", req.App, err)
		}
		for _, e := range resp.GetExecutions() {
			if id := e.GetExecution().GetWorkflowId(); !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return ids, nil
		}
	}
}
