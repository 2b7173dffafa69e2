#!/usr/bin/env bash
# Side-by-side port scans and agent probes on the same virtual LANs:
#   ifl scan -p PORT   vs  nmap -sS (defaults, and -T5 --min-rate 10000)
#                      and masscan at ifl's rate
#   ifl probe (fast)   vs  ifl probe --connect, nmap -sS -p PORT (which does
#                      not even authenticate), nmap -sT --unprivileged
# and the raw sender's peak rate against masscan's. Prints the median wall
# time of RUNS interleaved runs, the fewest open ports / agents found in
# any run, and each time as a ratio to ifl's. Needs root; installs nmap and
# masscan if missing.
#
#   scripts/bench-synscan.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
. scripts/bench-lib.sh bsyn nmap masscan
port=7440

bench() {
	local prefix=$1 hosts=$2 agents=$3
	$tn up --name $bench_name --prefix "$prefix" --agents "$agents" --wrong-key 0 --impostors 0 \
		--closed $((hosts - agents)) --dropped 0 --empty 0 >/dev/null
	local key=/run/ifl-testnet/$bench_name/network.key
	echo "== $prefix: $hosts hosts, $agents agents (port $port open on those only); $runs runs each, interleaved"
	declare -A times found
	local names=("ifl scan" "nmap -sS" "nmap -sS -T5 --min-rate 10000" "masscan --rate 10000 --wait 1"
		"ifl probe" "ifl probe --connect" "nmap -sT --unprivileged")
	for ((r = 0; r < runs; r++)); do
		for tool in "${names[@]}"; do
			local out=/tmp/bench-syn.$$ us n
			case $tool in
			"ifl scan") us=$(time_run $out ./ifl scan -p $port "$prefix"); n=$(grep -c ' open ' $out || true) ;;
			"nmap -sS") us=$(time_run $out nmap -n -sS -p $port "$prefix"); n=$(grep -c '^[0-9]*/tcp *open' $out || true) ;;
			"nmap -sS -T5 --min-rate 10000") us=$(time_run $out nmap -n -sS -T5 --min-rate 10000 -p $port "$prefix"); n=$(grep -c '^[0-9]*/tcp *open' $out || true) ;;
			"masscan --rate 10000 --wait 1") us=$(time_run $out masscan -p$port "$prefix" --rate 10000 --wait 1); n=$(grep -c 'Discovered open port' $out || true) ;;
			"ifl probe") us=$(time_run $out ./ifl probe --network-key $key --no-state -p $port "$prefix"); n=$(grep -c ' agent ' $out || true) ;;
			"ifl probe --connect") us=$(time_run $out ./ifl probe --network-key $key --no-state --connect -p $port "$prefix"); n=$(grep -c ' agent ' $out || true) ;;
			"nmap -sT --unprivileged") us=$(time_run $out nmap -n -sT --unprivileged -p $port "$prefix"); n=$(grep -c '^[0-9]*/tcp *open' $out || true) ;;
			esac
			rm -f $out
			times[$tool]+="$us "
			if [ -z "${found[$tool]:-}" ] || [ "$n" -lt "${found[$tool]}" ]; then found[$tool]=$n; fi
		done
	done
	printf '%-34s %10s %12s %8s\n' tool "median s" "found (min)" "x ifl"
	local base
	for tool in "${names[@]}"; do
		case $tool in
		"ifl scan") base=$(echo ${times["ifl scan"]} | tr ' ' '\n' | median) ;;
		"ifl probe") base=$(echo ${times["ifl probe"]} | tr ' ' '\n' | median) ;;
		esac
		local m
		m=$(echo ${times[$tool]} | tr ' ' '\n' | median)
		printf '%-34s %10.3f %7d/%-4d %8.2f\n' "$tool" "$(echo "$m / 1000000" | bc -l)" "${found[$tool]}" "$agents" "$(echo "$m / $base" | bc -l)"
	done
	$tn down --name $bench_name
}

peak() {
	$tn up --name $bench_name --prefix 198.18.0.0/24 --agents 0 --wrong-key 0 --impostors 0 --closed 1 --dropped 0 --empty 0 >/dev/null
	echo "== raw sender peak rate: 65536 SYNs to a routed /16 (through the LAN's router), one try each"
	local out=/tmp/bench-syn.$$ us sent
	us=$(time_run $out ./ifl scan -p $port 198.19.0.0/16 --rate 1000000 --retries 0 --timeout 1ms)
	sent=$(grep -o '[0-9]* packets sent' $out | awk '{print $1}')
	printf '%-34s %12.0f packets/s\n' "ifl scan" "$(echo "$sent / ($us / 1000000)" | bc -l)"
	us=$(time_run $out masscan -p$port 198.19.0.0/16 --rate 10000000 --wait 0)
	printf '%-34s %12.0f packets/s\n' "masscan --rate 10000000" "$(echo "65536 / ($us / 1000000)" | bc -l)"
	rm -f $out
	$tn down --name $bench_name
}

bench 198.18.0.0/24 50 10
bench 198.18.4.0/22 200 40
peak
