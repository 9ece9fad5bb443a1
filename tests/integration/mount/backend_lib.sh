# shellcheck shell=bash
# Helpers for the mount backend tests (source after testlib.sh).
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
. "$CHUNKFLY_SRC/tests/lib/nydus_image.sh"
READ="$CHUNKFLY_BUILD/tests/backend_read"
[ -x "$READ" ] || fail "$READ not built"

# registry_config FILE HOST REPO [EXTRA_JSON_MEMBERS [PROXY_OBJECT]]: the config
# nydus-snapshotter writes for a registry image (its always-sent keys included), with extra
# members of backend.config and its proxy object (default {"fallback": false}, no proxy).
registry_config() {
    local file=$1 host=$2 repo=$3 extra=${4:-} proxy=${5:-'{"fallback": false}'}
    [ -n "$extra" ] && extra=",$extra"
    cat >"$file" <<JSON
{
  "device": {
    "id": "/1",
    "backend": {"type": "registry", "config": {"readahead": false, "host": "$host",
      "repo": "$repo", "scheme": "http", "proxy": $proxy$extra}},
    "cache": {"type": "blobcache", "config": {"work_dir": "$T/cache", "disable_indexed_map": false}}
  },
  "mode": "direct", "digest_validate": false, "enable_xattr": true, "amplify_io": 1048576,
  "fs_prefetch": {"enable": false, "prefetch_all": false}
}
JSON
}

# stat_of OUTPUT NAME: a counter from backend_read's stats line
stat_of() { sed -n 's/^stats .*\b'"$2"'=\([-0-9]*\).*/\1/p' <<<"$1"; }
# field OUTPUT KEY: the value after "KEY " on its line
field() { awk -v k="$2" '$1==k{print $2}' <<<"$1"; }

# start_token_registry: our token server (tests/integration/proto/token_server.py; user
# alice:s3cret; anonymous callers get nothing of tok/private) and a docker-registry using it.
# Sets TOK (token server host:port, its log in $T/tok/log) and TREG.
start_token_registry() {
    token_registry_start 127.0.0.1 --user alice:s3cret --private tok/private
    TREG=$REGISTRY
}

# ptoken SCOPE: a token for alice
ptoken() {
    curl -sS -f -u alice:s3cret "http://$TOK/token?service=test-registry&scope=$1" |
        /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# push_tok REPO FILE [DIGEST]: pushes FILE as a blob of REPO to $TREG as alice; prints the
# digest. DIGEST (sha256:HEX), when known, saves hashing FILE; the registry checks it.
push_tok() { NYDUS_PUSH_AUTH=alice:s3cret oci_push_blob "$TREG" "$1" "$2" "${3:-}"; }
