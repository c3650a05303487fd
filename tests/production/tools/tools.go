//go:build tools

// Package tools pins the Temporal server programs that tests/production/build.sh builds:
// temporal-server (cmd/server) and temporal-sql-tool (cmd/tools/sql). The build tag keeps this
// file out of every build; `go mod tidy` still reads its imports, so go.mod and go.sum keep
// exactly what the two commands need, at the versions drift's own go.mod resolves.
package tools

import (
	_ "go.temporal.io/server/cmd/server"
	_ "go.temporal.io/server/cmd/tools/sql"
)
