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
# cold    see bench_mount_cold.sh (needs the anchor image).
#
#   tests/bench/bench_mount.sh [--parts reads,meta] [--rounds 3] [--big 4] [--big-mib 128]
#       [--small 4000] [--meta-files 100000] [--work-dir /var/tmp] [--keep]
# Binaries from $CHUNKFLY_BIN (default build/bin: a Release build). Needs root, /dev/fuse, an
# EROFS kernel that mounts a file (6.12+), fio, python3.
# Last lines: one summary line per part, e.g.
#   mount reads: <job> native=<MB/s> fuse=<x> erofs-dev=<x> erofs-plain=<x> (median ratios)
. "$(dirname "$0")/../lib/testlib.sh"
export LC_ALL=C
PARTS=reads,meta ROUNDS=3 BIG=4 BIG_MIB=128 SMALL=4000 META_FILES=100000 WORK_BASE=/var/tmp
while [ $# -gt 0 ]; do
    case $1 in
        --parts) PARTS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --big) BIG=$2; shift 2 ;;
        --big-mib) BIG_MIB=$2; shift 2 ;;
        --small) SMALL=$2; shift 2 ;;
        --meta-files) META_FILES=$2; shift 2 ;;
        --work-dir) WORK_BASE=$2; shift 2 ;;
        --keep) CF_KEEP=1; shift ;;
        -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
for v in ROUNDS BIG BIG_MIB SMALL META_FILES; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "--${v,,}: a positive number" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 2; }
for c in fio python3; do command -v $c >/dev/null || { echo "missing $c (.ci/install-deps)" >&2; exit 2; }; done
CFM=$CHUNKFLY_BIN/chunkfly-mount CFI=$CHUNKFLY_BIN/chunkfly-image
[ -x "$CFM" ] && [ -x "$CFI" ] || { echo "build chunkfly-mount and chunkfly-image first" >&2; exit 2; }
# the work dir on disk (the native baseline reads it; /tmp may be a tmpfs elsewhere)
rm -rf "$T"; T=$(mktemp -d "$WORK_BASE/cfbench-mount.XXXXXX")
MKTREE="python3 $CHUNKFLY_SRC/tests/bench/mount/make_tree.py"
want() { [[ ",$PARTS," == *",$1,"* ]]; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

# fuse_start NAME BOOT BLOBS CACHE: chunkfly-mount fuse at $T/mnt-NAME; sets PID_<NAME>
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
# erofs_start NAME BOOT BLOBS CACHE: chunkfly-mount erofs at $T/mnt-NAME; sets PID_<NAME>
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
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["read"]; print("%.1f" % (j["bw_bytes"] / 1e6))' "$out"
}

if want reads; then
    log "reads: generating $BIG x $BIG_MIB MiB + $SMALL small files"
    $MKTREE reads "$T/src" "$BIG" "$BIG_MIB" "$SMALL"
    "$CFI" create -l warn -t dir-rafs -B "$T/r.boot" -D "$T/rblobs" -J "$T/r.json" "$T/src" >/dev/null 2>&1 ||
        fail "chunkfly-image create"
    SMALL_BYTES=$(du -sb --apparent-size "$T/src/small" | cut -f1)
    BLOB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["blobs"][0])' "$T/r.json")
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

printf '%s\n' "${RSS_LINES[@]}"
echo "load at the end: $(load)"
printf '%s\n' "${SUMMARY[@]}"
