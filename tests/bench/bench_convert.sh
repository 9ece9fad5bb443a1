#!/usr/bin/env bash
# Benchmark of `chunkfly convert` (issue 12 §6), registry to registry between two local
# docker-registries, against baselines measured in the same run on the same image:
#   - `skopeo copy` of the image to the target registry (the transfer floor: pull + push,
#     no conversion);
#   - the eStargz path: `ctr-remote images pull` (into our own containerd) + `ctr-remote images
#     convert --estargz --oci` + `ctr-remote images push` to the target registry.
# The image: ../shared/tools/make-test-image.sh --size-mb SIZE --layers 5 --text-pct TEXT (gzip,
# OCI), pushed to the source registry. TEXT defaults to 0 (every file incompressible): the
# tool's text generator (awk | head -c under pipefail) dies of SIGPIPE at random on large
# images, so large runs need --text-pct 0 until it is fixed. Every tool starts from nothing: a fresh chunkfly work dir, a fresh
# target repository, a fresh containerd root. Measured per tool: wall time, and peak RSS of the
# process we run (/usr/bin/time -v; for ctr-remote that is the client, containerd does the
# pull's work: its own RSS is not counted). Prints ratios against skopeo copy; asserts nothing
# about times (goals: convert <= 1.5x skopeo copy, faster than the eStargz path, peak RSS
# <= 64 MiB with the default workers). The converted image is checked with `chunkfly check`
# once (outside the timings).
#
# Usage: bench_convert.sh [--size-mb 1024] [--rounds 1] [--workers N] [--text-pct 0]
#                         [--no-estargz] [--keep]
# Needs root (containerd), docker-registry, skopeo, ctr-remote, containerd, openssl; about
# 4 * SIZE MiB free in $TMPDIR (default /var/tmp). Not part of ctest.
set -u
: "${TMPDIR:=/var/tmp}"
export TMPDIR
CHUNKFLY_SRC=${CHUNKFLY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
CHUNKFLY_BIN=${CHUNKFLY_BIN:-$CHUNKFLY_SRC/build/bin}
export CHUNKFLY_SRC CHUNKFLY_BIN
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/snapshotter/snap_lib.sh" # our containerd

SIZE=1024 ROUNDS=1 WORKERS="" ESTARGZ=1 TEXT=0
while [ $# -gt 0 ]; do
    case $1 in
    --size-mb) SIZE=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --text-pct) TEXT=$2; shift 2 ;;
    --no-estargz) ESTARGZ=0; shift ;;
    --keep) export CF_KEEP=1; shift ;;
    *) echo "usage: $0 [--size-mb N] [--rounds N] [--workers N] [--text-pct P] [--no-estargz] [--keep]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "needs root (containerd for the eStargz path)" >&2; exit 2; }
for t in docker-registry skopeo /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "$t not installed" >&2; exit 2; }
done
[ "$ESTARGZ" = 0 ] || command -v ctr-remote >/dev/null || { echo "ctr-remote not installed (--no-estargz)" >&2; exit 2; }
CF=$CHUNKFLY_BIN/chunkfly
[ -x "$CF" ] || { echo "$CF not built" >&2; exit 2; }

start_registry 127.0.0.1 "" source
SREG=$REGISTRY
start_registry 127.0.0.1 "" target
TREG=$REGISTRY
note "image: make-test-image.sh --size-mb $SIZE --layers 5 --text-pct $TEXT -> $SREG/bench/img:v1"
"$CHUNKFLY_SRC/../shared/tools/make-test-image.sh" --size-mb "$SIZE" --layers 5 --text-pct "$TEXT" \
    --registry "$SREG" --repo bench/img --tag v1 --workdir "$T/mkimg" >"$T/mkimg.log" 2>&1 ||
    { tail -5 "$T/mkimg.log"; fail "make-test-image.sh"; }
