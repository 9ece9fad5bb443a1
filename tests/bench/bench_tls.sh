#!/bin/bash
# bench_tls.sh [MiB]: pieces served by one chunkfly-peer over loopback, plain TCP (sendfile) vs
# mutual TLS (pread + OpenSSL), in the same run on the same cached blob (not a test; prints
# figures). A docker-registry on 127.0.0.9 is the origin; the peer on 127.0.0.11 fetches the blob
# once, then tests/bench/p2p/piece_bench requests every piece (8 in flight, best of 3 rounds)
# first from the peer started with tls_* set, then from the same peer restarted without TLS on
# the same cache. Last line:
#   tls bench: size=<MiB> piece=<bytes> plain_mib_s=<x> tls_mib_s=<y> tls_vs_plain=<y/x>
# Needs the Release build (CHUNKFLY_BUILD), docker-registry and the openssl CLI.
. "$(dirname "$0")/../lib/testlib.sh"
. "$(dirname "$0")/../integration/peer/daemon_lib.sh"
MIB=${1:-256}
BENCH=$CHUNKFLY_BUILD/tests/piece_bench
[ -x "$BENCH" ] || fail "$BENCH not built (cmake --build build --target piece_bench)"

"$CHUNKFLY_SRC/deploy/make-certs.sh" "$T/pki" peer-1 piece-bench >/dev/null
start_registry 127.0.0.9
REPO=bench/tls
head -c "$((MIB * 1048576))" /dev/urandom >"$T/blob"
push_blob "$REPO" "$T/blob"
SIZE=$(stat -c %s "$T/blob")
TLS_SET=(--set "tls_cert=$T/pki/peer-1.crt" --set "tls_key=$T/pki/peer-1.key"
    --set "tls_ca=$T/pki/ca.crt")

run_bench() { # run_bench [piece_bench TLS args]: prints mib_s
    "$BENCH" peer --addr "${PEER_LISTEN[1]}" --task "$BLOB" --socket "$T/p1.sock" --rounds 3 "$@" |
        tee -a "$T/bench.out" | sed -n 's/.*mib_s=\([0-9.]*\).*/\1/p'
}
stop_peer() {
    kill "${PEER_PID[1]}"
    wait "${PEER_PID[1]}" || fail "peer exit"
}

start_peer 1 --log-level info "${TLS_SET[@]}" --set upload_slots=64
get 1 0 "$SIZE" "$T/o1" || fail "peer read from the origin"
cmp "$T/o1" "$T/blob" || fail "bytes differ"
rm -f "$T/o1"
tls=$(run_bench --tls-cert "$T/pki/piece-bench.crt" --tls-key "$T/pki/piece-bench.key" \
    --tls-ca "$T/pki/ca.crt")
stop_peer
start_peer 1 --log-level info --set upload_slots=64
plain=$(run_bench)
piece=$("$CLIENT_BIN" "$T/p1.sock" stat "$BLOB" 2>/dev/null | sed -n 's/.*piece_size=\([0-9]*\).*/\1/p')
stop_peer
cat "$T/bench.out"
echo "tls bench: size=${MIB}MiB piece=${piece:-?} plain_mib_s=$plain tls_mib_s=$tls" \
    "tls_vs_plain=$(awk -v a="$tls" -v b="$plain" 'BEGIN{printf "%.2f", a/b}')"
