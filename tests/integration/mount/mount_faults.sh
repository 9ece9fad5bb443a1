#!/usr/bin/env bash
# chunkfly-mount under faults, over real kernel FUSE:
#  - a corrupted chunk in the blob: reads of it fail with EIO, every byte that is returned is
#    right, the log names blob and chunk, nothing is cached for it (zeros in .blob.data, bit
#    clear in the chunk_map); once the blob is repaired the same read fetches again and works;
#  - the cache file cut short behind the daemon's back: EIO, never a short read;
#  - kill -9 of the daemon: readers (new opens and an already open fd) fail at once, no hang;
#    a restart on the same mountpoint cleans the dead mount and serves again;
#  - 8 threads of random reads over a fresh cache, compared with the source.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/mount_lib.sh"

S=$T/src
mkdir -p "$S/small"
head -c $((24 * 1048576 + 12345)) /dev/urandom >"$S/big"
seq 1 2000000 >"$S/text"
for i in $(seq 1 50); do head -c $((i * 977)) /dev/urandom >"$S/small/f$i"; done
"$CFI" create -l warn -t dir-rafs -B "$T/boot" -D "$T/blobs" -J "$T/create.json" "$S" ||
    fail "chunkfly-image create"
id=$(json_blob "$T/create.json")
blob=$T/blobs/$id

# ---- a corrupted chunk --------------------------------------------------------------------
read -r ci coff uoff usize < <("$CFI" inspect "$T/boot" -R "stat /big" | python3 -c '
import json, sys
c = json.load(sys.stdin)["chunks"][5]
print(c["ci_index"], c["compressed_offset"], c["uncompressed_offset"], c["uncompressed_size"])')
flip() {
    python3 - "$blob" "$1" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x5a]))
PY
}
flip $((coff + 1000))
mount_start "$T/m1.log" "$T/mnt" --bootstrap "$T/boot" --blob-dir "$T/blobs" --cache-dir "$T/cache"
# read the whole file in 128 KiB pieces: chunk 5 fails with EIO, every other byte is right
python3 - "$S/big" "$T/mnt/big" $((5 * 1048576)) <<'PY' || fail "reads around the corrupt chunk"
import errno, os, sys
src, mnt, bad = open(sys.argv[1], "rb").read(), os.open(sys.argv[2], os.O_RDONLY), int(sys.argv[3])
eio = 0
for off in range(0, len(src), 131072):
    try:
        got = os.pread(mnt, 131072, off)
    except OSError as e:
        if e.errno != errno.EIO: sys.exit("offset %d: %s (want EIO)" % (off, e))
        if not bad <= off < bad + 1048576: sys.exit("EIO at %d, outside the corrupt chunk" % off)
        eio += 1
        continue
    if got != src[off:off + 131072]: sys.exit("WRONG BYTES at offset %d" % off)
if eio != 8: sys.exit("%d EIO reads, want the 8 of the corrupt chunk" % eio)
PY
grep -q "blob $id chunk $ci: .*digest mismatch" "$T/m1.log" ||
    fail "no log line naming blob and chunk: $(grep -m2 -i error "$T/m1.log")"
python3 - "$T/cache/$id.blob.data" "$uoff" "$usize" "$T/cache/$id.blob.data.chunk_map" "$ci" <<'PY' ||
import sys
d = open(sys.argv[1], "rb"); d.seek(int(sys.argv[2])); data = d.read(int(sys.argv[3]))
if data.strip(b"\0"): sys.exit("bad chunk bytes were written to the cache")
m = open(sys.argv[4], "rb").read(); ci = int(sys.argv[5])
if (m[4096 + (ci >> 3)] >> (7 - (ci & 7))) & 1: sys.exit("corrupt chunk marked ready")
PY
    fail "the corrupt chunk left traces in the cache"
