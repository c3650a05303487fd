package main

import (
	"fmt"
	"io"
	goruntime "runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

type versionInfo struct {
	Version     string `json:"version"`
	Go          string `json:"go"`
	TemporalSDK string `json:"temporalSDK"`
	Platform    string `json:"platform"`
}

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print drift's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionInfo{Version: version, Go: goruntime.Version(), Platform: goruntime.GOOS + "/" + goruntime.GOARCH}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, dep := range bi.Deps {
					if dep.Path == "go.temporal.io/sdk" {
						v.TemporalSDK = dep.Version
					}
				}
			}
			return g.print(cmd.OutOrStdout(), v, func(w io.Writer) {
				fmt.Fprintf(w, "drift %s (%s, %s, Temporal SDK %s)\n", v.Version, v.Go, v.Platform, v.TemporalSDK)
			})
		},
	}
}
