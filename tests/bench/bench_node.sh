#!/usr/bin/env bash
# bench_node.sh: one node's download speeds against plain tools, on loopback, in one run (not a
# test: it prints figures, never fails on them). Per round a fresh scheduler and four fresh peers
# (127.0.0.10-14) and a docker-registry (127.0.0.9) holding one random blob:
#   curl     curl of the blob straight from the registry into the output directory
#   origin   `chunkfly get` through peer 1, cold (peer 1 fetches it from the registry)
#   p2p      `chunkfly get` through peer 2, cold, once peer 1 holds the verified blob (peer 2
#            takes it from peer 1; its origin bytes are printed to show it did)
#   origin_api, p2p_api  the same two through the local API with the test client
#            (tests/daemon_client: no digest, where `chunkfly get` hashes every byte itself, in
#            line with its writes): peer 3 without a scheduler (origin only), peer 4 with it
#            once peers 1 and 2 hold the blob. They show the peer's part of the time.
#   cat      cat of a file of the blob's size into the output directory
#   cached   a local-API read of the cached blob from peer 1 into the output directory (the
#            test client, tests/daemon_client: no digest; `chunkfly get` also hashes), taking
#            the daemon's file (LOCAL_READ "fd": a read-only descriptor, copied with
#            copy_file_range)
#   cached_frames  the same read as LOCAL_DATA frames over the socket (sendfile in the peer)
#   get_cached  `chunkfly get` of the cached blob from peer 1 (sha256 in the client)
# and peer 1's RSS (all / anonymous: the rest is shared library text) when idle.
# Ratios are speeds against the baseline of the same round (origin/curl, p2p/curl, ..., cached/cat,
# get_cached/cat), medians over the rounds; goals (issue 14): origin, p2p >= 0.9x curl, cached >=
# 0.9x cat. Everything (registry storage, caches, outputs) lives under $TMPDIR, /dev/shm by
# default, so no disk is involved. Also printed: the peers' CPU time per transfer.
#   tests/bench/bench_node.sh [--mib N (1024)] [--rounds N (3)] [--peer-set K=V]...
# Uses $CHUNKFLY_BUILD/bin (default build/: a Release build).
: "${TMPDIR:=/dev/shm}"
export TMPDIR
. "$(dirname "$0")/../lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/peer/daemon_lib.sh"
need_bin chunkfly
MIB=1024 ROUNDS=3 PSET=()
while [ $# -gt 0 ]; do
    case $1 in
        --mib) MIB=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --peer-set) PSET+=(--set "$2"); shift 2 ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $MIB =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--mib/--rounds: numbers" >&2; exit 2; }
SIZE=$((MIB * 1048576))

start_registry 127.0.0.9
REPO=bench/node
head -c "$SIZE" /dev/urandom >"$T/blob"
# push_blob (daemon_lib.sh) holds the file in curl's memory (--data-binary), which fails for
# 1 GiB: the same monolithic upload, streamed with -T
BLOB="sha256:$(sha256sum "$T/blob" | cut -d' ' -f1)"
loc=$(curl -fsSi -X POST "http://$REGISTRY/v2/$REPO/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
case $loc in http*) ;; *) loc="http://$REGISTRY$loc" ;; esac
case $loc in *\?*) loc="$loc&digest=$BLOB" ;; *) loc="$loc?digest=$BLOB" ;; esac
curl -fsS -T "$T/blob" -H 'Content-Type: application/octet-stream' "$loc" >/dev/null ||
    fail "blob upload failed"
OUT=$T/out
mkdir -p "$OUT"
URL="http://$REGISTRY/v2/$REPO/blobs/$BLOB"
REF="$REGISTRY/$REPO@$BLOB"

