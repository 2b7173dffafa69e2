#!/usr/bin/env bash
# Side-by-side ARP sweeps on the same virtual LANs: ifl arp-scan (defaults,
# and with one try per address as the tuned peers) against arp-scan
# (defaults and tuned) and nmap -sn -PR (defaults and -T5 --min-rate
# 10000). Prints the median wall time of RUNS runs, the
# fewest hosts found in any run, and each tool's time as a ratio to ifl's.
# Needs root; installs arp-scan and nmap if missing.
#
#   scripts/bench-arpscan.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
. scripts/bench-lib.sh barp arp-scan nmap

bench() {
	local prefix=$1 hosts=$2
	$tn up --name $bench_name --prefix "$prefix" --agents 0 --wrong-key 0 --impostors 0 \
		--closed "$hosts" --dropped 0 --empty 0 >/dev/null
	local expect=$((hosts + 1)) # the hosts and the router
	echo "== $prefix, $hosts hosts (+ router): $runs runs each, interleaved"
	declare -A times found
	local names=("ifl arp-scan" "ifl arp-scan --retries 0" "arp-scan" "arp-scan tuned" "nmap -sn -PR" "nmap -T5 --min-rate 10000")
	for ((r = 0; r < runs; r++)); do
		for name in "${names[@]}"; do
			local out=/tmp/bench-arp.$$ n us
			case $name in
			"ifl arp-scan") us=$(time_run $out ./ifl arp-scan eth0); n=$(grep -c '^198\.' $out || true) ;;
			"ifl arp-scan --retries 0") us=$(time_run $out ./ifl arp-scan eth0 --retries 0); n=$(grep -c '^198\.' $out || true) ;;
			"arp-scan") us=$(time_run $out arp-scan -I eth0 "$prefix"); n=$(grep -c '^198\.' $out || true) ;;
			"arp-scan tuned") us=$(time_run $out arp-scan -I eth0 --retry=1 --interval=100u --timeout=100 "$prefix"); n=$(grep -c '^198\.' $out || true) ;;
			"nmap -sn -PR") us=$(time_run $out nmap -n -sn -PR "$prefix"); n=$(( $(grep -c 'Host is up' $out || true) - 1 )) ;;
			"nmap -T5 --min-rate 10000") us=$(time_run $out nmap -n -sn -PR -T5 --min-rate 10000 "$prefix"); n=$(( $(grep -c 'Host is up' $out || true) - 1 )) ;;
			esac
			rm -f $out
			times[$name]+="$us "
			if [ -z "${found[$name]:-}" ] || [ "$n" -lt "${found[$name]}" ]; then found[$name]=$n; fi
		done
	done
	local base
	base=$(echo ${times["ifl arp-scan"]} | tr ' ' '\n' | median)
	printf '%-28s %10s %14s %10s\n' tool "median s" "hosts (min)" "x ifl"
	for name in "${names[@]}"; do
		local m
		m=$(echo ${times[$name]} | tr ' ' '\n' | median)
		printf '%-28s %10.3f %9d/%-4d %10.2f\n' "$name" "$(echo "$m / 1000000" | bc -l)" "${found[$name]}" "$expect" "$(echo "$m / $base" | bc -l)"
	done
	$tn down --name $bench_name
}

bench 198.18.0.0/24 50
bench 198.18.4.0/22 200
