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
