#!/usr/bin/env bash
# Our BLAKE3 (and SHA-256) must agree with Debian's b3sum (and sha256sum) on random inputs of
# sizes around every tree boundary.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
command -v b3sum >/dev/null || skip "b3sum not installed (.ci/install-deps)"
tool="$CHUNKFLY_BUILD/tests/digest_file"
for size in 0 1 63 64 65 1023 1024 1025 2047 2048 2049 4095 4096 65536 65537 1048575 1048576 \
            3145728 5000011 $((RANDOM * 97)); do
    head -c "$size" /dev/urandom >"$T/in"
    want=$(b3sum --no-names "$T/in")
    got=$("$tool" blake3 "$T/in")
    [ "$want" = "$got" ] || fail "blake3 size $size: b3sum $want, ours $got"
    want=$(sha256sum "$T/in" | cut -d' ' -f1)
    got=$("$tool" sha256 "$T/in")
    [ "$want" = "$got" ] || fail "sha256 size $size: sha256sum $want, ours $got"
done
echo "blake3/sha256 agree with b3sum/sha256sum on 20 sizes"
