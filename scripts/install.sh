#!/usr/bin/env bash
# Installs (or uninstalls) ifl on this machine, as the .deb does:
#   /usr/bin/ifl, the units ifl-agent and ifl-probe (/usr/lib/systemd/system),
#   the man page, bash and zsh completion, /etc/ifl/agent.yaml (commented
#   defaults), /etc/ifl/network.key and /etc/ifl/agent.key, the user ifl
#   (ifl-probe runs as it; its group may read /var/lib/ifl), the Ansible
#   inventory script /usr/share/ifl/ifl-inventory.
# Everything is checked before anything changes: a bad key, a missing file
# or a conflict leaves the machine as it was. Running it again changes
# nothing that is in place; keys are replaced only with --force.
#
#   sudo scripts/install.sh [--binary ./ifl] [--network-key FILE [--force]] [--enable|--no-enable] [--cap-net-raw]
#   sudo scripts/install.sh --uninstall [--purge]
#
# --network-key FILE  install the fleet's network key (checked with ifl
#                     keycheck); if /etc/ifl/network.key holds another key,
#                     stop with exit status 1 unless --force replaces it
# --force             with --network-key, replace a different key
# --enable            enable and start ifl-agent even with a new key
# --no-enable         do not enable ifl-agent, even with --network-key
#                     (by default it is enabled when --network-key is given)
# --cap-net-raw       grant ifl cap_net_raw+ep, so that the fast probe runs
#                     without sudo (anyone who may run ifl can then send raw
#                     packets from this host)
# --uninstall         remove everything but /etc/ifl (keys and config) and
#                     the user ifl
# --purge             with --uninstall, remove /etc/ifl and the inventory too
# DESTDIR=DIR         install under DIR (packaging, tests): no systemctl
#                     calls, no user created; it says what to run instead
#
# FILE arguments are read from the directory install.sh is run from; the
# rest (units, man page, ./ifl by default) from the repository it is in.
#
# Exit status: 0 done, 1 a different key is in place (nothing changed),
# 2 usage or environment error (nothing changed).
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
# fromcaller FILE: FILE as given from the caller's directory.
fromcaller() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$caller" "$1" ;; esac; }

usage() { echo "install.sh: $*; see --help" >&2; exit 2; }
die() { echo "install.sh: $*" >&2; exit 2; }
binary=./ifl network_key="" force=no enable=auto cap=no uninstall=no purge=no
while [ $# -gt 0 ]; do
	case $1 in
	--binary | --network-key)
		[ $# -ge 2 ] && [ -n "$2" ] && [ "${2#--}" = "$2" ] || usage "$1 needs a FILE"
		if [ "$1" = --binary ]; then binary=$(fromcaller "$2"); else network_key=$(fromcaller "$2"); fi
		shift
		;;
	--binary=* | --network-key=*) usage "write ${1%%=*} FILE, with a space" ;;
	--force) force=yes ;;
	--enable) enable=yes ;;
	--no-enable) enable=no ;;
	--cap-net-raw) cap=yes ;;
	--uninstall) uninstall=yes ;;
	--purge) purge=yes ;;
	-h | --help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) usage "unknown option $1" ;;
	esac
	shift
done
[ $purge = no ] || [ $uninstall = yes ] || usage "--purge goes with --uninstall"
[ $force = no ] || [ -n "$network_key" ] || usage "--force goes with --network-key"
[ $uninstall = no ] || { [ -z "$network_key" ] && [ $enable = auto ] && [ $cap = no ]; } || usage "--uninstall takes only --purge"

root=${DESTDIR:-}
[ -z "$root" ] || root=$(fromcaller "$root")
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
	die "needs root (or DESTDIR=DIR)"
