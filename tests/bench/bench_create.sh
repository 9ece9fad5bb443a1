#!/usr/bin/env bash
# Benchmark of `chunkfly-image create` (tar-rafs, zstd) against baselines measured in the same
# run on the same input (not part of ctest):
#   - `zstd -3 -T1` and `zstd -3 -T2` over the same tar (throughput targets >= 0.85x / >= 0.9x)
#   - `mkfs.erofs --chunksize=1048576 --blobdev` on the extracted tree (chunked EROFS, no
#     compression: the closest kernel-tool equivalent)
#   - output size vs `zstd -3` of the tar; peak RSS of create (target <= 64 MiB)
# The input is a deterministic layer tar of realistic content: text files (word generator),
# binary-like files (random blocks mixed with zero runs and repeated structures) and already
# compressed files (AES-CTR keystreams from openssl), log-uniform sizes, fixed mtimes/owners.
#
# Usage: bench_create.sh [--size-mb N] [--runs N] [--workdir DIR] [--bin PATH] [--keep]
#   --bin defaults to $CHUNKFLY_BIN/chunkfly-image (use a Release build).
set -euo pipefail

size_mb=1024 runs=2 workdir="" keep=0
bin=${CHUNKFLY_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}/chunkfly-image
while [ $# -gt 0 ]; do
    case $1 in
    --size-mb) size_mb=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ -x "$bin" ] || { echo "chunkfly-image not found at $bin (use --bin)" >&2; exit 2; }
for t in zstd mkfs.erofs openssl python3 /usr/bin/time tar; do
    command -v $t >/dev/null || { echo "$t is required" >&2; exit 2; }
done
if [ -z "$workdir" ]; then workdir=$(mktemp -d "${TMPDIR:-/tmp}/bench_create.XXXXXX"); fi
mkdir -p "$workdir"
[ $keep = 1 ] || trap 'rm -rf "$workdir/out" "$workdir/tree"' EXIT
tarfile="$workdir/layer-${size_mb}m.tar"

# ---- deterministic input ---------------------------------------------------------------------
if [ ! -s "$tarfile" ]; then
    echo "generating a ${size_mb} MiB layer tar in $tarfile ..." >&2
    rm -rf "$workdir/tree"; mkdir -p "$workdir/tree"
    python3 - "$workdir/tree" "$size_mb" <<'PY'
import os, random, subprocess, sys
root, total = sys.argv[1], int(sys.argv[2]) << 20
rng = random.Random(20261130)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
         for _ in range(5000)]
weights = [1.0 / (i + 1) for i in range(len(words))]  # Zipf-like, as in real text
def gen_text(n):
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choices(words, weights, k=rng.randint(3, 14))) + "\n"
        out.append(line); size += len(line)
    return "".join(out).encode()[:n]
POOL = gen_text(8 << 20)  # 8 MiB of generated text; files are random slices of it
def text(n):
    out, size = [], 0
    while size < n:
        k = min(n - size, rng.randint(4096, 262144))
        o = rng.randrange(0, len(POOL) - k)
        out.append(POOL[o:o + k]); size += k
    return b"".join(out)
def binary(n):
    out, size = bytearray(), 0
    while size < n:
        k = rng.random()
        if k < 0.45: blk = rng.randbytes(4096)                      # code/data, incompressible
        elif k < 0.65: blk = bytes(4096)                            # zero/bss runs
        elif k < 0.85: blk = (rng.randbytes(64) * 64)               # tables, repeated records
        else: blk = text(4096)                                      # string tables
        out += blk; size += len(blk)
    return bytes(out[:n])
def keystream(n, seed):
    key = "%032x" % seed
    p = subprocess.run(["openssl", "enc", "-aes-128-ctr", "-nosalt", "-K", key, "-iv", "0" * 32],
                       input=bytes(n), capture_output=True, check=True)
    return p.stdout[:n]
done, i = 0, 0
while done < total:
    kind = rng.choices(["text", "bin", "comp"], [0.45, 0.30, 0.25])[0]
    size = int(2 ** rng.uniform(10, 23))  # 1 KiB .. 8 MiB, log-uniform
    size = min(size, total - done)
    d = os.path.join(root, "d%02d" % rng.randint(0, 40), "s%02d" % rng.randint(0, 9))
    os.makedirs(d, exist_ok=True)
    name = os.path.join(d, "%s-%06d.%s" % (kind, i, {"text": "txt", "bin": "so", "comp": "gz"}[kind]))
    data = text(size) if kind == "text" else binary(size) if kind == "bin" else keystream(size, i + 1)
    with open(name, "wb") as f: f.write(data)
    done += size; i += 1
