#!/usr/bin/env bash
# The scanner itself, from a /24 to a /16: one process, the LAN's
# responder (internal/testbed/responder), answers ARP and TCP SYNs for
# every host from one link of the bridge, each host at its own MAC, so
# that a broadcast costs this machine two readers (the responder and the
# router) as on a switched LAN, not one per host. Hosts at the density of
# 10,000 in a /16: 39 on the /24, 625 on the /20, 10,000 on the /16; one
# in ten has the agent port open, one in ten drops it, the rest reset it.
#   ifl arp-scan, and with --rate RATE  vs  nmap -sn -PR -T5 --min-rate RATE
#       and arp-scan one request every 1/RATE s
#   ifl scan -p PORT, and with --rate RATE  vs  nmap -sS -T5 --min-rate RATE
#       and masscan --rate RATE
# RATE is 10,000 packets a second unless the environment sets it. Each
# row: the median wall time of RUNS interleaved runs, the fewest found in
# any run (hosts; open ports), the median's ratio to ifl's (defaults),
# the packets the controller sent, the CPU seconds (user and system) and
# peak resident memory of the tool, and the wall time per address swept.
# Then how each tool's time per address grows from size to size. The
# controller's kernel resets no SYN-ACK of the responder's (see README:
# Test network); the responder's own drops are shown after each LAN.
# Needs root; installs nmap, masscan, arp-scan and time if missing.
#
#   scripts/bench-scale.sh [RUNS [PREFIX-LENGTH...]]   (default: 3 runs; 24 20 16)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(24 20 16)
rate=${RATE:-10000}
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
. scripts/bench-lib.sh bscale nmap masscan arp-scan
port=7440
ctl=ifl-$bench_name-ctl
out=/tmp/bench-scale.$$ tf=/tmp/bench-scale-time.$$
trap '$tn down --name $bench_name >/dev/null 2>&1 || true; rm -f $lan_json $out $tf' EXIT

tx() { ip netns exec $ctl cat /sys/class/net/eth0/statistics/tx_packets; }

# measure CMD...: runs CMD in the controller's namespace with its output
# in $out, and prints its wall time (µs), the packets the controller sent,
# its CPU seconds and its peak RSS (KiB).
measure() {
	local s e t0 t1
	t0=$(tx)
	s=$(date +%s%N)
	ip netns exec $ctl /usr/bin/time -o $tf -f '%U %S %M' "$@" >$out 2>&1 || true
	e=$(date +%s%N)
	t1=$(tx)
	read -r user sys rss < <(tail -1 $tf)
	echo "$(((e - s) / 1000)) $((t1 - t0)) $(echo "$user + $sys" | bc -l) $rss"
}

run_tool() {
	case $1 in
	"ifl arp-scan") measure "$ifl" arp-scan eth0 ;;
	"ifl arp-scan --rate $rate") measure "$ifl" arp-scan --rate $rate eth0 ;;
	"nmap -sn -PR -T5 --min-rate $rate") measure nmap -n -sn -PR -T5 --min-rate $rate "$prefix" ;;
	"arp-scan --interval $((1000000 / rate))u") measure arp-scan -I eth0 --interval=$((1000000 / rate))u "$prefix" ;;
	"ifl scan -p $port") measure "$ifl" scan -p $port "$prefix" ;;
	"ifl scan -p $port --rate $rate") measure "$ifl" scan -p $port --rate $rate "$prefix" ;;
	"nmap -sS -T5 --min-rate $rate -p $port") measure nmap -n -sS -T5 --min-rate $rate -p $port "$prefix" ;;
	# masscan sends every SYN to its router's MAC: the responder's link
	# stands for it. It waits 10 s after its last SYN by default.
	"masscan --rate $rate --wait 1") measure masscan -p$port "$prefix" --rate $rate --wait 1 --router-mac "$rsp_mac" ;;
	esac
}

count_tool() {
	case $1 in
	"nmap -sn"*) echo $(($(grep -c 'Host is up' $out || true) - 1)) ;; # less the controller itself
	"arp-scan "*) grep '^198\.' $out | awk '{print $1}' | sort -u | grep -c . || true ;;
	"nmap -sS"*) grep -c '^[0-9]*/tcp *open' $out || true ;;
	masscan*) grep -o 'open port [0-9]*/tcp on [0-9.]*' $out | sort -u | grep -c . || true ;;
	"ifl scan"*) grep -c ' open ' $out || true ;;
	*) grep -c '^198\.' $out || true ;;
	esac
}

