#!/usr/bin/env bash
# Side-by-side port scans and agent probes on the same virtual LANs, shaped
# like real ones (a router, agents, agents with another key, decoys on the
# agent port, one host in ten firewalled: see lan_up in bench-lib.sh), at
# /24 (50 hosts, 10 agents), /22 (200, 40) and /21 (400, 80):
#   ifl probe          vs  nmap -sS -T5 --min-rate 10000 -p PORT (which
#                          does not even authenticate), ifl probe --arp-probes
#                          and ifl probe --connect
#   ifl scan -p PORT   vs  the same nmap
#   ifl scan -p 1-1000,PORT vs nmap -sS -T5 --min-rate 10000 -p 1-1000,PORT
#                      (on the /24: every live host and open port, or 0)
# Found: verified agents for ifl probe (a run that calls anything else an
# agent counts -1), open agent ports for the scanners (agents, wrong-key
# agents and decoys). Then every port of one host, and the raw sender's
# peak rate against masscan's. Needs root; installs nmap and masscan if
# missing. IFL_BEFORE=PATH races another build of ifl beside it (see
# bench-lib.sh).
#
#   [IFL_BEFORE=PATH] scripts/bench-synscan.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
. scripts/bench-lib.sh bsyn nmap masscan
port=7440
# An unprivileged user, with no capability: the connect() path.
nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all --bounding-set=-all)

run_tool() {
	case $1 in
	"ifl probe") time_run "$2" "$ifl" probe --network-key "$key" --no-state -p $port "$prefix" ;;
	"ifl probe --arp-probes") time_run "$2" "$ifl" probe --network-key "$key" --no-state --arp-probes -p $port "$prefix" ;;
	"ifl probe --connect") time_run "$2" "$ifl" probe --network-key "$key" --no-state --connect -p $port "$prefix" ;;
	"ifl scan -p $port") time_run "$2" "$ifl" scan -p $port "$prefix" ;;
	"ifl scan -p 1-1000,$port") time_run "$2" "$ifl" scan -p 1-1000,$port "$prefix" ;;
	"nmap -sS -T5 --min-rate 10000 -p 1-1000,$port") time_run "$2" nmap -n -sS -T5 --min-rate 10000 -p 1-1000,$port "$prefix" ;;
	"ifl scan -p 1-500,$port, no capability") time_run "$2" "${nobody[@]}" "$ifl" scan -p 1-500,$port "$prefix" ;;
	"nmap -sT --unprivileged -T5 -p 1-500,$port") time_run "$2" "${nobody[@]}" nmap -n -sT --unprivileged -T5 -p 1-500,$port "$prefix" ;;
	"nmap -sS -T5 --min-rate 10000 -p $port") time_run "$2" nmap -n -sS -T5 --min-rate 10000 -p $port "$prefix" ;;
	esac
}

count_tool() {
	case $1 in
	"ifl probe"*) agents_ok "$2" ;;
	# Many ports: the open ones count only if every live host was found
	# (the router and the LAN's hosts; nmap counts itself up too).
	"ifl scan -p 1-1000"*) grep -q " $hosts_want live" "$2" && grep -c ' open ' "$2" || echo 0 ;;
	"ifl scan -p 1-500"*) grep -c '^198\..* open ' "$2" || true ;;
	"nmap -sT"*) grep -c '^[0-9]*/tcp *open' "$2" || true ;;
	"nmap -sS -T5 --min-rate 10000 -p 1-1000"*) grep -q "($((hosts_want + 1)) hosts up)" "$2" && grep -c '^[0-9]*/tcp *open' "$2" || echo 0 ;;
	"ifl scan"*) grep -c ' open ' "$2" || true ;;
	nmap*) grep -c '^[0-9]*/tcp *open' "$2" || true ;;
	esac
}

for lan in "198.18.0.0/24 50 10" "198.18.4.0/22 200 40" "198.18.8.0/21 400 80"; do
	read -r prefix hosts nagents <<<"$lan"
	lan_up "$prefix" "$hosts" "$nagents"
	echo "== $prefix, $lan_desc; $runs runs each, interleaved"
	want=$nagents
	echo "agents found and verified, against the port scan that finds them:"
	names=("ifl probe" "nmap -sS -T5 --min-rate 10000 -p $port" "ifl probe --arp-probes")
	# connect() to every address of a /21 takes many seconds a run.
	[ "$hosts" -le 200 ] && names+=("ifl probe --connect")
	race "$runs" "${names[@]}"
	want=$(($(echo "$agents_want" | grep -c .) + (nagents + 19) / 20 + (nagents + 9) / 10))
	echo "open agent ports (agents, wrong-key agents, decoys):"
	race "$runs" "ifl scan -p $port" "nmap -sS -T5 --min-rate 10000 -p $port"
	if [ "$hosts" -le 50 ]; then
		echo "open ports of 1,001 on every address, counted only where every live host was found:"
		race "$runs" "ifl scan -p 1-1000,$port" "nmap -sS -T5 --min-rate 10000 -p 1-1000,$port"
		echo "open ports of 501 on every address, without privilege (connect()):"
		race "$runs" "ifl scan -p 1-500,$port, no capability" "nmap -sT --unprivileged -T5 -p 1-500,$port"
	fi
	$tn down --name $bench_name
done

peak() {
	$tn up --name $bench_name --prefix 198.18.0.0/24 --agents 0 --wrong-key 0 --impostors 0 --closed 1 --dropped 0 --empty 0 >/dev/null
	echo "== raw sender peak rate: 65536 SYNs to a routed /16 (through the LAN's router), one try each"
	local out=/tmp/bench-syn.$$ us sent name bin
	for name in "ifl scan" ${IFL_BEFORE:+"ifl scan (before)"}; do
		bin=$ifl
		[ "$name" = "ifl scan" ] || bin=$IFL_BEFORE
		us=$(time_run $out "$bin" scan -p $port 198.19.0.0/16 --rate 1000000 --retries 0 --timeout 1ms)
		sent=$(grep -o '[0-9]* SYN packets sent' $out | awk '{print $1}')
		printf '%-34s %12.0f packets/s\n' "$name" "$(echo "$sent / ($us / 1000000)" | bc -l)"
	done
	us=$(time_run $out masscan -p$port 198.19.0.0/16 --rate 10000000 --wait 0)
	printf '%-34s %12.0f packets/s\n' "masscan --rate 10000000" "$(echo "65536 / ($us / 1000000)" | bc -l)"
	rm -f $out
	$tn down --name $bench_name
}
peak
