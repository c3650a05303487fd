package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/upgrade"
	"github.com/edgedrift/drift/workflows"
)

// upgradeFlags name the component an upgrade subcommand acts on.
type upgradeFlags struct{ cloud, component string }

func (u *upgradeFlags) need() error {
	if u.cloud == "" || u.component == "" {
		return errors.New("--cloud and --component are required")
	}
	return nil
}

func newUpgradeCommand(g *globals) *cobra.Command {
	var uf upgradeFlags
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade a platform component in an isolated env, verified, with redo or roll back",
		Long: `An upgrade moves one component on one cloud to a newer release: each attempt
starts a new env (the component and its related service, with the third-party
driver loaded) beside the running one, verifies it, and switches to it or drops
it. The running env keeps serving until a new one passed, and after the last
failed attempt.`,
	}
	cmd.PersistentFlags().StringVar(&uf.cloud, "cloud", "", "the cloud hosting the component")
	cmd.PersistentFlags().StringVar(&uf.component, "component", "", "the component, e.g. cinder")
	cmd.AddCommand(newUpgradeRunCommand(g, &uf), newUpgradeStatusCommand(g, &uf))
	cmd.AddCommand(newStopCommands(g, "--cloud C --component NAME", cobra.NoArgs, func([]string) (string, error) {
		return names.UpgradeID(uf.cloud, uf.component), uf.need()
	})...)
	return cmd
}

func newUpgradeRunCommand(g *globals, uf *upgradeFlags) *cobra.Command {
	var in workflows.UpgradeInput
	var indexFile string
	var detach bool
	cmd := &cobra.Command{
		Use:   "run --cloud C --component NAME --repository REPO --version V --related NAME [flags]",
		Short: "Start an upgrade and wait for its report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if uf.need() != nil || in.Component.Repository == "" || in.Component.Version == "" || in.Related.Name == "" {
				return errors.New("--cloud, --component, --repository, --version and --related are required")
			}
			in.Cloud, in.Component.Name = uf.cloud, uf.component
			index := examples.Releases
			if indexFile != "" {
				b, err := os.ReadFile(indexFile)
				if err != nil {
					return err
				}
				index = b
			}
			if _, err := upgrade.ParseIndex(index); err != nil {
				return fmt.Errorf("--index: %w", err)
			}
			in.Index = string(index)
			in.ScheduleToStart = g.scheduleToStart
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				warnUnpolled(ctx, g, c, []string{in.Cloud})
				wr, err := c.StartUpgrade(ctx, in)
				if err != nil {
					return err
				}
				if detach {
					fmt.Fprintf(cmd.ErrOrStderr(), "started %s; follow it with: drift upgrade status --cloud %s --component %s\n", wr.GetID(), uf.cloud, uf.component)
					return nil
				}
				res, runErr := client.Follow[workflows.UpgradeProgress](ctx, c, wr, 0, nil)
				if res.ID != "" { // also a failed upgrade's report of every attempt
					if err := g.print(cmd.OutOrStdout(), res, func(w io.Writer) { printUpgrade(w, res) }); err != nil {
						return err
					}
				}
				return runErr
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Component.Repository, "repository", "", "image repository of the component; its tags are release strings")
	f.StringVar(&in.Component.Version, "version", "", "the version running now")
	f.IntVar(&in.Component.Port, "port", 8080, "port the component's services listen on")
	f.StringVar(&in.Component.Health, "health", "/healthz", "health path of the component")
	f.StringToStringVar(&in.Component.Env, "component-env", nil, "environment of the component's service, KEY=VALUE,…")
	f.StringVar(&in.Component.ErrorFormat, "error-format", upgrade.DefaultErrorFormat, "how the component words a driver mismatch at start-up")
	f.StringVar(&in.Related.Name, "related", "", "related service started and verified in each env, e.g. cinder-volume")
	f.StringToStringVar(&in.Related.Env, "related-env", nil, "environment of the related service, KEY=VALUE,…")
	f.StringVar(&in.Related.Health, "related-health", "/healthz", "health path of the related service")
	f.StringVar(&in.Related.Verify, "verify-path", "/verify", "POST path of the related service that makes a real call through the driver")
	f.StringVar(&in.Driver.Name, "driver", "", "third-party driver name")
	f.StringVar(&in.Driver.Version, "driver-version", "", "the driver's upgraded version")
	f.StringVar(&in.Driver.Image, "driver-image", "", "image holding the driver's upgraded build")
	f.StringVar(&in.Policy, "policy", workflows.PolicyPlatform, "version policy: platform (latest release series) or driver (what the driver needs)")
	f.StringVar(&in.Target, "target", "", "pin the target version (platform policy)")
	f.StringVar(&indexFile, "index", "", "release index YAML (default: the shipped one, cinder caracal…gazpacho)")
	f.BoolVar(&in.Prerelease, "prerelease", false, "allow release candidates as targets")
	f.IntVar(&in.Attempts, "attempts", 3, "most updates tried")
	f.DurationVar(&in.Backoff, "backoff", 5*time.Second, "wait before the first redo, doubled each time")
	f.BoolVar(&in.NextCandidate, "next-candidate", false, "redo with the next candidate version")
	f.StringVar(&in.Verify, "verify", activities.VerifyHTTP, "verification: http (health + driver call) or rollout (instances ready, for clusters the worker cannot reach)")
	f.BoolVar(&detach, "detach", false, "start and return without waiting")
	return cmd
}

func newUpgradeStatusCommand(g *globals, uf *upgradeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status --cloud C --component NAME",
		Short: "Show an upgrade's progress or report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := uf.need(); err != nil {
				return err
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				p, err := c.UpgradeProgress(ctx, uf.cloud, uf.component)
				if p.ID == "" && err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), p, func(w io.Writer) { printUpgrade(w, p) })
			})
		},
	}
}

func printUpgrade(w io.Writer, p workflows.UpgradeProgress) {
	fmt.Fprintf(w, "%s: %s (%s policy), %s serving %s in env %s\n", p.ID, p.Phase, p.Policy, p.Component, dash(p.Serving.Version), dash(p.Serving.Name))
	if p.DriverError != nil {
		fmt.Fprintf(w, "driver %s %s needs %s %s\n", p.DriverError.Driver, p.DriverError.DriverVersion, p.Component, p.DriverError.Constraint)
	}
	fmt.Fprintf(w, "candidates: %s\n", dash(strings.Join(p.Candidates, ", ")))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ATTEMPT\tVERSION\tENV\tSTATUS\tCHECKS\tERROR")
	for _, a := range p.Attempts {
		checks := "–"
		if v := a.Verification; v != nil {
			var parts []string
			for _, c := range v.Checks {
				parts = append(parts, fmt.Sprintf("%s=%v", c.Name, c.OK))
			}
			checks = strings.Join(parts, " ")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", a.N, a.Version, a.Env.Name, a.Status, checks, a.Error)
	}
	tw.Flush()
	if p.Retired != "" {
		fmt.Fprintf(w, "retired env %s\n", p.Retired)
	}
	if p.Error != "" {
		fmt.Fprintf(w, "error: %s\n", p.Error)
	}
}
