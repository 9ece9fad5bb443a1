#!/usr/bin/env bash
# create -> unpack of a tar holding a sparse 4.5 GiB file with data at the start, across the
# 4 GiB boundary and at the end: 64-bit sizes/offsets in the tar reader, blob writer, bootstrap
# and unpack; holes come back as zeros. (Label slow: reads and writes 4.5 GiB.)
set -euo pipefail
: "${CHUNKFLY_SRC:=$(cd "$(dirname "$0")/../../.." && pwd)}"
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/rafs/create_lib.sh"
need_bin chunkfly-image
avail=$(df -Pk "$T" | awk 'NR==2 {print $4}')
[ "$avail" -gt $((6 * 1024 * 1024)) ] || skip "needs 6 GiB free in $T for the unpacked tar"
# a sparse file over 4 GiB: 64-bit sizes and offsets everywhere, holes come back as zeros
mkdir -p "$T/sparse"
truncate -s 4500M "$T/sparse/huge"
printf 'head' | dd of="$T/sparse/huge" conv=notrunc status=none
printf 'middle' | dd of="$T/sparse/huge" bs=1 seek=$((4294967296 - 3)) conv=notrunc status=none
echo tail >>"$T/sparse/huge"
tar --sparse -C "$T/sparse" -cf "$T/sparse.tar" huge
want=$(sha256sum <"$T/sparse/huge" | cut -d' ' -f1)
o="$T/sp"; mkdir -p "$o"
"$CFI" create -l warn -t tar-rafs -B "$o/boot" -D "$o/blobs" "$T/sparse.tar" || fail "create sparse"
"$CFI" unpack -l warn -B "$o/boot" -D "$o/blobs" -o "$o/out.tar" || fail "unpack sparse"
got=$(tar -xOf "$o/out.tar" huge | sha256sum | cut -d' ' -f1)
[ "$want" = "$got" ] || fail "sparse >4GiB content differs after round trip"
reader_check "$o/boot" "$o/blobs"
echo "PASS: sparse 4.5 GiB file survives create -> unpack"