fi
systemd_up() { [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }
units=(ifl-agent.service ifl-probe.service)
unitdir=$root/usr/lib/systemd/system
files=("$root/usr/bin/ifl" "$unitdir/ifl-agent.service" "$unitdir/ifl-probe.service"
	"$root/usr/share/man/man1/ifl.1.gz" "$root/usr/share/bash-completion/completions/ifl"
	"$root/usr/share/zsh/vendor-completions/_ifl" "$root/usr/lib/sysusers.d/ifl.conf"
	"$root/usr/lib/tmpfiles.d/ifl.conf")

if [ $uninstall = yes ]; then
	if systemd_up; then
		systemctl disable --now "${units[@]}" 2>/dev/null || true
	fi
	rm -f "${files[@]}"
	# Units an older install.sh put in /lib, unless /lib is /usr/lib.
	for u in "${units[@]}"; do
		[ "$root/lib/systemd/system/$u" -ef "$unitdir/$u" ] || rm -f "$root/lib/systemd/system/$u"
	done
	rm -rf "$root/usr/share/ifl"
	if [ $purge = yes ]; then
		rm -rf "$root/etc/ifl" "$root/var/lib/ifl"
	else
		echo "install.sh: kept $root/etc/ifl (keys and config); --purge removes them" >&2
	fi
	if systemd_up; then systemctl daemon-reload; fi
	exit 0
fi

# Check: the binary, the keys, the tools; nothing changes before this ends.
[ -f "$binary" ] && [ -x "$binary" ] || die "$binary is not built (make build)"
"$binary" version >/dev/null 2>&1 || die "$binary does not run on this machine"
for f in scripts/ifl-agent.service scripts/ifl-probe.service scripts/ifl.1 scripts/completion/ifl.bash scripts/completion/_ifl scripts/sysusers.conf scripts/tmpfiles.conf scripts/ifl-inventory scripts/agent.yaml; do
	[ -f "$f" ] || die "$f is missing: run this from a copy of the ifl repository"
done
if [ $cap = yes ] && ! command -v setcap >/dev/null; then
	die "--cap-net-raw needs setcap (apt-get install libcap2-bin)"
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
keyid() { "$binary" keycheck "$@" | cut -f2; }
nk=$root/etc/ifl/network.key ak=$root/etc/ifl/agent.key
new_id="" old_id="" install_key=no
if [ -n "$network_key" ]; then
	[ -f "$network_key" ] && [ -r "$network_key" ] || die "--network-key $network_key: no such readable file"
	# The check reads a private copy: ifl refuses keys others may read,
	# and the installed copy will be 0600 whatever the source's mode.
	install -m 0600 "$network_key" "$stage/network.key"
	new_id=$(keyid "$stage/network.key" 2>"$stage/err") || die "--network-key $network_key: $(sed 's/^ifl: keycheck: //; s|'"$stage"'/network.key|the key|' "$stage/err")"
	install_key=yes
fi
if [ -e "$nk" ]; then
	if old_id=$(keyid "$nk" 2>"$stage/err"); then
		if [ -n "$new_id" ] && [ "$new_id" = "$old_id" ]; then
			install_key=no
			echo "install.sh: $nk already holds this network key" >&2
		elif [ -n "$new_id" ] && [ $force = no ]; then
			echo "install.sh: $nk holds a different network key (id $old_id; $network_key is $new_id): nothing changed; --force replaces it (every host of the fleet must then have the new key)" >&2
			exit 1
		fi
	elif [ $install_key = no ]; then
		die "$nk is not a key ifl accepts ($(sed 's/^ifl: keycheck: //' "$stage/err")); replace it: --network-key FILE --force"
	elif [ $force = no ]; then
		echo "install.sh: $nk is not a key ifl accepts; --force replaces it with $network_key: nothing changed" >&2
		exit 1
	fi
fi
if [ -e "$ak" ] && ! "$binary" keycheck --agent "$ak" >/dev/null 2>"$stage/err"; then
	die "$ak is not an agent key ifl accepts ($(sed 's/^ifl: keycheck: //' "$stage/err")); move it away to have a new one made"
fi
# Enabled when the fleet's key was given (or --enable), never with --no-enable.
case $enable in
auto) [ -n "$network_key" ] && enable=yes || enable=no ;;
esac

