package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"
)

// jobID names the workflow a cancel or terminate command acts on, from its
// arguments and flags.
type jobID func(args []string) (string, error)

// newStopCommands makes `cancel` and `terminate` for one kind of job.
func newStopCommands(g *globals, use string, args cobra.PositionalArgs, id jobID) []*cobra.Command {
	var cmds []*cobra.Command
	for _, terminate := range []bool{false, true} {
		var reason string
		verb, short := "cancel", "Cancel: the job stops and cleans up as on failure"
		if terminate {
			verb, short = "terminate", "Terminate: the job ends at once; nothing more runs (no clean-up)"
		}
		cmd := &cobra.Command{
			Use:   strings.TrimSpace(verb + " " + use),
			Short: short,
			Args:  args,
			RunE: func(cmd *cobra.Command, args []string) error {
				wid, err := id(args)
				if err != nil {
					return err
				}
				return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
					if err := c.Stop(ctx, wid, terminate, reason); err != nil {
						return fmt.Errorf("%s %s: %w", verb, wid, err)
					}
					return g.print(cmd.OutOrStdout(), map[string]string{"workflowId": wid, "action": verb}, func(w io.Writer) {
						fmt.Fprintf(w, "%s: %s requested\n", wid, verb)
					})
				})
			},
		}
		if terminate {
			cmd.Flags().StringVar(&reason, "reason", "terminated with drift", "why, recorded in the history")
		}
		cmds = append(cmds, cmd)
	}
	return cmds
}

// warnUnpolled tells on stderr which queues a job needs that no worker
// polls: the job would wait there until its schedule-to-start bound. The
// server learns of a poller at its first poll, so a worker that has just
// started gets a few seconds before it is reported.
func warnUnpolled(ctx context.Context, g *globals, c *client.Client, clouds []string) {
	unpolled, err := c.Unpolled(ctx, clouds)
	for try := 0; err == nil && len(unpolled) > 0 && try < 3; try++ {
		time.Sleep(time.Second)
		unpolled, err = c.Unpolled(ctx, clouds)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "warning: cannot check the task queues' pollers: %v\n", err)
		return
	}
	for _, q := range unpolled {
		if q == names.TaskQueue {
			fmt.Fprintf(os.Stderr, "warning: no worker polls %s: nothing runs this job until a drift-worker without --no-central is started\n", q)
			continue
		}
		cloud := strings.TrimPrefix(q, names.CloudQueue(""))
		fmt.Fprintf(os.Stderr, "warning: no worker polls %s: steps on cloud %s will fail with NoWorker after %s; start `drift-worker --clouds %s` next to it\n",
			q, cloud, g.scheduleToStartText(), cloud)
	}
}
