#!/usr/bin/env bash
# Our reader's tree listing (inspect --manifest) equals the kernel EROFS view of the same
# bootstrap: the nydus v2.2 fixture and hand-patched variants (symlink, whiteout, hard link,
# xattrs, fifo, socket, compact inode), metadata only; then with real file content, the kernel reading an uncompressed blob
# image built by make_blob_cache vs our reader decompressing the nydus blob.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
V6=$CHUNKFLY_FIXTURES/nydus/v6
BOOT=$V6/rafs-v6-2.2.boot
ID=be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef
[ -f "$BOOT" ] && [ -f "$V6/$ID" ] || skip "Nydus fixtures not found under $CHUNKFLY_FIXTURES/nydus"
need_root
need_bin chunkfly-image
CFI=$CHUNKFLY_BIN/chunkfly-image
RAWMOUNT=$CHUNKFLY_BUILD/tests/rawmount
MANIFEST="python3 $CHUNKFLY_SRC/tests/lib/tree_manifest.py"
truncate -s 64M "$T/dev"
mkdir -p "$T/mnt"

kmount() { # kmount BOOTSTRAP DEVICE
    if ! "$RAWMOUNT" "$1" "$T/mnt" erofs "device=$2" 2>"$T/mount.err"; then
        skip "kernel cannot mount a file-backed EROFS image: $(cat "$T/mount.err")"
    fi
    CF_MOUNTS+=("$T/mnt")
}

compare() { # compare NAME BOOTSTRAP
    kmount "$2" "$T/dev"
    $MANIFEST --no-content "$T/mnt" >"$T/$1.kernel"
    umount "$T/mnt"
    $CFI inspect --manifest "$2" >"$T/$1.ours" || fail "$1: inspect --manifest failed"
    diff -u "$T/$1.kernel" "$T/$1.ours" || fail "$1: our listing differs from the kernel's"
    note "$1: $(wc -l <"$T/$1.ours") entries identical"
}

compare fixture "$BOOT"
for v in symlink whiteout hardlink xattr fifo socket compact; do
    "$CHUNKFLY_BUILD/tests/make_variant" "$BOOT" "$T/$v.boot" "$v"
    compare "$v" "$T/$v.boot"
done
grep -q "user.foo=626172" "$T/xattr.ours" || fail "xattr variant lacks user.foo"
grep -q "	c	0	.*	0:0	" "$T/whiteout.ours" || fail "whiteout variant lacks a 0:0 char device"
grep -q "^lib.rs	f	600	1000	100	16931	0	" "$T/compact.ours" || fail "compact inode line"

note "file content: kernel over an uncompressed blob image vs our reader over the nydus blob"
mkdir -p "$T/cache"
"$CHUNKFLY_BUILD/tests/make_blob_cache" "$BOOT" "$V6" "$T/cache" || fail "make_blob_cache"
kmount "$BOOT" "$T/cache/$ID.blob.data"
$MANIFEST "$T/mnt" >"$T/content.kernel"
umount "$T/mnt"
$CFI inspect --manifest -D "$V6" "$BOOT" >"$T/content.ours" || fail "inspect --manifest -D"
diff -u "$T/content.kernel" "$T/content.ours" || fail "content listing differs"
grep -q "^lib.rs	f	644	0	0	16931	" "$T/content.ours" || fail "lib.rs line"
echo PASS
