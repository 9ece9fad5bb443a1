#!/usr/bin/env bash
# bench_mount.sh: chunkfly-mount (issue 9 §6) against its baselines, measured in the same run.
# Not a test: it prints figures and never fails on them.
#
# reads   a tree (--big N files of --big-mib MiB + --small files of 1..64 KiB) made into a Nydus
#         image (chunkfly-image create, localfs backend), its cache filled beforehand; reads
#         (fio, psync, one job: seq 1 MiB over the big files, random 4 KiB and 128 KiB over
#         the big files, the same offsets every time; `find | xargs cat` over the small files) with the page cache dropped
#         (`echo 3 > drop_caches`), then again warm, in:
#           native       the source tree on local disk (the baseline)
#           fuse         chunkfly-mount fuse
#           erofs-dev    chunkfly-mount erofs, blob incomplete: the device is our FUSE file
#           erofs-plain  chunkfly-mount erofs, blob complete: the device is the .blob.data
#         --rounds rounds, the mode order rotating; per round each mode's speed / native's.
# meta    a --meta-files image: `find DIR -printf '%i %s %m %T@'` (one lstat per entry) cold and
#         warm, native vs fuse vs erofs.
# rss     every daemon's VmRSS right after mounting (no reads) and its VmHWM at the end.
# cold    ../shared/tools/anchor-lazy-pull.sh (--cache-image, one run per round: its eStargz and
#         full-pull figures), and ours: its gzip image's layers made into a Nydus image
#         (chunkfly-image create per layer + merge), pushed to a docker-registry
#         (tests/lib/nydus_image.sh); from an empty cache and a dropped page cache: mount from
#         the registry + sha256 of /app/hello.txt (4 KiB). With `chunkfly-mount --image` when
#         the binary has it; before that, what it will do: curl the manifest and the bootstrap
#         layer, untar, `chunkfly-mount fuse --bootstrap --config` (registry backend).
#         Time and the registry's blob GET bytes (access log) in the window.
# delay   the same with every GET delayed by --delay-ms (20) by tests/lib/delay_proxy.py: ours
#         through a proxy in front of our registry, the anchor's through a `docker-registry`
#         wrapper first in PATH (its registry on another port, the proxy on the script's).
#
#   tests/bench/bench_mount.sh [--parts reads,meta,cold,delay] [--rounds 3] [--big 4]
#       [--big-mib 128] [--small 4000] [--meta-files 100000] [--delay-ms 20]
#       [--work-dir /var/tmp] [--keep]
# Binaries from $CHUNKFLY_BIN (default build/bin: a Release build). Needs root, /dev/fuse, an
# EROFS kernel that mounts a file (6.12+), fio, python3; cold/delay: what the anchor script
# needs (it apt-installs it) and a few GiB in /var/tmp.
# Last lines: one summary line per measurement (medians over the rounds; ratios = ours / the
# baseline per round, speed for reads and metadata, time and bytes for cold start).
. "$(dirname "$0")/../lib/testlib.sh"
export LC_ALL=C
# the system python: a version manager's shim in PATH can take seconds to start on a busy box
PY=/usr/bin/python3; [ -x $PY ] || PY=python3
PARTS=reads,meta,cold,delay ROUNDS=3 DELAY_MS=20 BIG=4 BIG_MIB=128 SMALL=4000 META_FILES=100000 WORK_BASE=/var/tmp
while [ $# -gt 0 ]; do
    case $1 in
        --parts) PARTS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --big) BIG=$2; shift 2 ;;
        --big-mib) BIG_MIB=$2; shift 2 ;;
        --small) SMALL=$2; shift 2 ;;
        --meta-files) META_FILES=$2; shift 2 ;;
        --delay-ms) DELAY_MS=$2; shift 2 ;;
        --work-dir) WORK_BASE=$2; shift 2 ;;
        --keep) export CF_KEEP=1; shift ;; # read by testlib.sh's cleanup
        -h|--help) sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
