#!/usr/bin/env bash
# docker-up.sh: make sure a Docker Engine answers, starting Debian's dockerd
# in the background when none does.
#
#   tests/docker-up.sh            # uses DOCKER_HOST if set, else /var/run/docker.sock
#
# Exits 0 as soon as `docker info` answers. Otherwise starts dockerd (detached
# with setsid + nohup so it outlives this script), logging to
# ${DRIFT_CACHE:-$HOME/.cache/drift}/dockerd.log (or /tmp when that is not
# writable), and waits up to DOCKER_UP_TIMEOUT seconds (default 60). On
# failure it prints the tail of the log and exits non-zero. Needs root (as
# dockerd does). The daemon keeps running afterwards; stop it with
# `kill $(cat /var/run/docker.pid)`.
set -euo pipefail

timeout="${DOCKER_UP_TIMEOUT:-60}"

answers() {
	docker info >/dev/null 2>&1
}

if answers; then
	exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
	echo "docker-up: no engine answers and dockerd is not installed (apt-get install -y docker.io)" >&2
	exit 1
fi

logdir="${DRIFT_CACHE:-${HOME:-/tmp}/.cache/drift}"
if ! mkdir -p "$logdir" 2>/dev/null || ! [ -w "$logdir" ]; then
	logdir=/tmp
fi
log="$logdir/dockerd.log"

# dockerd takes --host in the same syntax as DOCKER_HOST; only unix and tcp
# addresses make sense for a local daemon. A daemon on another address than
# the default gets state directories of its own (under $logdir), so it never
# fights a default daemon over /var/lib/docker or /var/run/docker.pid.
args=()
pidfile=/var/run/docker.pid
host="${DOCKER_HOST:-}"
if [ -n "$host" ] && [ "$host" != unix:///var/run/docker.sock ] && [ "$host" != unix:///run/docker.sock ]; then
	case "$host" in
	unix://*)
		mkdir -p "$(dirname "${host#unix://}")"
		;;
	tcp://127.*|tcp://localhost:*)
		;;
	*)
		echo "docker-up: DOCKER_HOST=$host is not a local unix socket or loopback address; refusing to start dockerd for it" >&2
		exit 1
		;;
	esac
	state="$logdir/dockerd-$(printf %s "$host" | cksum | cut -d' ' -f1)"
	mkdir -p "$state"
	pidfile="$state/docker.pid"
	log="$state/dockerd.log"
	args+=(--host "$host" --data-root "$state/data" --exec-root "$state/exec" --pidfile "$pidfile")
fi

# A stale pidfile from a dead daemon makes dockerd refuse to start.
if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
	rm -f "$pidfile"
fi

# setsid may have forked, so a live pid in the pidfile also counts.
daemon_in_pidfile() {
	local p
	p="$(cat "$pidfile" 2>/dev/null || true)"
	[[ "$p" =~ ^[0-9]+$ ]] && [ "$p" -gt 1 ] && kill -0 "$p" 2>/dev/null
}

echo "docker-up: starting dockerd ${args[*]:-} (log: $log)" >&2
setsid nohup dockerd "${args[@]}" >>"$log" 2>&1 </dev/null &
pid=$!

for ((i = 0; i < timeout * 2; i++)); do
	if answers; then
		echo "docker-up: engine answers (dockerd pid $pid)" >&2
		exit 0
	fi
	if ! kill -0 "$pid" 2>/dev/null && ! daemon_in_pidfile; then
		echo "docker-up: dockerd exited early; last log lines:" >&2
		tail -n 30 "$log" >&2 || true
		exit 1
	fi
	sleep 0.5
done

echo "docker-up: dockerd did not answer within ${timeout}s; last log lines:" >&2
tail -n 30 "$log" >&2 || true
exit 1
