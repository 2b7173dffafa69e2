#!/usr/bin/env bash
# Every port of one on-link host (9 open, 2 firewalled, the rest closed),
# the classic job of a port scanner: ifl scan -p 1-65535 (defaults)
# against nmap -sS -p- -T5 --min-rate 10000, and without the capability
# (ifl scan as an unprivileged user, so connect()) against nmap -sT
# --unprivileged -p-. Found: the open and filtered ports together (11),
# or -1 for a run whose port states differ. Needs root; installs nmap if
# missing. IFL_BEFORE=PATH races another build of ifl beside it (see
# bench-lib.sh).
#
#   [IFL_BEFORE=PATH] scripts/bench-ports.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
. scripts/bench-lib.sh bport nmap
open_ports=(22 80 443 3306 5432 7440 8080 9100 50000)
filtered_ports=(25 8443)

$tn up --name $bench_name --prefix 198.18.0.0/24 --agents 1 --wrong-key 0 --impostors 0 --closed 0 --dropped 0 --empty 0 --json >/tmp/bench-ports.$$.json
ns=$(jq -r '.hosts[0].namespace' /tmp/bench-ports.$$.json)
host=$(jq -r '.hosts[0].addr' /tmp/bench-ports.$$.json)
rm -f /tmp/bench-ports.$$.json
# The agent holds 7440; a listener holds the other open ports.
listen=$(printf '%s,' "${open_ports[@]}" | sed 's/7440,//; s/,$//')
ip netns exec "$ns" python3 -c "
import socket, sys, signal
socks = []
for p in [$listen]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', p)); s.listen(128); socks.append(s)
print('ready', flush=True)
signal.pause()
" >/tmp/bench-ports.$$.ready &
lpid=$!
trap 'kill $lpid 2>/dev/null || true; $tn down --name $bench_name >/dev/null 2>&1 || true; rm -f /tmp/bench-ports.$$.ready' EXIT
for _ in $(seq 1 100); do grep -q ready /tmp/bench-ports.$$.ready 2>/dev/null && break; sleep 0.05; done
ip netns exec "$ns" nft -f - <<NFT
table inet benchports {
	chain input {
		type filter hook input priority 0;
		tcp dport { $(IFS=,; echo "${filtered_ports[*]}") } drop
	}
}
NFT

# An unprivileged user, with no capability: the connect() path.
nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all --bounding-set=-all)

run_tool() {
	case $1 in
	"ifl scan -p 1-65535") time_run "$2" "$ifl" scan -p 1-65535 --all -o tsv "$host" ;;
	"nmap -sS -p- -T5 --min-rate 10000") time_run "$2" nmap -n -sS -p- -T5 --min-rate 10000 "$host" ;;
	"ifl scan -p 1-65535, no capability") time_run "$2" "${nobody[@]}" "$ifl" scan -p 1-65535 --all -o tsv "$host" ;;
	"nmap -sT --unprivileged -p-") time_run "$2" nmap -n -sT --unprivileged -p- "$host" ;;
	esac
}

count_tool() {
	local open filtered
	case $1 in
	ifl*) open=$(awk -F'\t' '$3 == "open"' "$2" | wc -l); filtered=$(awk -F'\t' '$3 == "filtered"' "$2" | wc -l) ;;
	nmap*) open=$(grep -c '^[0-9]*/tcp *open' "$2" || true); filtered=$(grep -c '^[0-9]*/tcp *filtered' "$2" || true) ;;
	esac
	if [ "$open" -eq ${#open_ports[@]} ] && [ "$filtered" -eq ${#filtered_ports[@]} ]; then
		echo $((open + filtered))
	else
		echo -1
	fi
}

want=$((${#open_ports[@]} + ${#filtered_ports[@]}))
echo "== every port of $host (${#open_ports[@]} open, ${#filtered_ports[@]} firewalled); $runs runs each, interleaved"
race "$runs" "ifl scan -p 1-65535" "nmap -sS -p- -T5 --min-rate 10000"
race "$runs" "ifl scan -p 1-65535, no capability" "nmap -sT --unprivileged -p-"