for v in ROUNDS BIG BIG_MIB SMALL META_FILES DELAY_MS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "--${v,,}: a positive number" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 2; }
for c in fio python3; do command -v $c >/dev/null || { echo "missing $c (.ci/install-deps)" >&2; exit 2; }; done
CFM=$CHUNKFLY_BIN/chunkfly-mount CFI=$CHUNKFLY_BIN/chunkfly-image
[ -x "$CFM" ] && [ -x "$CFI" ] || { echo "build chunkfly-mount and chunkfly-image first" >&2; exit 2; }
# the work dir on disk (the native baseline reads it; /tmp may be a tmpfs elsewhere)
rm -rf "$T"; T=$(mktemp -d "$WORK_BASE/cfbench-mount.XXXXXX")
MKTREE="$PY $CHUNKFLY_SRC/tests/bench/mount/make_tree.py"
want() { [[ ",$PARTS," == *",$1,"* ]]; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

# fuse_start NAME BOOT BLOBS CACHE: chunkfly-mount fuse at $T/mnt-NAME; sets PID[NAME]
declare -A PID=()
fuse_start() {
    local n=$1 mnt=$T/mnt-$1
    mkdir -p "$mnt" "$4"
    bg_start "$T/$n.log" "$CFM" fuse --mountpoint "$mnt" --bootstrap "$2" --blob-dir "$3" --cache-dir "$4"
    PID[$n]=$CF_LAST_PID CF_MOUNTS+=("$mnt")
    for _ in $(seq 100); do
        awk -v d="$mnt" '$2 == d && $3 == "fuse.rafs" {f=1} END {exit !f}' /proc/self/mounts &&
            stat -f "$mnt" >/dev/null 2>&1 && return 0
        is_alive "${PID[$n]}" || fail "chunkfly-mount exited: $(tail -3 "$T/$n.log")"
        sleep 0.1
    done
    fail "chunkfly-mount did not mount $mnt: $(tail -3 "$T/$n.log")"
}
# erofs_start NAME BOOT BLOBS CACHE: chunkfly-mount erofs at $T/mnt-NAME; sets PID[NAME]
erofs_start() {
    local n=$1 mnt=$T/mnt-$1
    mkdir -p "$mnt" "$4"
    bg_start "$T/$n.log" "$CFM" erofs --mountpoint "$mnt" --bootstrap "$2" --blob-dir "$3" --cache-dir "$4"
    PID[$n]=$CF_LAST_PID CF_MOUNTS+=("$mnt")
    for _ in $(seq 100); do
        grep -q "with the kernel's EROFS" "$T/$n.log" && return 0
        is_alive "${PID[$n]}" || fail "chunkfly-mount erofs exited: $(tail -3 "$T/$n.log")"
        sleep 0.1
    done
    fail "no EROFS mount at $mnt: $(tail -3 "$T/$n.log")"
}
stop() { # stop NAME: SIGTERM, which unmounts
    bg_stop "${PID[$1]}"
    unset "PID[$1]"
}
rss_note() { # rss_note NAME WHEN: prints and keeps the daemon's VmRSS
    local k
    k=$(kib "${PID[$1]}" VmRSS)
    RSS_LINES+=("$1 $2: VmRSS $k KiB")
    log "$1 $2: VmRSS $k KiB"
}
hwm_note() { RSS_LINES+=("$1 peak: VmHWM $(kib "${PID[$1]}" VmHWM) KiB"); }
RSS_LINES=()
SUMMARY=()
log "work dir $T, load $(load), $(nproc) cores"

# fio_job DIR JOB OUT: one fio job over the tree at DIR; prints MB/s (10^6 bytes/s)
fio_job() {
    local d=$1 job=$2 out=$3 files="" i args
    for i in $(seq 0 $((BIG - 1))); do files+="${files:+:}$d/big/big$(printf %02d "$i").bin"; done
    args=(--name="$job" --ioengine=psync --invalidate=0 --randrepeat=1 --output-format=json --output="$out")
    case $job in
        seq1m) args+=(--filename="$files" --rw=read --bs=1M --file_service_type=sequential) ;;
        small) # fio skips files smaller than its block: cat reads each small file whole
            local t0=$EPOCHREALTIME
            (cd "$d/small" && find . -type f -print0 | xargs -0 cat >/dev/null)
            awk -v n="$SMALL_BYTES" -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", n / (b - a) / 1e6}'
            return ;;
        rand4k) args+=(--filename="$files" --rw=randread --bs=4k --io_size=64M --file_service_type=random) ;;
        rand128k) args+=(--filename="$files" --rw=randread --bs=128k --io_size=256M --file_service_type=random) ;;
    esac
    fio "${args[@]}" >/dev/null 2>"$out.err" || fail "fio $job on $d: $(tail -3 "$out.err")"
    $PY -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["read"]; print("%.1f" % (j["bw_bytes"] / 1e6))' "$out"
}

