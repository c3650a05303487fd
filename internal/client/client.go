// Package client is the one place that starts, drives and follows drift's
// jobs on Temporal: mobility sessions, pipeline runs, component upgrades,
// ports and installs, one file per job. The CLI, the HTTP API, the demo and
// the tests call it; what is printed is theirs.
package client

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/api/enums/v1"
	temporalclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/workflows"
)

// Client drives drift's jobs through a Temporal client.
type Client struct {
	Temporal temporalclient.Client
}

// New wraps a connected Temporal client.
func New(c temporalclient.Client) *Client { return &Client{Temporal: c} }

// Run is a started job.
type Run = temporalclient.WorkflowRun

// Follow waits for run to end, calling each with the job's progress (the
// Progress query) every interval while it runs (nil each: no polling), and
// returns its result. A job that failed returns the progress its failure
// carries (the ApplicationError's details) together with the error.
func Follow[P any](ctx context.Context, c *Client, run Run, every time.Duration, each func(P)) (P, error) {
	done := make(chan error, 1)
	var final P
	go func() { done <- run.Get(ctx, &final) }()
	var tick <-chan time.Time
	if each != nil {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-done:
			if err != nil {
				details(err, &final)
			}
			return final, err
		case <-tick:
			if p, err := query[P](ctx, c, run.GetID()); err == nil {
				each(p)
			}
		}
	}
}

// Read returns a job's progress: the live Progress query while it runs,
// its result once it has ended. A job that failed returns the progress its
// failure carries (zero when none) together with the error.
func Read[P any](ctx context.Context, c *Client, id string) (P, error) {
	var p P
	desc, err := c.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return p, err
	}
	if desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return query[P](ctx, c, id)
	}
	if err := c.Temporal.GetWorkflow(ctx, id, "").Get(ctx, &p); err != nil {
		details(err, &p)
		return p, err
	}
	return p, nil
}

// query asks a running (or recently ended) job for its progress. A
// pipeline run's is completed with its waves' children's (a run's own
// progress learns a wave's targets only when the wave ends), so every
// reader of a run — Follow, Read, the CLI — sees them live.
func query[P any](ctx context.Context, c *Client, id string) (P, error) {
	var p P
	v, err := c.Temporal.QueryWorkflow(ctx, id, "", names.ProgressQuery)
	if err != nil {
		return p, err
	}
	if err := v.Get(&p); err != nil {
		return p, err
	}
	if pr, ok := any(&p).(*workflows.PipelineProgress); ok {
		c.liveWaves(ctx, pr)
	}
	return p, nil
}

// details decodes what a failed job's ApplicationError carries into p.
func details(err error, p any) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.HasDetails() && appErr.Details(p) == nil
}
