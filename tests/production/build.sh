#!/usr/bin/env bash
# Builds the Temporal server that drift's production-shape tests run (tests/production/temporalpg):
#   temporal-server    go.temporal.io/server/cmd/server     from the tools module (tests/production/tools)
#   temporal-sql-tool  go.temporal.io/server/cmd/tools/sql  the same (its PostgreSQL schemas are embedded)
# into a cache dir outside the clone:
#   ${DRIFT_TEMPORAL_BIN:-${DRIFT_CACHE:-$HOME/.cache/drift}/temporal-<server version>/bin}
# What is already there (and was built for the same version) is kept, so a warm run takes a second.
# PostgreSQL is not built: it comes from Debian (apt-get install -y postgresql).
#
# usage: bash tests/production/build.sh [--print-bin-dir]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/../internal/buildcache.sh"

# The server version is the one tools/go.mod requires: bumping it there rebuilds into a new dir.
VERSION="$(module_version "$here/tools/go.mod" go.temporal.io/server)"
bin="${DRIFT_TEMPORAL_BIN:-${DRIFT_CACHE:-$HOME/.cache/drift}/temporal-$VERSION/bin}"
cache_open "$bin" "$@"
start=$SECONDS

go_build_cached "$bin" "$here/tools" .temporal-version "$VERSION" "-s -w" \
	temporal-server=go.temporal.io/server/cmd/server \
	temporal-sql-tool=go.temporal.io/server/cmd/tools/sql
log "ready in $bin ($((SECONDS - start))s)"
