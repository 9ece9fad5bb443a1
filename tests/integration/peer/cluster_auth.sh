#!/usr/bin/env bash
# Registries with token auth (our token server) and with htpasswd basic auth, fetched through
# the peer mesh with credentials from the caller's docker config.json: right password works
# (and a second peer gets the blob too), a wrong password gives the caller a clear error.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/peer/cluster_lib.sh"
need_pyjwt
command -v htpasswd >/dev/null || skip "htpasswd missing (apache2-utils, .ci/install-deps)"
command -v openssl >/dev/null || skip "openssl missing"

cluster_up --peers 2 --schedulers 1

# docker config with user:password for one registry
docker_cfg() { # DIR REGISTRY USER:PASS
    mkdir -p "$1"
    printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$2" "$(printf '%s' "$3" | base64 -w0)" >"$1/config.json"
}

# check_registry NAME REG REPO DIGEST BLOB
check_registry() {
    local name=$1 reg=$2 repo=$3 d=$4 blob=$5
    note "$name: right password, peer 1 then peer 2"
    docker_cfg "$T/dc-good-$name" "$reg" alice:s3cret
    DOCKER_CONFIG="$T/dc-good-$name" "$CF" get -q --peer "$PEER_SOCK_1" "$reg/$repo@$d" -o "$T/$name.1" ||
        fail "$name: get through peer 1 failed"
    cmp -s "$blob" "$T/$name.1" || fail "$name: peer 1 copy differs"
    DOCKER_CONFIG="$T/dc-good-$name" "$CF" get -q --peer "$PEER_SOCK_2" "$reg/$repo@$d" -o "$T/$name.2" ||
        fail "$name: get through peer 2 failed"
    cmp -s "$blob" "$T/$name.2" || fail "$name: peer 2 copy differs"

    note "$name: wrong password"
    local other
    random_file "$T/$name.other" 6 "$name-other"
    other=$(push_blob "$reg" "$repo" "$T/$name.other" "${PUSH_AUTH[@]}")
    docker_cfg "$T/dc-bad-$name" "$reg" alice:wrong
    if DOCKER_CONFIG="$T/dc-bad-$name" "$CF" get -q --peer "$PEER_SOCK_1" "$reg/$repo@$other" \
        -o "$T/$name.bad" 2>"$T/$name.err"; then
        fail "$name: a wrong password was accepted"
    fi
    cat "$T/$name.err"
    grep -qi "auth" "$T/$name.err" || fail "$name: the error does not say authentication failed"
    [ ! -e "$T/$name.bad" ] && [ ! -e "$T/$name.bad.part" ] || fail "$name: output left behind"
}

note "basic auth registry (htpasswd, bcrypt)"
mkdir -p "$T/auth"
htpasswd -Bbn alice s3cret >"$T/auth/htpasswd"
start_registry_cfg basic 127.0.0.1 "auth:
  htpasswd: {realm: basic-realm, path: $T/auth/htpasswd}"
BASIC=$REG
random_file "$T/basic.blob" 24 basic
PUSH_AUTH=(-u alice:s3cret)
d=$(push_blob "$BASIC" team/app "$T/basic.blob" "${PUSH_AUTH[@]}")
check_registry basic "$BASIC" team/app "$d" "$T/basic.blob"

note "token auth registry (token_server.py)"
REGISTRY_LOG="{level: info, fields: {service: registry}}" token_registry_start 127.0.0.1 --user alice:s3cret
TOKREG=$REG
ptok=$(curl -sS -f -u alice:s3cret \
    "http://$TOK/token?service=test-registry&scope=repository:tok/app:pull,push" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
random_file "$T/token.blob" 24 token
PUSH_AUTH=(-H "Authorization: Bearer $ptok")
d=$(push_blob "$TOKREG" tok/app "$T/token.blob" "${PUSH_AUTH[@]}")
check_registry token "$TOKREG" tok/app "$d" "$T/token.blob"
grep -q "user=alice" "$T/tok/log" || fail "the token server never saw alice"
note "ok"
