#!/usr/bin/env bash
# bench_lazy_start.sh: container cold start through containerd 1.6, lazy vs not, measured in the
# same run (the snapshotter issue's benchmark). Not a test: it prints figures, never fails on them.
#
# Image: the 1 GiB / ~11k-file image of ../shared/tools/anchor-lazy-pull.sh (built, converted to
# eStargz and kept by that script in its cache with --cache-image; one anchor run here also
# prints its own figures, taken with a snapshot view instead of a container, as a cross-check),
# and its Nydus conversion by `chunkfly convert` (pushed next to it, as anchor/img:nydus). The
# registry serves a hard-linked copy of the anchor's registry data (the cache is never written).
#
# Cold start = from an empty containerd (root, content, snapshots) and empty snapshotter state,
# page cache dropped (`echo 3 > drop_caches`, as the anchor script does): pull, then
# `ctr run --rm` of a container that reads the 4 KiB target /app/hello.txt (the image has no
# shell: the host's static busybox is bind-mounted at /busybox) and prints its sha256, checked.
# Modes:
#   chunkfly-fuse   `ctr-remote images rpull --snapshotter chunkfly` of the Nydus image,
#                   chunkfly-snapshotter --fs-driver fuse
#   chunkfly-erofs  the same with --fs-driver erofs
#   estargz         `ctr-remote images rpull --snapshotter stargz` of the eStargz image, the
#                   anchor's stargz daemon (Debian Go sources; default config: prefetch and
#                   background fetch on, as the anchor measures it)
#   full            `ctr images pull` (overlayfs: fetch + unpack) of the gzip image
# each with the registry direct and behind tests/lib/delay_proxy.py (--delay-ms per GET, 20).
# Reported per run: time (pull, run, total) and registry blob bytes (GET /v2/*/blobs/* answered
# 200/206, from the registry's access log, in the window; with --settle S also S seconds later:
# background fetches); medians over --rounds, and ratios to eStargz of the same round.
# peer: two nodes (containerd + chunkfly-snapshotter --peer) of a deploy/local-cluster.sh
# cluster (2 peers, the registry data above): node 1 cold start through peer 1, then node 2
# through peer 2, containerd pulling through the peers' registry mirrors (hosts.toml by
# `chunkfly init containerd`): registry blob bytes of each node's window (node 2's should be
# only the small config and bootstrap: peer 1 has the data) and their times, and what the
# registry served in all from node 1's start to node 2's end (the peers' background fetches).
# The chunkfly modes and the peer part are skipped (said so) while build/bin/chunkfly-snapshotter
# does not exist.
#
#   tests/bench/bench_lazy_start.sh [--rounds 3] [--modes chunkfly-fuse,chunkfly-erofs,estargz,full]
#       [--conds direct,delay] [--delay-ms 20] [--settle 0] [--no-peer] [--keep]
# Needs root, /dev/fuse, containerd + runc, ctr-remote, docker-registry, skopeo, umoci, golang
# (the anchor script apt-installs what it lacks and builds its daemon once), busybox-static,
# ~3 GiB free in /var/tmp. About 9-10 min with the defaults (3 rounds, both conditions, peer)
# on the loaded 2-core machine, most of it the full pulls.
. "$(dirname "$0")/../lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/snapshotter/snap_lib.sh"
export LC_ALL=C
PY=/usr/bin/python3; [ -x $PY ] || PY=python3
ROUNDS=3 MODES=chunkfly-fuse,chunkfly-erofs,estargz,full CONDS=direct,delay DELAY_MS=20 SETTLE=0 PEER=1
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --conds) CONDS=$2; shift 2 ;;
        --delay-ms) DELAY_MS=$2; shift 2 ;;
        --settle) SETTLE=$2; shift 2 ;;
        --no-peer) PEER=0; shift ;;
        --keep) export CF_KEEP=1; shift ;; # read by testlib.sh's cleanup
        -h|--help) sed -n '2,41p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in ROUNDS DELAY_MS SETTLE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "--${v,,}: a number" >&2; exit 2; }
done
[ "$ROUNDS" -ge 1 ] || { echo "--rounds: at least 1" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 2; }
snap_need_tools ctr-remote skopeo
CLUSTER_UP=0
bench_cleanup() { # the cluster (if up), then snap_lib's cleanup, with the script's status
    local rc=$?
    set +e
    [ "$CLUSTER_UP" = 1 ] && "$CHUNKFLY_SRC/deploy/local-cluster.sh" down --state-dir "$T/cluster" >/dev/null 2>&1
    (exit $rc)
    snap_cleanup
}
trap bench_cleanup EXIT
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
has() { [[ ",$1," == *",$2,"* ]]; }
HAVE_SNAP=0
[ -x "$CHUNKFLY_BIN/chunkfly-snapshotter" ] && HAVE_SNAP=1
if [ "$HAVE_SNAP" = 0 ]; then
    for m in chunkfly-fuse chunkfly-erofs; do
        has "$MODES" $m && log "$m: SKIPPED, $CHUNKFLY_BIN/chunkfly-snapshotter is not built yet"
    done
    MODES=$(tr ',' '\n' <<<"$MODES" | grep -v '^chunkfly-' | paste -sd, -)
    [ "$PEER" = 1 ] && log "peer: SKIPPED, no chunkfly-snapshotter"
    PEER=0
