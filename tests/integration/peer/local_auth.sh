#!/bin/bash
# The local API's two checks (docs/peer.md "Local API", docs/security.md "Local callers"):
# 1. who calls: a caller whose uid/groups are not allowed (SO_PEERCRED) gets ERROR AUTH before
#    anything else (the chunkfly CLI as uid 65534 on a socket made world-writable); an allowed
#    supplementary group passes;
# 2. a private blob the node holds (a token registry with per-repository rules: priv/app only
#    for alice, bob a known user without access, pub/app public) is served only to a caller
#    whose credentials the registry accepts for it: none (api_node_credentials = false), bob
#    and a wrong password are refused, alice is served from the cache without new origin bytes,
#    and her verdict is remembered (no second HEAD at the registry); the check goes to the
#    registry the blob was recorded from, never to one the caller names (a second, open
#    registry holding the same bytes publicly does not open it); a public blob goes to anyone;
# 3. restarted with the registry away: the held private blob stays refused (the cache record
#    keeps the anonymous refusal), the held public blob is still served.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"
need_pyjwt
need_root
command -v openssl >/dev/null || skip "openssl missing"
command -v setpriv >/dev/null || skip "setpriv missing (util-linux)"
CF=$CHUNKFLY_BIN/chunkfly

REGISTRY_LOG="{level: info, fields: {service: registry}}" token_registry_start 127.0.0.9 --user alice:s3cret --user bob:b0b --acl priv/app=alice
REG_TOKEN_PID=$REGISTRY_PID
head -c 3000000 /dev/urandom >"$T/priv"
head -c 2000000 /dev/urandom >"$T/pub"
PRIV=$(push_blob "$REG" priv/app "$T/priv" -H "Authorization: Bearer $(token repository:priv/app:pull,push -u alice:s3cret)")
PUB=$(push_blob "$REG" pub/app "$T/pub" -H "Authorization: Bearer $(token repository:pub/app:pull,push -u alice:s3cret)")
SIZE=$(stat -c %s "$T/priv")

# the socket in a directory others may enter, as a misconfigured deployment might expose it
chmod 755 "$T"
start_peer 1 --set docker_config="" --set api_node_credentials=false --set api_allow_gids=4242 \
    --set mirror_listen=""
SOCK=$T/p1.sock
chmod 666 "$SOCK"

note "a caller whose uid and groups are not allowed: ERROR AUTH before anything else"
if setpriv --reuid=65534 --regid=65534 --clear-groups "$CF" status --peer "$SOCK" >"$T/out" 2>&1; then
    fail "uid 65534 was served: $(cat "$T/out")"
fi
cat "$T/out"
grep -q "uid 65534" "$T/out" || fail "the refusal does not name the uid"
grep -q "(AUTH)" "$T/out" || fail "not an AUTH refusal"
[ "$(metric 1 local_callers_refused_total)" = 1 ] || fail "refusal not counted"
note "the same uid in an allowed group (api_allow_gids): served"
setpriv --reuid=65534 --regid=65534 --groups=4242 "$CF" status --peer "$SOCK" >"$T/out" 2>&1 ||
    fail "allowed group refused: $(cat "$T/out")"

rd() { # ORIGIN_REGISTRY REPO BLOB OUT [CREDS]: a whole read through the local API
    local reg=$1 repo=$2 blob=$3 out=$4 f=$T/pub; shift 4
    [ "$blob" = "$PRIV" ] && f=$T/priv
    "$CLIENT_BIN" "$SOCK" read "$blob" "$reg/$repo@$blob" 0 "$(stat -c %s "$f")" "$out" "$@"
}

note "private blob, not held: alice's credentials fetch and cache it"
rd "$REG" priv/app "$PRIV" "$T/a1" alice:s3cret || fail "alice's first read"
cmp "$T/a1" "$T/priv" || fail "alice's bytes differ"
for _ in $(seq 50); do
    "$CLIENT_BIN" "$SOCK" stat "$PRIV" | grep -q complete=1 && break
    sleep 0.1
done
origin=$(metric 1 bytes_from_origin_total)
[ "$origin" -ge "$SIZE" ] || fail "origin bytes $origin"

