#!/usr/bin/env bash
# proto/registry against docker-registry with htpasswd (bcrypt) basic auth: no credentials,
# wrong password, right password (blob ranges, manifest, parallel fetch).
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"
command -v htpasswd >/dev/null || skip "htpasswd missing (apache2-utils, .ci/install-deps)"

mkdir -p "$T/auth"
htpasswd -Bbn alice s3cret >"$T/auth/htpasswd"
start_registry_cfg basic 127.0.0.1 "auth:
  htpasswd: {realm: basic-realm, path: $T/auth/htpasswd}"
head -c 1048600 /dev/urandom >"$T/blob"
push_image "$REG" team/app v1 "$T/blob" "$T/manifest" -u alice:s3cret
d="sha256:$(sha256sum "$T/blob" | cut -d' ' -f1)"
ref="$REG/team/app@$d"

note "no credentials"
expect_fail "$FETCH" --plain-http --no-config -o "$T/out" "$ref"
grep -q "authentication required (HTTP 401, Basic) but no credentials" "$T/err" ||
    fail "missing-credentials error unclear"
grep -q "\[EACCES\]" "$T/err" || fail "not EACCES"

note "wrong password"
expect_fail "$FETCH" --plain-http --no-config --user alice:wrong -o "$T/out" "$ref"
grep -q "registry $REG: authentication failed for user alice (HTTP 401)" "$T/err" ||
    fail "wrong-password error unclear"
expect_fail "$FETCH" --plain-http --no-config --user alice:wrong --head "$ref"
grep -q "authentication failed for user alice (HTTP 401)" "$T/err" || fail "HEAD: unclear"

note "right password: whole, range, HEAD, manifest, parallel"
"$FETCH" --plain-http --no-config --user alice:s3cret --verify -o "$T/out" "$ref"
cmp "$T/blob" "$T/out" || fail "whole blob differs"
"$FETCH" --plain-http --no-config --user alice:s3cret --range 1000-99999 -o "$T/out" "$ref"
cmp <(slice "$T/blob" 1000 99000) "$T/out" || fail "range differs"
[ "$("$FETCH" --plain-http --no-config --user alice:s3cret --head "$ref")" = 1048600 ] ||
    fail "HEAD size"
"$FETCH" --plain-http --no-config --user alice:s3cret --manifest -o "$T/m" "$REG/team/app:v1" >/dev/null
cmp "$T/manifest" "$T/m" || fail "manifest differs"
"$FETCH" --plain-http --no-config --user alice:s3cret --threads 6 --repeat 3 -o "$T/out" "$ref"
cmp "$T/blob" "$T/out" || fail "parallel fetch differs"
echo PASS
