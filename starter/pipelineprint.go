package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/edgedrift/drift/workflows"
)

// printChanges writes the steps and targets whose status changed since seen.
func printChanges(w io.Writer, pr workflows.PipelineProgress, seen map[string]string) {
	for _, s := range pr.Steps {
		key := string(s.Status) + s.Detail
		if seen["step/"+string(s.Name)] == key || s.Status == workflows.StepPending || (s.Status == workflows.StepSkipped && s.Detail == "") {
			continue
		}
		seen["step/"+string(s.Name)] = key
		fmt.Fprintf(w, "  %-9s %-10s %8s  %s\n", s.Name, s.Status, duration(s), oneLine(firstOf(s.Error, s.Detail)))
		if a := waitingGate(pr); s.Name == workflows.StepApproval && s.Status == workflows.StepWaiting && a != nil {
			fmt.Fprintf(w, "            %s waits until %s: drift pipeline approve|reject %s %s --who NAME\n",
				strings.Join(a.Targets, ", "), a.Deadline.Format(time.RFC3339), pr.App, pr.Run)
		}
	}
	for _, t := range pr.Targets {
		key := string(t.Status) + t.Endpoint.URL
		if seen["target/"+t.Cloud] == key || t.Status == workflows.TargetPending {
			continue
		}
		seen["target/"+t.Cloud] = key
		fmt.Fprintf(w, "  → %-18s %-12s %s\n", t.Cloud, t.Status, oneLine(firstOf(t.Error, t.Endpoint.URL)))
	}
}

// waitingGate is the approval gate a run waits at (nil: none).
func waitingGate(pr workflows.PipelineProgress) *workflows.Approval {
	if a := pr.Approval; a != nil && a.Status == workflows.ApprovalWaiting {
		return a
	}
	for _, wv := range pr.Waves {
		if a := wv.Approval; a != nil && a.Status == workflows.ApprovalWaiting {
			return a
		}
	}
	return nil
}

// printPipeline writes a run's summary.
func printPipeline(w io.Writer, pr workflows.PipelineProgress) {
	fmt.Fprintf(w, "%s: %s", pr.ID, pr.Status)
	if pr.Status != workflows.RunSucceeded && pr.Step != "" {
		fmt.Fprintf(w, " at %s", pr.Step)
	}
	fmt.Fprintln(w)
	if pr.Commit != "" {
		fmt.Fprintf(w, "  commit   %s (tree %s)\n", pr.Commit, pr.Tree)
	}
	reused := ""
	if pr.Reused {
		reused = " (reused: same source and build spec as an earlier run)"
	}
	if pr.Image != "" {
		fmt.Fprintf(w, "  image    %s%s\n", pr.Image, reused)
	}
	printRelease(w, pr.Release)
	for _, b := range pr.Images {
		if b.Image != "" {
			fmt.Fprintf(w, "  image    %s: %s%s\n", b.Service, b.Image, reused)
		}
		printRelease(w, b.Release)
	}
	for _, s := range pr.Steps {
		fmt.Fprintf(w, "  %-9s %-10s %8s  %s\n", s.Name, s.Status, duration(s), oneLine(firstOf(s.Error, s.Detail)))
	}
	for _, wv := range pr.Waves {
		fmt.Fprintf(w, "  wave %-12s %-12s %s %s\n", wv.Name, wv.Status, strings.Join(wv.Targets, ","), oneLine(wv.Error))
		for _, a := range wv.Analysis {
			fmt.Fprintf(w, "    analysis %-18s passed=%v %s\n", a.Cloud, a.Passed, oneLine(a.Verdict))
		}
	}
	for _, t := range pr.Targets {
		fmt.Fprintf(w, "  → %-18s %-12s %s\n", t.Cloud, t.Status, oneLine(firstOf(t.Error, t.Endpoint.URL)))
		if t.Before != "" || t.After != "" {
			fmt.Fprintf(w, "      before %s  after %s\n", firstOf(t.Before, "-"), firstOf(t.After, "-"))
		}
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
