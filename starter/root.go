package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/config"
)

// globals are the flags every command shares.
type globals struct {
	temporal config.Temporal
	json     bool
	logLevel string
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
	// In the order a newcomer meets them: the stack, the five jobs, the
	// services around them, then inspection.
	root.AddCommand(
		newDevCommand(g),
		newPipelineCommand(g),
		newSessionCommand(g),
		newAPICommand(g),
		newUpgradeCommand(g),
		newPortCommand(g),
		newDemoCommand(g),
		newInstallCommand(g),
		newRepoCommand(g),
		newAgentCommand(g),
		newTopologyCommand(g),
		newVersionCommand(g),
	)
	return root
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