# per_addr[TOOL|BITS]: the median µs per address, for the growth table.
declare -A per_addr
race_scale() {
	local names=("$@") r name us pk cpu rss n
	declare -A t p c m f
	for ((r = 0; r < runs; r++)); do
		for name in "${names[@]}"; do
			read -r us pk cpu rss < <(run_tool "$name")
			n=$(count_tool "$name")
			t[$name]+="$us " p[$name]+="$pk " c[$name]+="$cpu " m[$name]+="$rss "
			if [ -z "${f[$name]:-}" ] || [ "$n" -lt "${f[$name]}" ]; then f[$name]=$n; fi
		done
	done
	local base mt
	base=$(echo ${t[${names[0]}]} | tr ' ' '\n' | median)
	printf '| %-42s | %8s | %13s | %7s | %9s | %6s | %8s | %7s |\n' tool "median s" "found (min)" "x first" packets "CPU s" "RSS MiB" "µs/addr"
	printf '| %-42s | %8s | %13s | %7s | %9s | %6s | %8s | %7s |\n' --- ---: ---: ---: ---: ---: ---: ---:
	for name in "${names[@]}"; do
		mt=$(echo ${t[$name]} | tr ' ' '\n' | median)
		per_addr["$name|$bits"]=$(echo "$mt / $addrs" | bc -l)
		printf '| %-42s | %8.3f | %6d/%-6d | %7.2f | %9d | %6.2f | %8.1f | %7.2f |\n' "\`$name\`" "$(echo "$mt / 1000000" | bc -l)" \
			"${f[$name]}" "$want" "$(echo "$mt / $base" | bc -l)" "$(echo ${p[$name]} | tr ' ' '\n' | median)" \
			"$(echo ${c[$name]} | tr ' ' '\n' | median)" "$(echo "$(echo ${m[$name]} | tr ' ' '\n' | median) / 1024" | bc -l)" "${per_addr["$name|$bits"]}"
	done
}

arp_tools=("ifl arp-scan" "ifl arp-scan --rate $rate" "nmap -sn -PR -T5 --min-rate $rate" "arp-scan --interval $((1000000 / rate))u")
syn_tools=("ifl scan -p $port" "ifl scan -p $port --rate $rate" "nmap -sS -T5 --min-rate $rate -p $port" "masscan --rate $rate --wait 1")
declare -A prefixes=([24]=198.18.0.0/24 [20]=198.18.16.0/20 [16]=198.19.0.0/16)
for bits in "${sizes[@]}"; do
	prefix=${prefixes[$bits]:?"a prefix length of 24, 20 or 16, not $bits"}
	addrs=$(((1 << (32 - bits)) - 2))
	hosts=$(((1 << (32 - bits)) * 10000 / 65536)) open=$((hosts / 10)) filtered=$((hosts / 10))
	$tn up --name $bench_name --prefix "$prefix" --agents 0 --wrong-key 0 --impostors 0 --closed 0 --dropped 0 --empty 0 \
		--responder $hosts --responder-open $open --responder-filtered $filtered --json >"$lan_json"
	rsp_mac=$(jq -r .responder_node.mac "$lan_json")
	rsp_pid=$(jq -r .responder_node.pid "$lan_json")
	echo "== $prefix: $hosts hosts from the responder ($open with port $port open, $filtered filtered, the rest closed) and the router; $runs runs each, interleaved"
	want=$((hosts + 1))
	echo "hosts found by ARP:"
	race_scale "${arp_tools[@]}"
	want=$open
	echo "open ports found:"
	race_scale "${syn_tools[@]}"
	kill -USR1 "$rsp_pid"
	for _ in $(seq 50); do grep -q '"event":"stats"' /run/ifl-testnet/$bench_name/responder.log && break; sleep 0.1; done
	echo "responder: $(grep '"event":"stats"' /run/ifl-testnet/$bench_name/responder.log | tail -1 | jq -c '{arp, syn_ack, reset, kernel_drops, queue_full, write_errors}')"
	$tn down --name $bench_name
done

if [ ${#sizes[@]} -gt 1 ]; then
	echo "== time per address (µs), and its growth from each size to the next"
	printf '| %-42s |' tool
	for bits in "${sizes[@]}"; do printf ' %8s |' "/$bits"; done
	echo
	printf '| %-42s |' ---
	for _ in "${sizes[@]}"; do printf ' %8s |' ---:; done
	echo
	for name in "${arp_tools[@]}" "${syn_tools[@]}"; do
		printf '| %-42s |' "\`$name\`"
		prev=""
		for bits in "${sizes[@]}"; do
			v=${per_addr["$name|$bits"]}
			if [ -n "$prev" ]; then
				printf ' %s |' "$(printf '%.2f (%.2fx)' "$v" "$(echo "$v / $prev" | bc -l)")"
			else
				printf ' %8.2f |' "$v"
			fi
			prev=$v
		done
		echo
	done
fi