if want reads; then
    log "reads: generating $BIG x $BIG_MIB MiB + $SMALL small files"
    $MKTREE reads "$T/src" "$BIG" "$BIG_MIB" "$SMALL"
    "$CFI" create -l warn -t dir-rafs -B "$T/r.boot" -D "$T/rblobs" -J "$T/r.json" "$T/src" >/dev/null 2>&1 ||
        fail "chunkfly-image create"
    SMALL_BYTES=$(du -sb --apparent-size "$T/src/small" | cut -f1)
    BLOB=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["blobs"][0])' "$T/r.json")
    # fill a cache with everything but unread.bin (erofs-dev), then a complete one
    fuse_start fill "$T/r.boot" "$T/rblobs" "$T/cache-dev"
    (cd "$T/mnt-fill" && find big small -type f -exec cat {} + >/dev/null)
    stop fill
    cp -a --sparse=always "$T/cache-dev" "$T/cache-plain"
    fuse_start fill "$T/r.boot" "$T/rblobs" "$T/cache-plain"
    cat "$T/mnt-fill/unread.bin" >/dev/null
    stop fill
    cp -a --sparse=always "$T/cache-plain" "$T/cache-fuse"
    fuse_start fuse "$T/r.boot" "$T/rblobs" "$T/cache-fuse"
    rss_note fuse "mounted, no reads"
    erofs_start erofs-dev "$T/r.boot" "$T/rblobs" "$T/cache-dev"
    rss_note erofs-dev "mounted, no reads"
    grep -q "EROFS devices: device=$T/cache-dev/" "$T/erofs-dev.log" &&
        fail "erofs-dev got the plain .blob.data: $(grep devices "$T/erofs-dev.log")"
    erofs_start erofs-plain "$T/r.boot" "$T/rblobs" "$T/cache-plain"
    rss_note erofs-plain "mounted, no reads"
    grep -q "EROFS devices: device=$T/cache-plain/$BLOB.blob.data" "$T/erofs-plain.log" ||
        fail "erofs-plain did not get the plain .blob.data: $(grep devices "$T/erofs-plain.log")"
    declare -A DIRS=([native]="$T/src" [fuse]="$T/mnt-fuse" [erofs-dev]="$T/mnt-erofs-dev" [erofs-plain]="$T/mnt-erofs-plain")
    MODES=(native fuse erofs-dev erofs-plain)
    JOBS=(seq1m small rand4k rand128k)
    declare -A SPEED=() RATIO=()
    for r in $(seq "$ROUNDS"); do
        log "reads round $r/$ROUNDS, load $(load)"
        order=("${MODES[@]:$(((r - 1) % 4))}" "${MODES[@]:0:$(((r - 1) % 4))}")
        for job in "${JOBS[@]}"; do
            declare -A got=()
            for m in "${order[@]}"; do
                drop
                got[$m-cold]=$(fio_job "${DIRS[$m]}" "$job" "$T/fio-$r-$m-$job-cold.json")
                got[$m-warm]=$(fio_job "${DIRS[$m]}" "$job" "$T/fio-$r-$m-$job-warm.json")
            done
            for t in cold warm; do
                line="round $r $job $t: native ${got[native-$t]} MB/s"
                for m in fuse erofs-dev erofs-plain; do
                    x=$(awk -v a="${got[$m-$t]}" -v b="${got[native-$t]}" 'BEGIN{printf "%.3f", a / b}')
                    SPEED[$m-$job-$t]+=" ${got[$m-$t]}" RATIO[$m-$job-$t]+=" $x"
                    line+=", $m ${got[$m-$t]} ($x)"
                done
                SPEED[native-$job-$t]+=" ${got[native-$t]}"
                echo "$line"
            done
            unset got
        done
    done
    for m in fuse erofs-dev erofs-plain; do hwm_note "$m"; done
    for job in "${JOBS[@]}"; do
        for t in cold warm; do
            # shellcheck disable=SC2086
            line="mount reads: $job $t native=$(med ${SPEED[native-$job-$t]})MB/s"
            # shellcheck disable=SC2086
            for m in fuse erofs-dev erofs-plain; do line+=" $m=$(med ${RATIO[$m-$job-$t]})x($(med ${SPEED[$m-$job-$t]}))"; done
            SUMMARY+=("$line")
        done
    done
    for m in fuse erofs-dev erofs-plain; do stop "$m"; done
    rm -rf "$T/cache-dev" "$T/cache-plain" "$T/cache-fuse"
