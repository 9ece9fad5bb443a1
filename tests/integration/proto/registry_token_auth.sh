#!/usr/bin/env bash
# proto/registry against docker-registry with token auth, using our own token server
# (token_server.py): anonymous pull token, user token, wrong password, token caching across
# requests, token expiry and renewal, parallel fetches, and skopeo / POST /token as independent
# clients of the same setup.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"
need_pyjwt
command -v openssl >/dev/null || skip "openssl missing"

REGISTRY_LOG="{level: info, fields: {service: registry}}" token_registry_start 127.0.0.1 --user alice:s3cret --user carol:c4rol --ttl-for carol:3 \
    --private tok/private

# Push as alice with a push token (curl), so the setup does not depend on the client.
ptok=$(curl -sS -f -u alice:s3cret \
    "http://$TOK/token?service=test-registry&scope=repository:tok/app:pull,push" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
head -c 2097152 /dev/urandom >"$T/blob"
push_image "$REG" tok/app v1 "$T/blob" "$T/manifest" -H "Authorization: Bearer $ptok"
d="sha256:$(sha256sum "$T/blob" | cut -d' ' -f1)"
ref="$REG/tok/app@$d"
count() { grep -c "$1" "$T/tok/log" || true; }

note "anonymous: pull-only token"
"$FETCH" --plain-http --no-config --range 4096-8191 -o "$T/out" "$ref"
cmp <(slice "$T/blob" 4096 4096) "$T/out" || fail "anonymous range differs"
[ "$(count 'GET user=anonymous scope=repository:tok/app:pull status=200')" -ge 1 ] ||
    fail "no anonymous token fetch logged"

note "alice: one token for 5 whole-blob fetches, HEAD and manifest (cache per scope)"
before=$(count 'user=alice')
"$FETCH" --plain-http --no-config --user alice:s3cret --verify --repeat 5 -o "$T/out" "$ref"
cmp "$T/blob" "$T/out" || fail "whole blob differs"
[ $(($(count 'user=alice') - before)) -eq 1 ] ||
    fail "expected 1 token fetch for alice, log: $(cat "$T/tok/log")"

note "alice: 8 threads share one client and its token"
before=$(count 'user=alice')
"$FETCH" --plain-http --no-config --user alice:s3cret --threads 8 -o "$T/out" "$ref"
cmp "$T/blob" "$T/out" || fail "parallel fetch differs"
n=$(($(count 'user=alice') - before))
# The HEAD learns the challenge; parallel first requests may race for a token, never more
# than one per thread.
[ "$n" -ge 1 ] && [ "$n" -le 9 ] || fail "token fetches for 8 threads: $n"
"$FETCH" --plain-http --no-config --user alice:s3cret --manifest -o "$T/m" "$REG/tok/app:v1" >/dev/null
cmp "$T/manifest" "$T/m" || fail "manifest differs"

note "8 threads starting cold (no HEAD first) share a single token fetch"
before=$(count 'user=alice')
"$FETCH" --plain-http --no-config --user alice:s3cret --threads 8 --range 0-2097151 -o "$T/out" "$ref"
cmp "$T/blob" "$T/out" || fail "cold parallel fetch differs"
n=$(($(count 'user=alice') - before))
[ "$n" -eq 1 ] || fail "8 cold threads made $n token requests (want 1: single flight)"

note "token expiry: carol's tokens live 3 s, renewed after expiry"
before=$(count 'user=carol')
"$FETCH" --plain-http --no-config --user carol:c4rol --range 0-99 --repeat 2 --pause 2500 \
    -o "$T/out" "$ref"
cmp <(slice "$T/blob" 0 100) "$T/out" || fail "carol range differs"
[ $(($(count 'user=carol') - before)) -eq 2 ] || fail "expired token was not renewed"

note "anonymous on a private repository: the fresh token lacks access"
ptok2=$(curl -sS -f -u alice:s3cret \
    "http://$TOK/token?service=test-registry&scope=repository:tok/private:pull,push" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
dp=$(push_blob "$REG" tok/private "$T/blob" -H "Authorization: Bearer $ptok2")
expect_fail "$FETCH" --plain-http --no-config --range 0-9 -o "$T/out" "$REG/tok/private@$dp"
grep -q "access to repository tok/private denied for user anonymous" "$T/err" ||
    fail "private repo: message unclear"
"$FETCH" --plain-http --no-config --user alice:s3cret --range 0-9 -o "$T/out" "$REG/tok/private@$dp"
cmp <(slice "$T/blob" 0 10) "$T/out" || fail "private repo as alice: bytes differ"

note "wrong password"
expect_fail "$FETCH" --plain-http --no-config --user alice:nope -o "$T/out" "$ref"
grep -q "authentication failed for user alice at token server http://$TOK/token (HTTP 401)" \
    "$T/err" || fail "wrong password unclear"
grep -q "\[EACCES\]" "$T/err" || fail "not EACCES"

note "independent clients: skopeo with credentials, containerd-style POST /token"
if command -v skopeo >/dev/null; then
    skopeo inspect --tls-verify=false --creds alice:s3cret --raw "docker://$REG/tok/app:v1" >"$T/m2"
    cmp "$T/manifest" "$T/m2" || fail "skopeo manifest differs"
fi
otok=$(curl -sS -f -X POST --data-urlencode grant_type=password --data-urlencode username=alice \
    --data-urlencode password=s3cret --data-urlencode service=test-registry \
    --data-urlencode scope=repository:tok/app:pull "http://$TOK/token" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
code=$(curl -sS -o "$T/out" -w '%{http_code}' -r 10-19 -H "Authorization: Bearer $otok" \
    "http://$REG/v2/tok/app/blobs/$d")
[ "$code" = 206 ] || fail "POST /token token: HTTP $code"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -d 'grant_type=password&username=alice&password=x' \
    "http://$TOK/token")
[ "$code" = 401 ] || fail "POST /token with a wrong password: HTTP $code"
echo PASS
