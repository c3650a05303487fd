// Package examples holds the example inputs shipped with drift. The CLI
// embeds the example topology as its default, so `drift dev` runs without
// any file of the user's.
package examples

import (
	"embed"
	_ "embed"
)

// Topology is topology.yaml: a Paris metro area with one center, two fog and
// four edge clouds.
//
//go:embed topology.yaml
var Topology []byte

// Releases is releases.yaml: the release index (series → component →
// published tags) with cinder's real series, read by the platform policy of
// component upgrades.
//
//go:embed releases.yaml
var Releases []byte

// Pipeline is pipeline.yaml: the hello app from git to two clouds.
//
//go:embed pipeline.yaml
var Pipeline []byte

// CounterPipeline is pipeline-counter.yaml: the two-service counter app
// from git to two clouds, one image per service. Its compose file is
// read from Files (see ReadFile).
//
//go:embed pipeline-counter.yaml
var CounterPipeline []byte

// HelloSource is the example app's source (apps/hello/*.go), which the demo
// commits into a git repository of its own for the pipeline to build.
//
//go:embed apps/hello/*.go
var HelloSource embed.FS

// CounterSource is the two-service example app (apps/counter): the source
// of its web and store services and its compose file.
//
//go:embed apps/counter/web/*.go apps/counter/store/*.go apps/counter/compose.yaml
var CounterSource embed.FS

// CounterCompose is apps/counter/compose.yaml.
//
//go:embed apps/counter/compose.yaml
var CounterCompose []byte

// ReadFile reads a file the example pipeline specs name, relative to this
// directory (what pipelinespec.Parse asks for).
func ReadFile(name string) ([]byte, error) { return CounterSource.ReadFile(name) }

// CinderSource is the example platform component's source (cinder/*.go):
// the upgrade demo and tests build it into one image per release.
//
//go:embed cinder/*.go
var CinderSource embed.FS

// PortDemo is port/_sysinfo: a Go module (go.mod.txt is its go.mod) that
// does not build for linux/loong64 today, which `drift demo port` ports.
// The leading underscore keeps it out of drift's own build.
//
//go:embed port/_sysinfo
var PortDemo embed.FS