fi

if want meta; then
    log "meta: generating $META_FILES files"
    $MKTREE meta "$T/msrc" "$META_FILES"
    "$CFI" create -l warn -t dir-rafs -B "$T/m.boot" -D "$T/mblobs" "$T/msrc" >/dev/null 2>&1 ||
        fail "chunkfly-image create (meta)"
    fuse_start mfuse "$T/m.boot" "$T/mblobs" "$T/mcache-fuse"
    rss_note mfuse "mounted ($META_FILES files), no reads"
    erofs_start merofs "$T/m.boot" "$T/mblobs" "$T/mcache-erofs"
    rss_note merofs "mounted ($META_FILES files), no reads"
    declare -A MD=([native]="$T/msrc" [fuse]="$T/mnt-mfuse" [erofs]="$T/mnt-merofs")
    declare -A MT=() MR=()
    n_native=$(find "$T/msrc" | wc -l)
    for m in fuse erofs; do
        n=$(find "${MD[$m]}" | wc -l)
        [ "$n" = "$n_native" ] || fail "meta: $m shows $n entries, native $n_native"
    done
    for r in $(seq "$ROUNDS"); do
        declare -A got=()
        for m in native fuse erofs; do
            drop
            for t in cold warm; do
                s=$EPOCHREALTIME
                find "${MD[$m]}" -printf '%i %s %m %T@\n' >/dev/null
                got[$m-$t]=$(awk -v a="$s" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.3f", b - a}')
            done
        done
        for t in cold warm; do
            line="meta round $r $t (load $(load)): native ${got[native-$t]} s"
            MT[native-$t]+=" ${got[native-$t]}"
            for m in fuse erofs; do
                # ratio as speed / native speed = native time / time
                x=$(awk -v a="${got[$m-$t]}" -v b="${got[native-$t]}" 'BEGIN{printf "%.3f", b / a}')
                MT[$m-$t]+=" ${got[$m-$t]}" MR[$m-$t]+=" $x"
                line+=", $m ${got[$m-$t]} s ($x)"
            done
            echo "$line"
        done
        unset got
    done
    hwm_note mfuse; hwm_note merofs
    for t in cold warm; do
        # shellcheck disable=SC2086
        SUMMARY+=("mount meta: find+lstat of $n_native entries, $t: native=$(med ${MT[native-$t]})s fuse=$(med ${MR[fuse-$t]})x($(med ${MT[fuse-$t]})s) erofs=$(med ${MR[erofs-$t]})x($(med ${MT[erofs-$t]})s)")
    done
    stop mfuse; stop merofs
fi

# ---- cold start against eStargz (anchor-lazy-pull.sh) ----
ANCHOR=${ANCHOR:-$CHUNKFLY_SRC/../shared/tools/anchor-lazy-pull.sh}
ANCHOR_CACHE=${ANCHOR_CACHE:-/var/tmp/anchor-cache}
REPO=bench/anchor
# blob_bytes LOG OFF0 OFF1: "bytes gets" of blob GETs (200/206) the registry logged in the window
blob_bytes() {
    $PY - "$@" <<'PY'
import re, sys
line = re.compile(r'"(\S+) (\S+) [^"]*" (\d{3}) (\d+|-)')
f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2])); data = f.read(int(sys.argv[3]) - int(sys.argv[2]))
n = gets = 0
for l in data.decode("utf-8", "replace").splitlines():
    m = line.search(l)
    if m and m.group(1) == "GET" and "/blobs/sha256:" in m.group(2) and m.group(3) in ("200", "206"):
        n += 0 if m.group(4) == "-" else int(m.group(4)); gets += 1