# Change.
install -D -m 0755 "$binary" "$root/usr/bin/ifl"
install -D -m 0644 scripts/ifl-agent.service "$unitdir/ifl-agent.service"
install -D -m 0644 scripts/ifl-probe.service "$unitdir/ifl-probe.service"
for u in "${units[@]}"; do
	[ "$root/lib/systemd/system/$u" -ef "$unitdir/$u" ] || rm -f "$root/lib/systemd/system/$u"
done
install -d -m 0755 "$root/usr/share/man/man1"
gzip -9n <scripts/ifl.1 >"$stage/ifl.1.gz"
install -m 0644 "$stage/ifl.1.gz" "$root/usr/share/man/man1/ifl.1.gz"
install -D -m 0644 scripts/completion/ifl.bash "$root/usr/share/bash-completion/completions/ifl"
install -D -m 0644 scripts/completion/_ifl "$root/usr/share/zsh/vendor-completions/_ifl"
install -D -m 0644 scripts/sysusers.conf "$root/usr/lib/sysusers.d/ifl.conf"
install -D -m 0644 scripts/tmpfiles.conf "$root/usr/lib/tmpfiles.d/ifl.conf"
install -D -m 0755 scripts/ifl-inventory "$root/usr/share/ifl/ifl-inventory"
install -d -m 0755 "$root/etc/ifl"
[ -e "$root/etc/ifl/agent.yaml" ] || install -m 0644 scripts/agent.yaml "$root/etc/ifl/agent.yaml"
if [ $install_key = yes ]; then
	# Renamed into place: the key is whole or not there.
	install -m 0600 "$stage/network.key" "$root/etc/ifl/.network.key.new"
	mv -f "$root/etc/ifl/.network.key.new" "$nk"
	echo "install.sh: installed the network key $new_id as $nk" >&2
elif [ ! -e "$nk" ]; then
	"$root/usr/bin/ifl" keygen "$nk" 2>/dev/null
	echo "install.sh: created $nk, a new key of no fleet: copy it to every host of a new fleet, or install the fleet's with --network-key FILE --force" >&2
fi
[ -e "$ak" ] || "$root/usr/bin/ifl" keygen --agent "$ak" >/dev/null 2>&1
if [ $cap = yes ]; then
	setcap cap_net_raw+ep "$root/usr/bin/ifl"
fi
if [ -z "$root" ]; then
	if command -v systemd-sysusers >/dev/null; then
		systemd-sysusers ifl.conf
	elif ! getent passwd ifl >/dev/null; then
		useradd --system --user-group --home-dir /var/lib/ifl --no-create-home --shell /usr/sbin/nologin --comment "ifl controller" ifl
	fi
	if command -v systemd-tmpfiles >/dev/null; then
		systemd-tmpfiles --create ifl.conf
	else
		install -d -m 2750 -o ifl -g ifl /var/lib/ifl
	fi
fi

if systemd_up; then
	systemctl daemon-reload
	if [ $enable = yes ]; then
		systemctl enable --now ifl-agent.service
		# A running agent holds the old key until it restarts.
		[ $install_key = no ] || systemctl restart ifl-agent.service
	else
		echo "install.sh: ifl-agent is not enabled; with the fleet's key in $nk: systemctl enable --now ifl-agent" >&2
	fi
elif [ $enable = yes ]; then
	echo "install.sh: systemd is not running here${root:+ (DESTDIR)}; to start the agent: systemctl daemon-reload && systemctl enable --now ifl-agent" >&2
else
	echo "install.sh: ifl-agent is not enabled; with the fleet's key in $nk: systemctl daemon-reload && systemctl enable --now ifl-agent" >&2
fi
if [ -n "$root" ]; then
	echo "install.sh: DESTDIR: the user ifl is not created; systemd-sysusers creates it from /usr/lib/sysusers.d/ifl.conf" >&2
fi
echo "install.sh: installed $("$root/usr/bin/ifl" version)" >&2
