#!/usr/bin/env bash
# Tests scripts/install.sh in temporary roots (DESTDIR), one case each:
# what it installs, that it keeps its word about keys and enabling, and
# that every refusal leaves the root as it was. A systemctl on PATH that
# records its calls shows that none is made. Needs no root and no systemd.
#
#   scripts/test-install.sh [./ifl]
set -euo pipefail
cd "$(dirname "$0")/.."
ifl=${1:-./ifl}
[ -x "$ifl" ] || { echo "test-install: build ifl first (make build)" >&2; exit 2; }
ifl=$(realpath "$ifl")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test-install: FAIL: $*" >&2; exit 1; }
mkdir "$tmp/bin"
printf '#!/bin/sh\necho "systemctl $*" >>%s/systemctl.calls\n' "$tmp" >"$tmp/bin/systemctl"
chmod +x "$tmp/bin/systemctl"
export PATH=$tmp/bin:$PATH

# run ROOT ARGS...: install.sh into ROOT; sets rc and err.
run() {
	local root=$1
	shift
	rc=0
	DESTDIR=$root scripts/install.sh --binary "$ifl" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
	err=$(cat "$tmp/err")
}
expect() { # expect RC TEXT CASE
	[ "$rc" = "$1" ] || fail "$3: exit $rc, want $1: $err"
	[ -z "$2" ] || grep -qF -- "$2" <<<"$err" || fail "$3: stderr lacks \"$2\": $err"
	! grep -q "unbound variable\|command not found" <<<"$err" || fail "$3: $err"
}
tree() { (cd "$1" && find . -printf '%p %m %s\n' | sort && find . -type f -exec sha256sum {} + | sort); }
id() { "$ifl" keycheck "$@" | cut -f2; }
"$ifl" keygen "$tmp/fleet.key" 2>/dev/null
"$ifl" keygen "$tmp/other.key" 2>/dev/null
"$ifl" keygen --agent "$tmp/agent.key" >/dev/null 2>&1
chmod 644 "$tmp/fleet.key" # as copied around by hand: installed 0600 anyway
printf 'not a key\n' >"$tmp/garbage.key"

# A fresh install without a key: everything in place, a new key, the
# agent not enabled, and what to run said.
r=$tmp/fresh
run "$r"
expect 0 "ifl-agent is not enabled" "fresh install"
for f in usr/bin/ifl usr/lib/systemd/system/ifl-agent.service usr/lib/systemd/system/ifl-probe.service \
	usr/share/man/man1/ifl.1.gz usr/share/bash-completion/completions/ifl usr/share/zsh/vendor-completions/_ifl \
	usr/lib/sysusers.d/ifl.conf usr/lib/tmpfiles.d/ifl.conf usr/share/ifl/ifl-inventory etc/ifl/agent.yaml; do
	[ -f "$r/$f" ] || fail "fresh install: $f missing"
done
[ ! -e "$r/lib" ] || fail "fresh install: wrote under /lib"
for k in network.key agent.key; do
	[ "$(stat -c %a "$r/etc/ifl/$k")" = 600 ] || fail "fresh install: $k not 0600"
done
id "$r/etc/ifl/network.key" >/dev/null || fail "fresh install: a network key ifl refuses"
id --agent "$r/etc/ifl/agent.key" >/dev/null || fail "fresh install: an agent key ifl refuses"
zcat "$r/usr/share/man/man1/ifl.1.gz" | grep '^\.TH IFL 1' >/dev/null || fail "fresh install: not the man page"

# Again: nothing changes.
before=$(tree "$r")
run "$r"
expect 0 "" "second run"
[ "$(tree "$r")" = "$before" ] || fail "second run changed the root"

# A different key without --force: exit 1, said, nothing changed.
run "$r" --network-key "$tmp/fleet.key"
expect 1 "holds a different network key" "a different key without --force"
[ "$(tree "$r")" = "$before" ] || fail "a refused key changed the root"

