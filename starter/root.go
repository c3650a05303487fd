package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/workflows"
)

// globals are the flags every command shares.
type globals struct {
	temporal config.Temporal
	json     bool
	logLevel string
	// scheduleToStart bounds a job's wait for a worker on a cloud's queue.
	scheduleToStart time.Duration
}

func newRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "drift",
		Short: "Durable edge-cloud delivery on Temporal",
		Long: `drift runs edge-cloud delivery jobs as durable Temporal workflows: build
pipelines, mobility sessions that follow users across center/fog/edge clouds,
component upgrades, porting to loong64 and software installs through gateways.

Start with "drift dev": it runs Temporal, its Web UI, an image registry and a
worker in one process.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.temporal.BindFlags(root.PersistentFlags())
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print machine-readable JSON")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().DurationVar(&g.scheduleToStart, "schedule-to-start", 0,
		"jobs started: how long a step waits for a worker on a cloud's queue before it fails with NoWorker (0: "+workflows.DefaultScheduleToStart.String()+")")
	// In the order a newcomer meets them: the stack, the five jobs, the
	// services around them, then inspection.
	root.AddCommand(
		newDevCommand(g),
		newSetupCommand(g),
		newRegistryCommand(g),
		newPipelineCommand(g),
		newSessionCommand(g),
		newAPICommand(g),
		newUpgradeCommand(g),
		newPortCommand(g),
		newDemoCommand(g),
		newInstallCommand(g),
		newInventoryCommand(g),
		newRepoCommand(g),
		newAgentCommand(g),
		newImageCommand(g),
		newTopologyCommand(g),
		newVersionCommand(g),
	)
	return root
}

// scheduleToStartText is the bound jobs started now get.
func (g *globals) scheduleToStartText() string {
	if g.scheduleToStart > 0 {
		return g.scheduleToStart.String()
	}
	return workflows.DefaultScheduleToStart.String()
}

// logger writes structured logs to stderr at the chosen level.
func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

// print writes v as indented JSON with --json, or calls human otherwise.
func (g *globals) print(w io.Writer, v any, human func(io.Writer)) error {
	if g.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human(w)
	return nil
}
