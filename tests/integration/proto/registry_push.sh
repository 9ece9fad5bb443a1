#!/usr/bin/env bash
# proto/registry push (registry_push.h) against docker-registry with token auth (our token
# server): HEAD with push rights, monolithic upload from a file, chunked upload of a stream
# (digest known at the end), a wrong digest refused, cross-repository mount, manifest PUT with
# its media type (read back by curl and skopeo), a pull-only user refused with a clear message.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"
need_pyjwt
command -v openssl >/dev/null || skip "openssl missing"
PUSH="$CHUNKFLY_BUILD/tests/registry_push"
[ -x "$PUSH" ] || fail "$PUSH not built"

REGISTRY_LOG="{level: info, fields: {service: registry}}" token_registry_start 127.0.0.1 --user alice:s3cret --user bob:b0b --acl push/app=alice \
    --acl push/other=alice
P=("$PUSH" --plain-http --no-config --user alice:s3cret)
gtok() { curl -sS -f -u alice:s3cret "http://$TOK/token?service=test-registry&scope=$1" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }

head -c 3000000 /dev/urandom >"$T/blob"
d="sha256:$(sha256sum "$T/blob" | cut -d' ' -f1)"

note "HEAD of a missing blob, monolithic push, HEAD again"
[ "$("${P[@]}" exists "$REG/push/app@$d")" = absent ] || fail "blob present before push"
"${P[@]}" push "$T/blob" "$REG/push/app" "$d"
[ "$("${P[@]}" exists "$REG/push/app@$d")" = "present 3000000" ] || fail "blob not present"
grep -q "user=alice scope=repository:push/app:pull,push status=200" "$T/tok/log" ||
    fail "no push token fetched: $(cat "$T/tok/log")"
tk=$(gtok repository:push/app:pull)
curl -sS -f -H "Authorization: Bearer $tk" "http://$REG/v2/push/app/blobs/$d" -o "$T/back"
cmp "$T/blob" "$T/back" || fail "pushed blob differs"

note "a wrong digest is refused"
expect_fail "${P[@]}" push "$T/blob" "$REG/push/app" "sha256:$(printf '%064d' 0)"
grep -q "DIGEST_INVALID" "$T/err" && grep -q "EBADMSG" "$T/err" || fail "wrong digest unclear"

note "chunked upload of a stream in 1 MiB PATCHes (digest known at the end)"
head -c 2500000 /dev/urandom >"$T/s"
sd="sha256:$(sha256sum "$T/s" | cut -d' ' -f1)"
out=$(cat "$T/s" | "${P[@]}" --chunk 1048576 stream - "$REG/push/app")
[ "$out" = "$sd 2500000" ] || fail "stream push printed '$out', want '$sd 2500000'"
curl -sS -f -H "Authorization: Bearer $tk" "http://$REG/v2/push/app/blobs/$sd" -o "$T/back"
cmp "$T/s" "$T/back" || fail "streamed blob differs"
out=$("${P[@]}" stream /dev/null "$REG/push/app")
[ "$out" = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0" ] ||
    fail "empty stream: $out"

note "cross-repository mount (token with pull on the source repository)"
[ "$("${P[@]}" mount "$REG/push/other@$d" push/app)" = mounted ] || fail "mount failed"
[ "$("${P[@]}" exists "$REG/push/other@$d")" = "present 3000000" ] || fail "mounted blob absent"
grep -q "scope=repository:push/other:pull,push repository:push/app:pull" "$T/tok/log" ||
    grep -q "scope=repository:push/other:pull,push.*repository:push/app:pull" "$T/tok/log" ||
    fail "mount token scopes not logged: $(tail -3 "$T/tok/log")"
[ "$("${P[@]}" mount "$REG/push/other@sha256:$(printf '%064d' 1)" push/app)" = not-mounted ] ||
    fail "mount of an unknown blob claimed success"

note "manifest PUT with its media type, by tag and by digest"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' "$d" >"$T/cfg"
cd=$("${P[@]}" stream "$T/cfg" "$REG/push/app" | cut -d' ' -f1)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":3000000}]}' \
    "$cd" "$(stat -c %s "$T/cfg")" "$d" >"$T/man"
md=$("${P[@]}" manifest "$T/man" "$REG/push/app:v1" application/vnd.oci.image.manifest.v1+json)
[ "$md" = "sha256:$(sha256sum "$T/man" | cut -d' ' -f1)" ] || fail "manifest digest $md"
curl -sS -f -D "$T/h" -H "Authorization: Bearer $tk" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REG/v2/push/app/manifests/v1" -o "$T/m2"
cmp "$T/man" "$T/m2" || fail "manifest read back differs"
grep -qi "content-type: application/vnd.oci.image.manifest.v1+json" "$T/h" || fail "media type lost"
"${P[@]}" manifest "$T/man" "$REG/push/app@$md" application/vnd.oci.image.manifest.v1+json >/dev/null
if command -v skopeo >/dev/null; then
    skopeo inspect --tls-verify=false --creds alice:s3cret --raw "docker://$REG/push/app:v1" >"$T/m3"
    cmp "$T/man" "$T/m3" || fail "skopeo manifest differs"
fi

note "a manifest naming a missing blob is refused"
sed "s/$d/sha256:$(printf '%064d' 2)/" "$T/man" >"$T/bad"
expect_fail "${P[@]}" manifest "$T/bad" "$REG/push/app:bad" application/vnd.oci.image.manifest.v1+json
grep -q "MANIFEST_BLOB_UNKNOWN" "$T/err" || fail "missing blob not named"

note "bob may not push to push/app"
expect_fail "$PUSH" --plain-http --no-config --user bob:b0b push "$T/blob" "$REG/push/app" "$d"
grep -q "denied for user bob" "$T/err" && grep -q EACCES "$T/err" || fail "denied push unclear"

note "registry stopped: a clear transport error"
kill "$REGISTRY_PID"; wait "$REGISTRY_PID" 2>/dev/null || true
expect_fail "${P[@]}" --retries -1 push "$T/blob" "$REG/push/app" "$d"
grep -q "ECONNREFUSED" "$T/err" || fail "stopped registry unclear"
echo PASS
