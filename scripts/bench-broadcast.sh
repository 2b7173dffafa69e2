#!/usr/bin/env bash
# Finding agents without privilege, side by side on one virtual LAN:
#   ifl probe --broadcast   one authenticated UDP query to the broadcast
#                           address, then a handshake with each answer
#   ifl probe --connect     a connect() sweep of every address, then the
#                           handshake with each open port
#   nmap -sT --unprivileged a connect() sweep of the port (which does not
#                           even authenticate: it counts open ports)
# all as the user nobody, with no capability, on a /22 of about 200 hosts:
# 40 agents (2 of them behind a firewall that drops the UDP port, which
# only a sweep finds, and 5 behind one that drops the TCP port, which
# --broadcast reports as tcp-filtered), wrong-key agents, impostors,
# closed and firewalled hosts. Prints the median wall time of RUNS interleaved runs, the fewest
# agents found by identity in any run (open ports for nmap), and each time
# as a ratio to ifl probe --broadcast's. Needs root (for the LAN); installs
# nmap if missing.
#
#   scripts/bench-broadcast.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
. scripts/bench-lib.sh bbcast nmap
port=7440
prefix=198.18.8.0/22
agents=40 mute=2 walled=5

# The unprivileged user's copy of ifl and of the network key: a directory
# only nobody may read, as a key file must be.
priv=$(mktemp -d /tmp/bench-bcast.XXXXXX)
trap '$tn down --name $bench_name >/dev/null 2>&1 || true; rm -rf "$priv"' EXIT
$tn up --name $bench_name --prefix $prefix --agents $agents --drop-udp $mute --drop-tcp $walled --wrong-key 3 --impostors 3 \
	--closed 150 --dropped 4 --empty 0 >/dev/null
install -m 0755 ifl "$priv/ifl"
install -m 0600 /run/ifl-testnet/$bench_name/network.key "$priv/network.key"
chown -R nobody:nogroup "$priv"
chmod 0700 "$priv"
unpriv=(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all)
ifl=("${unpriv[@]}" "$priv/ifl" probe --network-key "$priv/network.key" --no-state -o json -p $port)

# agents OUT: the distinct identities of the agents in ifl's JSON report.
agents_in() { grep -o '"identity": *"[0-9a-f]*"' "$1" | sort -u | wc -l; }
# tcp_filtered OUT: how many hosts ifl's JSON report lists as tcp-filtered.
tcp_filtered() { grep -c '"reason": *"tcp-filtered"' "$1" || true; }

echo "== $prefix: 200 hosts, $agents agents ($mute dropping UDP, $walled dropping TCP), 3 wrong-key, 3 impostors, 4 firewalled, 150 closed; as nobody; $runs runs each, interleaved"
declare -A times found walled_min
names=("ifl probe --broadcast" "ifl probe --connect" "nmap -sT --unprivileged")
out=$priv/out
for ((r = 0; r < runs; r++)); do
	for tool in "${names[@]}"; do
		case $tool in
		"ifl probe --broadcast")
			us=$(time_run $out "${ifl[@]}" --broadcast $prefix); n=$(agents_in $out); f=$(tcp_filtered $out)
			if [ -z "${walled_min[$tool]:-}" ] || [ "$f" -lt "${walled_min[$tool]}" ]; then walled_min[$tool]=$f; fi ;;
		"ifl probe --connect") us=$(time_run $out "${ifl[@]}" --connect $prefix); n=$(agents_in $out) ;;
		"nmap -sT --unprivileged") us=$(time_run $out "${unpriv[@]}" nmap -n -sT --unprivileged -p $port $prefix); n=$(grep -c '^[0-9]*/tcp *open' $out || true) ;;
		esac
		times[$tool]+="$us "
		if [ -z "${found[$tool]:-}" ] || [ "$n" -lt "${found[$tool]}" ]; then found[$tool]=$n; fi
	done
done
printf '%-34s %10s %12s %8s\n' tool "median s" "found (min)" "x bcast"
base=$(echo ${times["ifl probe --broadcast"]} | tr ' ' '\n' | median)
for tool in "${names[@]}"; do
	m=$(echo ${times[$tool]} | tr ' ' '\n' | median)
	printf '%-34s %10.3f %7d/%-4d %8.2f\n' "$tool" "$(echo "$m / 1000000" | bc -l)" "${found[$tool]}" "$agents" "$(echo "$m / $base" | bc -l)"
done
echo "(ifl probe --broadcast: $((agents - mute - walled)) agents answer its query and TCP; it listed ${walled_min["ifl probe --broadcast"]} of the $walled behind a TCP firewall as tcp-filtered in every run)"
echo "(nmap: open ports, $((agents - walled + 6)) of them with a service, agents or not; ifl: agents verified by handshake, by identity)"