now_ns() { date +%s%N; }
# cpu PID: user + system CPU time of PID so far, ms
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"; }
rss_kib() { awk '$1=="VmRSS:"{r=$2} $1=="RssAnon:"{a=$2} END{print r "/" a}' "/proc/$1/status"; }
# timed NAME CMD...: runs CMD, sets SECS[NAME] (wall seconds); the output file must have SIZE
# bytes and is removed after
declare -A SECS
timed() {
    local name=$1 t0 t1; shift
    t0=$(now_ns)
    "$@" || fail "$name: $* failed"
    t1=$(now_ns)
    SECS[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b - a) / 1e9}')
}
check_out() {
    local n
    n=$(stat -c %s "$1")
    [ "$n" = "$SIZE" ] || fail "$1 has $n bytes, not $SIZE"
    rm -f "$1"
}
curl_get() { curl -fsS -o "$OUT/curl.blob" "$URL"; }
cf_get() { "$CHUNKFLY_BIN/chunkfly" get -q --no-credentials --peer "$T/p$1.sock" "$REF" -o "$2"; }
api_read() { "$CLIENT_BIN" "$T/p$1.sock" read "$BLOB" "$REF" 0 "$SIZE" "$2" >/dev/null; }
api_read_fd() { DAEMON_CLIENT_FD=1 api_read "$@" 2>/dev/null; }
# wait_verified N: peer N holds the blob complete and verified
wait_verified() {
    for _ in $(seq 600); do
        [ "$(metric "$1" tasks_completed_total)" = 1 ] && return 0
        sleep 0.05
    done
    fail "peer $1 did not verify the blob"
}
mbps() { awk -v s="$SIZE" -v t="$1" 'BEGIN{printf "%.0f", s / t / 1048576}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b / a}'; } # speed of a vs b = tb / ta
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

