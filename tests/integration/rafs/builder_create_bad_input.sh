#!/usr/bin/env bash
# Bad input and bad outputs: truncated / corrupt / wrongly compressed tars, unwritable outputs,
# a blob FIFO whose reader goes away, unsupported options, corrupt bootstraps for merge and a
# wrong blob for unpack. Each must fail with a clear message and leave no output that looks
# valid (no new files, no temporary leftovers, an existing output untouched).
set -euo pipefail
: "${CHUNKFLY_SRC:=$(cd "$(dirname "$0")/../../.." && pwd)}"
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/rafs/create_lib.sh"
need_bin chunkfly-image

mkdir -p "$T/src/d"
head -c 3000000 /dev/urandom >"$T/src/d/big"
seq 1 100000 >"$T/src/text"
tar -C "$T/src" -cf "$T/good.tar" .
size=$(stat -c %s "$T/good.tar")

# expect_fail PATTERN CMD...: CMD must exit non-zero and print PATTERN on stderr
expect_fail() {
    local pat=$1; shift
    set +e
    "$@" >"$T/out" 2>"$T/err"; local rc=$?
    set -e
    [ $rc != 0 ] || fail "expected failure: $*"
    grep -qiE "$pat" "$T/err" || fail "message for '$*' lacks /$pat/: $(cat "$T/err")"
    note "refused ($rc): $(head -c 200 "$T/err" | tr '\n' ' ')"
}
# no_outputs DIR: nothing (not even a temporary) was left in DIR
no_outputs() { [ -z "$(ls -A "$1")" ] || fail "left in $1: $(ls -A "$1")"; }

mkdir -p "$T/o"
echo OLD >"$T/o/boot"
run_create() { "$CFI" create -l warn -t tar-rafs -B "$T/o/boot" -b "$T/o/blob" -D "$T/o/blobs" \
    --blob-cache-dir "$T/o/cache" "$@"; }
check_clean() {
    [ "$(cat "$T/o/boot")" = OLD ] || fail "existing bootstrap was overwritten by a failed build"
    [ ! -e "$T/o/blob" ] || fail "failed build left a blob"
    ! compgen -G "$T/o/*tmp*" >/dev/null || fail "temporary files left: $(ls "$T/o")"
    for d in blobs cache; do [ ! -d "$T/o/$d" ] || no_outputs "$T/o/$d"; done
}

head -c $((size / 2)) "$T/good.tar" >"$T/truncated.tar"
expect_fail 'truncat|ends early|unexpected end' run_create "$T/truncated.tar"; check_clean
head -c 700 "$T/good.tar" >"$T/trunc-header.tar"
expect_fail 'truncat|ends early|tar' run_create "$T/trunc-header.tar"; check_clean
python3 - "$T/good.tar" "$T/corrupt.tar" <<'PY'
import sys
d = bytearray(open(sys.argv[1], "rb").read())
for i in range(1024 * 1024, 1024 * 1024 + 2048): d[i] ^= 0x5A  # breaks a header's checksum
d[0:100] = b"\xff" * 100
open(sys.argv[2], "wb").write(d)
PY
expect_fail 'tar|header|checksum|unrecognized' run_create "$T/corrupt.tar"; check_clean
gzip -c "$T/good.tar" >"$T/good.tar.gz"
head -c 200000 "$T/good.tar.gz" >"$T/truncated.tar.gz"
expect_fail 'truncat|gzip|ends early|unexpected' run_create "$T/truncated.tar.gz"; check_clean
expect_fail 'no such file|opening' run_create "$T/missing.tar"; check_clean

# unwritable outputs
: >"$T/a-file"
expect_fail 'not a directory|creating' "$CFI" create -l warn -t tar-rafs -B "$T/a-file/boot" \
    -D "$T/o/blobs" "$T/good.tar"
[ ! -d "$T/o/blobs" ] || no_outputs "$T/o/blobs"
expect_fail 'not a directory|creating' "$CFI" create -l warn -t tar-rafs -B "$T/o/b2" \
    -D "$T/a-file/blobs" "$T/good.tar"
[ ! -e "$T/o/b2" ] || fail "bootstrap written although the blob dir was unusable"
expect_fail 'directory' "$CFI" create -l warn -t tar-rafs -B "$T/o/b3" -b "$T/o" "$T/good.tar"
[ ! -e "$T/o/b3" ] || fail "bootstrap written although the blob was unusable"

# the blob FIFO reader goes away after 100 bytes: EPIPE, not a silent success or a crash
mkfifo "$T/blob.fifo"
( head -c 100 <"$T/blob.fifo" >/dev/null ) &
expect_fail 'writing data blob|broken pipe' "$CFI" create -l warn -t tar-rafs -b "$T/blob.fifo" \
    -B "$T/o/b4" "$T/good.tar"
wait
[ ! -e "$T/o/b4" ] || fail "bootstrap written although the blob write failed"

# unsupported options are refused clearly
expect_fail 'not supported' "$CFI" create -v 5 -t tar-rafs -B "$T/o/x" -b "$T/o/y" "$T/good.tar"
expect_fail 'not supported' "$CFI" create --batch-size 0x10000 -t tar-rafs -B "$T/o/x" -b "$T/o/y" "$T/good.tar"
expect_fail 'not supported' "$CFI" create --encrypt -t tar-rafs -B "$T/o/x" -b "$T/o/y" "$T/good.tar"
expect_fail 'not supported' "$CFI" create --compressor gzip -t tar-rafs -B "$T/o/x" -b "$T/o/y" "$T/good.tar"
expect_fail 'power of two' "$CFI" create --chunk-size 0x3000 -t tar-rafs -B "$T/o/x" -b "$T/o/y" "$T/good.tar"
expect_fail 'power of two' "$CFI" create --chunk-size 0x2000000 -t tar-rafs -B "$T/o/x" -b "$T/o/y" "$T/good.tar"
expect_fail 'not supported' "$CFI" create -t targz-ref -B "$T/o/x" -b "$T/o/y" "$T/good.tar"
if [ -e "$T/o/x" ] || [ -e "$T/o/y" ]; then fail "refused build left outputs"; fi

# merge: a truncated / garbage bootstrap; unpack: the wrong blob
"$CFI" create -l warn -t tar-rafs -B "$T/good.boot" -D "$T/blobs" "$T/good.tar"
head -c 5000 "$T/good.boot" >"$T/trunc.boot"
expect_fail 'trunc.boot' "$CFI" merge -l warn -B "$T/o/m" "$T/good.boot" "$T/trunc.boot"
head -c 8192 /dev/urandom >"$T/garbage.boot"
expect_fail 'garbage.boot' "$CFI" merge -l warn -B "$T/o/m" "$T/garbage.boot"
[ ! -e "$T/o/m" ] || fail "failed merge left an output"
mkdir -p "$T/src2"; seq 7 100007 >"$T/src2/text"; head -c 3000000 /dev/urandom >"$T/src2/big"
"$CFI" create -l warn -t dir-rafs -B "$T/other.boot" -b "$T/other.blob" "$T/src2"
expect_fail 'digest|mismatch|corrupt|past|blob' "$CFI" unpack -B "$T/good.boot" --blob "$T/other.blob" -o "$T/o/u.tar"
[ ! -e "$T/o/u.tar" ] || fail "failed unpack left a tar"
! compgen -G "$T/o/*tmp*" >/dev/null || fail "temporary files left: $(ls "$T/o")"
echo "PASS: bad inputs and outputs refused cleanly"
