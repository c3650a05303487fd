#!/usr/bin/env bash
# Builds the Prometheus server that the tests of a rollout's Prometheus query gate run
# (tests/pipeline TestAPrometheusQueryGatesAWave):
#   prometheus   github.com/prometheus/prometheus/cmd/prometheus   from the tools module (tests/prometheus/tools)
# into a cache dir outside the clone:
#   ${DRIFT_PROMETHEUS_BIN:-${DRIFT_CACHE:-$HOME/.cache/drift}/prometheus-<version>/bin}
# What is already there (and was built for the same version) is kept, so a warm run takes a second.
# The web UI's assets are not built (the tests use the HTTP API only), nor any service discovery
# but file and static (-tags remove_all_sd: a third fewer packages to compile).
#
# usage: bash tests/prometheus/build.sh [--print-bin-dir]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/../internal/buildcache.sh"

VERSION="$(module_version "$here/tools/go.mod" github.com/prometheus/prometheus)"
bin="${DRIFT_PROMETHEUS_BIN:-${DRIFT_CACHE:-$HOME/.cache/drift}/prometheus-$VERSION/bin}"
cache_open "$bin" "$@"
start=$SECONDS
export GOFLAGS="${GOFLAGS:-} -tags=remove_all_sd"

go_build_cached "$bin" "$here/tools" .prometheus-version "$VERSION" "-s -w" \
	prometheus=github.com/prometheus/prometheus/cmd/prometheus
log "ready in $bin ($((SECONDS - start))s)"
