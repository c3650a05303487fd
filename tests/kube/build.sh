#!/usr/bin/env bash
# Builds the Kubernetes control plane that drift's tests run (tests/kube):
#   kube-apiserver, kube-controller-manager, kube-scheduler  from the tools module (tests/kube/tools)
#   kubelet, kube-proxy                                      the same, for the real node (kube.WithRealNode)
#   kwok                                                     by `go install sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION`
#   kwok-stages-fast.yaml                                    kwok's "fast" node and pod Stages, one multi-document YAML
# into a cache dir outside the clone:
#   ${DRIFT_KUBE_BIN:-${DRIFT_CACHE:-$HOME/.cache/drift}/kube-<kubernetes version>/bin}
# Whatever is already there (and was built for the same versions) is kept, so a warm run takes a second.
# etcd is not built: it comes from Debian (apt-get install -y etcd-server).
#
# usage: bash tests/kube/build.sh [--print-bin-dir]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/../internal/buildcache.sh"

KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
# The Kubernetes version is the one tools/go.mod requires: bumping it there rebuilds into a new dir.
KUBE_VERSION="$(module_version "$here/tools/go.mod" k8s.io/kubernetes)"
bin="${DRIFT_KUBE_BIN:-${DRIFT_CACHE:-$HOME/.cache/drift}/kube-$KUBE_VERSION/bin}"
cache_open "$bin" "$@"
start=$SECONDS

# --- kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy ----------------
minor="${KUBE_VERSION#v}"; minor="${minor#*.}"; minor="${minor%%.*}"
ldflags="-s -w"
ldflags+=" -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
cmds=()
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
	cmds+=("$c=k8s.io/kubernetes/cmd/$c")
done
go_build_cached "$bin" "$here/tools" .kubernetes-version "$KUBE_VERSION" "$ldflags" "${cmds[@]}"

# --- kwok -----------------------------------------------------------------------------------------
kstamp="$bin/.kwok-version"
if [[ ! -x "$bin/kwok" || "$(cat "$kstamp" 2>/dev/null || true)" != "$KWOK_VERSION" ]]; then
	t0=$SECONDS
	log "installing kwok $KWOK_VERSION into $bin"
	ktmp="$(mktemp -d "$bin/.kwok.XXXXXX")"
	# Outside any module, so go install uses kwok's own go.mod and never drift's or the tools'.
	if ! (cd / && GOBIN="$ktmp" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"); then
		rm -rf "$ktmp"
		exit 1
	fi
	mv -f "$ktmp/kwok" "$bin/kwok" # a rename: a concurrent reader never sees half a binary
	rm -rf "$ktmp"
	echo "$KWOK_VERSION" > "$kstamp"
	log "installed kwok in $((SECONDS - t0))s"
else
	log "kwok $KWOK_VERSION already in $bin"
fi

# --- kwok's "fast" Stages -------------------------------------------------------------------------
stages="$bin/kwok-stages-fast.yaml"
sstamp="$bin/.kwok-stages-version"
if [[ ! -s "$stages" || "$(cat "$sstamp" 2>/dev/null || true)" != "$KWOK_VERSION" ]]; then
	kwok_dir="$(cd / && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
	if [[ -z "$kwok_dir" || ! -d "$kwok_dir" ]]; then
		echo "build.sh: cannot find the source of sigs.k8s.io/kwok@$KWOK_VERSION in the module cache" >&2
		exit 1
	fi
	out="$(mktemp "$bin/.stages.XXXXXX")"
	n=0
	for kind in node pod; do
		dir="$kwok_dir/kustomize/stage/$kind/fast"
		# The Stage files of the set are the resources its kustomization lists.
		files="$(awk '/^resources:/ {r=1; next} r && /^- / {print $2; next} r && !/^[[:space:]]/ {r=0}' "$dir/kustomization.yaml")"
		if [[ -z "$files" ]]; then
			echo "build.sh: no resources in $dir/kustomization.yaml" >&2
			exit 1
		fi
		for f in $files; do
			(( n > 0 )) && echo "---" >> "$out"
			echo "# $kind/fast/$f from sigs.k8s.io/kwok@$KWOK_VERSION" >> "$out"
			sed '/^---[[:space:]]*$/d' "$dir/$f" >> "$out"
			n=$((n + 1))
		done
	done
	chmod 0644 "$out"
	mv -f "$out" "$stages"
	echo "$KWOK_VERSION" > "$sstamp"
	log "wrote $n kwok Stages to $stages"
else
	log "kwok Stages already in $stages"
fi

log "ready in $bin ($((SECONDS - start))s)"
