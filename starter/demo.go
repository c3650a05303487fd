package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// demoRegions walk the example topology: warm moves to neighbours, cold
// ones across the city.
var demoRegions = []string{"quartier-latin", "montparnasse", "bastille", "montmartre", "la-defense", "quartier-latin"}

// walkDemo releases the example app through the pipeline, then walks a
// session with the image the pipeline made.
func walkDemo(ctx context.Context, c *client.Client, topo *topology.Topology, dataDir string, out io.Writer) error {
	for _, r := range demoRegions {
		if _, err := topo.FirstCloud(r); err != nil {
			return fmt.Errorf("the demo walks the example topology: %w", err)
		}
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	pr, err := demoRelease(ctx, c, topo, abs, out)
	if err != nil {
		return err
	}
	_, err = demoWalk(ctx, c, topo, pr.Image, "alice", demoRegions, out)
	return err
}

// demoRelease puts the example app's source in a git repository of its own
// under dataDir (demo/hello.git) and runs the example pipeline on it
// (deploy/examples/pipeline.yaml): clone, build and test for every
// platform, package, image, push to the center registry, deploy to the
// spec's targets. It prints each step and returns the run's progress; its
// Image is what the walk deploys.
func demoRelease(ctx context.Context, c *client.Client, topo *topology.Topology, dataDir string, out io.Writer) (workflows.PipelineProgress, error) {
	files, err := demo.HelloFiles()
	if err != nil {
		return workflows.PipelineProgress{}, err
	}
	bare, err := demo.GitRepo(ctx, filepath.Join(dataDir, "demo"), "hello", files)
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
		names.PipelineID(spec.App, run), spec.Repo, spec.Ref, spec.App, strings.Join(spec.Image.Platforms, ", "), strings.Join(targets, ", "))
	wr, err := c.StartPipeline(ctx, workflows.PipelineInput{Run: run, Spec: spec, Topology: topo})
	if err != nil {
		return workflows.PipelineProgress{}, err
	}
	pr, err := followPipeline(ctx, c, wr, out)
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

// demoWalk opens a session for user in the first region, moves it through the
// others and exits, printing each step and the report.
func demoWalk(ctx context.Context, c *client.Client, topo *topology.Topology, ref, user string, regions []string, out io.Writer) (workflows.SessionState, error) {
	spec, err := appspec.FromImage("hello", ref, 8080)
	if err != nil {
		return workflows.SessionState{}, err
	}
	spec.Health = "/healthz"
	fmt.Fprintf(out, "\nmobility session %s over %q (pre-deploy to adjacent clouds):\n", names.SessionID(user, spec.Name), topo.Name())
	res, err := c.OpenSession(ctx, client.Open{
		User: user, App: spec, Region: regions[0], Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNeighbours,
	})
	if err != nil {
		return workflows.SessionState{}, err
	}
	fmt.Fprintf(out, "  %-15s served from %-18s %s\n", regions[0], res.Cloud, res.Endpoint.URL)
	for _, region := range regions[1:] {
		if err := settle(ctx, c, user, spec.Name); err != nil {
			return workflows.SessionState{}, err
		}
		res, err := c.Move(ctx, user, spec.Name, region)
		if err != nil {
			return workflows.SessionState{}, err
		}
		kind := "cold"
		if res.Warm {
			kind = "warm"
		}
		fmt.Fprintf(out, "  %-15s served from %-18s %s  (%s handover, switch %s)\n", region, res.Cloud, res.Endpoint.URL, kind, res.SwitchTime)
	}
	if err := settle(ctx, c, user, spec.Name); err != nil {
		return workflows.SessionState{}, err
	}
	st, err := c.Session(ctx, user, spec.Name)
	if err != nil {
		return workflows.SessionState{}, err
	}
	var warm []string
	for _, in := range st.Instances {
		if in.Role == workflows.RoleWarm && in.Status == workflows.StatusReady {
			warm = append(warm, in.Cloud)
		}
	}
	fmt.Fprintf(out, "  warm now on: %s\n", strings.Join(warm, ", "))
	rep, err := c.Exit(ctx, user, spec.Name)
	if err != nil {
		return workflows.SessionState{}, err
	}
	t := rep.Totals
	fmt.Fprintf(out, "  exit: %d handovers (%d warm, %d cold), %.1f instance-seconds spent on pre-deploys, every instance destroyed\n",
		t.Handovers, t.Warm, t.Cold, t.PreDeploySeconds)
	return rep, nil
}

// settle waits until no deploy or destroy of the session is in flight, so
// the walk shows what pre-deploys buy.
func settle(ctx context.Context, c *client.Client, user, app string) error {
	for {
		st, err := c.Session(ctx, user, app)
		if err != nil {
			return err
		}
		if len(st.InFlight) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// newDemoCommand runs a demo against a running stack (drift dev).
func newDemoCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "demo", Short: "Show a job on the example inputs against a running stack (drift dev)"}
	var dataDir string
	port := &cobra.Command{
		Use:   "port",
		Short: "Port the example module (bolt v1.3.1, x/sys 2018) to loong64, run it under qemu and print the report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				return portDemo(ctx, c, dataDir, cmd.OutOrStdout())
			})
		},
	}
	port.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "where the example module's git repository is made")
	cmd.AddCommand(port, newInstallDemoCommand(g))
	return cmd
}

// portDemo commits the porting example (deploy/examples/port) to a git
// repository under dataDir and ports it to loong64 with PortToArch:
// diagnose, upgrade x/sys, patch bolt, cross-build, run the program under
// qemu against the host build, run its tests under qemu, push the image.
// It prints each step and the report.
func portDemo(ctx context.Context, c *client.Client, dataDir string, out io.Writer) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	repo, err := demo.PortRepo(ctx, filepath.Join(abs, "demo", "port"))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nport file://%s (bolt v1.3.1, x/sys 2018-09: no build for linux/loong64 today) → linux/loong64\n", repo)
	r, err := c.StartPort(ctx, workflows.PortInput{Repo: "file://" + repo, Ref: "main"})
	if err != nil {
		return err
	}
	last := ""
	rep, err := client.Follow(ctx, c, r, 500*time.Millisecond, func(rep workflows.PortReport) {
		if rep.Step != last {
			last = rep.Step
			fmt.Fprintf(out, "  %s  %s\n", time.Now().Format("15:04:05"), rep.Step)
		}
	})
	if rep.ID == "" {
		return err
	}
	fmt.Fprintln(out)
	printPortReport(out, rep)
	return err
}
