# bash completion for ifl. Generated from ifl's command line by
# internal/clidoc (make docs); do not edit.

_ifl() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmd="" i
	# --flag=value: bash splits at '=', so the flag is two words back.
	if [ "$cur" = "=" ]; then
		cur="" prev=${COMP_WORDS[COMP_CWORD-1]}
	elif [ "$prev" = "=" ] && [ "$COMP_CWORD" -ge 2 ]; then
		prev=${COMP_WORDS[COMP_CWORD-2]}
	fi
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		probe|arp-scan|scan|ping|inventory|agent|keygen|keycheck|version) cmd=${COMP_WORDS[i]}; break ;;
		esac
	done

	case $cmd in
	'')
		case $prev in
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--help -h --version -V" -- "$cur"))
			return
		fi
		COMPREPLY=($(compgen -W "probe arp-scan scan ping inventory agent keygen keycheck version" -- "$cur"))
		;;
	probe)
		case $prev in
		--port|-p|--ports) COMPREPLY=(); return ;;
		--timeout) COMPREPLY=(); return ;;
		--patience) COMPREPLY=(); return ;;
		--retries) COMPREPLY=(); return ;;
		--concurrency) COMPREPLY=(); return ;;
		--rate) COMPREPLY=(); return ;;
		--output|-o) COMPREPLY=($(compgen -W "table tsv json yaml" -- "$cur")); return ;;
		--exclude) COMPREPLY=(); return ;;
		--input-list) COMPREPLY=(); return ;;
		--network-key) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;
		--state) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;
		--store) COMPREPLY=(); return ;;
		--site) COMPREPLY=(); return ;;
		--watch) COMPREPLY=(); return ;;
		--broadcast-every) COMPREPLY=(); return ;;
		--announcements) COMPREPLY=(); return ;;
		--metrics) COMPREPLY=(); return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--port -p --ports --fast --connect --timeout --patience --arp-probes --retries --concurrency --rate --output -o --json --no-header --all --exclude --input-list --force --network-key --state --store --site --no-state --watch --broadcast --broadcast-every --announcements --metrics --help -h --version -V" -- "$cur"))
			return
		fi
		COMPREPLY=()
		;;
	arp-scan)
		case $prev in
		--rate) COMPREPLY=(); return ;;
		--min-rate) COMPREPLY=(); return ;;
		--retries) COMPREPLY=(); return ;;
		--min-retries) COMPREPLY=(); return ;;
		--timeout) COMPREPLY=(); return ;;
		--patience) COMPREPLY=(); return ;;
		--output|-o) COMPREPLY=($(compgen -W "table tsv json yaml" -- "$cur")); return ;;
		--exclude) COMPREPLY=(); return ;;
		--input-list) COMPREPLY=(); return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--rate --min-rate --retries --min-retries --timeout --patience --arp-probes --output -o --json --no-header --exclude --input-list --force --help -h --version -V" -- "$cur"))
			return
		fi
		COMPREPLY=($(compgen -W "$(command ls /sys/class/net 2>/dev/null)" -- "$cur"))
		;;
	scan)
		case $prev in
		--port|-p|--ports) COMPREPLY=(); return ;;
		--rate) COMPREPLY=(); return ;;
		--min-rate) COMPREPLY=(); return ;;
		--retries) COMPREPLY=(); return ;;
		--timeout) COMPREPLY=(); return ;;
		--patience) COMPREPLY=(); return ;;
		--output|-o) COMPREPLY=($(compgen -W "table tsv json yaml" -- "$cur")); return ;;
		--exclude) COMPREPLY=(); return ;;
		--input-list) COMPREPLY=(); return ;;
		--state) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;
		--store) COMPREPLY=(); return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--port -p --ports --all --connect --rate --min-rate --retries --timeout --patience --arp-probes --output -o --json --no-header --exclude --input-list --force --state --no-state --store --help -h --version -V" -- "$cur"))
			return
		fi
		COMPREPLY=()
		;;
	ping)
		case $prev in
		--port|-p|--ports) COMPREPLY=(); return ;;
		--timeout) COMPREPLY=(); return ;;
		--identity) COMPREPLY=(); return ;;
		--output|-o) COMPREPLY=($(compgen -W "table tsv json yaml" -- "$cur")); return ;;
		--network-key) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;
		--state) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;
		--store) COMPREPLY=(); return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--port -p --ports --timeout --identity --output -o --json --no-header --network-key --state --no-state --store --help -h --version -V" -- "$cur"))
			return
		fi
		COMPREPLY=()
		;;
	inventory)
		case $prev in
		--host) COMPREPLY=(); return ;;
		--output|-o) COMPREPLY=($(compgen -W "table tsv json yaml" -- "$cur")); return ;;
		--store) COMPREPLY=(); return ;;
		--since) COMPREPLY=(); return ;;
		--state) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;
		--stale-after) COMPREPLY=(); return ;;
		--prune) COMPREPLY=(); return ;;
		--prefer) COMPREPLY=($(compgen -W "ipv4 ipv6" -- "$cur")); return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--force --list --host --output -o --json --no-header --store --watch --since --state --stale-after --prune --prefer --help -h --version -V" -- "$cur"))
			return
		fi
		COMPREPLY=($(compgen -W "name import export" -- "$cur"))
		;;
	agent)
		case $prev in
		--config|-c) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;
		--network-key) COMPREPLY=(); return ;;
		--port|-p|--ports) COMPREPLY=(); return ;;
		--listen) COMPREPLY=(); return ;;
		--identity-key) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;
		--log-level) COMPREPLY=($(compgen -W "debug info warn error" -- "$cur")); return ;;
		--log-format) COMPREPLY=($(compgen -W "auto console json" -- "$cur")); return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--config -c --network-key --port -p --ports --listen --identity-key --log-level --log-format --help -h --version -V" -- "$cur"))
			return
		fi
		COMPREPLY=()
		;;
	keygen)
		case $prev in
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--agent --force --help -h --version -V" -- "$cur"))
			return
		fi
		compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))
		;;
	keycheck)
		case $prev in
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--agent --help -h --version -V" -- "$cur"))
			return
		fi
		compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))
		;;
	version)
		case $prev in
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--help -h --version -V" -- "$cur"))
			return
		fi
		COMPREPLY=()
		;;
	esac
}
complete -F _ifl ifl
