# Shared by the side-by-side benchmarks: source it with the LAN's name and
# the Debian packages the peers come in, as root, from the repository's top.
#   . scripts/bench-lib.sh NAME PACKAGE...
# It installs what is missing, builds ifl and the LAN tool ($tn), tears the
# LAN called NAME down on exit, and defines time_run and median.
bench_name=$1; shift
[ "$(id -u)" = 0 ] || { echo "$(basename "$0"): needs root" >&2; exit 2; }
export PATH=$PATH:/usr/local/go/bin
need=()
for pkg in "$@" nftables; do
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
go build -o .build/ifl-testnet ./internal/testnet/cmd/ifl-testnet
tn=.build/ifl-testnet
trap '$tn down --name $bench_name >/dev/null 2>&1 || true' EXIT
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
