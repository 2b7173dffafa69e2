# Shared by the side-by-side benchmarks: source it with the LAN's name and
# the Debian packages the peers come in, as root, from the repository's top.
#   . scripts/bench-lib.sh NAME PACKAGE...
# It installs what is missing, builds ifl and the LAN tool ($tn), tears the
# LAN called NAME down on exit, and defines time_run and median.
bench_name=$1; shift
[ "$(id -u)" = 0 ] || { echo "$(basename "$0"): needs root" >&2; exit 2; }
export PATH=$PATH:/usr/local/go/bin
need=()
for pkg in "$@" nftables jq bc; do
	case $pkg in
	arp-scan) cmd=arp-scan ;; nftables) cmd=nft ;; *) cmd=$pkg ;;
	esac
	command -v "$cmd" >/dev/null || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
make -s build
mkdir -p .build
go build -o .build/ifl-testnet ./internal/testbed/testnet/cmd/ifl-testnet
tn=.build/ifl-testnet
lan_json=/tmp/bench-lan.$bench_name.$$.json
trap '$tn down --name $bench_name >/dev/null 2>&1 || true; rm -f $lan_json' EXIT
# A signal (Ctrl-C, a closed pipe) exits, and so tears the LAN down too.
trap 'exit 130' INT TERM HUP PIPE

# time_run OUT CMD...: runs CMD in the LAN's controller namespace with its
# output in OUT, and prints the wall time in microseconds.
time_run() {
	local out=$1; shift
	local s e
	s=$(date +%s%N)
	ip netns exec "ifl-$bench_name-ctl" "$@" >"$out" 2>&1 || true
	e=$(date +%s%N)
	echo $(( (e - s) / 1000 ))
}

# median: of the numbers on stdin.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# lan_up PREFIX HOSTS AGENTS [FLAG...]: brings up a LAN shaped like a real
# one: a router, one host in ten whose firewall drops the agent port
# silently, decoys (HTTP servers on the agent port: impostors), agents
# with another network key, and the rest with the port closed. Sets
# $key (the network key), $agents_want (the agents' addresses, sorted, one
# per line) and $hosts_want (the count of hosts that answer ARP, router
# included); $lan_json holds the LAN as ifl-testnet up --json gives it.
lan_up() {
	local prefix=$1 hosts=$2 agents=$3; shift 3
	local dropped=$((hosts / 10)) wrong=$(((agents + 19) / 20)) impostors=$(((agents + 9) / 10))
	local closed=$((hosts - agents - dropped - wrong - impostors))
	$tn up --name "$bench_name" --prefix "$prefix" --agents "$agents" --wrong-key "$wrong" --impostors "$impostors" \
		--dropped "$dropped" --closed "$closed" --empty 0 --json "$@" >"$lan_json"
	key=$(jq -r .network_key "$lan_json")
	agents_want=$(jq -r '.hosts[] | select(.role == "agent") | .addr' "$lan_json" | sort)
	hosts_want=$(($(jq '[.hosts[] | select(.role != "empty")] | length' "$lan_json") + 1))
	lan_desc="$hosts hosts: $agents agents, $wrong wrong-key, $impostors decoys on the agent port, $dropped firewalled, $closed closed, a router"
}

# The ifl that run_tool runs. IFL_BEFORE=PATH (another build, say of an
# older commit) gives each of race's tools whose name starts with "ifl" a
# twin, "NAME (before)", run the same way with $ifl set to PATH, in the
# same runs: its ratio is the new build's speed-up.
ifl=./ifl
if [ -n "${IFL_BEFORE:-}" ]; then
	[ -x "$IFL_BEFORE" ] || { echo "IFL_BEFORE=$IFL_BEFORE: not an executable" >&2; exit 2; }
	IFL_BEFORE=$(realpath "$IFL_BEFORE")
fi

# race RUNS NAME...: runs each tool RUNS times, interleaved, with
# run_tool NAME OUT (which the script defines, printing the wall time in
# microseconds with time_run of "$ifl" for ifl) and count_tool NAME OUT
# (which prints what the run found, a number). Then prints, per tool, the
# median time, the fewest found in any run against $want, and the median
# as a ratio to the first tool's. Sets times[NAME] and found[NAME].
declare -A times found
race() {
	local runs=$1; shift
	local names=() r name tool out=/tmp/bench-race.$$ us n
	for name in "$@"; do
		names+=("$name")
		if [ -n "${IFL_BEFORE:-}" ] && [[ $name == ifl* ]]; then names+=("$name (before)"); fi
	done
	for name in "${names[@]}"; do times[$name]=""; found[$name]=""; done
	for ((r = 0; r < runs; r++)); do
		for name in "${names[@]}"; do
			tool=${name% (before)}
			if [ "$tool" != "$name" ]; then
				us=$(ifl=$IFL_BEFORE run_tool "$tool" $out)
			else
				us=$(run_tool "$tool" $out)
			fi
			n=$(count_tool "$tool" $out)
			times[$name]+="$us "
			if [ -z "${found[$name]}" ] || [ "$n" -lt "${found[$name]}" ]; then found[$name]=$n; fi
		done
	done
	rm -f $out
	local base m
	base=$(echo ${times[${names[0]}]} | tr ' ' '\n' | median)
	printf '| %-44s | %9s | %11s | %7s |\n' tool "median s" "found (min)" "x first"
	printf '| %-44s | %9s | %11s | %7s |\n' --- ---: ---: ---:
	for name in "${names[@]}"; do
		m=$(echo ${times[$name]} | tr ' ' '\n' | median)
		printf '| %-44s | %9.3f | %5d/%-5d | %7.2f |\n' "\`$name\`" "$(echo "$m / 1000000" | bc -l)" "${found[$name]}" "$want" "$(echo "$m / $base" | bc -l)"
	done
}

# agents_ok OUT: the number of agents an ifl probe found, or -1 when its
# agents are not exactly the LAN's (one called an agent that is none, or
# an address listed twice).
agents_ok() {
	local got
	got=$(awk '$2 == "agent" {print $1}' "$1" | sort)
	if [ -n "$got" ] && ! comm -13 <(echo "$agents_want") <(echo "$got") | grep -q .; then
		echo "$got" | grep -c .
	elif [ -z "$got" ]; then
		echo 0
	else
		echo -1
	fi
}