print("generated %d files, %d bytes" % (i, done), file=sys.stderr)
PY
    tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
        -C "$workdir/tree" -cf "$tarfile" .
fi
if [ ! -d "$workdir/tree" ]; then mkdir -p "$workdir/tree"; tar -C "$workdir/tree" -xf "$tarfile"; fi
insize=$(stat -c %s "$tarfile")
mkdir -p "$workdir/out"
cat "$tarfile" >/dev/null # warm the page cache for every contender alike

# best-of-N wall time (seconds) of a command; also the CPU seconds (user+sys) of that run and
# the peak RSS (KiB) of the last run. CPU time is steadier than wall time on a shared machine.
best=""; cpu=""; rss=0
measure() {
    best=""
    for _ in $(seq "$runs"); do
        /usr/bin/time -f "%e %U %S %M" -o "$workdir/out/time" "$@" >/dev/null 2>"$workdir/out/stderr" ||
            { cat "$workdir/out/stderr" >&2; echo "failed: $*" >&2; exit 1; }
        read -r t u s m <"$workdir/out/time"
        rss=$m
        if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $t < $best else 1)"; then
            best=$t
            cpu=$(python3 -c "print('%.2f' % ($u + $s))")
        fi
    done
}
mbps() { python3 -c "print('%.1f' % ($insize / 1048576 / max($1, 0.001)))"; }
ratio() { python3 -c "print('%.2f' % ($2 / max($1, 0.001)))"; } # throughput ratio = time_b/time_a

measure zstd -3 -T1 -q -f "$tarfile" -o "$workdir/out/layer.tar.zst"; t_z1=$best; c_z1=$cpu
zsize=$(stat -c %s "$workdir/out/layer.tar.zst")
measure zstd -3 -T2 -q -f "$tarfile" -o "$workdir/out/layer2.tar.zst"; t_z2=$best; c_z2=$cpu
measure "$bin" create -l warn -t tar-rafs --compressor zstd -B "$workdir/out/boot" \
    -b "$workdir/out/blob" "$tarfile"; t_cf=$best; c_cf=$cpu; rss_cf=$rss
bsize=$(( $(stat -c %s "$workdir/out/blob") + $(stat -c %s "$workdir/out/boot") ))
measure "$bin" create -l warn -t tar-rafs --compressor zstd --threads 1 -B "$workdir/out/boot1" \
    -b "$workdir/out/blob1" "$tarfile"; t_cf1=$best; c_cf1=$cpu
measure mkfs.erofs --quiet --chunksize=1048576 --blobdev="$workdir/out/erofs.blob" -T0 \
    "$workdir/out/erofs.boot" "$workdir/tree"; t_mkfs=$best; c_mkfs=$cpu

cat <<EOF
bench_create: input $(python3 -c "print('%.1f' % ($insize/1048576))") MiB tar, best of $runs runs, $(nproc) cores, $(date -u +%F)
  zstd -3 -T1                 : ${t_z1}s (cpu ${c_z1}s)  $(mbps "$t_z1") MiB/s   -> $zsize bytes
  zstd -3 -T2                 : ${t_z2}s (cpu ${c_z2}s)  $(mbps "$t_z2") MiB/s
  chunkfly-image create (zstd): ${t_cf}s (cpu ${c_cf}s)  $(mbps "$t_cf") MiB/s   -> $bsize bytes (blob+bootstrap), peak RSS $((rss_cf / 1024)) MiB
  create --threads 1          : ${t_cf1}s (cpu ${c_cf1}s)  $(mbps "$t_cf1") MiB/s
  mkfs.erofs chunked (no comp): ${t_mkfs}s (cpu ${c_mkfs}s)  $(mbps "$t_mkfs") MiB/s (extracted tree)
ratios (throughput, higher is better for create):
  create / zstd -3 -T1 = $(ratio "$t_cf" "$t_z1")   (target >= 0.85)
  create / zstd -3 -T2 = $(ratio "$t_cf" "$t_z2")   (target >= 0.90)
  create / mkfs.erofs  = $(ratio "$t_cf" "$t_mkfs")
  CPU time create / zstd -3 -T1 = $(python3 -c "print('%.2f' % ($c_cf / max($c_z1, 0.001)))")  (load-independent cost ratio)
  output size / (tar | zstd -3) = $(python3 -c "print('%.3f' % ($bsize / $zsize))")
  peak RSS = $((rss_cf / 1024)) MiB (target <= 64 MiB)
EOF
