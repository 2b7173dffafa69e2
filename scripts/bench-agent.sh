#!/usr/bin/env bash
# Round trips (connect, handshake, ping with real facts, close) per second
# that one agent serves on one core: the agent is pinned to CPU 0 with
# GOMAXPROCS=1, the load generator to CPU 1. Needs two cores.
#
#   scripts/bench-agent.sh [path/to/ifl]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
ifl=${1:-./ifl}
[ "$(nproc)" -ge 2 ] || { echo "bench-agent: needs two cores" >&2; exit 2; }
dir=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE
go build -o "$dir/pingload" ./internal/testbed/pingload
"$ifl" keygen "$dir/network.key" 2>/dev/null
port=$(( 20000 + RANDOM % 20000 ))
GOMAXPROCS=1 taskset -c 0 "$ifl" agent --network-key "$dir/network.key" --identity-key "$dir/agent.key" \
	--listen 127.0.0.1 --port "$port" --log-level error 2>"$dir/log" &
pid=$!
for _ in $(seq 1 100); do
	"$ifl" ping --network-key "$dir/network.key" "127.0.0.1:$port" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || { cat "$dir/log"; exit 1; }
	sleep 0.05
done
printf 'agent on one core: '
taskset -c 1 "$dir/pingload" -a "127.0.0.1:$port" -k "$dir/network.key" -c 8 -d 5s
