package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// sessionFlags name the session a subcommand acts on.
type sessionFlags struct{ user, app string }

func newSessionCommand(g *globals) *cobra.Command {
	var sf sessionFlags
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Open, move, exit and inspect mobility sessions",
		Long: `A mobility session keeps a user's app served from the cloud of the region they
are in, with the app pre-deployed on that cloud's neighbours, and follows them
when they move.`,
	}
	cmd.PersistentFlags().StringVar(&sf.user, "user", "", "the session's user")
	cmd.PersistentFlags().StringVar(&sf.app, "app", "", "the app's name (with --compose: the service; default its only one)")
	cmd.AddCommand(newSessionStartCommand(g, &sf), newSessionMoveCommand(g, &sf), newSessionExitCommand(g, &sf),
		newSessionStateCommand(g, &sf), newSessionListCommand(g), newSessionAdoptCommand(g, &sf))
	cmd.AddCommand(newStopCommands(g, "--user U --app A", cobra.NoArgs, func([]string) (string, error) {
		return names.SessionID(sf.user, sf.app), need(sf.user, sf.app)
	})...)
	return cmd
}

func newSessionStartCommand(g *globals, sf *sessionFlags) *cobra.Command {
	var o struct {
		region, image, compose, policy, preDeploy, topologyFile, health string
		port                                                            int
		continuity                                                      workflows.Continuity
	}
	cmd := &cobra.Command{
		Use:   "start --user U (--image REF --port P | --compose FILE) --region R",
		Short: "Open a session and serve the user in a region (an open one with the same settings is found; other settings conflict)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sf.user == "" || o.region == "" {
				return fmt.Errorf("--user and --region are required")
			}
			if err := names.CheckUser(sf.user); err != nil {
				return fmt.Errorf("--user: %w", err)
			}
			spec, err := appSpec(sf.app, o.image, o.compose, o.port, o.health)
			if err != nil {
				return err
			}
			topo, err := loadTopology(o.topologyFile)
			if err != nil {
				return err
			}
			if _, err := topo.FirstCloud(o.region); err != nil {
				return err
			}
			policy, err := topology.ParsePolicy(o.policy)
			if err != nil {
				return err
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				warnUnpolled(ctx, g, c, cloudIDs(topo))
				res, err := c.OpenSession(ctx, client.Open{User: sf.user, App: spec, Region: o.region, Topology: topo, Neighbours: policy,
					PreDeploy: o.preDeploy, ScheduleToStart: g.scheduleToStart, Continuity: o.continuity})
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
					how := "was already open and serves"
					if res.Created {
						how = "serves"
					}
					fmt.Fprintf(w, "session %s %s %s in %s from %s at %s\n", names.SessionID(sf.user, spec.Name), how, sf.user, res.Region, res.Cloud, res.Endpoint.URL)
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.region, "region", "", "the region the user is in")
	f.StringVar(&o.image, "image", "", "image reference of the app (with --port)")
	f.IntVar(&o.port, "port", 8080, "HTTP port the app listens on (with --image)")
	f.StringVar(&o.health, "health", "", "HTTP path answered when ready (default: from the compose healthcheck, else /)")
	f.StringVar(&o.compose, "compose", "", "compose file describing the app")
	f.StringVar(&o.policy, "policy", "adjacency", "neighbour policy: adjacency, distance<=D, nearest:N")
	f.StringVar(&o.preDeploy, "pre-deploy", workflows.PreDeployNeighbours, "what to pre-deploy: neighbours, predicted (the app's mobility model) or none")
	f.StringVarP(&o.topologyFile, "topology", "t", "", "topology file (default: the embedded example)")
	f.DurationVar(&o.continuity.Drain, "drain", 0, "how long the old serving instance stays up after a switch (0: 3s; negative: none)")
	f.StringVar(&o.continuity.StatePolicy, "state-policy", "", "when the app's state cannot be carried: "+workflows.StateFailMove+" (default: the move fails, the old instance keeps serving) or "+workflows.StateSwitchWithout)
	f.BoolVar(&o.continuity.NoFailover, "no-failover", false, "do not watch the serving instance and fail over when it dies")
	return cmd
}

func newSessionMoveCommand(g *globals, sf *sessionFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "move REGION --user U --app A",
		Short: "Move the user to a region; prints the endpoint once it serves there",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := need(sf.user, sf.app); err != nil {
				return err
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				res, err := c.Move(ctx, sf.user, sf.app, args[0])
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), res, func(w io.Writer) { printMove(w, res) })
			})
		},
	}
}

