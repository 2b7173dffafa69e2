#!/usr/bin/env bash
# Measures the agent's resident memory when idle, and after 200 pings.
# Usage: scripts/bench-agent-rss.sh [path/to/ifl]
set -euo pipefail
ifl=${1:-./ifl}
dir=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

"$ifl" keygen "$dir/network.key" 2>/dev/null
port=$(( 20000 + RANDOM % 20000 ))
"$ifl" agent --network-key "$dir/network.key" --identity-key "$dir/agent.key" \
	--listen 127.0.0.1 --port "$port" --log-level error 2>"$dir/log" &
pid=$!

# Wait (bounded) until the agent answers.
for _ in $(seq 1 100); do
	if "$ifl" ping --network-key "$dir/network.key" "127.0.0.1:$port" >/dev/null 2>&1; then
		break
	fi
	kill -0 "$pid" 2>/dev/null || { cat "$dir/log"; exit 1; }
	sleep 0.05
done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
idle=$(rss)
for _ in $(seq 1 200); do
	"$ifl" ping --network-key "$dir/network.key" "127.0.0.1:$port" >/dev/null
done
busy=$(rss)
printf 'agent RSS: %d KiB idle after start, %d KiB after 200 pings\n' "$idle" "$busy"
