#!/usr/bin/env bash
# Installs the .deb with dpkg, checks what it put where, scores and
# verifies the installed units, runs the installed agent and probe as their
# units would (credentials, users, capabilities) through a network key
# rotation, reads the probe's inventory through the installed Ansible
# inventory plugin as a member of group ifl would (no ansible-galaxy step),
# reinstalls (keys unchanged), removes (keys kept), purges (nothing left),
# and installs again with the fleet's key already in place (the agent
# enabled). Changes this machine: for CI, or a throwaway one. Needs root
# and ansible-core; systemd need not be running.
#
#   scripts/test-deb.sh dist/ifl_*_amd64.deb
set -euo pipefail
deb=$1
units=/usr/lib/systemd/system
wants=/etc/systemd/system/multi-user.target.wants/ifl-agent.service
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root"
if dpkg -s ifl >/dev/null 2>&1; then fail "ifl is installed already; this test needs a machine without it"; fi
command -v ansible-inventory >/dev/null || fail "needs ansible-core, to check the inventory plugin (apt-get install ansible-core)"
collection=/usr/share/ansible/collections/ansible_collections/ifl/fleet
tmp=$(mktemp -d)
# A home for the Ansible user, who is not root.
ahome=$(mktemp -d)
pids=()
# Purge keeps the system user, as Debian does; this test leaves the
# machine as it found it.
had_user=no
getent passwd ifl >/dev/null && had_user=yes
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$tmp" "$ahome" /run/credentials/ifl-agent.service /run/credentials/ifl-probe.service
	dpkg -P ifl >/dev/null 2>&1 || true
	if [ $had_user = no ] && getent passwd ifl >/dev/null; then userdel ifl; fi
	if getent group ifl >/dev/null && [ $had_user = no ]; then groupdel ifl; fi
}
trap cleanup EXIT

dpkg -i "$deb" >/dev/null 2>"$tmp/dpkg.err"
grep -q "created /etc/ifl/network.key" "$tmp/dpkg.err" || fail "dpkg -i did not say it made a new key: $(cat "$tmp/dpkg.err")"
/usr/bin/ifl version >/dev/null || fail "/usr/bin/ifl does not run"
for f in $units/ifl-agent.service $units/ifl-probe.service /usr/share/ifl/ifl-inventory /etc/ifl/agent.yaml \
	/usr/share/bash-completion/completions/ifl /usr/share/zsh/vendor-completions/_ifl \
	/usr/share/doc/ifl/copyright /usr/lib/sysusers.d/ifl.conf /usr/lib/tmpfiles.d/ifl.conf \
	$collection/galaxy.yml $collection/meta/runtime.yml $collection/plugins/inventory/ifl.py; do
	[ -f "$f" ] || fail "$f missing"
done
[ "$(man -w ifl)" = /usr/share/man/man1/ifl.1.gz ] || fail "man -w ifl: $(man -w ifl 2>&1)"
man ifl 2>/dev/null | grep "keycheck" >/dev/null || fail "man ifl does not show the commands"
bash -c 'source /usr/share/bash-completion/completions/ifl; COMP_WORDS=(ifl pro); COMP_CWORD=1; _ifl; [ "${COMPREPLY[*]}" = probe ]' ||
	fail "bash completion of 'ifl pro' is not probe"
for k in /etc/ifl/network.key /etc/ifl/agent.key; do
	[ "$(stat -c %a "$k")" = 600 ] || fail "$k missing, or not mode 0600"
done
ifl keycheck /etc/ifl/network.key >/dev/null && ifl keycheck --agent /etc/ifl/agent.key >/dev/null || fail "the keys made on install are refused"
getent passwd ifl >/dev/null && getent group ifl >/dev/null || fail "no user and group ifl"
[ ! -e $wants ] || fail "a first install without the fleet's key enabled ifl-agent"
# postinst creates /var/lib/ifl only where systemd runs; here, as it would.
systemd-tmpfiles --create ifl.conf
[ "$(stat -c '%a %U %G' /var/lib/ifl)" = "2750 ifl ifl" ] || fail "/var/lib/ifl is $(stat -c '%a %U %G' /var/lib/ifl), want 2750 ifl ifl"
sums=$(sha256sum /etc/ifl/network.key /etc/ifl/agent.key)

# The units, as installed: exposure at most 1.5 for the agent and 2.0 for
# the probe, and nothing for verify to say (it exits 0 on misspelt keys:
# stderr tells).
for gate in ifl-agent:15 ifl-probe:20; do
	u=${gate%:*}
	systemd-analyze security --offline=true --threshold="${gate#*:}" $units/$u.service >/dev/null ||
		fail "$u.service exposure over ${gate#*:}/10: $(systemd-analyze security --offline=true $units/$u.service | tail -1)"
	out=$(systemd-analyze verify $units/$u.service 2>&1 >/dev/null)
	[ -z "$out" ] || fail "systemd-analyze verify $u.service: $out"
done

