#!/usr/bin/env bash
# proto/registry against a real docker-registry: HEAD size, whole-blob GET with verify, ranges
# (bounded, open, past the end, 416 quirk), parallel ranges through one client, manifests by
# tag and digest (compared with skopeo's raw view), unknown blobs, and a corrupted blob that
# --verify must reject.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"

start_registry_cfg plain 127.0.0.1 ""
head -c 3145745 /dev/urandom >"$T/blob"
size=$(stat -c %s "$T/blob")
push_image "$REG" test/blobs v1 "$T/blob" "$T/manifest"
d="sha256:$(sha256sum "$T/blob" | cut -d' ' -f1)"
ref="$REG/test/blobs@$d"

note "HEAD size"
got=$("$FETCH" --plain-http --no-config --head "$ref")
[ "$got" = "$size" ] || fail "HEAD size $got, want $size"

note "whole blob, verified"
"$FETCH" --plain-http --no-config --verify -o "$T/out" "$ref"
cmp "$T/blob" "$T/out" || fail "whole blob differs"

note "an http_proxy in the environment is not used for loopback registries"
http_proxy=http://127.0.0.1:1 HTTP_PROXY=http://127.0.0.1:1 \
    "$FETCH" --plain-http --no-config --retries -1 --range 0-9 -o "$T/out" "$ref"
cmp <(slice "$T/blob" 0 10) "$T/out" || fail "proxy bypass: bytes differ"

note "bounded range 100-199"
"$FETCH" --plain-http --no-config --range 100-199 -o "$T/out" "$ref"
cmp <(slice "$T/blob" 100 100) "$T/out" || fail "range 100-199 differs"

note "range into memory (proto_registry_blob_read), also past the end"
"$FETCH" --plain-http --no-config --mem --range 4096-1052671 -o "$T/out" "$ref"
cmp <(slice "$T/blob" 4096 1048576) "$T/out" || fail "blob_read range differs"
"$FETCH" --plain-http --no-config --mem --range $((size - 5))-$((size + 5)) -o "$T/out" "$ref"
cmp <(slice "$T/blob" $((size - 5)) 5) "$T/out" || fail "blob_read clamped range differs"

note "single byte, last byte, open range"
"$FETCH" --plain-http --no-config --range 0-0 -o "$T/out" "$ref"
cmp <(slice "$T/blob" 0 1) "$T/out" || fail "range 0-0 differs"
"$FETCH" --plain-http --no-config --range $((size - 1))-$((size - 1)) -o "$T/out" "$ref"
cmp <(slice "$T/blob" $((size - 1)) 1) "$T/out" || fail "last byte differs"
"$FETCH" --plain-http --no-config --range 3000000- -o "$T/out" "$ref"
cmp <(slice "$T/blob" 3000000 $((size - 3000000))) "$T/out" || fail "open range differs"

note "range reaching past the end gives the bytes that exist"
"$FETCH" --plain-http --no-config --range $((size - 10))-$((size + 1000)) -o "$T/out" "$ref"
cmp <(slice "$T/blob" $((size - 10)) 10) "$T/out" || fail "clamped range differs"

note "range starting past the end: docker-registry's 416 with a lying Content-Length"
start=$(date +%s%N)
expect_fail "$FETCH" --plain-http --no-config --range $((size + 10))-$((size + 20)) -o "$T/out" "$ref"
grep -q "range not satisfiable (HTTP 416" "$T/err" || fail "416 not reported clearly"
grep -q "\[ERANGE\]" "$T/err" || fail "416 not mapped to ERANGE"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$ms" -lt 3000 ] || fail "416 took ${ms} ms (waiting for the lying Content-Length?)"

note "8 parallel ranges through one shared client"
"$FETCH" --plain-http --no-config --threads 8 -o "$T/out" "$ref"
cmp "$T/blob" "$T/out" || fail "parallel fetch differs"
"$FETCH" --plain-http --no-config --threads 3 --range 5-2000004 -o "$T/out" "$ref"
cmp <(slice "$T/blob" 5 2000000) "$T/out" || fail "parallel range fetch differs"