curl_get && check_out "$OUT/curl.blob" # warm the registry
declare -A ALL
RSS_IDLE=() RSS_AFTER=()
for r in $(seq "$ROUNDS"); do
    # a fresh scheduler and fresh peers: every round starts cold
    SCHED_PORT='' start_scheduler
    rm -rf "$T/cache1" "$T/cache2" "$T/cache3" "$T/cache4"
    unset 'PEER_LISTEN_PORT[1]' 'PEER_LISTEN_PORT[2]' 'PEER_LISTEN_PORT[3]' 'PEER_LISTEN_PORT[4]'
    start_peer 1 --log-level info --set mirror_listen= "${PSET[@]}"
    start_peer 2 --log-level info --set mirror_listen= "${PSET[@]}"
    SCHED='' start_peer 3 --log-level info --set mirror_listen= "${PSET[@]}"
    start_peer 4 --log-level info --set mirror_listen= "${PSET[@]}"
    RSS_IDLE+=("$(rss_kib "${PEER_PID[1]}")")
    [ $((r % 2)) = 1 ] && { timed curl curl_get; check_out "$OUT/curl.blob"; }
    c0=$(cpu "${PEER_PID[1]}")
    timed origin cf_get 1 "$OUT/origin.blob"
    check_out "$OUT/origin.blob"
    wait_verified 1
    CPU_ORIGIN=$(($(cpu "${PEER_PID[1]}") - c0))
    timed origin_api api_read 3 "$OUT/origin_api.blob"
    check_out "$OUT/origin_api.blob"
    c0=$(cpu "${PEER_PID[1]}") c2=$(cpu "${PEER_PID[2]}")
    timed p2p cf_get 2 "$OUT/p2p.blob"
    check_out "$OUT/p2p.blob"
    wait_verified 2
    CPU_P2P_UP=$(($(cpu "${PEER_PID[1]}") - c0)) CPU_P2P_DOWN=$(($(cpu "${PEER_PID[2]}") - c2))
    P2_ORIGIN=$(metric 2 bytes_from_origin_total)
    timed p2p_api api_read 4 "$OUT/p2p_api.blob"
    check_out "$OUT/p2p_api.blob"
    P4_ORIGIN=$(metric 4 bytes_from_origin_total)
    [ $((r % 2)) = 0 ] && { timed curl curl_get; check_out "$OUT/curl.blob"; }
    timed cat sh -c "cat '$T/blob' >'$OUT/cat.blob'"
    check_out "$OUT/cat.blob"
    c0=$(cpu "${PEER_PID[1]}")
    timed cached api_read_fd 1 "$OUT/cached.blob"
    CPU_CACHED=$(($(cpu "${PEER_PID[1]}") - c0))
    check_out "$OUT/cached.blob"
    timed cached_frames api_read 1 "$OUT/cached_frames.blob"
    check_out "$OUT/cached_frames.blob"
    timed get_cached cf_get 1 "$OUT/get_cached.blob"
    check_out "$OUT/get_cached.blob"
    sleep 1
    RSS_AFTER+=("$(rss_kib "${PEER_PID[1]}")")
    echo "round $r: curl $(mbps "${SECS[curl]}") MiB/s, origin $(mbps "${SECS[origin]}") ($(ratio "${SECS[origin]}" "${SECS[curl]}")x curl, peer CPU ${CPU_ORIGIN} ms)," \
        "p2p $(mbps "${SECS[p2p]}") ($(ratio "${SECS[p2p]}" "${SECS[curl]}")x, CPU up ${CPU_P2P_UP} down ${CPU_P2P_DOWN} ms, peer 2 origin bytes ${P2_ORIGIN:-?})," \
        "origin_api $(mbps "${SECS[origin_api]}") ($(ratio "${SECS[origin_api]}" "${SECS[curl]}")x), p2p_api $(mbps "${SECS[p2p_api]}") ($(ratio "${SECS[p2p_api]}" "${SECS[curl]}")x, peer 4 origin bytes ${P4_ORIGIN:-?})," \
        "cat $(mbps "${SECS[cat]}"), cached $(mbps "${SECS[cached]}") ($(ratio "${SECS[cached]}" "${SECS[cat]}")x cat, CPU ${CPU_CACHED} ms)," \
        "cached_frames $(mbps "${SECS[cached_frames]}") ($(ratio "${SECS[cached_frames]}" "${SECS[cat]}")x cat)," \
        "get_cached $(mbps "${SECS[get_cached]}") ($(ratio "${SECS[get_cached]}" "${SECS[cat]}")x cat)"
    for k in curl origin p2p origin_api p2p_api cat cached cached_frames get_cached; do ALL[$k]+=" ${SECS[$k]}"; done
    ALL[r_origin]+=" $(ratio "${SECS[origin]}" "${SECS[curl]}")"
    ALL[r_p2p]+=" $(ratio "${SECS[p2p]}" "${SECS[curl]}")"
    ALL[r_origin_api]+=" $(ratio "${SECS[origin_api]}" "${SECS[curl]}")"
    ALL[r_p2p_api]+=" $(ratio "${SECS[p2p_api]}" "${SECS[curl]}")"
    ALL[r_cached]+=" $(ratio "${SECS[cached]}" "${SECS[cat]}")"
    ALL[r_cached_frames]+=" $(ratio "${SECS[cached_frames]}" "${SECS[cat]}")"
    ALL[r_get_cached]+=" $(ratio "${SECS[get_cached]}" "${SECS[cat]}")"
    finish_peers
    bg_stop "$SCHED_PID"
    PEER_PID=()
done
# shellcheck disable=SC2086
m() { med ${ALL[$1]}; }
echo "node bench: blob=${MIB}MiB rounds=$ROUNDS (medians) MiB/s: curl=$(mbps "$(m curl)") origin=$(mbps "$(m origin)") p2p=$(mbps "$(m p2p)") origin_api=$(mbps "$(m origin_api)") p2p_api=$(mbps "$(m p2p_api)") cat=$(mbps "$(m cat)") cached=$(mbps "$(m cached)") cached_frames=$(mbps "$(m cached_frames)") get_cached=$(mbps "$(m get_cached)")"
echo "node bench: ratios (median of per-round ratios): origin/curl=$(m r_origin) p2p/curl=$(m r_p2p) origin_api/curl=$(m r_origin_api) p2p_api/curl=$(m r_p2p_api) cached/cat=$(m r_cached) cached_frames/cat=$(m r_cached_frames) get_cached/cat=$(m r_get_cached) (goals: >= 0.9)"
echo "node bench: peer 1 RSS/anonymous KiB idle: fresh ${RSS_IDLE[*]}, after each round (blob cached, idle 1 s) ${RSS_AFTER[*]}"