# start UNIT USER [setpriv flags]: run the installed unit's ExecStart as
# systemd would: its LoadCredential= files (SetCredential= for a missing
# one) copied to /run/credentials/UNIT for USER alone, %d expanded. The
# agent is ready when it logs its start; its PID is in $pid.
start() {
	local unit=$1 user=$2 dir=/run/credentials/$1
	shift 2
	rm -rf "$dir"
	install -d -m 0700 -o "$user" "$dir"
	local id path
	while IFS=: read -r id path; do
		if [ -e "$path" ]; then
			install -m 0400 -o "$user" "$path" "$dir/$id"
		else
			printf '%s' "$(sed -n "s/^SetCredential=$id://p" $units/$unit)" >"$dir/$id"
			chown "$user" "$dir/$id" && chmod 0400 "$dir/$id"
		fi
	done < <(sed -n 's/^LoadCredential=//p' $units/$unit)
	local exec
	exec=$(sed -n 's/^ExecStart=//p' $units/$unit | sed "s|%d|$dir|g")
	rm -f "$tmp/log" && mkfifo "$tmp/log"
	# shellcheck disable=SC2086 # ExecStart is words
	env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY="$dir" setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups --no-new-privs "$@" $exec 2>"$tmp/log" &
	pid=$!
	pids+=("$pid")
	exec 3<"$tmp/log"
	local line
	while IFS= read -r -t 10 line <&3; do
		case $line in *'"event":"start"'*) return 0 ;; esac
		echo "$unit: $line" >&2
	done
	fail "$unit did not start"
}
stop() { kill "$pid" && wait "$pid" || true; exec 3<&-; }
ping_with() { ifl ping --network-key "$1" 127.0.0.1 >/dev/null 2>&1; }

# Key rotation, as README says, on the installed files; the agent runs as
# nobody, who cannot read /etc/ifl/*.key, and gets its keys as credentials.
start ifl-agent.service nobody --bounding-set=-all --inh-caps=-all
ping_with /etc/ifl/network.key || fail "the installed agent refuses its own key"
cp -p /etc/ifl/network.key "$tmp/old.key"
ifl keygen /etc/ifl/network-next.key 2>/dev/null
cp -p /etc/ifl/network-next.key "$tmp/new.key"
! ping_with "$tmp/new.key" || fail "the agent accepted the next key before it was given"
# 1. The next key next to the old one, listed in agent.yaml; restart.
sed -i 's|^#network_keys: \[/run/credentials/|network_keys: [/run/credentials/|' /etc/ifl/agent.yaml
grep -q '^network_keys:' /etc/ifl/agent.yaml || fail "agent.yaml has no network_keys line to uncomment"
stop
start ifl-agent.service nobody --bounding-set=-all --inh-caps=-all
ping_with "$tmp/old.key" || fail "rotation: the old key refused while both are given"
ping_with "$tmp/new.key" || fail "rotation: the new key refused while both are given"
# 2. (Controllers switch to the new key.) 3. The new key becomes the only
# one; agent.yaml back as it was; restart.
mv /etc/ifl/network-next.key /etc/ifl/network.key
sed -i 's|^network_keys: \[/run/credentials/|#network_keys: [/run/credentials/|' /etc/ifl/agent.yaml
stop
start ifl-agent.service nobody --bounding-set=-all --inh-caps=-all
ping_with "$tmp/new.key" || fail "rotation: the new key refused at the end"
! ping_with "$tmp/old.key" || fail "rotation: the old key still accepted at the end"

# The probe as its unit runs it, once: user ifl, CAP_NET_RAW alone; the
# agent is found and the inventory written, group ifl.
probe=$(sed -n 's/^ExecStart=//p' $units/ifl-probe.service | sed 's| --watch [^ ]*||; s| --announcements [^ ]*||; s| \$IFL_PROBE_ARGS||; s|%d|/run/credentials/ifl-probe.service|g')
install -d -m 0700 -o ifl /run/credentials/ifl-probe.service
install -m 0400 -o ifl /etc/ifl/network.key /run/credentials/ifl-probe.service/network.key
# shellcheck disable=SC2086 # ExecStart is words
env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY=/run/credentials/ifl-probe.service \
	setpriv --reuid=ifl --regid=ifl --clear-groups --no-new-privs --inh-caps=-all,+net_raw --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw \
	$probe -o json 127.0.0.1 >"$tmp/probe.json" 2>"$tmp/probe.err" || fail "the probe as user ifl: $(cat "$tmp/probe.err")"
