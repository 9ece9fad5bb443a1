# Shared helpers for integration test scripts (bash). Source it:
#   . "$CHUNKFLY_SRC/tests/lib/testlib.sh"
# It makes a work dir ($T), kills every process started with `bg_start` on exit (by PID), and
# offers skip/fail, free ports on 127.0.0.N, waiting for a port, and a real docker-registry.
set -euo pipefail

: "${CHUNKFLY_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${CHUNKFLY_BUILD:=$CHUNKFLY_SRC/build}"
: "${CHUNKFLY_BIN:=$CHUNKFLY_BUILD/bin}"
: "${CHUNKFLY_FIXTURES:=$CHUNKFLY_SRC/../shared/fixtures}"
export CHUNKFLY_SRC CHUNKFLY_BUILD CHUNKFLY_BIN CHUNKFLY_FIXTURES

T=$(mktemp -d "${TMPDIR:-/tmp}/cftest.XXXXXX")
CF_PIDS=()
CF_MOUNTS=()

cf_cleanup() {
    local rc=$?
    local m p
    for m in "${CF_MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
    for p in "${CF_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${CF_PIDS[@]}"; do
        # PID 1 here does not reap orphans: a dead child may linger as a zombie, so check state.
        for _ in $(seq 50); do
            local st
            st=$(ps -o stat= -p "$p" 2>/dev/null || true)
            [ -z "$st" ] || [[ "$st" == Z* ]] && break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "${CF_KEEP:-0}" = 1 ]; then echo "kept work dir $T" >&2; else rm -rf "$T"; fi
    exit $rc
}
trap cf_cleanup EXIT

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*"; }

# is_alive PID: true unless gone or a zombie
is_alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null || true)
    [ -n "$st" ] && [[ "$st" != Z* ]]
}

# bg_start LOGFILE CMD ARGS... : start a background process, remember its PID in CF_LAST_PID.
bg_start() {
    local log=$1; shift
    "$@" >"$log" 2>&1 &
    CF_LAST_PID=$!
    CF_PIDS+=("$CF_LAST_PID")
}

# bg_stop PID : SIGTERM, wait up to 5 s, then SIGKILL.
bg_stop() {
    local p=$1
    kill "$p" 2>/dev/null || true
    for _ in $(seq 50); do is_alive "$p" || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

# free_port [HOST]: a TCP port nobody listens on at HOST (default 127.0.0.1).
free_port() {
    local host=${1:-127.0.0.1}
    python3 - "$host" <<'PY'
import socket, sys
s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1]); s.close()
PY
}

# wait_port HOST PORT [TIMEOUT_S]: wait until something accepts connections.
wait_port() {
    local host=$1 port=$2 t=${3:-20} i
    for i in $(seq $((t * 10))); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    fail "nothing listens on $host:$port after ${t}s"
}

# start_registry [HOST] [EXTRA_YAML] [NAME]: a real docker-registry on a free port at HOST
# (default 127.0.0.1). EXTRA_YAML adds top-level config sections (auth:, proxy:); NAME names
# its dir under $T (default registry-PORT); REGISTRY_LOG overrides the log: section (default:
# warnings only, no access log). Sets REGISTRY=host:port, REGISTRY_PID, REGISTRY_DIR.
start_registry() {
    command -v docker-registry >/dev/null || skip "docker-registry not installed (.ci/install-deps)"
    local host=${1:-127.0.0.1} extra=${2:-} port dir
    local logcfg='{level: warn, accesslog: {disabled: true}}'
    [ -n "${REGISTRY_LOG:-}" ] && logcfg=$REGISTRY_LOG
    port=$(free_port "$host")
    dir="$T/${3:-registry-$port}"
    mkdir -p "$dir/data"
    cat >"$dir/config.yml" <<YML
version: 0.1
log: $logcfg
storage:
  filesystem: {rootdirectory: $dir/data}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
http:
  addr: $host:$port
$extra
YML
    bg_start "$dir/log" docker-registry serve "$dir/config.yml"
    REGISTRY_PID=$CF_LAST_PID
    REGISTRY_DIR=$dir
    wait_port "$host" "$port"
    REGISTRY="$host:$port"
}

# token_registry_start HOST TOKEN_SERVER_ARGS...: our token server
# (tests/integration/proto/token_server.py: --user U:P, --acl REPO=USER, --private REPO,
# --ttl-for ...; its log in $T/tok/log) on HOST and a docker-registry on HOST trusting it,
# started by start_registry (REGISTRY_LOG honoured; its dir $T/token). Sets TOK (the token
# server's host:port), REGISTRY/REGISTRY_DIR/REGISTRY_PID and REG/REG_DIR (the same registry).
token_registry_start() {
    local host=$1; shift
    /usr/bin/python3 -c 'import jwt, cryptography' 2>/dev/null ||
        skip "python3-jwt / python3-cryptography missing (.ci/install-deps)"
    command -v openssl >/dev/null || skip "openssl missing"
    mkdir -p "$T/tok"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tok/key.pem" -out "$T/tok/cert.pem" \
        -days 2 -subj /CN=chunkfly-test-token 2>/dev/null
    bg_start "$T/tok/stderr" /usr/bin/python3 "$CHUNKFLY_SRC/tests/integration/proto/token_server.py" \
        --key "$T/tok/key.pem" --cert "$T/tok/cert.pem" --listen "$host:0" \
        --port-file "$T/tok/port" --log "$T/tok/log" "$@"
    for _ in $(seq 100); do [ -s "$T/tok/port" ] && break; sleep 0.1; done
    [ -s "$T/tok/port" ] || { cat "$T/tok/stderr"; fail "token server did not start"; }
    TOK="$host:$(cat "$T/tok/port")"
    start_registry "$host" "auth:
  token:
    realm: http://$TOK/token
    service: test-registry
    issuer: chunkfly-test-issuer
    rootcertbundle: $T/tok/cert.pem" token
    REG=$REGISTRY
    REG_DIR=$REGISTRY_DIR
}

# token SCOPE [CURL ARGS]: a bearer token for SCOPE from the token server of
# token_registry_start (e.g. token repository:a/b:pull,push -u alice:s3cret)
token() {
    local scope=$1; shift
    curl -sS -f "$@" "http://$TOK/token?service=test-registry&scope=$scope" |
        /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

need_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }
need_bin() { [ -x "$CHUNKFLY_BIN/$1" ] || fail "$CHUNKFLY_BIN/$1 not built"; }
fixture() { # fixture REL: path of a Nydus fixture or SKIP
    local p="$CHUNKFLY_FIXTURES/nydus/$1"
    [ -e "$p" ] || skip "Nydus fixture $p not found (set CHUNKFLY_FIXTURES)"
    echo "$p"
}
