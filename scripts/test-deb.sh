#!/usr/bin/env bash
# Installs the .deb with dpkg, checks what it put where, reinstalls it
# (keys unchanged), removes it (keys kept), purges it (nothing left).
# Changes this machine: for CI, or a throwaway one. Needs root.
#
#   scripts/test-deb.sh dist/ifl_*.deb
set -euo pipefail
deb=$1
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root"
if dpkg -s ifl >/dev/null 2>&1; then fail "ifl is installed already; this test needs a machine without it"; fi

dpkg -i "$deb" >/dev/null
/usr/bin/ifl version >/dev/null || fail "/usr/bin/ifl does not run"
for f in /lib/systemd/system/ifl-agent.service /lib/systemd/system/ifl-probe.service /usr/share/ifl/ifl-inventory /etc/ifl/agent.yaml; do
	[ -e "$f" ] || fail "$f missing"
done
for k in /etc/ifl/network.key /etc/ifl/agent.key; do
	[ "$(stat -c %a "$k")" = 600 ] || fail "$k missing, or not mode 0600"
done
/usr/bin/ifl agent --config /etc/ifl/agent.yaml --network-key /etc/ifl/network.key --identity-key /etc/ifl/agent.key --port 65000 --listen 127.0.0.1 --help >/dev/null
sums=$(sha256sum /etc/ifl/network.key /etc/ifl/agent.key)

# The units, as installed: the agent's exposure at most 1.5, and nothing
# for verify to say (it exits 0 on misspelt keys: stderr tells).
systemd-analyze security --offline=true --threshold=15 /lib/systemd/system/ifl-agent.service >/dev/null ||
	fail "ifl-agent.service exposure over 1.5: $(systemd-analyze security --offline=true /lib/systemd/system/ifl-agent.service | tail -1)"
for u in ifl-agent ifl-probe; do
	out=$(systemd-analyze verify /lib/systemd/system/$u.service 2>&1 >/dev/null)
	[ -z "$out" ] || fail "systemd-analyze verify $u.service: $out"
done

dpkg -i "$deb" >/dev/null
[ "$(sha256sum /etc/ifl/network.key /etc/ifl/agent.key)" = "$sums" ] || fail "reinstalling replaced a key"

dpkg -r ifl >/dev/null
[ ! -e /usr/bin/ifl ] || fail "remove left /usr/bin/ifl"
[ ! -e /lib/systemd/system/ifl-agent.service ] || fail "remove left the unit"
[ "$(sha256sum /etc/ifl/network.key /etc/ifl/agent.key)" = "$sums" ] || fail "remove lost a key"

dpkg -P ifl >/dev/null
[ ! -e /etc/ifl ] || fail "purge left /etc/ifl: $(ls -A /etc/ifl)"
echo "test-deb: install, reinstall, remove and purge ok; agent unit exposure $(systemd-analyze security --offline=true "$(dirname "$0")/ifl-agent.service" 2>/dev/null | sed -n 's/.*: \([0-9.]*\) .*/\1/p')"