fi
[ -n "$MODES" ] || { echo "no mode left to measure" >&2; exit 2; }

# ---- the anchor's image and daemon (one anchor run: it builds or reuses them) ----
ANCHOR=${ANCHOR:-$CHUNKFLY_SRC/../shared/tools/anchor-lazy-pull.sh}
ANCHOR_CACHE=${ANCHOR_CACHE:-/var/tmp/anchor-cache}
[ -x "$ANCHOR" ] || { echo "$ANCHOR missing" >&2; exit 2; }
log "anchor-lazy-pull.sh --cache-image (builds or reuses its 1 GiB image and stargz daemon), load $(load)"
"$ANCHOR" --cache-image --cache "$ANCHOR_CACHE" --runs 1 --settle 0 --json "$T/anchor.json" \
    >"$T/anchor.out" 2>"$T/anchor.err" || fail "anchor-lazy-pull.sh: $(tail -5 "$T/anchor.err")"
ANCHOR_LINE=$(tail -1 "$T/anchor.out")
SGZ_BIN=$(sed -n 's/.*, daemon \(\/.*containerd-stargz-grpc[^ ]*\)$/\1/p' "$T/anchor.err" | tail -1)
[ -x "$SGZ_BIN" ] || fail "no stargz daemon path in the anchor's log: $(grep daemon "$T/anchor.err")"
TARGET_SHA=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"]["target_sha256"])' "$T/anchor.json")
cfgd=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["gzip"]["config_digest"])' "$T/anchor.json")
REGDATA=""
for d in "$ANCHOR_CACHE"/images/*/registry-data; do
    r=$d/docker/registry/v2
    m=$(cat "$r/repositories/anchor/img/_manifests/tags/gzip/current/link" 2>/dev/null) || continue
    grep -q "$cfgd" "$r/blobs/sha256/${m:7:2}/${m#sha256:}/data" && { REGDATA=$d; break; }
done
[ -n "$REGDATA" ] || fail "the anchor's registry data (config $cfgd) not found under $ANCHOR_CACHE/images"
# a hard-linked copy: our pushes add files, never change the cache's (blobs are immutable)
mkdir -p "$T/regdata"
cp -al "$REGDATA/." "$T/regdata/" 2>/dev/null || cp -a "$REGDATA/." "$T/regdata/"
REPO=anchor/img
# start_registry makes $T/registry/data: here a link to the copy
mkdir -p "$T/registry"
ln -s "$T/regdata" "$T/registry/data"
REGISTRY_LOG='{level: info, formatter: text}' start_registry 127.0.0.1 "" registry
REG=$REGISTRY REG_LOG=$REGISTRY_DIR/log
curl -fsS -o /dev/null "http://$REG/v2/$REPO/manifests/estargz" -H 'Accept: application/vnd.oci.image.manifest.v1+json' ||
    fail "the registry copy has no $REPO:estargz"
if [ "$HAVE_SNAP" = 1 ]; then
    log "converting $REPO:gzip to Nydus with chunkfly convert, load $(load)"
    t0=$EPOCHREALTIME
    "$CHUNKFLY_BIN/chunkfly" convert --work-dir "$T/convert" "$REG/$REPO:gzip" "$REG/$REPO:nydus" \
        >"$T/convert.out" 2>"$T/convert.log" || fail "chunkfly convert: $(tail -5 "$T/convert.log")"
    log "converted in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b - a}') s: $(grep '^converted ' "$T/convert.log")"
fi
DP=$(free_port)
bg_start "$T/delay_proxy.log" $PY "$CHUNKFLY_SRC/tests/lib/delay_proxy.py" "127.0.0.1:$DP" "$REG" "$DELAY_MS"
wait_port 127.0.0.1 "$DP"

# blob_bytes LOG OFF0 OFF1: "bytes gets" of blob GETs (200/206) logged between the offsets
blob_bytes() {
    tail -c +$(($2 + 1)) "$1" | head -c $(($3 - $2)) |
        awk 'match($0, /"GET \/v2\/[^ ]*\/blobs\/sha256:[0-9a-f]+ [^"]*" (200|206) [0-9]+/) {
                 split(substr($0, RSTART, RLENGTH), f, " "); b += f[5]; n++ }
             END { printf "%.0f %d\n", b, n }'
}
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

SGZ_DIR=$T/sgz
SGZ_PID=""
start_stargz() { # start_stargz PLAIN_HTTP_HOSTS
    mkdir -p "$SGZ_DIR/root"
    bg_start "$SGZ_DIR/stargz.log" "$SGZ_BIN" -address "$SGZ_DIR/stargz.sock" -root "$SGZ_DIR/root" -plain-http "$1"
    SGZ_PID=$CF_LAST_PID
    for _ in $(seq 200); do snap_sock_ready "$SGZ_DIR/stargz.sock" && return 0; sleep 0.1; done
    fail "stargz daemon: no socket: $(tail -3 "$SGZ_DIR/stargz.log")"
}
# teardown: containers, containerd, daemons, their mounts and state (nothing kept between runs)
teardown() {
    stop_containerd
    stop_snapshotter
    if [ -n "$SGZ_PID" ]; then bg_stop "$SGZ_PID"; SGZ_PID=""; fi
    umount_under "$T/sgz"; umount_under "$SNAP_DIR"
    rm -rf "$CTRD_DIR" "$SNAP_DIR" "$SGZ_DIR"
}

# cold_start MODE HOST REG_LOG TAG [SNAPSHOTTER ARGS...]: one measured cold start (in this
# shell, not a subshell: its daemons must be known to the cleanup); sets RESULT to
# "total_s pull_s run_s blob_bytes blob_gets [bytes_after_settle]"
cold_start() {
    local mode=$1 host=$2 rlog=$3 tag=$4 ref sn t0 t1 t2 off0 off1 got
    shift 4
    case $mode in
        full) ref=$host/$REPO:gzip sn=overlayfs ;;
        estargz) ref=$host/$REPO:estargz sn=stargz ;;
        chunkfly-*) ref=$host/$REPO:nydus sn=chunkfly ;;
    esac
    teardown
    case $mode in
        estargz) start_stargz "$host"; start_containerd_snap "stargz=$SGZ_DIR/stargz.sock" ;;
        chunkfly-*) SNAP_FS_DRIVER=${mode#chunkfly-} REGISTRY=$host start_snapshotter "$@"
                    start_containerd_snap ;;
        full) start_containerd_snap ;;
    esac
    local pullargs=(--plain-http)
    [ -n "${HOSTS_DIR:-}" ] && pullargs=(--hosts-dir "$HOSTS_DIR")
    drop
    off0=$(stat -c %s "$rlog")
    t0=$EPOCHREALTIME
    if [ "$mode" = full ]; then
        "${CTR[@]}" images pull "${pullargs[@]}" "$ref" >"$T/pull-$tag.log" 2>&1
    else
        "${CTRR[@]}" images rpull --snapshotter "$sn" "${pullargs[@]}" "$ref" >"$T/pull-$tag.log" 2>&1
    fi || fail "$mode pull of $ref: $(tail -3 "$T/pull-$tag.log")"
    t1=$EPOCHREALTIME
    got=$(timeout 120 "${CTR[@]}" run --rm --snapshotter "$sn" \
        --mount type=bind,src=/bin/busybox,dst=/busybox,options=rbind:ro \
        "$ref" "cold-$tag" /busybox sha256sum /app/hello.txt 2>"$T/run-$tag.err") ||
        fail "$mode: ctr run: $(tail -3 "$T/run-$tag.err")"
    t2=$EPOCHREALTIME
    off1=$(stat -c %s "$rlog")
    [ "${got%% *}" = "$TARGET_SHA" ] || fail "$mode: /app/hello.txt sha256 '${got%% *}' != $TARGET_SHA"
    local settled=""
    if [ "$SETTLE" -gt 0 ] && [ "$mode" != full ]; then
        sleep "$SETTLE"
        settled=" $(blob_bytes "$rlog" "$off0" "$(stat -c %s "$rlog")" | cut -d' ' -f1)"
    fi
    RESULT="$(awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN{printf "%.3f %.3f %.3f", c - a, b - a, c - b}') $(blob_bytes "$rlog" "$off0" "$off1")$settled"
    teardown
}

declare -A TT=() BB=() RT=() RB=()
SUMMARY=()
for cond in ${CONDS//,/ }; do
    host=$REG
    [ "$cond" = delay ] && host=127.0.0.1:$DP
    [ "$cond" = direct ] || [ "$cond" = delay ] || { echo "unknown condition $cond" >&2; exit 2; }
    for r in $(seq "$ROUNDS"); do
        # the order rotates per round (order effects: page cache, CPU frequency, other load)
        mapfile -t order < <(tr ',' '\n' <<<"$MODES")
        k=$(( (r - 1) % ${#order[@]} ))
        order=("${order[@]:k}" "${order[@]:0:k}")
        declare -A cur=()
        for mode in "${order[@]}"; do
            log "$cond round $r/$ROUNDS: $mode, load $(load)"
            cold_start "$mode" "$host" "$REG_LOG" "$cond-$r-$mode"
            read -r tot pull run bytes gets settled <<<"$RESULT"
            echo "$cond round $r $mode: total ${tot}s (pull $pull, run $run), registry blob bytes $bytes in $gets GETs${settled:+, $settled after +${SETTLE}s}"
            TT[$cond-$mode]+=" $tot" BB[$cond-$mode]+=" $bytes" cur[$mode]="$tot $bytes"
        done
        if [ -n "${cur[estargz]:-}" ]; then
            read -r es_t es_b <<<"${cur[estargz]}"
            for mode in "${order[@]}"; do
                read -r t b <<<"${cur[$mode]}"
                RT[$cond-$mode]+=" $(awk -v a="$t" -v b="$es_t" 'BEGIN{printf "%.3f", a / b}')"
                RB[$cond-$mode]+=" $(awk -v a="$b" -v b="$es_b" 'BEGIN{printf "%.3f", (b > 0) ? a / b : 0}')"
            done
        fi
        unset cur
    done
    what=$cond
    [ "$cond" = delay ] && what="delay, ${DELAY_MS} ms/GET"
    line="lazy start ($what, medians of $ROUNDS):"
    for mode in ${MODES//,/ }; do
        # shellcheck disable=SC2086
        line+=" $mode=$(med ${TT[$cond-$mode]})s/$(med ${BB[$cond-$mode]})B"
        # shellcheck disable=SC2086
        if [ -n "${RT[$cond-$mode]:-}" ] && [ "$mode" != estargz ]; then
            # shellcheck disable=SC2086
            line+="(x$(med ${RT[$cond-$mode]}) time, x$(med ${RB[$cond-$mode]}) bytes vs estargz)"
        fi
    done
    SUMMARY+=("$line")
done

# ---- a second node through its peer (deploy/local-cluster.sh) ----
if [ "$PEER" = 1 ]; then
    CL=$T/cluster
    mkdir -p "$CL/registry"
    # the cluster's registry serves the same data (its data dir is made before `up`)
    cp -al "$T/regdata" "$CL/registry/data" 2>/dev/null || cp -a "$T/regdata" "$CL/registry/data"
    base=$((20000 + RANDOM % 10000))
    "$CHUNKFLY_SRC/deploy/local-cluster.sh" up --peers 2 --state-dir "$CL" --base-port "$base" \
        >"$T/cluster.out" 2>&1 || fail "local-cluster.sh up: $(tail -5 "$T/cluster.out")"
    CLUSTER_UP=1
    # shellcheck disable=SC1091
    . "$CL/cluster.env"
    line="lazy start through peers (chunkfly-fuse, cluster registry $REGISTRY):"
    poff=$(stat -c %s "$REGISTRY_LOG")
    for n in 1 2; do
        sock=PEER_SOCK_$n mir=PEER_MIRROR_$n
        HOSTS_DIR=$T/certs$n.d
        "$CHUNKFLY_BIN/chunkfly" init containerd --registry "$REGISTRY" --mirror "${!mir}" \
            --config-path "$HOSTS_DIR" --containerd-config "$T/none.toml" >/dev/null 2>&1 ||
            fail "chunkfly init containerd for node $n"
        log "peer: node $n cold start through peer $n, load $(load)"
        cold_start chunkfly-fuse "$REGISTRY" "$REGISTRY_LOG" "peer-$n" --peer "${!sock}"
        read -r tot pull run bytes gets _ <<<"$RESULT"
        echo "peer node $n: total ${tot}s (pull $pull, run $run), registry blob bytes $bytes in $gets GETs"
        line+=" node$n=${tot}s/${bytes}B"
    done
    HOSTS_DIR=""
    # the peers fetch whole blobs in the background: what the registry served in all
    read -r pb pg <<<"$(blob_bytes "$REGISTRY_LOG" "$poff" "$(stat -c %s "$REGISTRY_LOG")")"
    echo "peer nodes 1+2: the registry served $pb blob bytes in $pg GETs from node 1's start to node 2's end"
    line+=" registry_all=${pb}B"
    SUMMARY+=("$line")
fi

echo "anchor (its own method, snapshot view, 1 run): $ANCHOR_LINE"
echo "load at the end: $(load)"
if grep -lE 'Sanitizer|runtime error:' "$T"/*.log "$T"/snap/*.log 2>/dev/null; then
    echo "WARNING: sanitizer reports in the logs above (kept: --keep)"
fi
printf '%s\n' "${SUMMARY[@]}"
