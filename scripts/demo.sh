#!/usr/bin/env bash
# make demo: on a throwaway virtual LAN of namespaced hosts (agents, agents
# with the wrong key, impostors, closed and firewalled ports, empty
# addresses), run a real ifl probe from the controller's namespace, then
# tear the LAN down.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

if [ "$(id -u)" != 0 ]; then
	echo "demo: network namespaces need root: make demo (it uses sudo), or run this as root" >&2
	exit 2
fi
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then
	echo "demo: installing ${need[*]}" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# make demo builds both as the user who ran it; run by hand, build here.
[ -x ifl ] || make -s build
mkdir -p .build
[ -x .build/ifl-testnet ] || go build -o .build/ifl-testnet ./internal/testbed/testnet/cmd/ifl-testnet
trap '.build/ifl-testnet down --name demo' EXIT
trap 'exit 130' INT TERM HUP PIPE

.build/ifl-testnet up --name demo --prefix 198.18.0.0/24 \
	--agents 12 --wrong-key 2 --impostors 2 --closed 2 --dropped 1 --empty 1
key=/run/ifl-testnet/demo/network.key
ctl=ifl-demo-ctl
# The demo's inventory lives and dies with its LAN.
export IFL_STATE=/run/ifl-testnet/demo/inventory.json

echo
echo "# in the controller's namespace: probe its own subnet (the default targets)"
echo "\$ ifl probe"
ip netns exec $ctl ./ifl probe --network-key $key
first=$(.build/ifl-testnet status --name demo --json | awk -F'"' '/"role": "agent"/ {getline; getline; print $4; exit}')
echo
echo "# one agent, all its facts"
echo "\$ ifl ping $first"
ip netns exec $ctl ./ifl ping --network-key $key "$first"

echo
echo "# DHCP moves h001 to 198.18.0.200; the next probe notices, by identity"
.build/ifl-testnet move --name demo h001 198.18.0.200
echo "\$ ifl probe -o json >/dev/null"
ip netns exec $ctl ./ifl probe --network-key $key -o json >/dev/null

echo
echo "# what Ansible sees (scripts/ifl-inventory runs: ifl inventory --list)"
echo "\$ ifl inventory"
./ifl inventory
