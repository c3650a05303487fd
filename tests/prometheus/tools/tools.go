//go:build tools

// Package tools pins the Prometheus server that tests/prometheus/build.sh
// builds for the tests of a rollout's Prometheus query gate. The build tag
// keeps this file out of every build; `go mod tidy` still reads its import,
// so go.mod and go.sum keep what the command needs.
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