func newSessionAdoptCommand(g *globals, sf *sessionFlags) *cobra.Command {
	var release string
	var images []string
	var replaceAfter time.Duration
	cmd := &cobra.Command{
		Use:   "adopt --user U --app A --release NAME --image [SERVICE=]REF... [--replace-after D]",
		Short: "Give the session a release: pre-deploys take it now, the user at the next handover",
		Long: `The session's warm instances are redeployed with the release's images at once;
the serving instance keeps running until the user's next move switches to an
instance already on the release, so the user sees no restart. A user who does
not move for --replace-after (default 1m; negative: never) gets it too: the
release is deployed beside the serving instance on its cloud, given its state,
and switched to; the old instance drains, then goes. Name every service's
image (SERVICE=REF; an app of one image: REF).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(sf.user, sf.app); err != nil {
				return err
			}
			byService := map[string]string{}
			for _, im := range images {
				svc, ref, ok := strings.Cut(im, "=")
				if !ok {
					svc, ref = sf.app, im
				}
				byService[svc] = ref
			}
			if release == "" || len(byService) == 0 {
				return errors.New("--release and at least one --image are required")
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				res, err := c.Adopt(ctx, sf.user, sf.app, workflows.AdoptRequest{Release: release, Images: byService, ReplaceAfter: replaceAfter})
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
					until := "the next handover"
					if replaceAfter >= 0 {
						until += fmt.Sprintf(", or its replacement after %s without a move", cmp.Or(replaceAfter, workflows.DefaultReplaceAfter))
					}
					fmt.Fprintf(w, "release %s adopted: pre-deploys take it now; the serving instance runs %s until %s\n", res.Release, res.Serving, until)
				})
			})
		},
	}
	cmd.Flags().StringVar(&release, "release", "", "the release's name (a version, a pipeline run)")
	cmd.Flags().StringArrayVar(&images, "image", nil, "an image of the release: SERVICE=REF, or REF for an app of one image")
	cmd.Flags().DurationVar(&replaceAfter, "replace-after", 0, "replace the serving instance once the session has had no move for this long (0: 1m; negative: only at the next move)")
	return cmd
}

func newSessionExitCommand(g *globals, sf *sessionFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "exit --user U --app A",
		Short: "End the session: destroy every instance and print the report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(sf.user, sf.app); err != nil {
				return err
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				rep, err := c.Exit(ctx, sf.user, sf.app)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), rep, func(w io.Writer) { printReport(w, rep) })
			})
		},
	}
}

func newSessionStateCommand(g *globals, sf *sessionFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "state --user U --app A",
		Short: "Show where a session serves, what is warm and what is in flight",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(sf.user, sf.app); err != nil {
				return err
			}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				st, err := c.Session(ctx, sf.user, sf.app)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), st, func(w io.Writer) { printState(w, st) })
			})
		},
	}
}

func newSessionListCommand(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List sessions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				ss, err := c.Sessions(ctx, all)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), ss, func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "SESSION\tUSER\tAPP\tCLOUD\tSTATUS")
					for _, s := range ss {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.User, s.App, dash(s.Cloud), s.Status)
					}
					tw.Flush()
				})
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include ended sessions")
	return cmd
}

// appSpec builds the app description from an image or a compose file.
func appSpec(app, image, compose string, port int, health string) (appspec.AppSpec, error) {
	var spec appspec.AppSpec
	var err error
	switch {
	case image != "" && compose != "":
		return spec, fmt.Errorf("give --image or --compose, not both")
	case image != "":
		if app == "" {
			return spec, fmt.Errorf("--app names the app run from --image")
		}
		spec, err = appspec.FromImage(app, image, port)
	case compose != "":
		data, rerr := os.ReadFile(compose)
		if rerr != nil {
			return spec, fmt.Errorf("read compose file: %w", rerr)
		}
		spec, err = appspec.FromCompose(data, app)
	default:
		return spec, fmt.Errorf("give the app as --image REF or --compose FILE")
	}
	if err != nil {
		return spec, err
	}
	if health != "" {
		spec.Health = health
		err = spec.Validate()
	}
	return spec, err
}

func printMove(w io.Writer, r workflows.MoveResult) {
	kind := "cold"
	if r.Warm {
		kind = "warm"
	}
	fmt.Fprintf(w, "%s handover to %s (region %s) in %s: %s\n", kind, r.Cloud, r.Region, r.SwitchTime, r.Endpoint.URL)
}

func printState(w io.Writer, st workflows.SessionState) {
	fmt.Fprintf(w, "%s: %s, serving region %s from %s at %s\n", st.ID, st.Phase, dash(st.Region), dash(st.Serving), dash(st.Endpoint.URL))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLOUD\tROLE\tSTATUS\tENDPOINT\tNOTE")
	for _, in := range st.Instances {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Cloud, dash(string(in.Role)), in.Status, dash(in.Endpoint.URL), in.Error)
	}
	tw.Flush()
	if st.Release != "" {
		fmt.Fprintf(w, "release: %s\n", st.Release)
	}
	if len(st.InFlight) > 0 {
		fmt.Fprintf(w, "in flight: %s\n", strings.Join(st.InFlight, ", "))
	}
}

func printReport(w io.Writer, st workflows.SessionState) {
	t := st.Totals
	fmt.Fprintf(w, "%s ended: %d handovers (%d warm, %d cold, %d failed), %.1f instance-seconds of pre-deploys, clouds used: %s\n",
		st.ID, t.Handovers, t.Warm, t.Cold, t.FailedMoves, t.PreDeploySeconds, strings.Join(t.CloudsUsed, ", "))
	for _, h := range st.Handovers {
		kind := "cold"
		if h.Warm {
			kind = "warm"
		}
		fmt.Fprintf(w, "  %s → %s (%s → %s): %s, switch %s\n", h.FromRegion, h.ToRegion, h.FromCloud, h.ToCloud, kind, h.SwitchTime)
	}
}
