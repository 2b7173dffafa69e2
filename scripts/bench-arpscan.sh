#!/usr/bin/env bash
# Side-by-side ARP sweeps on the same virtual LANs, shaped like real ones
# (a router, agents, decoys, firewalled hosts: see lan_up in bench-lib.sh),
# at /24 (50 hosts), /22 (200) and /21 (400): ifl arp-scan (defaults)
# against nmap -sn -PR -T5 --min-rate 10000 and arp-scan (defaults), and
# ifl arp-scan --arp-probes.
# Prints a Markdown table per LAN: the median wall time of RUNS
# interleaved runs, the fewest hosts found in any run, and each median as
# a ratio to ifl's. Needs root; installs arp-scan and nmap if missing.
#
#   scripts/bench-arpscan.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
. scripts/bench-lib.sh barp arp-scan nmap

run_tool() {
	case $1 in
	"ifl arp-scan") time_run "$2" "$ifl" arp-scan eth0 ;;
	"ifl arp-scan --arp-probes") time_run "$2" "$ifl" arp-scan --arp-probes eth0 ;;
	"nmap -sn -PR -T5 --min-rate 10000") time_run "$2" nmap -n -sn -PR -T5 --min-rate 10000 "$prefix" ;;
	"arp-scan") time_run "$2" arp-scan -I eth0 "$prefix" ;;
	esac
}

count_tool() {
	case $1 in
	nmap*) echo $(($(grep -c 'Host is up' "$2" || true) - 1)) ;; # less the controller itself
	*) grep -c '^198\.' "$2" || true ;;
	esac
}

for lan in "198.18.0.0/24 50 10" "198.18.4.0/22 200 40" "198.18.8.0/21 400 80"; do
	read -r prefix hosts nagents <<<"$lan"
	lan_up "$prefix" "$hosts" "$nagents"
	want=$hosts_want
	echo "== $prefix, $lan_desc; $runs runs each, interleaved"
	race "$runs" "ifl arp-scan" "nmap -sn -PR -T5 --min-rate 10000" "arp-scan" "ifl arp-scan --arp-probes"
	$tn down --name $bench_name
done