# With --force: replaced, 0600, and the agent to be enabled.
run "$r" --network-key "$tmp/fleet.key" --force
expect 0 "systemctl enable --now ifl-agent" "--force"
[ "$(id "$r/etc/ifl/network.key")" = "$(id "$tmp/other.key" 2>/dev/null || true)" ] && fail "--force: wrong key"
cp "$tmp/fleet.key" "$tmp/fleet600.key" && chmod 600 "$tmp/fleet600.key"
[ "$(id "$r/etc/ifl/network.key")" = "$(id "$tmp/fleet600.key")" ] || fail "--force did not install the fleet's key"
[ "$(stat -c %a "$r/etc/ifl/network.key")" = 600 ] || fail "--force: key not 0600"
[ -z "$(find "$r/etc/ifl" -name '.*')" ] || fail "--force left a temporary file"

# The same key again: fine without --force.
run "$r" --network-key "$tmp/fleet.key"
expect 0 "already holds this network key" "the same key again"

# --no-enable wins over a given key.
run "$r" --network-key "$tmp/fleet.key" --no-enable
expect 0 "ifl-agent is not enabled" "--no-enable"

# Run from another directory, FILE arguments and DESTDIR are read from
# there, as a shell user means them.
rel=$tmp/rel
mkdir -p "$rel/keys"
cp "$ifl" "$rel/ifl-copy"
cp "$tmp/fleet.key" "$rel/keys/net.key"
rc=0
(cd "$rel" && DESTDIR=root "$OLDPWD/scripts/install.sh" --binary ./ifl-copy --network-key keys/net.key) >"$tmp/out" 2>"$tmp/err" || rc=$?
err=$(cat "$tmp/err")
expect 0 "installed the network key" "relative paths from another directory"
[ "$(id "$rel/root/etc/ifl/network.key")" = "$(id "$tmp/fleet600.key")" ] || fail "relative paths: not the fleet's key"
[ -x "$rel/root/usr/bin/ifl" ] || fail "relative paths: no ifl under DESTDIR"

# Bad keys and bad arguments: refused before anything is written.
empty=$tmp/empty
for c in "garbage.key|not a network key" "agent.key|agent key file, not a network key" "missing.key|no such readable file"; do
	mkdir "$empty"
	run "$empty" --network-key "$tmp/${c%%|*}"
	expect 2 "${c#*|}" "--network-key ${c%%|*}"
	[ -z "$(ls -A "$empty")" ] || fail "--network-key ${c%%|*} wrote $(cd "$empty" && find . -type f)"
	rmdir "$empty"
done
mkdir "$empty"
for args in "--network-key" "--network-key --force" "--binary" "--frobnicate" "--force" "--purge" "--network-key=$tmp/fleet.key" "--uninstall --network-key $tmp/fleet.key"; do
	# shellcheck disable=SC2086 # the words are the arguments
	run "$empty" $args
	expect 2 "see --help" "install.sh $args"
	[ -z "$(ls -A "$empty")" ] || fail "install.sh $args wrote to the root"
done
run "$empty" --binary "$tmp/garbage.key"
expect 2 "is not built" "a binary that is not one"

# A broken key in place: no silent reuse, and --force repairs it.
printf 'broken\n' >"$r/etc/ifl/network.key"
chmod 600 "$r/etc/ifl/network.key"
run "$r"
expect 2 "not a key ifl accepts" "a broken key in place"
run "$r" --network-key "$tmp/fleet.key"
expect 1 "--force replaces it" "a broken key in place, a new one without --force"
run "$r" --network-key "$tmp/fleet.key" --force
expect 0 "installed the network key" "a broken key replaced"

# Uninstall keeps /etc/ifl; purge removes it.
run "$r" --uninstall
expect 0 "kept" "--uninstall"
[ ! -e "$r/usr/bin/ifl" ] && [ ! -e "$r/usr/lib/systemd/system/ifl-agent.service" ] && [ ! -e "$r/usr/share/man/man1/ifl.1.gz" ] || fail "--uninstall left files"
[ -f "$r/etc/ifl/network.key" ] || fail "--uninstall removed the key"
run "$r" --uninstall --purge
expect 0 "" "--uninstall --purge"
[ ! -e "$r/etc/ifl" ] || fail "--purge left /etc/ifl"

[ ! -e "$tmp/systemctl.calls" ] || fail "install.sh called systemctl under DESTDIR: $(cat "$tmp/systemctl.calls")"
echo "test-install: install.sh ok: fresh, rerun, keys refused and replaced, bad arguments, uninstall, purge"