print(n, gets)
PY
}
# anchor_run TAG [CMD...]: one anchor-lazy-pull.sh run (full + eStargz, run through CMD, e.g.
# env PATH=...) -> $T/anchor-TAG.json; prints "estargz_s estargz_bytes full_s full_bytes"
anchor_run() {
    local tag=$1; shift
    "$@" "$ANCHOR" --cache-image --cache "$ANCHOR_CACHE" --runs 1 --json "$T/anchor-$tag.json" \
        >"$T/anchor-$tag.out" 2>"$T/anchor-$tag.err" ||
        fail "anchor-lazy-pull.sh ($tag): $(tail -5 "$T/anchor-$tag.err")"
    $PY -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print("%.3f %d %.3f %d" % (s["estargz"]["total_s"], s["estargz"]["window_blob_bytes"], s["full"]["total_s"], s["full"]["window_blob_bytes"]))' "$T/anchor-$tag.json"
}
# nydus_from_anchor TAG: the anchor's gzip image (found in its cache by config digest) as a
# Nydus image: one chunkfly-image create per layer, then merge. Sets NYDUS_BLOBS, TARGET_SHA.
nydus_from_anchor() {
    local d r="" cfgd m="" l i=0 boots=()
    cfgd=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["gzip"]["config_digest"])' "$T/anchor-$1.json")
    for d in "$ANCHOR_CACHE"/images/*/registry-data; do
        r=$d/docker/registry/v2
        m=$(cat "$r/repositories/anchor/img/_manifests/tags/gzip/current/link" 2>/dev/null) || continue
        m=$r/blobs/sha256/${m:7:2}/${m#sha256:}/data
        grep -q "$cfgd" "$m" && break
        m=""
    done
    [ -n "$m" ] || fail "the anchor's gzip image (config $cfgd) not found under $ANCHOR_CACHE/images"
    mkdir -p "$T/cold/blobs"
    for l in $($PY -c 'import json,sys; print(" ".join(x["digest"] for x in json.load(open(sys.argv[1]))["layers"]))' "$m"); do
        i=$((i + 1))
        gzip -dc "$r/blobs/sha256/${l:7:2}/${l#sha256:}/data" |
            "$CFI" create -l warn -t tar-rafs -B "$T/cold/l$i.boot" -D "$T/cold/blobs" -J "$T/cold/l$i.json" /dev/stdin \
                >/dev/null 2>&1 || fail "chunkfly-image create of anchor layer $i"
        boots+=("$T/cold/l$i.boot")
    done
    "$CFI" merge -l warn -B "$T/cold/image.boot" "${boots[@]}" >/dev/null 2>&1 || fail "chunkfly-image merge"
    NYDUS_BLOBS=()
    for l in $(seq "$i"); do
        NYDUS_BLOBS+=("$T/cold/blobs/$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["blobs"][0])' "$T/cold/l$l.json")")
    done
    TARGET_SHA=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"]["target_sha256"])' "$T/anchor-$1.json")
}
HAVE_IMAGE=0
"$CFM" --help 2>&1 | grep -q -- '--image' && HAVE_IMAGE=1
# ours_cold HOST:PORT TAG: from an empty cache and a dropped page cache, mount the image from the
# registry at HOST:PORT and sha256 /app/hello.txt; prints "seconds blob_bytes gets"
ours_cold() {
    local hp=$1 d=$T/cold/run-$2 t0 t1 off0 off1 pid got dg
    rm -rf "$d"; mkdir -p "$d/cache" "$d/mnt"
    drop
    off0=$(stat -c %s "$REGISTRY_DIR/log")
    t0=$EPOCHREALTIME
    if [ "$HAVE_IMAGE" = 1 ]; then
        "$CFM" fuse --image "$hp/$REPO:nydus" --plain-http --mountpoint "$d/mnt" --cache-dir "$d/cache" >"$d/log" 2>&1 &
    else
        # what --image will do: the manifest, its bootstrap layer, a registry-backend mount
        dg=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$hp/v2/$REPO/manifests/nydus" |
            $PY -c 'import json,sys; print([l["digest"] for l in json.load(sys.stdin)["layers"] if l.get("annotations", {}).get("containerd.io/snapshot/nydus-bootstrap")][0])')
        curl -fsS "http://$hp/v2/$REPO/blobs/$dg" | tar -xzf - -C "$d" image/image.boot
        printf '{"device":{"backend":{"type":"registry","config":{"host":"%s","repo":"%s","scheme":"http"}},"cache":{"type":"blobcache","config":{"work_dir":"%s"}}},"mode":"direct","digest_validate":false}' \
            "$hp" "$REPO" "$d/cache" >"$d/config.json"
        "$CFM" fuse --bootstrap "$d/image/image.boot" --config "$d/config.json" --mountpoint "$d/mnt" >"$d/log" 2>&1 &
    fi
    pid=$!
    CF_PIDS+=("$pid") CF_MOUNTS+=("$d/mnt")
    until [ -e "$d/mnt/app/hello.txt" ]; do
        is_alive "$pid" || fail "chunkfly-mount ($2) exited: $(tail -3 "$d/log")"
        sleep 0.01
    done
    got=$(sha256sum <"$d/mnt/app/hello.txt")
    t1=$EPOCHREALTIME
    off1=$(stat -c %s "$REGISTRY_DIR/log")
    [ "${got%% *}" = "$TARGET_SHA" ] || fail "ours ($2): /app/hello.txt sha256 ${got%% *} != $TARGET_SHA"
    bg_stop "$pid"
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}') $(blob_bytes "$REGISTRY_DIR/log" "$off0" "$off1")"
}
if want cold || want delay; then
    [ -x "$ANCHOR" ] || fail "$ANCHOR missing"
    . "$CHUNKFLY_SRC/tests/lib/nydus_image.sh"
    log "cold: a first anchor run (builds or reuses its image in $ANCHOR_CACHE), load $(load)"
    anchor_run 0 >/dev/null
    log "cold: converting the anchor image's layers with chunkfly-image"
    nydus_from_anchor 0
    REGISTRY_LOG='{level: info, formatter: text}' start_registry 127.0.0.1 "" reg-nydus
    nydus_push_image "$REGISTRY" "$REPO" nydus "$T/cold/image.boot" "${NYDUS_BLOBS[@]}" >/dev/null
    log "pushed: bootstrap $(stat -c %s "$T/cold/image.boot") B (layer $(stat -c %s "$T/nydus-push"/*/boot.tar.gz) B), blobs $(du -cb "${NYDUS_BLOBS[@]}" | tail -1 | cut -f1) B; --image: $HAVE_IMAGE"
