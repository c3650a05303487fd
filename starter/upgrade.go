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
		Short: "Upgrade a platform component hop by hop, keeping its data and its endpoint, with a window to roll back",
		Long: `An upgrade moves one component on one cloud to a newer release, series by
series (or SLURP to SLURP). Each hop is prechecked (path, capacity, the target
release's upgrade check on the live data, the driver) before its side effects;
each attempt migrates the shared data (db sync, online data migrations), starts
a new env (the component and its related service, with the third-party driver
loaded) beside the serving one and verifies it, with a sample of the data read
before the upgrade. Then the component's stable endpoint switches to it (after
"drift upgrade promote" when --gate holds it). The env upgraded from stays,
stopped, for --window: "drift upgrade rollback" switches back; after it the
contract migration runs and that env is retired.`,
	}
	cmd.PersistentFlags().StringVar(&uf.cloud, "cloud", "", "the cloud hosting the component")
	cmd.PersistentFlags().StringVar(&uf.component, "component", "", "the component, e.g. cinder")
	cmd.AddCommand(newUpgradeRunCommand(g, &uf), newUpgradeStatusCommand(g, &uf),
		newUpgradeDecisionCommand(g, &uf, "promote", "Let the switch held at the promotion gate go"),
		newUpgradeDecisionCommand(g, &uf, "rollback", "Switch back to the env upgraded from, within the rollback window, and wait until it serves"))
	cmd.AddCommand(newStopCommands(g, "--cloud C --component NAME", cobra.NoArgs, func([]string) (string, error) {
		return names.UpgradeID(uf.cloud, uf.component), uf.need()
	})...)
	return cmd
}

func newUpgradeRunCommand(g *globals, uf *upgradeFlags) *cobra.Command {
	var in workflows.UpgradeInput
	var indexFile string
	var detach, showPath bool
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
			ix, err := upgrade.ParseIndex(index)
			if err != nil {
				return fmt.Errorf("--index: %w", err)
			}
			in.Index = string(index)
			in.ScheduleToStart = g.scheduleToStart
			if showPath {
				return printPath(cmd.OutOrStdout(), ix, in)
			}
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
	f.StringVar(&in.Component.Data.Volume, "data-volume", "", "the component's data volume, shared by its envs (e.g. cinder-data); none: a component without data")
	f.StringVar(&in.Component.Data.Path, "data-path", "", "where envs mount the data volume")
	f.StringSliceVar(&in.Component.Data.Manage, "manage", nil, "the component's tool in its image: + upgrade check | db sync | db online_data_migrations | db contract")
	f.StringVar(&in.Component.Data.List, "data-list", "", "GET path listing the component's volumes (JSON array with \"id\"; PATH/{id}/data reads one), verified through every new env")
	f.IntVar(&in.Component.Data.Sample, "sample", 20, "volumes read before the upgrade and through every new env")
	f.DurationVar(&in.Drain, "drain", 10*time.Second, "how long an env serves requests under way after the endpoint left it")
	f.DurationVar(&in.Window, "window", 30*time.Minute, "how long the env upgraded from is kept, stopped, for drift upgrade rollback (0: retire it at once)")
	f.BoolVar(&in.Gate, "gate", false, "hold every switch until drift upgrade promote")
	f.DurationVar(&in.GateTimeout, "gate-timeout", time.Hour, "how long a switch waits at the gate before the hop fails")
	f.BoolVar(&showPath, "path", false, "print the hops the upgrade would take and exit (platform policy or --target)")
	f.BoolVar(&detach, "detach", false, "start and return without waiting")
	return cmd
}

// printPath prints the hops from the current version to the target the
// platform policy (or --target) picks, as the workflow will take them.
func printPath(w io.Writer, ix *upgrade.Index, in workflows.UpgradeInput) error {
	if in.Policy != workflows.PolicyPlatform {
		return errors.New("--path: the driver policy's target comes from probing the driver; use --policy platform or --target")
	}
	current, err := upgrade.ParseRelease(in.Component.Version)
	if err != nil {
		return err
	}
	var cands []upgrade.Release
	if in.Target != "" {
		rels, _, err := ix.Published(in.Component.Name)
		if err != nil {
			return err
		}
		t, err := upgrade.Pinned(rels, current, in.Target)
		if err != nil {
			return err
		}
		cands = []upgrade.Release{t}
	} else if _, cands, err = upgrade.PlatformCandidates(ix, in.Component.Name, current, in.Prerelease); err != nil {
		return err
	}
	hops, err := ix.Path(in.Component.Name, current, cands)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s %s → %s in %d hop(s):\n", in.Component.Name, current.Tag, hops[len(hops)-1].To.Tag, len(hops))
	for i, h := range hops {
		fmt.Fprintf(w, "  %d. %s\n", i+1, h)
	}
	return nil
}

