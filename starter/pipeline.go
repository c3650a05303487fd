package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/git"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/workflows"
)

func newPipelineCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Build, test, package, image and deploy an app from git",
		Long: `A pipeline run clones a git ref, builds and tests it, packages the artifacts,
makes a multi-platform OCI image, pushes it to the center registry and deploys
it to every target cloud, verifying each and rolling a failed one back. Runs
are durable workflows named pipeline/<app>/<run>.`,
	}
	cmd.AddCommand(newPipelineRunCommand(g), newPipelineResumeCommand(g), newPipelineStatusCommand(g),
		newPipelineLogsCommand(g), newPipelineDecideCommand(g, true), newPipelineDecideCommand(g, false),
		newPipelineUndeployCommand(g), newPipelineRollbackCommand(g))
	cmd.AddCommand(newStopCommands(g, "APP RUN", cobra.ExactArgs(2), func(args []string) (string, error) {
		return names.PipelineID(args[0], args[1]), nil
	})...)
	return cmd
}

func newPipelineRunCommand(g *globals) *cobra.Command {
	var file, run, repo, ref, topologyFile string
	var detach bool
	cmd := &cobra.Command{
		Use:   "run -f SPEC",
		Short: "Start a run and follow it; exits non-zero when it fails",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f SPEC is required")
			}
			spec, err := pipelinespec.Load(file)
			if err != nil {
				return err
			}
			if repo != "" {
				spec.Repo = repo
			}
			if ref != "" {
				spec.Ref = ref
			}
			if spec.Repo, err = absRepo(spec.Repo); err != nil {
				return err
			}
			topo, err := loadTopology(topologyFile)
			if err != nil {
				return err
			}
			if run == "" {
				run = "r" + time.Now().UTC().Format("20060102-150405")
			}
			in := workflows.PipelineInput{Run: run, Spec: spec, Topology: topo, ScheduleToStart: g.scheduleToStart}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				var clouds []string
				for _, t := range spec.Deploy.Targets {
					clouds = append(clouds, t.Cloud)
				}
				warnUnpolled(ctx, g, c, clouds)
				wr, err := c.StartPipeline(ctx, in)
				if err != nil {
					return err
				}
				return follow(ctx, cmd, g, c, wr, spec.App, run, detach)
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "pipeline spec (YAML)")
	f.StringVar(&run, "run", "", "name of the run (default r<UTC time>)")
	f.StringVar(&repo, "repo", "", "git URL or path, instead of the spec's")
	f.StringVar(&ref, "ref", "", "branch, tag or commit, instead of the spec's")
	f.StringVarP(&topologyFile, "topology", "t", "", "topology the targets are clouds of (default: the embedded example)")
	f.BoolVar(&detach, "detach", false, "start the run and return")
	return cmd
}

func newPipelineUndeployCommand(g *globals) *cobra.Command {
	var file, topologyFile string
	var clouds []string
	cmd := &cobra.Command{
		Use:   "undeploy APP (-f SPEC | --target a --target b | --clouds a,b)",
		Short: "Remove an app's pipeline deployment from its targets (-f) or the clouds named",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			app := args[0]
			if !pipelinespec.ValidApp(app) {
				return fmt.Errorf("app %q must be a DNS-1035 label of at most 40 characters", app)
			}
			if (file == "") == (len(clouds) == 0) {
				return fmt.Errorf("give the clouds to remove %s from: -f SPEC (its targets) or --target CLOUD (repeatable, or a,b)", app)
			}
			if file != "" {
				spec, err := pipelinespec.Load(file)
				if err != nil {
					return err
				}
				if spec.App != app {
					return fmt.Errorf("%s is the pipeline of %s, not of %s", file, spec.App, app)
				}
				for _, t := range spec.Deploy.Targets {
					clouds = append(clouds, t.Cloud)
				}
			}
			topo, err := loadTopology(topologyFile)
			if err != nil {
				return err
			}
			in := workflows.UndeployInput{App: app, Clouds: clouds, Topology: topo, ScheduleToStart: g.scheduleToStart}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				warnUnpolled(ctx, g, c, clouds)
				wr, err := c.Undeploy(ctx, in)
				if err != nil {
					return err
				}
				res, err := client.Follow[workflows.UndeployResult](ctx, c, wr, 0, nil)
				if perr := g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
					if len(res.Removed) > 0 {
						fmt.Fprintf(w, "%s removed from %s\n", workflows.PipelineInstance(app), strings.Join(res.Removed, ", "))
					}
				}); perr != nil {
					return perr
				}
				if err != nil {
					return fmt.Errorf("%s: %w", wr.GetID(), err)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "pipeline spec whose targets to remove the deployment from")
	f.StringSliceVar(&clouds, "target", nil, "a target (cloud) to remove the deployment from; repeat it or give a,b")
	f.StringSliceVar(&clouds, "clouds", nil, "the same as --target")
	f.StringVarP(&topologyFile, "topology", "t", "", "topology the clouds are of (default: the embedded example)")
	return cmd
}

func newPipelineRollbackCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rollback APP [RUN]",
		Short: "Put every target of a finished run (default: the newest) back to what it ran before",
		Long: `rollback puts every target a finished run left on its release back to the
images it ran before that run, last wave first, and removes the release
where nothing ran before. It prints what each target ran before and runs now.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			app, run := args[0], ""
			if len(args) == 2 {
				run = args[1]
			}
			if !pipelinespec.ValidApp(app) {
				return fmt.Errorf("app %q must be a DNS-1035 label of at most 40 characters", app)
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				wr, err := c.Rollback(ctx, app, run, g.scheduleToStart)
				if err != nil {
					return err
				}
				res, err := client.Follow[workflows.RollbackResult](ctx, c, wr, 0, nil)
				if perr := g.print(cmd.OutOrStdout(), res, func(w io.Writer) { printRollback(w, res) }); perr != nil {
					return perr
				}
				if err != nil {
					return fmt.Errorf("%s: %w", wr.GetID(), err)
				}
				return nil
			})
		},
	}
}

// printRollback lists every target with what it ran before and runs now.
func printRollback(w io.Writer, res workflows.RollbackResult) {
	if res.ID == "" {
		return
	}
	fmt.Fprintf(w, "%s rolled back: %s\n", res.ID, res.Report)
	for _, t := range res.Targets {
		fmt.Fprintf(w, "  %-18s %-12s before %s  now %s\n", t.Cloud, t.Status, firstOf(t.Before, "-"), firstOf(t.After, "-"))
	}
}

func newPipelineResumeCommand(g *globals) *cobra.Command {
	var detach bool
	cmd := &cobra.Command{
		Use:   "resume APP RUN",
		Short: "Run a failed run again from its failed step",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				wr, err := c.ResumePipeline(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				return follow(ctx, cmd, g, c, wr, args[0], args[1], detach)
			})
		},
	}
	cmd.Flags().BoolVar(&detach, "detach", false, "start the run and return")
	return cmd
}

// follow prints a run's progress until it ends and fails when it fails.
func follow(ctx context.Context, cmd *cobra.Command, g *globals, c *client.Client, wr client.Run, app, run string, detach bool) error {
	out := cmd.OutOrStdout()
	if detach {
		return g.print(out, map[string]string{"id": wr.GetID(), "runId": wr.GetRunID()}, func(w io.Writer) {
			fmt.Fprintf(w, "started %s\n", wr.GetID())
		})
	}
	var live io.Writer
	if !g.json {
		live = out
		fmt.Fprintf(out, "%s:\n", wr.GetID())
	}
	pr, err := followPipeline(ctx, c, wr, live)
	if perr := g.print(out, pr, func(w io.Writer) { summary(w, pr) }); perr != nil {
		return perr
	}
	if err != nil {
		return fmt.Errorf("%s failed at %s (resume with: drift pipeline resume %s %s)", wr.GetID(), pr.Step, app, run)
	}
	return nil
}

// followPipeline follows a run until it ends, writing each change of a
// step or a target to out (nil: silent).
func followPipeline(ctx context.Context, c *client.Client, wr client.Run, out io.Writer) (workflows.PipelineProgress, error) {
	seen := map[string]string{}
	var each func(workflows.PipelineProgress)
	if out != nil {
		each = func(pr workflows.PipelineProgress) { printChanges(out, pr, seen) }
	}
	pr, err := client.Follow(ctx, c, wr, 300*time.Millisecond, each)
	if each != nil {
		each(pr)
	}
	return pr, err
}

// summary is the end of a followed run.
func summary(w io.Writer, pr workflows.PipelineProgress) {
	if pr.Status != workflows.RunSucceeded {
		fmt.Fprintf(w, "%s failed: %s\n", pr.ID, pr.Error)
		return
	}
	fmt.Fprintf(w, "%s succeeded: %s\n", pr.ID, pr.Image)
	for cloud, ep := range pr.Endpoints() {
		fmt.Fprintf(w, "  %-18s %s\n", cloud, ep.URL)
	}
}

func newPipelineStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status APP RUN",
		Short: "Show a run's steps, timings, targets and approval",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				pr, err := c.PipelineProgress(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), pr, func(w io.Writer) { printPipeline(w, pr) })
			})
		},
	}
}

func newPipelineLogsCommand(g *globals) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "logs APP RUN [STEP]",
		Short: "Print a run's step logs (clone, build, test)",
		Long: `logs prints the step logs the build worker keeps under its data dir
