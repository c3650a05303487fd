// Package pipelinerun is the client side of pipelines: what the CLI and the
// demo call to start, watch, resume, approve and inspect runs.
package pipelinerun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/workflows"
)

// Start starts a run. A run's ID names that run only: a new run may not
// take it, while a resume continues a failed run under it.
func Start(ctx context.Context, c client.Client, in workflows.PipelineInput) (client.WorkflowRun, error) {
	verb, reuse := "builds", enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
	if in.Resume != nil {
		verb, reuse = "resumes", enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY
	}
	var targets []string
	for _, t := range in.Spec.Deploy.Targets {
		targets = append(targets, t.Cloud)
	}
	return c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       workflows.PipelineID(in.Spec.App, in.Run),
		TaskQueue:                                config.TaskQueue,
		WorkflowIDReusePolicy:                    reuse,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("%s %s %s@%s and deploys it to %s", in.Run, verb, in.Spec.App, in.Spec.Ref, strings.Join(targets, ", ")),
		StaticDetails:                            fmt.Sprintf("repo `%s` ref `%s`\n\nimage `%s` for %s", in.Spec.Repo, in.Spec.Ref, in.Spec.Image.Name, strings.Join(in.Spec.Image.Platforms, ", ")),
	}, workflows.Pipeline, in)
}

// Progress queries a run (also a finished one).
func Progress(ctx context.Context, c client.Client, app, run string) (workflows.PipelineProgress, error) {
	var pr workflows.PipelineProgress
	v, err := c.QueryWorkflow(ctx, workflows.PipelineID(app, run), "", workflows.ProgressQuery)
	if err == nil {
		err = v.Get(&pr)
	}
	return pr, err
}

// Input reads the input a run was started with from its history.
func Input(ctx context.Context, c client.Client, app, run string) (workflows.PipelineInput, error) {
	it := c.GetWorkflowHistory(ctx, workflows.PipelineID(app, run), "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return workflows.PipelineInput{}, fmt.Errorf("no history for %s", workflows.PipelineID(app, run))
	}
	ev, err := it.Next()
	if err != nil {
		return workflows.PipelineInput{}, err
	}
	var in workflows.PipelineInput
	err = converter.GetDefaultDataConverter().FromPayloads(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &in)
	return in, err
}

// Resume starts a failed run again from its failed step, with the input it
// was started with.
func Resume(ctx context.Context, c client.Client, app, run string) (client.WorkflowRun, error) {
	id := workflows.PipelineID(app, run)
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return nil, err
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_FAILED {
		return nil, fmt.Errorf("%s is %s: only a failed run can be resumed", id, strings.ToLower(strings.TrimPrefix(st.String(), "WORKFLOW_EXECUTION_STATUS_")))
	}
	in, err := Input(ctx, c, app, run)
	if err != nil {
		return nil, err
	}
	pr, err := Progress(ctx, c, app, run)
	if err != nil {
		return nil, err
	}
	in.Resume = &pr
	return Start(ctx, c, in)
}

// Decide sends Approve (approve=true) or Reject to a waiting run.
func Decide(ctx context.Context, c client.Client, app, run string, approve bool, d workflows.ApprovalDecision) error {
	if d.Who == "" {
		return errors.New("say who decides (--who)")
	}
	pr, err := Progress(ctx, c, app, run)
	if err != nil {
		return err
	}
	if pr.Approval == nil || (pr.Approval.Status != workflows.StepWaiting && pr.Approval.Status != workflows.StepPending) {
		return fmt.Errorf("%s waits for no approval", pr.ID)
	}
	name := workflows.RejectSignal
	if approve {
		name = workflows.ApproveSignal
	}
	return c.SignalWorkflow(ctx, pr.ID, "", name, d)
}

// Watch follows a run until it ends, writing each change of a step or a
// target to out (nil: silent), and returns the final progress and the
// run's error.
func Watch(ctx context.Context, c client.Client, run client.WorkflowRun, app, name string, out io.Writer) (workflows.PipelineProgress, error) {
	done := make(chan error, 1)
	var final workflows.PipelineProgress
	go func() { done <- run.Get(ctx, &final) }()
	seen := map[string]string{}
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				var ae *temporal.ApplicationError
				if errors.As(err, &ae) && ae.HasDetails() {
					_ = ae.Details(&final)
				}
			}
			if out != nil {
				printChanges(out, final, seen)
			}
			return final, err
		case <-tick.C:
			if pr, err := Progress(ctx, c, app, name); err == nil && out != nil {
				printChanges(out, pr, seen)
			}
		}
	}
}

// printChanges writes the steps and targets whose status changed since seen.
func printChanges(w io.Writer, pr workflows.PipelineProgress, seen map[string]string) {
	for _, s := range pr.Steps {
		key := s.Status + s.Detail
		if seen["step/"+s.Name] == key || s.Status == workflows.StepPending || (s.Status == workflows.StepSkipped && s.Detail == "") {
			continue
		}
		seen["step/"+s.Name] = key
		fmt.Fprintf(w, "  %-9s %-10s %8s  %s\n", s.Name, s.Status, duration(s), oneLine(firstOf(s.Error, s.Detail)))
		if s.Name == workflows.StepApproval && s.Status == workflows.StepWaiting && pr.Approval != nil {
			fmt.Fprintf(w, "            %s waits until %s: drift pipeline approve|reject %s %s --who NAME\n",
				strings.Join(pr.Approval.Targets, ", "), pr.Approval.Deadline.Format(time.RFC3339), pr.App, pr.Run)
		}
	}
	for _, t := range pr.Targets {
		key := t.Status + t.Endpoint.URL
		if seen["target/"+t.Cloud] == key || t.Status == workflows.StepPending {
			continue
		}
		seen["target/"+t.Cloud] = key
		fmt.Fprintf(w, "  → %-18s %-12s %s\n", t.Cloud, t.Status, oneLine(firstOf(t.Error, t.Endpoint.URL)))
	}
}

// Print writes a run's summary.
func Print(w io.Writer, pr workflows.PipelineProgress) {
	fmt.Fprintf(w, "%s: %s", pr.ID, pr.Status)
	if pr.Status != workflows.RunSucceeded && pr.Step != "" {
		fmt.Fprintf(w, " at %s", pr.Step)
	}
	fmt.Fprintln(w)
	if pr.Commit != "" {
		fmt.Fprintf(w, "  commit   %s (tree %s)\n", pr.Commit, pr.Tree)
	}
	if pr.Image != "" {
		reused := ""
		if pr.Reused {
			reused = " (reused: same source and build spec as an earlier run)"
		}
		fmt.Fprintf(w, "  image    %s%s\n", pr.Image, reused)
	}
	for _, s := range pr.Steps {
		fmt.Fprintf(w, "  %-9s %-10s %8s  %s\n", s.Name, s.Status, duration(s), oneLine(firstOf(s.Error, s.Detail)))
	}
	for _, t := range pr.Targets {
		fmt.Fprintf(w, "  → %-18s %-12s %s\n", t.Cloud, t.Status, oneLine(firstOf(t.Error, t.Endpoint.URL)))
	}
	if pr.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", pr.Error)
	}
}

func duration(s workflows.StepProgress) string {
	if s.Started.IsZero() || s.Ended.IsZero() {
		return ""
	}
	return s.Ended.Sub(s.Started).Round(time.Millisecond).String()
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}