fi
if want cold; then
    declare -A CT=() CB=()
    for r in $(seq "$ROUNDS"); do
        log "cold round $r/$ROUNDS, load $(load)"
        read -r es_s es_b full_s full_b < <(anchor_run "c$r")
        read -r o_s o_b o_g < <(ours_cold "$REGISTRY" "c$r")
        echo "cold round $r: estargz $es_s s $es_b B, full $full_s s $full_b B, ours $o_s s $o_b B ($o_g GETs)"
        CT[es]+=" $es_s" CB[es]+=" $es_b" CT[full]+=" $full_s" CB[full]+=" $full_b" CT[ours]+=" $o_s" CB[ours]+=" $o_b"
        CT[ratio]+=" $(awk -v a="$o_s" -v b="$es_s" 'BEGIN{printf "%.3f", a / b}')"
        CB[ratio]+=" $(awk -v a="$o_b" -v b="$es_b" 'BEGIN{printf "%.3f", a / b}')"
    done
    # shellcheck disable=SC2086
    SUMMARY+=("mount cold: ours=$(med ${CT[ours]})s $(med ${CB[ours]})B estargz=$(med ${CT[es]})s $(med ${CB[es]})B full=$(med ${CT[full]})s $(med ${CB[full]})B time_ours/estargz=$(med ${CT[ratio]}) bytes_ours/estargz=$(med ${CB[ratio]}) (--image: $HAVE_IMAGE)")
