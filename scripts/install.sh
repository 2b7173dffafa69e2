#!/usr/bin/env bash
# Installs (or uninstalls) ifl on this machine:
#   /usr/bin/ifl, the systemd units ifl-agent and ifl-probe, /etc/ifl/agent.yaml
#   (commented defaults), /etc/ifl/network.key and /etc/ifl/agent.key, the
#   Ansible inventory script /usr/share/ifl/ifl-inventory.
# Running it again changes nothing that is already in place: keys and the
# config are never overwritten.
#
#   sudo scripts/install.sh [--binary ./ifl] [--network-key FILE] [--cap-net-raw] [--no-enable]
#   sudo scripts/install.sh --uninstall [--purge]
#
# --network-key FILE  copy the fleet's key instead of generating a new one
# --cap-net-raw       grant ifl cap_net_raw+ep, so that the fast probe runs
#                     without sudo (anyone who may run ifl can then send raw
#                     packets from this host)
# --no-enable         install, but leave ifl-agent disabled
# --uninstall         remove everything but /etc/ifl (keys and config);
# --purge             with --uninstall, remove /etc/ifl and the inventory too
# DESTDIR=DIR         install under DIR (packaging, tests): no systemctl calls
set -euo pipefail
cd "$(dirname "$0")/.."

binary=./ifl network_key="" cap=no enable=yes uninstall=no purge=no
while [ $# -gt 0 ]; do
	case $1 in
	--binary) binary=$2; shift ;;
	--network-key) network_key=$2; shift ;;
	--cap-net-raw) cap=yes ;;
	--no-enable) enable=no ;;
	--uninstall) uninstall=yes ;;
	--purge) purge=yes ;;
	-h|--help) sed -n '2,21p' "$0"; exit 0 ;;
	*) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
root=${DESTDIR:-}
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
	echo "install.sh: needs root (or DESTDIR=DIR)" >&2
	exit 2
fi
systemd_up() { [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

if [ $uninstall = yes ]; then
	if systemd_up; then
		systemctl disable --now ifl-agent.service ifl-probe.service 2>/dev/null || true
	fi
	rm -f "$root/usr/bin/ifl" "$root/lib/systemd/system/ifl-agent.service" "$root/lib/systemd/system/ifl-probe.service"
	rm -rf "$root/usr/share/ifl"
	if [ $purge = yes ]; then
		rm -rf "$root/etc/ifl" "$root/var/lib/ifl"
	else
		echo "install.sh: kept $root/etc/ifl (keys and config); --purge removes them" >&2
	fi
	if systemd_up; then systemctl daemon-reload; fi
	exit 0
fi

[ -x "$binary" ] || { echo "install.sh: $binary is not built (make build)" >&2; exit 2; }
install -D -m 0755 "$binary" "$root/usr/bin/ifl"
install -D -m 0644 scripts/ifl-agent.service "$root/lib/systemd/system/ifl-agent.service"
install -D -m 0644 scripts/ifl-probe.service "$root/lib/systemd/system/ifl-probe.service"
install -D -m 0755 scripts/ifl-inventory "$root/usr/share/ifl/ifl-inventory"
install -d -m 0755 "$root/etc/ifl"
[ -e "$root/etc/ifl/agent.yaml" ] || install -m 0644 scripts/agent.yaml "$root/etc/ifl/agent.yaml"
if [ ! -e "$root/etc/ifl/network.key" ]; then
	if [ -n "$network_key" ]; then
		install -m 0600 "$network_key" "$root/etc/ifl/network.key"
	else
		"$root/usr/bin/ifl" keygen "$root/etc/ifl/network.key"
		echo "install.sh: a new network key: copy $root/etc/ifl/network.key to every host of this fleet" >&2
	fi
fi
[ -e "$root/etc/ifl/agent.key" ] || "$root/usr/bin/ifl" keygen --agent "$root/etc/ifl/agent.key" >/dev/null
if [ $cap = yes ]; then
	setcap cap_net_raw+ep "$root/usr/bin/ifl"
fi
if systemd_up; then
	systemctl daemon-reload
	if [ $enable = yes ]; then
		systemctl enable --now ifl-agent.service
	fi
fi
echo "install.sh: installed $("$root/usr/bin/ifl" version)" >&2
