// Package portrun is the client side of PortToArch: what the CLI, tests and
// benchmarks call to start a port, follow it and read its report.
package portrun

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/workflows"
)

// Start starts porting in.Repo to in.Arch under the readable ID
// port/<name>/<arch>; a port of the same repo and arch still running is
// joined rather than started twice.
func Start(ctx context.Context, c client.Client, in workflows.PortInput) (client.WorkflowRun, error) {
	arch := in.Arch
	if arch == "" {
		arch = workflows.DefaultPortArch
	}
	return c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.PortID(in.Repo, arch),
		TaskQueue:                config.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            fmt.Sprintf("port %s to linux/%s", in.Repo, arch),
		StaticDetails:            fmt.Sprintf("repo **%s** ref %q · packages %v · tests of %v", in.Repo, in.Ref, in.Packages, in.TestModules),
	}, workflows.PortToArch, in)
}

// Wait follows a port until it ends, calling progress with each new step
// (nil: no progress). A port that ended needing a human, or with failing
// tests, returns its report together with the error.
func Wait(ctx context.Context, c client.Client, run client.WorkflowRun, progress func(workflows.PortReport)) (workflows.PortReport, error) {
	done := make(chan error, 1)
	var report workflows.PortReport
	go func() { done <- run.Get(ctx, &report) }()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		if progress != nil {
			if r, err := Report(ctx, c, run.GetID()); err == nil && r.Step != last {
				last = r.Step
				progress(r)
			}
		}
		select {
		case err := <-done:
			if err != nil {
				return failedReport(err), err
			}
			return report, nil
		case <-tick.C:
		}
	}
}

// Report asks a port for its report: the live one while it runs, its
// result (or the report its failure carries) once it has ended.
func Report(ctx context.Context, c client.Client, id string) (workflows.PortReport, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return workflows.PortReport{}, err
	}
	var r workflows.PortReport
	if desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		v, err := c.QueryWorkflow(ctx, id, "", workflows.ReportQuery)
		if err != nil {
			return r, err
		}
		return r, v.Get(&r)
	}
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &r); err != nil {
		return failedReport(err), err
	}
	return r, nil
}

// failedReport is the report a PortFailed error carries (empty otherwise).
func failedReport(err error) workflows.PortReport {
	var r workflows.PortReport
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.HasDetails() {
		_ = appErr.Details(&r)
	}
	return r
}
