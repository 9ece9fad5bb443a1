#!/usr/bin/env bash
# The read library stays light: rafs_read (what chunkfly-mount will link) references no
# libarchive or jansson symbol, and programs linking rafs_read alone (test_reader_fixtures,
# make_blob_cache) load neither library. rafs_build (chunkfly-image) does use libarchive.
set -euo pipefail
: "${CHUNKFLY_SRC:=$(cd "$(dirname "$0")/../../.." && pwd)}"
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
command -v nm >/dev/null || skip "nm not installed"
read_lib="$CHUNKFLY_BUILD/lib/librafs_read.a" build_lib="$CHUNKFLY_BUILD/lib/librafs_build.a"
for f in "$read_lib" "$build_lib"; do [ -f "$f" ] || fail "$f not built"; done
syms=$(nm -u "$read_lib")
grep -q ' ZSTD_' <<<"$syms" || fail "nm sees no zstd reference in $read_lib (wrong file?)"
if grep -E ' (archive_|json_)' <<<"$syms"; then fail "librafs_read.a uses libarchive/jansson"; fi
grep -q ' archive_write_header' <<<"$(nm -u "$build_lib")" ||
    fail "librafs_build.a does not use libarchive (wrong file?)"
n=0
for exe in "$CHUNKFLY_BUILD/tests/make_blob_cache" "$CHUNKFLY_BUILD/tests/test_reader_fixtures"; do
    [ -x "$exe" ] || { note "$exe not built: skipped"; continue; }
    deps=$(ldd "$exe")
    grep -q libzstd <<<"$deps" || fail "$(basename "$exe"): no libzstd in ldd output"
    if grep -E 'libarchive|libjansson' <<<"$deps"; then fail "$(basename "$exe") loads them"; fi
    n=$((n + 1))
done
[ $n -gt 0 ] || fail "no program linking rafs_read alone was built"
echo "PASS: rafs_read links neither libarchive nor jansson ($n programs checked)"
