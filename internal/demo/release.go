package demo

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/pipelinerun"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// Release puts the example app's source in a git repository of its own
// under dataDir (demo/hello.git) and runs the example pipeline on it
// (deploy/examples/pipeline.yaml): clone, build and test for every
// platform, package, image, push to the center registry, deploy to the
// spec's targets. It prints each step and returns the run's progress; its
// Image is what the walk deploys.
func Release(ctx context.Context, c client.Client, topo *topology.Topology, dataDir string, out io.Writer) (workflows.PipelineProgress, error) {
	files, err := HelloFiles()
	if err != nil {
		return workflows.PipelineProgress{}, err
	}
	bare, err := GitRepo(ctx, filepath.Join(dataDir, "demo"), "hello", files)
	if err != nil {
		return workflows.PipelineProgress{}, err
	}
	spec, err := pipelinespec.Parse(examples.Pipeline, nil)
	if err != nil {
		return workflows.PipelineProgress{}, err
	}
	spec.Repo = "file://" + bare
	run := "demo-" + time.Now().UTC().Format("20060102-150405")
	var targets []string
	for _, t := range spec.Deploy.Targets {
		targets = append(targets, t.Cloud)
	}
	fmt.Fprintf(out, "\npipeline %s: %s@%s → build + test → %s image (%s) → center registry → %s\n",
		workflows.PipelineID(spec.App, run), spec.Repo, spec.Ref, spec.App, strings.Join(spec.Image.Platforms, ", "), strings.Join(targets, ", "))
	wr, err := pipelinerun.Start(ctx, c, workflows.PipelineInput{Run: run, Spec: spec, Topology: topo})
	if err != nil {
		return workflows.PipelineProgress{}, err
	}
	pr, err := pipelinerun.Watch(ctx, c, wr, spec.App, run, out)
	if err != nil {
		return pr, err
	}
	how := "built"
	if pr.Reused {
		how = "reused (same source tree and build spec as an earlier run)"
	}
	fmt.Fprintf(out, "  image %s %s\n", pr.Image, how)
	eps := pr.Endpoints()
	for _, cloud := range slices.Sorted(maps.Keys(eps)) {
		fmt.Fprintf(out, "  released on %-16s %s\n", cloud, eps[cloud].URL)
	}
	fmt.Fprintf(out, "  logs: drift pipeline logs %s %s --data-dir %s\n", spec.App, run, dataDir)
	return pr, nil
}
