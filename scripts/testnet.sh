#!/usr/bin/env bash
# Virtual LANs of network namespaces for testing ifl by hand and for
# benchmarks. Needs root. Addresses come from 198.18.0.0/15 only and live
# only inside the LAN's namespaces.
#
#   scripts/testnet.sh up [--name demo] [--prefix 198.18.0.0/24] [--agents 10] ...
#   scripts/testnet.sh status [--name demo]
#   scripts/testnet.sh down [--name demo]
#   scripts/testnet.sh up --help
#
# Then, for example:
#   ip netns exec ifl-demo-ctl ./ifl probe --network-key /run/ifl-testnet/demo/network.key
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
make -s build >/dev/null
mkdir -p .build
go build -o .build/ifl-testnet ./internal/testbed/testnet/cmd/ifl-testnet
exec .build/ifl-testnet "$@"
