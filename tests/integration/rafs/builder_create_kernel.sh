#!/usr/bin/env bash
# create -> fsck.erofs + kernel EROFS mount: our bootstraps, mounted by the kernel on the
# uncompressed <blob_id>.blob.data view written by --blob-cache-dir, must show exactly the
# source tree (content, modes, owners, mtimes, symlinks, hard links, xattrs, devices), for
# each compressor, from a directory and from a tar of it.
set -euo pipefail
: "${CHUNKFLY_SRC:=$(cd "$(dirname "$0")/../../.." && pwd)}"
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/rafs/create_lib.sh"
need_root
need_bin chunkfly-image
command -v fsck.erofs >/dev/null || skip "fsck.erofs (erofs-utils) not installed"

make_tree "$T/src"
$MANIFEST "$T/src" >"$T/src.manifest"
# GNU tar cannot archive sockets: compare the tar builds without it
tar --xattrs --xattrs-include='*' --numeric-owner -C "$T/src" -cf "$T/src.tar" . 2>/dev/null || true
$MANIFEST --exclude sock "$T/src" >"$T/src-nosock.manifest"

n=0
for comp in zstd lz4_block none; do
    for type in dir-rafs tar-rafs; do
        n=$((n + 1)); o="$T/o$n"; mkdir -p "$o"
        src="$T/src"; want="$T/src.manifest"
        [ $type = tar-rafs ] && { src="$T/src.tar"; want="$T/src-nosock.manifest"; }
        note "$type, $comp"
        "$CFI" create -l warn -t $type --compressor $comp -B "$o/boot" -D "$o/blobs" \
            --blob-cache-dir "$o/cache" -J "$o/out.json" "$src" || fail "create $type $comp"
        id=$(json_blob "$o/out.json")
        [ -f "$o/blobs/$id" ] || fail "blob $id not in the blob dir"
        if [ ! -f "$o/cache/$id.blob.data" ] || [ ! -f "$o/cache/$id.blob.meta" ]; then
            fail "cache files missing"
        fi
        [ $(( $(stat -c %s "$o/boot") % 4096 )) = 0 ] || fail "bootstrap size not a multiple of 4096"
        fsck.erofs --device="$o/cache/$id.blob.data" "$o/boot" >"$o/fsck.out" 2>&1 ||
            { cat "$o/fsck.out"; fail "fsck.erofs rejected the $type/$comp bootstrap"; }
        mount_or_skip "$o/boot" "$o/mnt" "$o/cache/$id.blob.data"
        if [ $type = tar-rafs ]; then $MANIFEST --exclude sock "$o/mnt"; else $MANIFEST "$o/mnt"; fi >"$o/mnt.manifest"
        umount "$o/mnt"
        diff -u "$want" "$o/mnt.manifest" || fail "kernel view differs from the source ($type, $comp)"
        reader_check "$o/boot" "$o/blobs"
    done
done
echo "PASS: $n builds mounted by the kernel and identical to the source"