grep -q '"agent"' "$tmp/probe.json" || fail "the probe as user ifl found no agent: $(cat "$tmp/probe.json" "$tmp/probe.err")"
! grep -qi "no CAP_NET_RAW" "$tmp/probe.err" || fail "the probe as user ifl had no CAP_NET_RAW: $(cat "$tmp/probe.err")"
[ "$(stat -c '%U %G' /var/lib/ifl/inventory.json)" = "ifl ifl" ] || fail "inventory.json is $(stat -c '%U %G' /var/lib/ifl/inventory.json), want ifl ifl"
state_mode=$(stat -c %a /var/lib/ifl/inventory.json)
[ "$state_mode" = 640 ] || fail "inventory.json has mode $state_mode, want 640 (readable by group ifl)"
# A member of group ifl who is not root reads the controller's inventory
# by default (ifl inventory falls back to it), as Ansible would.
inv=$(cd / && env -i PATH=/usr/bin:/bin HOME=/nonexistent setpriv --reuid=nobody --regid=ifl --clear-groups ifl inventory --list 2>"$tmp/inv.err") ||
	fail "a member of group ifl cannot read the inventory: $(cat "$tmp/inv.err")"
echo "$inv" | grep -q '"ansible_host": "127.0.0.1"' || fail "a member of group ifl reads no agent: $inv"
# So does Ansible, through the installed plugin: Debian's ansible-core
# looks in /usr/share/ansible/collections by default.
ansible-config dump | grep '^COLLECTIONS_PATHS' | grep -q "'/usr/share/ansible/collections'" ||
	fail "ansible-core does not look for collections in /usr/share/ansible/collections: $(ansible-config dump | grep '^COLLECTIONS_PATHS')"
chown nobody "$ahome"
printf 'plugin: ifl.fleet.ifl\n' >"$ahome/ifl.yml"
as_user() { (cd / && env -i PATH=/usr/bin:/bin HOME="$ahome" setpriv --reuid=nobody --regid=ifl --clear-groups "$@"); }
inv=$(as_user ansible-inventory -i "$ahome/ifl.yml" --list 2>"$tmp/ansible.err") ||
	fail "ansible-inventory through the installed plugin: $(cat "$tmp/ansible.err")"
[ ! -s "$tmp/ansible.err" ] || fail "ansible-inventory through the installed plugin warned: $(cat "$tmp/ansible.err")"
echo "$inv" | grep -q '"ansible_host": "127.0.0.1"' || fail "the installed plugin lists no agent: $inv"
as_user ansible-doc -t inventory ifl.fleet.ifl 2>"$tmp/ansible.err" | grep -q "^> IFL.FLEET.IFL " ||
	fail "ansible-doc does not show the installed plugin: $(cat "$tmp/ansible.err")"
stop
# Leave the keys as installed, for the reinstall's check.
cp -p "$tmp/old.key" /etc/ifl/network.key

dpkg -i "$deb" >/dev/null 2>&1
[ "$(sha256sum /etc/ifl/network.key /etc/ifl/agent.key)" = "$sums" ] || fail "reinstalling replaced a key"

dpkg -r ifl >/dev/null
[ ! -e /usr/bin/ifl ] || fail "remove left /usr/bin/ifl"
[ ! -e $units/ifl-agent.service ] || fail "remove left the unit"
[ ! -e /usr/share/man/man1/ifl.1.gz ] || fail "remove left the man page"
[ ! -e /usr/share/ansible/collections/ansible_collections/ifl ] || fail "remove left the collection: $(find /usr/share/ansible/collections/ansible_collections/ifl)"
[ "$(sha256sum /etc/ifl/network.key /etc/ifl/agent.key)" = "$sums" ] || fail "remove lost a key"

dpkg -P ifl >/dev/null
[ ! -e /etc/ifl ] || fail "purge left /etc/ifl: $(ls -A /etc/ifl)"
[ ! -e /var/lib/ifl ] || fail "purge left /var/lib/ifl"

# With the fleet's key in place before the first install, the agent is
# enabled; a key ifl refuses is not used, and says so.
install -d -m 0755 /etc/ifl
cp -p "$tmp/new.key" /etc/ifl/network.key
dpkg -i "$deb" >/dev/null 2>&1
[ -L $wants ] || fail "a first install with the fleet's key did not enable ifl-agent"
cmp -s "$tmp/new.key" /etc/ifl/network.key || fail "install replaced the fleet's key"
dpkg -P ifl >/dev/null
[ ! -e $wants ] || fail "purge left $wants"
install -d -m 0755 /etc/ifl
cp -p "$tmp/new.key" /etc/ifl/network.key && chmod 644 /etc/ifl/network.key
dpkg -i "$deb" >/dev/null 2>"$tmp/dpkg.err"
grep -q "chmod 600" "$tmp/dpkg.err" || fail "install with a 0644 key did not say chmod 600: $(cat "$tmp/dpkg.err")"
[ ! -e $wants ] || fail "a first install with a key ifl refuses enabled ifl-agent"
dpkg -P ifl >/dev/null
[ ! -e /etc/ifl ] || fail "purge left /etc/ifl"

score() { systemd-analyze security --offline=true "$(dirname "$0")/$1" 2>/dev/null | sed -n 's/.*: \([0-9.]*\) .*/\1/p'; }
echo "test-deb: install, units, key rotation, probe as ifl (inventory mode $state_mode), the Ansible plugin, reinstall, remove, purge, enable with the fleet's key ok; exposure ifl-agent $(score ifl-agent.service), ifl-probe $(score ifl-probe.service)"