fi
if want delay; then
    # the anchor script's docker-registry behind the delaying proxy: a wrapper first in PATH
    # serves the registry on another port and the proxy on the address the script chose
    mkdir -p "$T/delaybin"
    cat >"$T/delaybin/docker-registry" <<WRAP
#!/usr/bin/env bash
# docker-registry serve CONFIG, behind tests/lib/delay_proxy.py ($DELAY_MS ms per GET)
cfg=\$2 addr=\$(sed -n 's/^ *addr: *//p' "\$2")
port=\$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed "s/addr: .*/addr: 127.0.0.1:\$port/" "\$cfg" >"\$cfg.real"
/usr/bin/docker-registry serve "\$cfg.real" & r=\$!
$PY $CHUNKFLY_SRC/tests/lib/delay_proxy.py "\$addr" "127.0.0.1:\$port" $DELAY_MS & p=\$!
trap 'kill \$r \$p; wait' TERM INT
wait
WRAP
    chmod +x "$T/delaybin/docker-registry"
    DP=$(free_port 127.0.0.1)
    bg_start "$T/delay_proxy.log" $PY "$CHUNKFLY_SRC/tests/lib/delay_proxy.py" "127.0.0.1:$DP" "$REGISTRY" "$DELAY_MS"
    wait_port 127.0.0.1 "$DP"
    declare -A DT=()
    for r in $(seq "$ROUNDS"); do
        log "delay round $r/$ROUNDS ($DELAY_MS ms per GET), load $(load)"
        read -r es_s es_b full_s full_b < <(anchor_run "d$r" env PATH="$T/delaybin:$PATH")
        read -r o_s o_b o_g < <(ours_cold "127.0.0.1:$DP" "d$r")
        echo "delay round $r: estargz $es_s s $es_b B, full $full_s s, ours $o_s s $o_b B ($o_g GETs)"
        DT[es]+=" $es_s" DT[full]+=" $full_s" DT[ours]+=" $o_s"
        DT[ratio]+=" $(awk -v a="$o_s" -v b="$es_s" 'BEGIN{printf "%.3f", a / b}')"
    done
    # shellcheck disable=SC2086
    SUMMARY+=("mount cold +${DELAY_MS}ms/GET: ours=$(med ${DT[ours]})s estargz=$(med ${DT[es]})s full=$(med ${DT[full]})s time_ours/estargz=$(med ${DT[ratio]}) (--image: $HAVE_IMAGE)")
fi

printf '%s\n' "${RSS_LINES[@]}"
echo "load at the end: $(load)"
# a Sanitize build (CHUNKFLY_BUILD=build-sanitize) reports into the daemons' logs
if grep -lE 'Sanitizer|runtime error:' "$T"/*.log "$T"/cold/run-*/log 2>/dev/null; then
    echo "WARNING: sanitizer reports in the daemon logs above (kept: --keep)"
fi
printf '%s\n' "${SUMMARY[@]}"
