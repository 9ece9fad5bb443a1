#!/usr/bin/env bash
# A pull-through-cache docker-registry (proxy.remoteurl) in front of a normal one answers a
# Range request for a COLD blob with 200 and the whole blob. The client must still hand the
# caller exactly the requested bytes; once warm the mirror answers 206.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"

start_registry_cfg origin 127.0.0.1 ""
ORIGIN=$REG
start_registry_cfg mirror 127.0.0.1 "proxy: {remoteurl: http://$ORIGIN}"
MIRROR=$REG
for i in 1 2 3; do head -c $((2000000 + i * 333)) /dev/urandom >"$T/blob$i"; done
push_image "$ORIGIN" lib/img v1 "$T/blob1" "$T/manifest"
d1="sha256:$(sha256sum "$T/blob1" | cut -d' ' -f1)"
d2=$(push_blob "$ORIGIN" lib/img "$T/blob2")
d3=$(push_blob "$ORIGIN" lib/img "$T/blob3")

note "cold blob, bounded range in the middle: 200 + whole blob from the mirror"
"$FETCH" --plain-http --no-config -v --range 1000000-1000099 -o "$T/out" "$MIRROR/lib/img@$d1" \
    2>"$T/v.log" || { cat "$T/v.log"; fail "cold range fetch failed"; }
cmp <(slice "$T/blob1" 1000000 100) "$T/out" || fail "cold range: wrong bytes"
grep -q "ignored Range (HTTP 200)" "$T/v.log" ||
    fail "the mirror answered 206 on a cold blob: the 200 path was not exercised"

note "cold blob, open range to the end"
"$FETCH" --plain-http --no-config -v --range 1500000- -o "$T/out" "$MIRROR/lib/img@$d2" 2>"$T/v.log"
cmp <(slice "$T/blob2" 1500000 $((2000666 - 1500000))) "$T/out" || fail "cold open range: wrong bytes"
grep -q "ignored Range (HTTP 200)" "$T/v.log" || fail "open range: 200 path not exercised"

note "cold blob, 4 parallel ranges"
"$FETCH" --plain-http --no-config --range 0-1999999 --threads 4 -o "$T/out" "$MIRROR/lib/img@$d3"
cmp <(slice "$T/blob3" 0 2000000) "$T/out" || fail "parallel cold ranges: wrong bytes"

note "warm blob: 206"
for _ in $(seq 50); do # the mirror stores the blob in the background after the first full read
    "$FETCH" --plain-http --no-config --verify -o "$T/out" "$MIRROR/lib/img@$d1"
    "$FETCH" --plain-http --no-config -v --range 5-14 -o "$T/out" "$MIRROR/lib/img@$d1" 2>"$T/v.log"
    cmp <(slice "$T/blob1" 5 10) "$T/out" || fail "warm range: wrong bytes"
    grep -q "ignored Range" "$T/v.log" || break
    sleep 0.2
done
grep -q "ignored Range" "$T/v.log" && fail "the mirror never served 206 once warm"

note "manifest through the mirror"
"$FETCH" --plain-http --no-config --manifest -o "$T/m" "$MIRROR/lib/img:v1" >/dev/null
cmp "$T/manifest" "$T/m" || fail "manifest via mirror differs"
echo PASS
