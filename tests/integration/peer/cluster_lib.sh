# shellcheck shell=bash
# Helpers for the cluster-level tests (source after testlib.sh): a whole cluster from
# deploy/local-cluster.sh in $T/cluster on a free base port, stopped on exit, plus blob pushes
# (registry_lib.sh, curl) and `chunkfly get` wrappers.
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"

CLUSTER="$CHUNKFLY_SRC/deploy/local-cluster.sh"
CF="$CHUNKFLY_BIN/chunkfly"
[ -x "$CHUNKFLY_BIN/chunkfly-peer" ] || skip "chunkfly-peer not built in $CHUNKFLY_BIN"
need_bin chunkfly
need_bin chunkfly-scheduler
command -v docker-registry >/dev/null || skip "docker-registry not installed (.ci/install-deps)"

CLUSTER_STATE="$T/cluster"
CLUSTER_UP=0

cluster_cleanup() {
    local rc=$? p
    set +e # else `(exit $rc)` below ends the handler under errexit and cf_cleanup never runs
    # a reader a test stopped (SIGSTOP) must not outlive it nor hold the daemon up
    for p in "${CF_PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
    if [ "$CLUSTER_UP" = 1 ]; then
        if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
            for f in "$CLUSTER_STATE"/peer-*/peer-*.log "$CLUSTER_STATE"/scheduler-*/*.log; do
                [ -f "$f" ] && { echo "=== tail $f" >&2; tail -n 25 "$f" >&2; }
            done
        fi
        "$CLUSTER" down --state-dir "$CLUSTER_STATE" >/dev/null || true
    fi
    (exit $rc)
    cf_cleanup
}
trap cluster_cleanup EXIT

# Sanitize builds are ~3-5x slower: tests shrink their data there (and print what they used).
build_type() { sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$CHUNKFLY_BUILD/CMakeCache.txt" 2>/dev/null; }
is_sanitize() { [ "$(build_type)" = Sanitize ]; }

# cluster_up ARGS...: local-cluster.sh up on a random free base port (below the ephemeral range
# 32768+, so outgoing connections never hold our ports); sources cluster.env. CLUSTER_TLS=1 in
# the environment: the mesh runs over mutual TLS (local-cluster.sh --tls), so the same test
# covers both transports.
cluster_up() {
    local try base tls=()
    [ "${CLUSTER_TLS:-0}" = 1 ] && tls=(--tls) && note "mesh over mutual TLS"
    for try in 1 2 3 4 5 6 7 8 9 10; do
        base=$((20000 + (RANDOM % 120) * 100))
        if "$CLUSTER" up --state-dir "$CLUSTER_STATE" --base-port "$base" "${tls[@]}" "$@" >"$T/cluster.out" 2>"$T/cluster.err"; then
            CLUSTER_UP=1
            cat "$T/cluster.out"
            # shellcheck disable=SC1091
            . "$CLUSTER_STATE/cluster.env"
            return 0
        fi
        grep "already in use" "$T/cluster.err" || { cat "$T/cluster.err" >&2; CLUSTER_UP=1; fail "local-cluster.sh up failed"; }
    done
    fail "no free base port after 10 tries"
}

# peer_pid I: the PID of peer I now
peer_pid() { awk -v n="peer-$1" '$1 == n {p = $2} END {print p}' "$CLUSTER_STATE/pids"; }

# registry_blob_bytes: blob bytes the cluster registry served so far
registry_blob_bytes() { "$CLUSTER" status --state-dir "$CLUSTER_STATE" | awk '$1 == "registry_blob_bytes" {print $2}'; }

# metric I NAME: a counter from peer I's /metrics (0 when absent)
metric() {
    local v http
    eval "http=\$PEER_HTTP_$1"
    v=$(curl -s --noproxy '*' --max-time 5 "http://$http/metrics" | awk -v n="$2" '$1 == n {print $2}')
    echo "${v:-0}"
}

# random_file PATH MIB [SEED]: deterministic incompressible data (AES-CTR keystream)
random_file() {
    local key
    key=$(printf '%s' "${3:-$RANDOM$RANDOM}" | sha256sum | cut -c1-32)
    head -c $(($2 * 1048576)) /dev/zero |
        openssl enc -aes-128-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 |
        head -c $(($2 * 1048576)) >"$1"
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }
