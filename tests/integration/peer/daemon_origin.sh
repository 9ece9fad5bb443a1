#!/bin/bash
# chunkfly-peer without a scheduler: local API reads come from a real docker-registry (back to
# source, HTTP Range), bytes and sha256 correct, cut-through ranges, cache hit on re-read and
# after a restart (SIGTERM = clean exit 0, index flushed), stat/list/pin, clear errors for an
# unknown blob, an unreachable and a hung origin (within 10 s).
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

start_registry 127.0.0.9
REPO=test/peer
make_blob "$T/blob" 9
push_blob "$REPO" "$T/blob"
note "blob $BLOB ($(stat -c %s "$T/blob") bytes)"

start_peer 1
note "range read in the middle (cut-through, as the FUSE reader asks: covering pieces only)"
DAEMON_CLIENT_UV=1 get 1 3000000 100000 "$T/range" || fail "range read failed"
cmp "$T/range" <(tail -c +3000001 "$T/blob" | head -c 100000) || fail "range bytes differ"

note "whole-blob read"
get 1 0 "$(stat -c %s "$T/blob")" "$T/out" || fail "read failed"
[ "$(sha256sum <"$T/out" | cut -d' ' -f1)" = "${BLOB#sha256:}" ] || fail "sha256 differs"
[ "$(metric 1 bytes_from_origin_total)" -ge "$(stat -c %s "$T/blob")" ] || fail "origin bytes"

note "stat / list / pin"
for _ in $(seq 50); do
    "$CLIENT_BIN" "$T/p1.sock" stat "$BLOB" | grep -q complete=1 && break
    sleep 0.1
done
"$CLIENT_BIN" "$T/p1.sock" stat "$BLOB" | grep -q complete=1 || fail "not complete+verified"
"$CLIENT_BIN" "$T/p1.sock" list | grep -q "$BLOB" || fail "list misses the blob"
"$CLIENT_BIN" "$T/p1.sock" pin "$BLOB" | grep -q ok || fail "pin"
"$CLIENT_BIN" "$T/p1.sock" stat "$BLOB" | grep -q pinned=1 || fail "not pinned"
"$CLIENT_BIN" "$T/p1.sock" unpin "$BLOB" | grep -q ok || fail "unpin"

note "scheme prefix in the origin: http:// is used, https:// refused by this plain-http registry"
make_blob "$T/blob2" 1
B1=$BLOB; push_blob "$REPO" "$T/blob2"; B2=$BLOB; BLOB=$B1
out=$("$CLIENT_BIN" "$T/p1.sock" read "$B2" "https://$REGISTRY/$REPO@$B2" 0 10 /dev/null) &&
    fail "https:// origin against a plain-http registry succeeded"
echo "$out" | grep -q "^error 10:" || fail "expected ORIGIN error, got $out"
"$CLIENT_BIN" "$T/p1.sock" read "$B2" "http://$REGISTRY/$REPO@$B2" 0 "$(stat -c %s "$T/blob2")" "$T/out-b2" ||
    fail "http:// origin read failed"
cmp "$T/out-b2" "$T/blob2" || fail "http:// origin bytes differ"

note "fetch_whole_blob=false: a range read caches only its piece; after a restart the rest is fetched, the cached piece is not"
start_peer 2 --set fetch_whole_blob=false
DAEMON_CLIENT_UV=1 get 2 2000000 10 /dev/null || fail "peer 2 range read"
sleep 0.5
"$CLIENT_BIN" "$T/p2.sock" stat "$BLOB" | tee "$T/st2"
grep -q "have=1 " "$T/st2" || fail "a 10-byte read cached more than its piece"
kill "${PEER_PID[2]}"; wait "${PEER_PID[2]}" || fail "peer 2 exit code"
start_peer 2 --set fetch_whole_blob=false
get 2 0 "$(stat -c %s "$T/blob")" "$T/out-p2" || fail "read of a partly cached blob"
cmp "$T/out-p2" "$T/blob" || fail "peer 2 bytes differ"
[ "$(metric 2 bytes_from_origin_total)" = $(($(stat -c %s "$T/blob") - 1048576)) ] ||
    fail "peer 2 fetched $(metric 2 bytes_from_origin_total) bytes, want all but the cached piece"

note "cache hit: re-read with the registry gone"
bg_stop "$REGISTRY_PID"
get 1 0 "$(stat -c %s "$T/blob")" "$T/out2" || fail "cached read failed"
cmp "$T/out" "$T/out2" || fail "cached bytes differ"
[ "$(metric 1 cache_hits_total)" -ge 1 ] || fail "no cache hit counted"

note "SIGTERM: clean exit 0; restart serves from the cache"
kill "${PEER_PID[1]}"
wait "${PEER_PID[1]}"; rc=$?
[ $rc = 0 ] || fail "exit code $rc after SIGTERM"
start_peer 1
get 1 0 "$(stat -c %s "$T/blob")" "$T/out3" || fail "read after restart failed"
cmp "$T/out" "$T/out3" || fail "bytes after restart differ"

note "unknown blob, registry down: clear error within 10 s"
start=$(date +%s)
out=$("$CLIENT_BIN" "$T/p1.sock" read "sha256:$(printf '%064d' 1)" "$REGISTRY/$REPO@sha256:$(printf '%064d' 1)" 0 10 /dev/null) && fail "read of an unreachable origin succeeded"
el=$(($(date +%s) - start))
echo "$out"
echo "$out" | grep -q "^error 10:" || fail "expected an ORIGIN error, got: $out"
[ "$el" -le 10 ] || fail "error took ${el}s"

note "hung origin (accepts, never answers): clear error within 10 s"
hport=$(free_port 127.0.0.9)
bg_start "$T/hung.log" python3 -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.9', $hport)); s.listen(64)
held = []
while True: held.append(s.accept()[0])"
wait_port 127.0.0.9 "$hport"
start=$(date +%s)
out=$("$CLIENT_BIN" "$T/p1.sock" read "sha256:$(printf '%064d' 3)" "127.0.0.9:$hport/x/y@sha256:$(printf '%064d' 3)" 0 10 /dev/null) && fail "read of a hung origin succeeded"
el=$(($(date +%s) - start))
echo "$out"
echo "$out" | grep -q "^error 10:" || fail "expected an ORIGIN error, got: $out"
[ "$el" -le 10 ] || fail "hung origin error took ${el}s"

note "bad request: origin names another digest"
out=$("$CLIENT_BIN" "$T/p1.sock" read "$BLOB" "$REGISTRY/$REPO@sha256:$(printf '%064d' 2)" 0 10 /dev/null) && fail "mismatching origin accepted"
echo "$out" | grep -q "^error 2:" || fail "expected BAD_MESSAGE, got $out"
peer_alive_or_fail 1
finish_peers
echo PASS
