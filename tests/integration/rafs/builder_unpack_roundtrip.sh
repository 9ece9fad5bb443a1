#!/usr/bin/env bash
# create -> unpack round trip: the tar written by `unpack` must list exactly the entries and
# contents of the source tar (Python tarfile listing: names, types, modes, owners, mtimes,
# content sha256, link targets, devices, xattrs, hard-link groups), for each compressor, both
# digesters and several chunk sizes; gzip/zstd and GNU/PAX inputs; the Nydus fixture tars
# (the >4 GiB sparse case is builder_unpack_sparse4g.sh). `chunkfly-image check -D` must accept every output.
set -euo pipefail
: "${CHUNKFLY_SRC:=$(cd "$(dirname "$0")/../../.." && pwd)}"
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/rafs/create_lib.sh"
need_bin chunkfly-image
need_root # make_tree creates device nodes

make_tree "$T/src"
rm -f "$T/src/sock" # tar cannot carry sockets
tar --xattrs --xattrs-include='*' --numeric-owner --format=posix -C "$T/src" -cf "$T/pax.tar" .
tar --numeric-owner --format=gnu -C "$T/src" -cf "$T/gnu.tar" .
gzip -c "$T/pax.tar" >"$T/pax.tar.gz"
zstd -q -c "$T/pax.tar" >"$T/pax.tar.zst"

n=0
# roundtrip [--storable-xattrs] SRC_TAR EXPECTED_LISTING_TAR [create options...]
roundtrip() {
    local lopt=""
    [ "$1" = --storable-xattrs ] && { lopt=$1; shift; }
    local src=$1 ref=$2; shift 2
    n=$((n + 1)); local o="$T/r$n"; mkdir -p "$o"
    "$CFI" create -l warn -t tar-rafs -B "$o/boot" -D "$o/blobs" "$@" "$src" 2>"$o/create.err" ||
        { cat "$o/create.err"; fail "create $* $src"; }
    "$CFI" unpack -l warn --bootstrap "$o/boot" -D "$o/blobs" --output "$o/out.tar" ||
        fail "unpack after create $*"
    tar_listing ${lopt:+"$lopt"} "$ref" >"$o/want"
    tar_listing "$o/out.tar" >"$o/got"
    diff -u "$o/want" "$o/got" || fail "round trip differs (create $* $(basename "$src"))"
    reader_check "$o/boot" "$o/blobs"
    note "ok: $(basename "$src") $* ($(wc -l <"$o/got") entries)"
}

roundtrip "$T/pax.tar" "$T/pax.tar" --compressor zstd --digester blake3
roundtrip "$T/pax.tar" "$T/pax.tar" --compressor lz4_block --digester sha256 --chunk-size 0x10000
roundtrip "$T/pax.tar" "$T/pax.tar" --compressor none --digester blake3 --chunk-size 0x1000
roundtrip "$T/pax.tar" "$T/pax.tar" --compressor zstd --digester sha256 --chunk-size 0x1000000
roundtrip "$T/pax.tar" "$T/pax.tar" --compressor lz4_block --chunk-size 0x200000 --features blob-toc
roundtrip "$T/gnu.tar" "$T/gnu.tar"
roundtrip "$T/pax.tar.gz" "$T/pax.tar"
roundtrip "$T/pax.tar.zst" "$T/pax.tar"
# from stdin
n=$((n + 1)); o="$T/r$n"; mkdir -p "$o"
"$CFI" create -l warn -t tar-rafs -B "$o/boot" -b "$o/blob" /dev/stdin <"$T/pax.tar" || fail "create from stdin"
"$CFI" unpack -l warn -B "$o/boot" --blob "$o/blob" -o "$o/out.tar" || fail "unpack --blob"
diff <(tar_listing "$T/pax.tar") <(tar_listing "$o/out.tar") || fail "stdin round trip differs"

for f in all-entry-type.tar all-entry-type-macos.tar empty.tar; do
    p="$CHUNKFLY_FIXTURES/nydus/tar/$f"
    if [ ! -e "$p" ]; then
        echo "SKIP (partial): fixture $p not found"
        continue
    fi
    if [ $f = all-entry-type-macos.tar ]; then
        # macOS xattr names have no namespace: RAFS cannot store them; they are skipped, loudly
        roundtrip --storable-xattrs "$p" "$p"
        grep -q "xattr skipped" "$T/r$n/create.err" || fail "no warning for skipped macOS xattrs"
    else
        roundtrip "$p" "$p"
    fi
done

echo "PASS: $n round trips"
