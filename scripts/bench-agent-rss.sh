#!/usr/bin/env bash
# Measures the agent's resident memory: idle after start, after 200 pings,
# and the most it reaches under a hostile load from another loopback
# address (internal/testbed/hostileload: 1,500 idle connections, slowloris hellos,
# headers announcing the largest payload, garbage) while a controller
# pings it every 100 ms from a third.
# Usage: scripts/bench-agent-rss.sh [path/to/ifl]
set -euo pipefail
ifl=$(realpath "${1:-$(dirname "$0")/../ifl}")
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
dir=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

go build -o "$dir/hostileload" ./internal/testbed/hostileload
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

"$dir/hostileload" -a "127.0.0.1:$port" -k "$dir/network.key" -d 5s >"$dir/load" 2>"$dir/load.err" &
load=$!
peak=0
while kill -0 "$load" 2>/dev/null; do
	r=$(rss)
	[ "$r" -gt "$peak" ] && peak=$r
	sleep 0.1
done
status=0
wait "$load" || status=$?
printf 'agent RSS: %d KiB idle after start, %d KiB after 200 pings, at most %d KiB under hostile load\n' "$idle" "$busy" "$peak"
cat "$dir/load"
[ "$status" = 0 ] || { cat "$dir/load.err" >&2; exit 1; }
