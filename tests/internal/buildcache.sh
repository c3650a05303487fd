# Sourced by the build scripts of drift's test harnesses (tests/kube/build.sh, tests/prometheus/build.sh,
# tests/production/build.sh): the cache dir, its lock, and building Go commands
# from a tools module into it once per version.

log() { echo "build.sh: $*"; }

# module_version GOMOD MODULE prints the version GOMOD requires of MODULE.
module_version() {
	local v
	v="$(awk -v m="$2" '$1 == "require" && $2 == m {print $3}' "$1")"
	if [[ -z "$v" ]]; then
		echo "build.sh: cannot read the $2 version from $1" >&2
		return 1
	fi
	echo "$v"
}

# cache_open BIN [--print-bin-dir]: with the flag, prints BIN and exits; else makes BIN and holds its
# lock until the script ends: test binaries of several packages may run the script at once.
cache_open() {
	if [[ "${2:-}" == "--print-bin-dir" ]]; then
		echo "$1"
		exit 0
	fi
	mkdir -p "$1"
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$1/.lock"
		if ! flock -n 9; then
			log "waiting for another build.sh that holds $1/.lock"
			flock 9
		fi
	fi
}

# go_build_cached BIN TOOLS STAMP VERSION LDFLAGS NAME=PACKAGE...: unless BIN has every NAME and
# BIN/STAMP says VERSION, builds each PACKAGE (CGO_ENABLED=0, -trimpath) from the tools module
# at TOOLS, and renames the binaries into BIN/NAME (a reader never sees half a binary).
go_build_cached() {
	local bin="$1" tools="$2" stamp="$1/$3" version="$4" ldflags="$5"
	shift 5
	local need=0 names=() pkgs=() c
	for c in "$@"; do
		names+=("${c%%=*}")
		pkgs+=("${c#*=}")
		[[ -x "$bin/${c%%=*}" ]] || need=1
	done
	[[ "$(cat "$stamp" 2>/dev/null || true)" == "$version" ]] || need=1
	if (( ! need )); then
		log "${names[*]} $version already in $bin"
		return 0
	fi
	local t0=$SECONDS tmp
	log "building ${names[*]} $version into $bin (cold: minutes on 2 cores)"
	tmp="$(mktemp -d "$bin/.build.XXXXXX")"
	if ! (cd "$tools" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}"); then
		rm -rf "$tmp"
		return 1
	fi
	for c in "$@"; do
		mv -f "$tmp/$(basename "${c#*=}")" "$bin/${c%%=*}"
	done
	rm -rf "$tmp"
	echo "$version" > "$stamp"
	log "built ${names[*]} in $((SECONDS - t0))s"
}
