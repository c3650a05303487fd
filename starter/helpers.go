package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
)

// withClient connects to Temporal for the length of one command.
func withClient(cmd *cobra.Command, g *globals, fn func(context.Context, *client.Client) error) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	c, err := g.temporal.Dial(ctx, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(ctx, client.New(c))
}

// need fails unless --user and --app name a session: the user by the rule
// every entry point applies, the app as a DNS-1035 label.
func need(user, app string) error {
	if user == "" || app == "" {
		return fmt.Errorf("--user and --app are required")
	}
	if err := names.CheckUser(user); err != nil {
		return fmt.Errorf("--user: %w", err)
	}
	if err := runtime.ValidateName(app); err != nil {
		return fmt.Errorf("--app: %w", err)
	}
	return nil
}

// loadTopology reads file, or the embedded example when file is "".
func loadTopology(file string) (*topology.Topology, error) {
	if file == "" {
		return topology.Parse(examples.Topology)
	}
	return topology.Load(file)
}

// cloudIDs lists the ids of the topology's clouds.
func cloudIDs(topo *topology.Topology) []string {
	var ids []string
	for _, c := range topo.Clouds() {
		ids = append(ids, c.ID)
	}
	return ids
}

// defaultDataDir is $DRIFT_DATA_DIR, else ~/.local/share/drift.
func defaultDataDir() string {
	if d := os.Getenv("DRIFT_DATA_DIR"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "drift")
	}
	return ".drift"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func durationText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// oneLine is the first line of s, cut to fit a table.
func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}