refused() { # WHAT ARGS...: the read must fail with ERROR AUTH (11)
    local what=$1; shift
    if out=$(rd "$@"); then fail "$what: served"; fi
    echo "$out"
    echo "$out" | grep -q "^error 11:" || fail "$what: not an AUTH error: $out"
}
note "held, still private: no credentials (api_node_credentials = false), bob, a wrong password"
refused "no credentials" "$REG" priv/app "$PRIV" /dev/null
echo "$out" | grep -q api_node_credentials || fail "the refusal does not name the policy"
refused "bob" "$REG" priv/app "$PRIV" /dev/null bob:b0b
refused "alice, wrong password" "$REG" priv/app "$PRIV" /dev/null alice:wrong
note "bob through a repository he may read: the registry does not link the blob there"
refused "bob via pub/app" "$REG" pub/app "$PRIV" /dev/null bob:b0b

note "an open registry holding the same bytes publicly does not open the held blob"
REG_TOKEN=$REG REG_TOKEN_DIR=$REG_DIR
start_registry_cfg open 127.0.0.9 ""
OPEN=$REG
push_blob "$OPEN" any/thing "$T/priv" >/dev/null
refused "the caller's own registry" "$OPEN" any/thing "$PRIV" /dev/null
REG=$REG_TOKEN REG_DIR=$REG_TOKEN_DIR
[ "$(metric 1 local_access_refused_total)" -ge 5 ] || fail "refusals not counted"

note "alice again: served from the cache, no new origin bytes"
rd "$REG" priv/app "$PRIV" "$T/a2" alice:s3cret || fail "alice's cached read"
cmp "$T/a2" "$T/priv" || fail "alice's cached bytes differ"
[ "$(metric 1 bytes_from_origin_total)" = "$origin" ] || fail "origin bytes moved"
note "her verdict is remembered: no second HEAD at the registry"
heads() { grep -c "\"HEAD /v2/priv/app/blobs/$PRIV" "$REG_DIR/log" || true; }
h0=$(heads)
[ "$h0" -ge 1 ] || fail "no HEAD of the private blob in the registry's access log"
rd "$REG" priv/app "$PRIV" "$T/a3" alice:s3cret || fail "alice's third read"
cmp "$T/a3" "$T/priv" || fail "alice's third bytes differ"
[ "$(heads)" = "$h0" ] || fail "the check was asked again: $h0 -> $(heads) HEADs"

note "a public blob: anyone, without credentials"
rd "$REG" pub/app "$PUB" "$T/p1" || fail "public blob, anonymous"
cmp "$T/p1" "$T/pub" || fail "public bytes differ"
rd "$REG" pub/app "$PUB" "$T/p2" || fail "public blob, held"
cmp "$T/p2" "$T/pub" || fail "public bytes differ (held)"
rd "$REG" pub/app "$PUB" "$T/p3" bob:b0b || fail "public blob, bob"
note "no blob bytes went to a refused caller: $(metric 1 bytes_served_local_total) bytes served"
[ "$(metric 1 bytes_served_local_total)" = $((3 * SIZE + 3 * $(stat -c %s "$T/pub"))) ] ||
    fail "bytes served $(metric 1 bytes_served_local_total)"

note "restarted while the registry is away: the held private blob is still refused (its cache"
note "record says the registry refused an anonymous read), the held public blob is served"
kill "${PEER_PID[1]}"
wait "${PEER_PID[1]}" || fail "peer 1 exit before the restart"
bg_stop "$REG_TOKEN_PID"
start_peer 1 --set docker_config="" --set api_node_credentials=false --set api_allow_gids=4242 \
    --set mirror_listen=""
if out=$(rd "$REG" priv/app "$PRIV" /dev/null); then fail "private blob served with the registry away"; fi
echo "$out"
echo "$out" | grep -Eq "^error 1[01]:" || fail "not an ORIGIN/AUTH refusal: $out"
rd "$REG" pub/app "$PUB" "$T/p4" || fail "public blob with the registry away"
cmp "$T/p4" "$T/pub" || fail "public bytes differ (registry away)"
[ "$(metric 1 bytes_served_local_total)" = "$(stat -c %s "$T/pub")" ] ||
    fail "bytes served with the registry away: $(metric 1 bytes_served_local_total)"

note "SIGTERM: clean exit 0 (under the Sanitize build: no leak, no sanitizer report)"
kill "${PEER_PID[1]}"
wait "${PEER_PID[1]}"; rc=$?
[ "$rc" = 0 ] || { tail -40 "$T/peer1.log"; fail "exit code $rc after SIGTERM"; }