SRC_BYTES=$(curl -sSf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$SREG/v2/bench/img/manifests/v1" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(sum(l["size"] for l in m["layers"]))')
note "source: $((SRC_BYTES / 1048576)) MiB compressed in 5 layers (+ the special-entries layer)"

declare -A WALL RSS
# timed NAME CMD...: wall seconds and peak RSS (MiB) of CMD, summed over rounds in WALL/RSS
timed() {
    local name=$1; shift
    local t0 t1
    t0=$(date +%s%N)
    /usr/bin/time -v -o "$T/time.$name" "$@" >"$T/out.$name" 2>"$T/err.$name" ||
        { tail -5 "$T/err.$name"; fail "$name failed"; }
    t1=$(date +%s%N)
    local w r
    w=$(( (t1 - t0) / 1000000 ))
    r=$(awk '/Maximum resident set size/ {print int($6 / 1024)}' "$T/time.$name")
    WALL[$name]=$(( ${WALL[$name]:-0} + w ))
    [ "${RSS[$name]:-0}" -ge "$r" ] || RSS[$name]=$r
    note "$name: $(awk -v w="$w" 'BEGIN {printf "%.2f", w / 1000}') s, peak RSS $r MiB"
}

if [ "$ESTARGZ" = 1 ]; then
    start_containerd_snap
    for _ in $(seq 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
fi
TREG1=$TREG
for r in $(seq "$ROUNDS"); do
    note "round $r"
    # a fresh target registry per round: skopeo's blob info cache (kept across runs) would
    # otherwise mount the previous round's blobs instead of copying them
    if [ "$r" -gt 1 ]; then
        start_registry 127.0.0.1 "" "target$r"
        TREG=$REGISTRY
    fi
    timed skopeo skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
        "docker://$SREG/bench/img:v1" "docker://$TREG/bench/skopeo$r:v1"
    rm -rf "$T/work"
    timed chunkfly "$CF" convert -q --work-dir "$T/work" ${WORKERS:+--workers "$WORKERS"} \
        "$SREG/bench/img:v1" "$TREG/bench/nydus$r:v1"
    if [ "$ESTARGZ" = 1 ]; then
        # each round from an empty content store: the pull is part of the path
        "${CTR[@]}" images rm "$SREG/bench/img:v1" "$TREG/bench/esgz$r:v1" >/dev/null 2>&1 || true
        "${CTR[@]}" content ls -q | xargs -r "${CTR[@]}" content rm >/dev/null 2>&1 || true
        cat >"$T/esgz.sh" <<EOF
set -e
${CTRR[*]} images pull --plain-http $SREG/bench/img:v1 >/dev/null
${CTRR[*]} images convert --estargz --oci $SREG/bench/img:v1 $TREG/bench/esgz$r:v1 >/dev/null
${CTRR[*]} images push --plain-http $TREG/bench/esgz$r:v1 >/dev/null
EOF
        timed estargz bash "$T/esgz.sh"
    fi
done
note "check of the converted image (not timed)"
"$CF" check -q --work-dir "$T/work" "$SREG/bench/img:v1" "$TREG1/bench/nydus1:v1" 2>"$T/check.log" ||
    { cat "$T/check.log"; fail "chunkfly check"; }
tail -1 "$T/check.log"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
secs() { awk -v a="$1" -v n="$ROUNDS" 'BEGIN {printf "%.2f", a / n / 1000}'; }
echo
echo "image: $SIZE MiB in 5 layers ($TEXT% text files), $((SRC_BYTES / 1048576)) MiB compressed; $ROUNDS round(s); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %10s %14s %16s\n' "path" "wall (s)" "peak RSS MiB" "vs skopeo copy"
printf '%-34s %10s %14s %16s\n' "skopeo copy" "$(secs "${WALL[skopeo]}")" "${RSS[skopeo]}" "1.00"
printf '%-34s %10s %14s %16s\n' "chunkfly convert (workers ${WORKERS:-default})" "$(secs "${WALL[chunkfly]}")" "${RSS[chunkfly]}" "$(ratio "${WALL[chunkfly]}" "${WALL[skopeo]}")"
if [ "$ESTARGZ" = 1 ]; then
    printf '%-34s %10s %14s %16s\n' "ctr-remote pull+convert+push" "$(secs "${WALL[estargz]}")" "${RSS[estargz]} (client)" "$(ratio "${WALL[estargz]}" "${WALL[skopeo]}")"
    echo "chunkfly convert / eStargz path: $(ratio "${WALL[chunkfly]}" "${WALL[estargz]}")"
fi
