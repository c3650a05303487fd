// Package examples holds the example inputs shipped with drift. The CLI
// embeds the example topology as its default, so `drift dev` runs without
// any file of the user's.
package examples

import _ "embed"

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
