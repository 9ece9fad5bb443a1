#!/usr/bin/env bash
# bench_mirror.sh: a GET of a cached blob through the peer's registry mirror vs the same GET from
# docker-registry, on loopback, in one run with alternating rounds (mirror first in odd rounds,
# registry first in even ones), so the noise of a shared machine hits both. Not a test: it
# prints figures, never fails on them.
#   tests/bench/bench_mirror.sh [--mib N (256)] [--rounds N (7)]
# Uses $CHUNKFLY_BUILD/bin (default build/: a Release build). Prints one line per round and
#   mirror bench: blob=256MiB rounds=7 mirror_MBps=... registry_MBps=... ratio=... (median)
#     mirror_cpu_ms=... registry_cpu_ms=...
# ratio = mirror speed / registry speed per round, the median of the rounds (goal >= 1);
# *_cpu_ms = the serving process's CPU time (user + system) per GET, median: less sensitive to
# a loaded machine than the speeds.
. "$(dirname "$0")/../lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/peer/daemon_lib.sh"
MIB=256 ROUNDS=7
while [ $# -gt 0 ]; do
    case $1 in
        --mib) MIB=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $MIB =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--mib/--rounds: numbers" >&2; exit 2; }

start_registry 127.0.0.9
REPO=bench/mirror
head -c "$((MIB * 1048576))" /dev/urandom >"$T/blob"
push_blob "$REPO" "$T/blob"
rm -f "$T/blob"
MP=$(free_port 127.0.0.11)
start_peer 1 --set mirror_listen="127.0.0.11:$MP" --set mirror_upstreams="$REGISTRY" \
    --log-level info
wait_port 127.0.0.11 "$MP"
MURL="http://127.0.0.11:$MP/v2/$REPO/blobs/$BLOB?ns=$REGISTRY"
RURL="http://$REGISTRY/v2/$REPO/blobs/$BLOB"
SIZE=$((MIB * 1048576))

# get URL: seconds for the whole body (fails on a short one)
get() {
    local out
    out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$1")
    set -- $out
    [ "$1" = 200 ] && [ "$2" = "$SIZE" ] || fail "GET answered $1 with $2 bytes"
    echo "$3"
}
get "$MURL" >/dev/null # fill the peer's cache
get "$RURL" >/dev/null # and warm the registry's files
# cpu PID: the process's user + system CPU time so far, in ms
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"; }
# timed URL PID: "seconds cpu_ms" of one GET served by PID
timed() {
    local c0 t c1
    c0=$(cpu "$2"); t=$(get "$1"); c1=$(cpu "$2")
    echo "$t $((c1 - c0))"
}
mbps() { awk -v s="$SIZE" -v t="$1" 'BEGIN{printf "%.0f", s / t / 1e6}'; }
RATIOS=() MS=() RS=() MC=() RC=()
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        read -r tm cm < <(timed "$MURL" "${PEER_PID[1]}"); read -r tr cr < <(timed "$RURL" "$REGISTRY_PID")
    else
        read -r tr cr < <(timed "$RURL" "$REGISTRY_PID"); read -r tm cm < <(timed "$MURL" "${PEER_PID[1]}")
    fi
    ratio=$(awk -v a="$tm" -v b="$tr" 'BEGIN{printf "%.2f", b / a}')
    echo "round $r: mirror $(mbps "$tm") MB/s ($cm ms CPU), registry $(mbps "$tr") MB/s ($cr ms CPU), ratio $ratio"
    RATIOS+=("$ratio") MS+=("$(mbps "$tm")") RS+=("$(mbps "$tr")") MC+=("$cm") RC+=("$cr")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
hits=$(curl -fsS "http://${PEER_HTTP[1]}/metrics" | awk '$1=="chunkfly_peer_mirror_cache_hits_total"{print $2}')
echo "mirror bench: blob=${MIB}MiB rounds=$ROUNDS mirror_MBps=$(med "${MS[@]}") registry_MBps=$(med "${RS[@]}") ratio=$(med "${RATIOS[@]}") mirror_cpu_ms=$(med "${MC[@]}") registry_cpu_ms=$(med "${RC[@]}") cache_hits=$hits"
finish_peers
