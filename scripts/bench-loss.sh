#!/usr/bin/env bash
# Under loss: the /24 of bench-synscan.sh (50 hosts, 10 agents), where 5
# agents drop 20% of the ARP and agent-port TCP that reaches them
# (nftables numgen). RUNS runs of each tool (ifl's with and without
# --arp-probes), interleaved; counts the chances to find a lossy agent
# that each tool missed (RUNS x 5), and its mean time; then ifl probe's
# mean time on the same LAN without the loss.
# Needs root; installs nmap if missing.
#
#   scripts/bench-loss.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
. scripts/bench-lib.sh bloss nmap
port=7440 prefix=198.18.0.0/24

mean() { awk '{s += $1} END {printf "%.0f", s / NR}'; }

# missed OUT TOOL: how many lossy agents the run did not find.
missed() {
	local got
	case $2 in
	"ifl probe"*) got=$(awk '$2 == "agent" {print $1}' "$1") ;;
	"ifl arp-scan"*) got=$(awk '/^198\./ {print $1}' "$1") ;;
	"nmap -sS"*) got=$(awk '/^Nmap scan report for/ {a = $NF} /^[0-9]*\/tcp *open/ {print a}' "$1") ;;
	"nmap -sn"*) got=$(awk '/^Nmap scan report for/ {print $NF}' "$1") ;;
	esac
	comm -23 <(echo "$lossy") <(echo "$got" | sort) | grep -c . || true
}

lan_up $prefix 50 10 --lossy 5 --loss 20
lossy=$(jq -r '.hosts[] | select(.loss > 0) | .addr' "$lan_json" | sort)
echo "== $prefix, $lan_desc; 5 agents drop 20% of ARP and agent-port TCP; $runs runs each, interleaved"
names=("ifl probe" "nmap -sS -T5 --min-rate 10000 -p $port" "ifl arp-scan" "nmap -sn -PR -T5 --min-rate 10000" "ifl probe --arp-probes" "ifl arp-scan --arp-probes")
declare -A t m
out=/tmp/bench-loss.$$
for ((r = 0; r < runs; r++)); do
	for name in "${names[@]}"; do
		case $name in
		"ifl probe") us=$(time_run $out ./ifl probe --network-key "$key" --no-state -p $port $prefix) ;;
		"nmap -sS"*) us=$(time_run $out nmap -n -sS -T5 --min-rate 10000 -p $port $prefix) ;;
		"ifl arp-scan") us=$(time_run $out ./ifl arp-scan eth0) ;;
		"ifl probe --arp-probes") us=$(time_run $out ./ifl probe --arp-probes --network-key "$key" --no-state -p $port $prefix) ;;
		"ifl arp-scan --arp-probes") us=$(time_run $out ./ifl arp-scan --arp-probes eth0) ;;
		"nmap -sn"*) us=$(time_run $out nmap -n -sn -PR -T5 --min-rate 10000 $prefix) ;;
		esac
		t[$name]+="$us"$'\n'
		m[$name]=$((${m[$name]:-0} + $(missed $out "$name")))
	done
done
printf '| %-40s | %22s | %14s |\n' tool "lossy findings missed" "mean time ms"
printf '| %-40s | %22s | %14s |\n' --- ---: ---:
for name in "${names[@]}"; do
	printf '| %-40s | %15d of %-4d | %14s |\n' "\`$name\`" "${m[$name]}" $((runs * 5)) "$(echo -n "${t[$name]}" | mean | awk '{printf "%.0f", $1 / 1000}')"
done
$tn down --name $bench_name

# The same LAN, the same seed, no loss.
lan_up $prefix 50 10
clean=""
for ((r = 0; r < runs; r++)); do
	clean+="$(time_run $out ./ifl probe --network-key "$key" --no-state -p $port $prefix)"$'\n'
done
rm -f $out
lossy_ms=$(echo -n "${t["ifl probe"]}" | mean | awk '{printf "%.0f", $1 / 1000}')
clean_ms=$(echo -n "$clean" | mean | awk '{printf "%.0f", $1 / 1000}')
echo "ifl probe mean time without loss: $clean_ms ms; under loss: $lossy_ms ms ($(echo "$lossy_ms / $clean_ms" | bc -l | xargs printf '%.2f')x)"
