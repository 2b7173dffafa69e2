#!/usr/bin/env bash
# Reading the inventory at scale: ifl inventory --list and --host NAME
# over states of 1,000, 10,000 and 100,000 hosts (each with a role and a
# site label, internal/testbed/invgen), from the JSON file and from a
# one-member etcd on loopback (the state imported): seconds and peak
# resident memory of each. Needs etcd for the etcd rows (apt-get install
# etcd-server).
#
#   scripts/bench-inventory.sh [path/to/ifl] [SIZES...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
ifl=$(realpath "${1:-./ifl}")
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000 100000)
dir=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
go build -o "$dir/invgen" ./internal/testbed/invgen

# measure LABEL CMD...: seconds and peak RSS, the output thrown away.
measure() {
	local label=$1
	shift
	/usr/bin/time -f "%e %M" -o "$dir/time" "$@" >/dev/null 2>"$dir/err" || { cat "$dir/err" >&2; exit 1; }
	read -r secs kb <"$dir/time"
	printf '%-40s %8s s %8d MB\n' "$label" "$secs" $((kb / 1024))
}

store=
if command -v etcd >/dev/null; then
	port=$((20000 + RANDOM % 10000))
	etcd --name b --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
		--listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
		--initial-cluster "b=http://127.0.0.1:$((port + 1))" --quota-backend-bytes $((8 << 30)) --logger zap --log-outputs "$dir/etcd.log" 2>>"$dir/etcd.err" &
	pid=$!
	for _ in $(seq 100); do
		curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
		sleep 0.1
	done
	store="etcd://127.0.0.1:$port"
else
	echo "bench-inventory: no etcd: the file rows only" >&2
fi

for n in "${sizes[@]}"; do
	state=$dir/inventory-$n.json
	"$dir/invgen" -hosts "$n" -o "$state"
	name=h$(printf '%06d' $((n / 2)))
	measure "file, $n hosts, --list" "$ifl" inventory --state "$state" --list
	measure "file, $n hosts, --host $name" "$ifl" inventory --state "$state" --host "$name"
	if [ -n "$store" ]; then
		measure "etcd, $n hosts, import" "$ifl" inventory --store "$store/b$n?timeout=5m" import "$state"
		measure "etcd, $n hosts, --list" "$ifl" inventory --store "$store/b$n?timeout=1m" --list
		measure "etcd, $n hosts, --host $name" "$ifl" inventory --store "$store/b$n?timeout=1m" --host "$name"
	fi
done
