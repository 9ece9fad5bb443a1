#!/usr/bin/env bash
# chunkfly-mount shows exactly the source tree: a tar of a rich tree (every file type, modes,
# owners, times, xattrs, symlink targets, hard-link groups, device numbers, empty files, a
# 10k-file directory, names with odd bytes, a sparse 4.2 GiB file) made into an image by
# chunkfly-image create, mounted through FUSE from a localfs blob dir. Then: inode numbers
# and contents equal the kernel's own EROFS mount of the same bootstrap over our cache's
# .blob.data (filled by --prefetch-files /), writes fail with EROFS, SIGTERM unmounts, and a
# second mount over the filled cache reads nothing from the backend (the blob is replaced by
# garbage of the same size: any backend read would fail verification).
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/mount_lib.sh"

S=$T/src
make_tree "$S"
rm -f "$S/sock" # GNU tar cannot archive sockets
mkdir "$S/many"
python3 - "$S/many" <<'PY'
import os, sys
for i in range(10000):
    with open(os.path.join(sys.argv[1], "f%05d" % i), "w") as f: f.write("%d\n" % i)
PY
for n in $'tab\there' $'\x01ctl' $'\xff\xfe-not-utf8' $'new\nline' 'back\slash' 'é-utf8' ' lead-space'; do
    echo "$n" >"$S/$n"
done
truncate -s 0 "$S/empty2"
# sparse 4.2 GiB: data at the start, across the 4 GiB boundary and at the end
truncate -s 4300M "$S/huge"
printf 'head' | dd of="$S/huge" conv=notrunc status=none
printf 'middle-over-4GiB' | dd of="$S/huge" bs=1 seek=$((4294967296 - 5)) conv=notrunc status=none
printf 'tail' | dd of="$S/huge" bs=1 seek=$((4300 * 1048576 - 4)) conv=notrunc status=none
touch -d '2010-10-10 10:10:10' "$S/huge"
tar --xattrs --xattrs-include='*' --numeric-owner --sparse -C "$S" -cf "$T/src.tar" .
$MANIFEST --exclude huge "$S" >"$T/src.manifest"

"$CFI" create -l warn -t tar-rafs -B "$T/boot" -D "$T/blobs" -J "$T/create.json" "$T/src.tar" ||
    fail "chunkfly-image create"
id=$(json_blob "$T/create.json")

t0=$(date +%s.%N)
mount_start "$T/m1.log" "$T/mnt" --bootstrap "$T/boot" --blob-dir "$T/blobs" \
    --cache-dir "$T/cache" --prefetch-files / --log-level info