note "manifest by tag and by digest"
md="sha256:$(sha256sum "$T/manifest" | cut -d' ' -f1)"
out=$("$FETCH" --plain-http --no-config --manifest -o "$T/m1" "$REG/test/blobs:v1")
[ "$out" = "application/vnd.oci.image.manifest.v1+json $md" ] || fail "manifest info: $out"
cmp "$T/manifest" "$T/m1" || fail "manifest body differs"
"$FETCH" --plain-http --no-config --manifest -o "$T/m2" "$REG/test/blobs@$md" >/dev/null
cmp "$T/manifest" "$T/m2" || fail "manifest by digest differs"
if command -v skopeo >/dev/null; then
    skopeo inspect --tls-verify=false --raw "docker://$REG/test/blobs:v1" >"$T/m3"
    cmp "$T/m1" "$T/m3" || fail "our manifest differs from skopeo's raw manifest"
fi

note "OCI image index (needs the index type in Accept)"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"architecture":"amd64","os":"linux"}}]}' \
    "$md" "$(stat -c %s "$T/manifest")" >"$T/index"
curl -sS -f -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
    --data-binary "@$T/index" "http://$REG/v2/test/blobs/manifests/idx" -o /dev/null
id="sha256:$(sha256sum "$T/index" | cut -d' ' -f1)"
out=$("$FETCH" --plain-http --no-config --manifest -o "$T/i1" "$REG/test/blobs:idx")
[ "$out" = "application/vnd.oci.image.index.v1+json $id" ] || fail "index info: $out"
cmp "$T/index" "$T/i1" || fail "index body differs"

note "a failing sink (disk full) aborts the transfer with the sink's error"
expect_fail "$FETCH" --plain-http --no-config -o /dev/full "$ref"
grep -q "writing blob $d to fd [0-9]* at offset 0: No space left on device \[ENOSPC\]" "$T/err" ||
    fail "sink error unclear"

note "a callback that gives up mid-stream stops the transfer with its own error"
expect_fail "$FETCH" --plain-http --no-config --abort-after 100000 -o "$T/out" "$ref" >"$T/n"
grep -q "write callback failed: Operation canceled \[ECANCELED\]" "$T/err" || fail "abort unclear"
n=$(head -n1 "$T/n") # expect_fail also echoes the error to stdout
[ "$n" -ge 100000 ] && [ "$n" -lt "$size" ] || fail "abort: delivered $n bytes"
[ "$(stat -c %s "$T/out")" = "$n" ] || fail "abort: delivered count differs from bytes written"
cmp <(slice "$T/blob" 0 "$n") "$T/out" || fail "abort: delivered bytes differ"

note "unknown blob and unknown tag"
zero="sha256:$(printf x | sha256sum | cut -d' ' -f1)"
expect_fail "$FETCH" --plain-http --no-config -o "$T/out" "$REG/test/blobs@$zero"
grep -q "not found in repository test/blobs (HTTP 404 BLOB_UNKNOWN)" "$T/err" || fail "404 unclear"
expect_fail "$FETCH" --plain-http --no-config --manifest -o "$T/out" "$REG/test/blobs:nope"
grep -q "\[ENOENT\]" "$T/err" || fail "unknown tag not ENOENT"

note "corrupted blob on the registry's disk: --verify rejects it"
data=$(find "$REG_DIR/data" -path "*/blobs/sha256/*/${d#sha256:}/data")
[ -f "$data" ] || fail "blob data file not found under $REG_DIR/data"
printf 'X' | dd of="$data" bs=1 seek=12345 conv=notrunc status=none
expect_fail "$FETCH" --plain-http --no-config --verify -o "$T/out" "$ref"
grep -q "content digest mismatch" "$T/err" || fail "digest mismatch not reported"
echo "PASS"
