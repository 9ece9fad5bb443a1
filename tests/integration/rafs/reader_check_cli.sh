#!/usr/bin/env bash
# chunkfly-image check / inspect on the real nydus v2.2 image: blob digests verify, JSON output,
# v5 bootstraps recognised, and corrupt bootstraps/blobs fail with a precise message.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
V6=$CHUNKFLY_FIXTURES/nydus/v6
BOOT=$V6/rafs-v6-2.2.boot
ID=be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef
[ -f "$BOOT" ] && [ -f "$V6/$ID" ] || skip "Nydus fixtures not found under $CHUNKFLY_FIXTURES/nydus"
need_bin chunkfly-image
CFI=$CHUNKFLY_BIN/chunkfly-image

note "help and version"
$CFI check --help | grep -q -- "--blob-dir" || fail "check --help"
$CFI inspect -h | grep -q -- "--manifest" || fail "inspect -h"
$CFI --version | grep -q chunkfly-image || fail "--version"

note "check with blobs: every chunk read and verified"
$CFI check "$BOOT" -D "$V6" -J "$T/out.json" >"$T/check.out" 2>"$T/check.err" ||
    fail "check failed: $(cat "$T/check.err")"
grep -q "^RAFS filesystem metadata is valid, referenced data blobs:" "$T/check.out" || fail "banner"
grep -q "0: $ID, compressed data size 0x1e7a, compressed file size 0x38da, uncompressed file size 0x9000, chunk size 0x100000, chunks: 0x2, features: aligned inlined-chunk-digest tar-header blob-toc cap-tar-toc" \
    "$T/check.out" || fail "blob line: $(cat "$T/check.out")"
python3 - "$T/out.json" "$BOOT" "$ID" <<'PY' || fail "check JSON"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["bootstrap"] == sys.argv[2] and j["blobs"] == [sys.argv[3]], j
assert j["fs_version"] == "6" and j["compressor"] == "zstd" and j["version"], j
PY
note "deprecated -B form, no blobs"
$CFI check -B "$BOOT" -v >/dev/null 2>"$T/v.err" || fail "check -B"
grep -q "lib.rs" "$T/v.err" || fail "-v lists files"

note "inspect requests are JSON"
for r in stats ls blobs prefetch; do
    $CFI inspect "$BOOT" -R "$r" >"$T/$r.json" || fail "inspect -R $r"
done
python3 - "$T" "$ID" <<'PY' || fail "inspect JSON"
import json, sys
t = sys.argv[1]
s = json.load(open(t + "/stats.json"))
assert s["inodes_count"] == 3 and s["files"] == 2 and s["compressor"] == "zstd", s
ls = json.load(open(t + "/ls.json"))
assert [e["name"] for e in ls] == ["lib.rs", "sync_io.rs"] and ls[0]["inode"] == 133, ls
b = json.load(open(t + "/blobs.json"))
assert b[0]["blob_id"] == sys.argv[2] and b[0]["chunk_count"] == 2 and b[0]["features"] == "0x70000021", b
assert json.load(open(t + "/prefetch.json")) == []
PY
printf 'stats\nblobs\n' | $CFI inspect "$BOOT" | grep -q '"inodes_count": 3' || fail "stdin requests"
$CFI inspect "$BOOT" -R nope 2>/dev/null && fail "unknown request accepted"

note "RAFS v5 is recognised and reported"
for f in sha256-nocompress-repeatable blake3-lz4_block-non_repeatable; do
    [ -f "$CHUNKFLY_FIXTURES/nydus/v5/$f" ] || continue
    if $CFI check "$CHUNKFLY_FIXTURES/nydus/v5/$f" 2>"$T/v5.err"; then fail "v5 accepted"; fi
    grep -q "is a RAFS v5 bootstrap (51 inodes" "$T/v5.err" || fail "v5 message: $(cat "$T/v5.err")"
    grep -q "Only RAFS v6" "$T/v5.err" || fail "v5 message says what is supported"
done

note "corrupt data blob: digest mismatch is reported"
mkdir -p "$T/blobs"
cp "$V6/$ID" "$T/blobs/$ID"
chmod u+w "$T/blobs/$ID"
printf '\x55' | dd of="$T/blobs/$ID" bs=1 seek=100 conv=notrunc status=none
if $CFI check "$BOOT" -D "$T/blobs" 2>"$T/bad.err" >/dev/null; then fail "corrupt blob accepted"; fi
grep -qE "sha256|digest|zstd" "$T/bad.err" || fail "message: $(cat "$T/bad.err")"
rm "$T/blobs/$ID"
if $CFI check "$BOOT" -D "$T/blobs" 2>"$T/miss.err" >/dev/null; then fail "missing blob accepted"; fi
grep -q "$ID" "$T/miss.err" || fail "missing blob message: $(cat "$T/miss.err")"

note "corrupt bootstraps"
cp "$BOOT" "$T/b.boot"
chmod u+w "$T/b.boot"
printf '\x00' | dd of="$T/b.boot" bs=1 seek=1024 conv=notrunc status=none
if $CFI check "$T/b.boot" 2>"$T/b.err"; then fail "bad magic accepted"; fi
grep -q "not a RAFS bootstrap" "$T/b.err" || fail "magic message: $(cat "$T/b.err")"
head -c 12288 "$BOOT" >"$T/short.boot"
if $CFI check "$T/short.boot" 2>"$T/s.err"; then fail "truncated accepted"; fi
grep -q "outside bootstrap" "$T/s.err" || fail "truncation message: $(cat "$T/s.err")"
"$CHUNKFLY_BUILD/tests/make_variant" "$BOOT" "$T/loop.boot" loop
if $CFI check "$T/loop.boot" 2>"$T/l.err"; then fail "loop accepted"; fi
grep -q "reached twice" "$T/l.err" || fail "loop message: $(cat "$T/l.err")"
echo PASS
