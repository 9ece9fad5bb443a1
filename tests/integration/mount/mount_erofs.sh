#!/usr/bin/env bash
# chunkfly-mount erofs (kernel-EROFS mode): the kernel's EROFS mounts the bootstrap, each data
# blob is a FUSE-served device= file read lazily through the chunk cache.
#  - the mounted tree (every file type, owners, times, xattrs, hard links, devices, a 10k-file
#    directory, odd names, a sparse 4.2 GiB file) equals the source, inode numbers equal those
#    of the FUSE mode;
#  - kill -9: reads of uncached data fail with EIO at once; a restart detaches the dead EROFS
#    and blob-device mounts and serves again;
#  - once the cache holds every chunk, a restart passes the plain .blob.data file as device;
#  - SIGTERM unmounts both mounts.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/mount_lib.sh"
grep -qw erofs /proc/filesystems || skip "kernel has no EROFS"

S=$T/src
make_tree "$S"
rm -f "$S/sock"
mkdir "$S/many"
python3 - "$S/many" <<'PY'
import os, sys
for i in range(10000):
    with open(os.path.join(sys.argv[1], "f%05d" % i), "w") as f: f.write("%d\n" % i)
PY
for n in $'tab\there' $'\xff\xfe-not-utf8' 'é-utf8'; do echo "$n" >"$S/$n"; done
head -c 3000000 /dev/urandom >"$S/unread.bin"
truncate -s 4300M "$S/huge"
printf 'middle-over-4GiB' | dd of="$S/huge" bs=1 seek=$((4294967296 - 5)) conv=notrunc status=none
tar --xattrs --xattrs-include='*' --numeric-owner --sparse -C "$S" -cf "$T/src.tar" .
$MANIFEST --exclude huge --exclude unread.bin "$S" >"$T/src.manifest"
"$CFI" create -l warn -t tar-rafs -B "$T/boot" -D "$T/blobs" -J "$T/c.json" "$T/src.tar" 2>/dev/null ||
    fail "chunkfly-image create"
id=$(json_blob "$T/c.json")

# erofs_start LOG: starts the erofs mode and waits for the EROFS mount at $T/mnt
erofs_start() {
    local log=$1
    shift
    mkdir -p "$T/mnt"
    bg_start "$log" "$CFM" erofs --mountpoint "$T/mnt" --bootstrap "$T/boot" --blob-dir "$T/blobs" \
        --cache-dir "$T/cache" "$@"
    PID=$CF_LAST_PID
    CF_MOUNTS+=("$T/mnt")
    for _ in $(seq 100); do
        # the log line, not /proc/mounts: a dead EROFS mount of a killed daemon is listed too
        grep -q "with the kernel's EROFS" "$log" && return 0
        is_alive "$PID" || fail "erofs mode exited: $(tail -3 "$log")"
        sleep 0.1
    done
    fail "no EROFS mount after 10 s: $(tail -3 "$log")"
}

erofs_start "$T/e1.log"
grep -q "EROFS devices: device=/.*chunkfly-mount-dev" "$T/e1.log" || fail "blob not FUSE-served: $(grep devices "$T/e1.log")"
$MANIFEST --exclude huge --exclude unread.bin "$T/mnt" >"$T/mnt.manifest"
diff -u "$T/src.manifest" "$T/mnt.manifest" >"$T/diff" || fail "EROFS-mode tree differs: $(head -20 "$T/diff")"
cmp <(tail -c +$((4294967296 - 4)) "$S/huge" | head -c 16) <(tail -c +$((4294967296 - 4)) "$T/mnt/huge" | head -c 16) ||
    fail "huge differs at 4 GiB"
(cd "$T/mnt" && find . -printf '%i %p\n' | sort) >"$T/erofs.inos"
cmp "$S/huge" "$T/mnt/huge" -n 64M || fail "huge: first 64 MiB differ"
note "$(wc -l <"$T/mnt.manifest") entries identical to the source through the kernel's EROFS"

# kill -9, then an uncached read: EIO at once
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
t0=$(date +%s%N)
# a file nobody read yet (the manifest skips it)
if timeout 5 cat "$T/mnt/unread.bin" >/dev/null 2>"$T/err"; then fail "read after kill -9 succeeded"; fi
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q 'Input/output error' "$T/err" || fail "after kill -9: $(cat "$T/err"), want EIO"
[ "$ms" -lt 3000 ] || fail "EIO took ${ms} ms"
note "kill -9: uncached reads fail with EIO in ${ms} ms"
erofs_start "$T/e2.log" --prefetch-files /
grep -q "cleaned a dead blob-device mount" "$T/e2.log" || fail "restart did not clean the dead device mount"
grep -q "detached the EROFS mount" "$T/e2.log" || fail "restart did not detach the dead EROFS mount"
cmp "$S/random.bin" "$T/mnt/random.bin" || fail "random.bin after restart"
# the prefetch of / fills the whole cache; then a restart passes the plain .blob.data
for _ in $(seq 100); do map_complete "$T/cache" "$id" && break; sleep 0.1; done
kill -TERM "$PID"
for _ in $(seq 50); do is_alive "$PID" || break; sleep 0.1; done
is_alive "$PID" && fail "erofs mode still running after SIGTERM"
awk -v d="$T/mnt" '$2 == d {f=1} END {exit !f}' /proc/self/mounts && fail "still mounted after SIGTERM"
grep -q chunkfly-dev /proc/self/mounts && grep chunkfly-dev /proc/self/mounts | grep -q "$(basename "$(grep -o 'blob devices in [^)]*' "$T/e2.log" | cut -d' ' -f4)")" &&
    fail "blob-device mount left after SIGTERM"
map_complete "$T/cache" "$id" || fail "cache not complete after reading everything"
erofs_start "$T/e3.log" --apisock "$T/api.sock"
grep -q "EROFS devices: device=$T/cache/$id.blob.data" "$T/e3.log" || fail "complete blob not passed as .blob.data: $(grep devices "$T/e3.log")"
(cd "$T/mnt" && find . -printf '%i %p\n' | sort) | diff -q - "$T/erofs.inos" >/dev/null || fail "inode numbers changed"
$MANIFEST --exclude huge --exclude unread.bin "$T/mnt" | diff -q - "$T/src.manifest" >/dev/null || fail "tree over plain .blob.data differs"
# every device plain: read with direct I/O where the kernel has EROFS's directio (6.13+)
if grep -q ",directio" "$T/e3.log"; then
    awk -v d="$T/mnt" '$2 == d && $4 ~ /(^|,)directio(,|$)/ {f=1} END {exit !f}' /proc/self/mounts ||
        fail "directio in the log but not in the mount's options"
else
    note "kernel EROFS without directio: $(grep -o 'without directio.*' "$T/e3.log")"
fi
grep -q "EROFS devices: device=/.*chunkfly-mount-dev.*directio" "$T/e1.log" && fail "directio with a FUSE-served device"
note "complete cache: the plain .blob.data is the device, tree unchanged"
curl -s --unix-socket "$T/api.sock" http://x/api/v1/daemon | grep -q '"state":"RUNNING"' || fail "API in erofs mode"
curl -s -X PUT --unix-socket "$T/api.sock" http://x/api/v1/daemon/exit >/dev/null
for _ in $(seq 50); do is_alive "$PID" || break; sleep 0.1; done
is_alive "$PID" && fail "erofs mode still running after PUT /api/v1/daemon/exit"
awk -v d="$T/mnt" '$2 == d {f=1} END {exit !f}' /proc/self/mounts && fail "still mounted after exit"
no_sanitizer_reports
echo "PASS: kernel-EROFS mode"
