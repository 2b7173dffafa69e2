#!/usr/bin/env bash
# Soak of the etcd store: three controllers (sites) write a round every
# INTERVAL to a 3-member etcd cluster on loopback for DURATION while a
# member is killed and restarted every minute, and two watches follow
# (ifl's and a raw one). It fails on a lost update, a duplicate host or
# name, or a watch event lost or repeated, and prints the counts. Needs
# etcd (apt-get install etcd-server).
#
#   scripts/soak-etcd.sh [DURATION [INTERVAL]]    # default 10m 5s
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
command -v etcd >/dev/null || { echo "soak-etcd: needs etcd (apt-get install etcd-server)" >&2; exit 2; }
IFL_SOAK=${1:-10m} IFL_SOAK_EVERY=${2:-5s} exec go test -count=1 -timeout 60m -run '^TestSoakEtcd$' -v ./internal/controller/inventory/