// newUpgradeDecisionCommand is promote or rollback: an Update with who and why.
func newUpgradeDecisionCommand(g *globals, uf *upgradeFlags, use, short string) *cobra.Command {
	var d workflows.Decision
	cmd := &cobra.Command{
		Use:   use + " --cloud C --component NAME --who NAME [--why TEXT]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := uf.need(); err != nil {
				return err
			}
			if strings.TrimSpace(d.Who) == "" {
				return errors.New("--who is required")
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				decide := c.PromoteUpgrade
				if use == "rollback" {
					decide = c.RollbackUpgrade
				}
				p, err := decide(ctx, uf.cloud, uf.component, d)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), p, func(w io.Writer) { printUpgrade(w, p) })
			})
		},
	}
	cmd.Flags().StringVar(&d.Who, "who", "", "who decides")
	cmd.Flags().StringVar(&d.Why, "why", "", "why")
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
	if p.Endpoint != nil {
		fmt.Fprintf(w, "endpoint: %s → %s\n", p.Endpoint.Endpoint.URL, p.Endpoint.Instance)
	}
	if s := p.Sample; s != nil {
		fmt.Fprintf(w, "data: %d volumes before the upgrade, %d sampled\n", s.Count, len(s.Volumes))
	}
	for _, h := range p.Hops {
		how := ""
		if h.Skip {
			how = ", SLURP"
		}
		fmt.Fprintf(w, "hop %d: %s (%s) → %s (%s%s): %s\n", h.N, h.From, h.FromSeries, h.To, h.ToSeries, how, h.Status)
		for _, c := range h.Checks {
			lines := strings.Split(strings.TrimSpace(c.Detail), "\n")
			fmt.Fprintf(w, "  check %-14s %-7s %s\n", c.Name, checkWord(c), lines[0])
			for _, l := range lines[1:] {
				fmt.Fprintf(w, "  %29s%s\n", "", l)
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ATTEMPT\tVERSION\tENV\tSTATUS\tCHECKS\tERROR")
	for _, a := range p.Attempts {
		var parts []string
		for _, c := range a.Migration {
			parts = append(parts, fmt.Sprintf("%s=%v", c.Name, c.OK))
		}
		if v := a.Verification; v != nil {
			for _, c := range v.Checks {
				parts = append(parts, fmt.Sprintf("%s=%v", c.Name, c.OK))
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", a.N, a.Version, a.Env.Name, a.Status, dash(strings.Join(parts, " ")), a.Error)
	}
	tw.Flush()
	if p.Kept != nil {
		fmt.Fprintf(w, "kept (stopped) for a rollback: env %s (%s) until %s: drift upgrade rollback --cloud %s --component %s --who …\n",
			p.Kept.Name, p.Kept.Version, p.WindowEnds.Local().Format(time.TimeOnly), p.Cloud, p.Component)
	}
	for _, d := range p.Promotions {
		fmt.Fprintf(w, "promoted by %s: %s\n", d.Who, d.Why)
	}
	if d := p.Rollback; d != nil {
		fmt.Fprintf(w, "rolled back by %s: %s\n", d.Who, d.Why)
	}
	if c := p.Contract; c != nil {
		fmt.Fprintf(w, "db contract: %s %s\n", checkWord(*c), c.Detail)
	}
	if p.Retired != "" {
		fmt.Fprintf(w, "retired env %s\n", p.Retired)
	}
	if p.Error != "" {
		fmt.Fprintf(w, "error: %s\n", p.Error)
	}
}

func checkWord(c activities.Check) string {
	switch {
	case !c.OK:
		return "FAILED"
	case c.Warning:
		return "warning"
	}
	return "ok"
}