(<data-dir>/pipeline/logs/<app>/<run>/<step>.log). Where that dir is not
readable from here, it prints the log tails the run keeps in its progress.`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			steps := []string{string(workflows.StepClone), string(workflows.StepBuild), string(workflows.StepTest)}
			if len(args) == 3 {
				steps = args[2:]
			}
			ref := activities.RunRef{App: args[0], Run: args[1]}
			out := cmd.OutOrStdout()
			logs := map[string]string{}
			var missing []string
			for _, step := range steps {
				b, err := activities.ReadLog(dataDir, ref, step)
				if err != nil {
					missing = append(missing, step)
					continue
				}
				logs[step] = string(b)
			}
			if len(missing) > 0 {
				err := withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
					pr, err := c.PipelineProgress(ctx, args[0], args[1])
					if err != nil {
						return err
					}
					for _, step := range missing {
						if s, ok := pr.StepByName(workflows.StepName(step)); ok && len(s.Log.Tail) > 0 {
							logs[step] = "(last lines; the whole log is " + s.Log.File + " on the build worker)\n" + strings.Join(s.Log.Tail, "\n") + "\n"
						}
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			return g.print(out, logs, func(w io.Writer) {
				for _, step := range steps {
					if l, ok := logs[step]; ok {
						fmt.Fprintf(w, "==> %s <==\n%s", step, l)
					}
				}
			})
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the build worker's data dir")
	return cmd
}

func newPipelineDecideCommand(g *globals, approve bool) *cobra.Command {
	var d workflows.ApprovalDecision
	use, done, short := "reject", "rejected", "Refuse the deploy a run waits to do"
	if approve {
		use, done, short = "approve", "approved", "Let a run deploy to the targets that wait for approval"
	}
	cmd := &cobra.Command{
		Use:   use + " APP RUN --who NAME [--why TEXT]",
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				if err := c.Decide(ctx, args[0], args[1], approve, d); err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), map[string]any{"id": names.PipelineID(args[0], args[1]), "approved": approve, "who": d.Who}, func(w io.Writer) {
					fmt.Fprintf(w, "%s %s as %s\n", done, names.PipelineID(args[0], args[1]), d.Who)
				})
			})
		},
	}
	cmd.Flags().StringVar(&d.Who, "who", os.Getenv("USER"), "who decides")
	cmd.Flags().StringVar(&d.Why, "why", "", "why")
	return cmd
}

// absRepo makes a local repository path absolute, since the build worker
// does not share the CLI's working directory.
func absRepo(repo string) (string, error) {
	if !git.IsLocalPath(repo) {
		return repo, nil
	}
	return filepath.Abs(repo)
}
