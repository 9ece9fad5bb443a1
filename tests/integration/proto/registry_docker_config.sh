#!/usr/bin/env bash
# Credentials from a docker config.json against an htpasswd registry: "auth" (base64) and
# username/password forms, URL-shaped keys, $DOCKER_CONFIG, wrong password, malformed file,
# a config without an entry for the host, and a missing explicit file.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"
command -v htpasswd >/dev/null || skip "htpasswd missing (apache2-utils, .ci/install-deps)"

mkdir -p "$T/auth" "$T/dc"
htpasswd -Bbn bob 'pa:ss w0rd' >"$T/auth/htpasswd"
start_registry_cfg basic 127.0.0.1 "auth:
  htpasswd: {realm: basic-realm, path: $T/auth/htpasswd}"
head -c 200000 /dev/urandom >"$T/blob"
d=$(push_blob "$REG" cfg/test "$T/blob" -u 'bob:pa:ss w0rd')
ref="$REG/cfg/test@$d"
b64=$(printf '%s' 'bob:pa:ss w0rd' | base64 -w0)

note "auths.<host>.auth"
printf '{"auths":{"other.example:5000":{"auth":"eDp5"},"%s":{"auth":"%s"}}}' "$REG" "$b64" >"$T/dc/a.json"
"$FETCH" --plain-http --config "$T/dc/a.json" --range 10-19 -o "$T/out" "$ref"
cmp <(slice "$T/blob" 10 10) "$T/out" || fail "auth form: bytes differ"

note "username/password form under an http:// URL key"
printf '{"auths":{"http://%s/v1/":{"username":"bob","password":"pa:ss w0rd"}}}' "$REG" >"$T/dc/b.json"
"$FETCH" --plain-http --config "$T/dc/b.json" --verify -o "$T/out" "$ref"
cmp "$T/blob" "$T/out" || fail "username form: bytes differ"

note "\$DOCKER_CONFIG"
mkdir -p "$T/dc/env"
cp "$T/dc/a.json" "$T/dc/env/config.json"
DOCKER_CONFIG="$T/dc/env" "$FETCH" --plain-http --head "$ref" >/dev/null || fail "DOCKER_CONFIG not used"

note "wrong password in the config"
printf '{"auths":{"%s":{"auth":"%s"}}}' "$REG" "$(printf bob:nope | base64 -w0)" >"$T/dc/c.json"
expect_fail "$FETCH" --plain-http --config "$T/dc/c.json" -o "$T/out" "$ref"
grep -q "authentication failed for user bob (HTTP 401)" "$T/err" || fail "wrong password unclear"

note "malformed files"
printf '{"auths":{"%s":{"auth":"not base64!"}}}' "$REG" >"$T/dc/d.json"
expect_fail "$FETCH" --plain-http --config "$T/dc/d.json" -o "$T/out" "$ref"
grep -q "d.json.*not valid base64" "$T/err" || fail "bad base64 unclear"
printf '{"auths": {' >"$T/dc/e.json"
expect_fail "$FETCH" --plain-http --config "$T/dc/e.json" -o "$T/out" "$ref"
grep -q "e.json.*not JSON" "$T/err" || fail "truncated JSON unclear"

note "no entry for this host, credential helper only"
printf '{"auths":{"elsewhere:1":{"auth":"%s"}},"credsStore":"desktop"}' "$b64" >"$T/dc/f.json"
expect_fail "$FETCH" --plain-http --config "$T/dc/f.json" -o "$T/out" "$ref"
grep -q "no credentials are configured" "$T/err" || fail "no-entry case unclear"
grep -q "credential helpers" "$T/err" || fail "no warning about credsStore"

note "missing explicit config file"
expect_fail "$FETCH" --plain-http --config "$T/dc/none.json" -o "$T/out" "$ref"
grep -q "none.json" "$T/err" || fail "missing file not named"
echo PASS