flip $((coff + 1000)) # repaired: the same read fetches again and succeeds
cmp "$S/big" "$T/mnt/big" || fail "after repairing the blob, big still differs"
note "corrupt chunk: EIO for its 8 reads only, logged, not cached; served after repair"

# ---- the cache file cut short behind the daemon's back ----------------------------------------
# chunk 5 is cached and ready again; with .blob.data cut at its start, a read of it must fail
# with EIO (the kernel would take a short reply for the end of the file, and shrink it)
truncate -s "$uoff" "$T/cache/$id.blob.data"
python3 - "$T/mnt/big" $((5 * 1048576)) <<'PY' || fail "read past a truncated cache file"
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # drop the mount's pages: ask the daemon
try:
    got = os.pread(fd, 131072, int(sys.argv[2]))
except OSError as e:
    if e.errno != errno.EIO: sys.exit("%s (want EIO)" % e)
    sys.exit(0)
sys.exit("read returned %d bytes (want EIO)" % len(got))
PY
[ "$(stat -c %s "$T/mnt/big")" = "$(stat -c %s "$S/big")" ] || fail "big shrank on the mount"
note "cache file cut short: EIO, the file keeps its size"

# ---- kill -9 ------------------------------------------------------------------------------
exec 3<"$T/mnt/text"
kill -9 "$MOUNT_PID"
wait "$MOUNT_PID" 2>/dev/null || true
t0=$(date +%s%N)
if timeout 5 cat "$T/mnt/text" >/dev/null 2>"$T/err"; then fail "read after kill -9 succeeded"; fi
[ $? -eq 124 ] && fail "read after kill -9 hung"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
note "after kill -9: a new reader fails in ${ms} ms ($(head -c 80 "$T/err"))"
[ "$ms" -lt 3000 ] || fail "a reader took ${ms} ms to fail"
python3 - <<'PY' || fail "read on an fd opened before kill -9"
import os, sys, time
t = time.monotonic()
try:
    os.pread(3, 4096, 5_000_000)
except OSError as e:
    print("--- open fd after kill -9: %s in %.0f ms" % (e.strerror, (time.monotonic() - t) * 1000))
    sys.exit(0)
sys.exit("read succeeded")
PY
exec 3<&-
mount_start "$T/m2.log" "$T/mnt" --bootstrap "$T/boot" --blob-dir "$T/blobs" --cache-dir "$T/cache2" \
    --thread-num 8
grep -q "cleaned a stale FUSE mount" "$T/m2.log" || fail "restart did not report the stale mount"
cmp "$S/text" "$T/mnt/text" || fail "text differs after restart"
note "restart cleaned the dead mount and serves again"

# ---- 8 threads of random reads over a fresh cache -------------------------------------------
python3 - "$S" "$T/mnt" <<'PY' || fail "random reads"
import os, random, sys, threading
src, mnt = sys.argv[1], sys.argv[2]
files = ["big", "text"] + ["small/f%d" % i for i in range(1, 51)]
data = {f: open(os.path.join(src, f), "rb").read() for f in files}
errors = []
def worker(seed):
    r = random.Random(seed)
    fds = {f: os.open(os.path.join(mnt, f), os.O_RDONLY) for f in files}
    for _ in range(400):
        f = r.choice(files[:2] * 4 + files[2:])
        d = data[f]
        off = r.randrange(0, len(d) + 10)
        n = r.choice([1, 100, 4096, 65536, 131072, 1048576 + 7])
        got = os.pread(fds[f], n, off)
        if got != d[off:off + n]:
            errors.append("%s at %d+%d" % (f, off, n)); return
    for fd in fds.values(): os.close(fd)
th = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
for t in th: t.start()
for t in th: t.join()
if errors: sys.exit("WRONG BYTES: " + ", ".join(errors[:5]))
print("--- 8 threads x 400 random reads equal the source")
PY
mount_stop "$MOUNT_PID" "$T/mnt"
no_sanitizer_reports
echo "PASS: corrupt chunk, kill -9 + restart, concurrent random reads"