note "mounted in $(python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$(date +%s.%N)") s"
stat -f -c %T "$T/mnt" | grep -q fuse || fail "not a FUSE mount: $(stat -f -c %T "$T/mnt")"
# the kernel starts a FUSE mount at 128 KiB of readahead; the daemon raises it after INIT
ra=/sys/class/bdi/$(mountpoint -d "$T/mnt")/read_ahead_kb
for _ in $(seq 50); do [ "$(cat "$ra")" = 1024 ] && break; sleep 0.1; done
[ "$(cat "$ra")" = 1024 ] || fail "readahead of the mount is $(cat "$ra") KiB, not 1024"
$MANIFEST --exclude huge "$T/mnt" >"$T/mnt.manifest"
diff -u "$T/src.manifest" "$T/mnt.manifest" >"$T/diff" || fail "mounted tree differs: $(head -30 "$T/diff")"
note "$(wc -l <"$T/mnt.manifest") entries identical to the source (content, modes, owners, mtimes, xattrs, links, devices)"
[ "$(stat -c %s "$T/mnt/huge")" = $((4300 * 1048576)) ] || fail "huge: wrong size"
for off_len in 0:4 $((4294967296 - 5)):16 $((4300 * 1048576 - 4)):4 $((4294967296 - 70000)):140000 $((3 * 1048576 + 17)):5000; do
    off=${off_len%:*} len=${off_len#*:}
    cmp <(tail -c +$((off + 1)) "$S/huge" | head -c "$len") \
        <(tail -c +$((off + 1)) "$T/mnt/huge" | head -c "$len") || fail "huge differs at $off+$len"
done
note "sparse 4.2 GiB file: size and bytes around 0, 3 MiB, the 4 GiB boundary and the end equal"
# hard links share one inode (and its number); st_ino is the nid
[ "$(stat -c %i "$T/mnt/a.txt")" = "$(stat -c %i "$T/mnt/dir/hard-a")" ] || fail "hard links: different inodes"
[ "$(stat -c %h "$T/mnt/a.txt")" = 3 ] || fail "a.txt: nlink $(stat -c %h "$T/mnt/a.txt"), want 3"
# read-only
if touch "$T/mnt/new" 2>"$T/err"; then fail "creating a file succeeded"; fi
grep -q 'Read-only' "$T/err" || fail "create: $(cat "$T/err"), want EROFS"
if echo x >>"$T/mnt/a.txt" 2>"$T/err"; then fail "appending succeeded"; fi
grep -q 'Read-only' "$T/err" || fail "write: $(cat "$T/err"), want EROFS"
# statfs answers
stat -f "$T/mnt" >/dev/null || fail "statfs"

# the prefetch of / fills the whole cache
for _ in $(seq 100); do map_complete "$T/cache" "$id" && break; sleep 0.1; done
map_complete "$T/cache" "$id" || fail "chunk_map not complete after prefetch of /"
# the kernel's EROFS over our .blob.data: same tree, same inode numbers
if grep -qw erofs /proc/filesystems; then
    mkdir -p "$T/kmnt"
    if "$RAWMOUNT" "$T/boot" "$T/kmnt" erofs "device=$T/cache/$id.blob.data" 2>"$T/kmount.err"; then
        CF_MOUNTS+=("$T/kmnt")
        $MANIFEST --exclude huge "$T/kmnt" >"$T/kernel.manifest"
        diff -u "$T/kernel.manifest" "$T/mnt.manifest" >"$T/kdiff" || fail "kernel EROFS view differs: $(head -20 "$T/kdiff")"
        (cd "$T/kmnt" && find . -printf '%i %p\n' | sort) >"$T/kernel.inos"
        (cd "$T/mnt" && find . -printf '%i %p\n' | sort) >"$T/mnt.inos"
        diff -q "$T/kernel.inos" "$T/mnt.inos" >/dev/null || fail "inode numbers differ from the kernel's: $(diff "$T/kernel.inos" "$T/mnt.inos" | head -5)"
        cmp "$T/kmnt/huge" "$T/mnt/huge" -n 8M || fail "huge: kernel and FUSE differ"
        umount "$T/kmnt"
        note "kernel EROFS mount over our cache: same tree and inode numbers"
    else
        note "kernel cannot mount a file-backed EROFS here: $(cat "$T/kmount.err") (cross-check skipped)"
    fi
fi
mount_stop "$MOUNT_PID" "$T/mnt"

# second mount: the backend is garbage, everything comes from the cache
size=$(stat -c %s "$T/blobs/$id")
mv "$T/blobs/$id" "$T/blob.orig"
head -c "$size" /dev/urandom >"$T/blobs/$id"
mount_start "$T/m2.log" "$T/mnt" --bootstrap "$T/boot" --blob-dir "$T/blobs" --cache-dir "$T/cache"
$MANIFEST --exclude huge "$T/mnt" >"$T/mnt2.manifest"
diff -q "$T/src.manifest" "$T/mnt2.manifest" >/dev/null || fail "second mount differs"
grep -q 'digest mismatch\|ERROR' "$T/m2.log" && fail "second mount read from the backend: $(grep -m3 ERROR "$T/m2.log")"
mount_stop "$MOUNT_PID" "$T/mnt"
note "second mount served everything from the cache (backend replaced by garbage)"
no_sanitizer_reports
echo "PASS: mounted tree == source"
