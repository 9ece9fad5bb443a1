#!/bin/bash
# The cache disk failing under a running peer (no scheduler: origin fetches, so the disk is the
# only thing that goes wrong).
#  A. fdatasync fails for one blob (test fault CHUNKFLY_FAULT_FSYNC_FAIL, -DCHUNKFLY_FAULTS=ON):
#     two blobs download at once; the other blob's pieces still become durable, the failed
#     blob's dropped pieces are fetched again, both reads return the right bytes, and after
#     kill -9 and a restart both blobs are complete in the index.
#  B. a full disk (a 24 MiB tmpfs as the cache dir): unpinned blobs are evicted to make room;
#     with everything pinned, a read is served without caching instead of failing.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

faults_peer_bin
start_registry 127.0.0.9
REPO=test/disk
check_sha() { [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$2" ] || fail "$1: sha256 differs"; }
complete() { "$CLIENT_BIN" "$T/p$1.sock" stat "$2" 2>/dev/null | grep -q complete=1; }

note "A. a failed fdatasync loses only its own blob's unsynced pieces, which are fetched again"
make_blob "$T/x" 24
push_blob "$REPO" "$T/x"
X=$BLOB
make_blob "$T/y" 24
push_blob "$REPO" "$T/y"
Y=$BLOB
CHUNKFLY_FAULT_FSYNC_FAIL=$X CHUNKFLY_FAULT_FSYNC_FAIL_COUNT=2 PEER_EXEC=$FAULTY \
    start_peer 1 --set fetch_whole_blob=true
BLOB=$X get 1 0 "$(stat -c %s "$T/x")" "$T/ox" & gx=$!
BLOB=$Y get 1 0 "$(stat -c %s "$T/y")" "$T/oy" || fail "read of y"
wait $gx || fail "read of x"
check_sha "$T/ox" "${X#sha256:}"
check_sha "$T/oy" "${Y#sha256:}"
for _ in $(seq 200); do complete 1 "$X" && complete 1 "$Y" && break; sleep 0.1; done
complete 1 "$X" || fail "x never completed"
complete 1 "$Y" || fail "y never completed"
grep -q "fdatasync of blob ${X#sha256:}.*failed" "$T/peer1.log" || fail "the fault did not fire"
grep -q "fetching them again\|fetching it again" "$T/peer1.log" ||
    note "the failed sync dropped no piece the task still needed (pieces were re-synced)"
grep "fetching .* again\|dropping its unsynced" "$T/peer1.log" | head -3
# durable: a kill -9 right now must find both blobs complete after a restart
kill -9 "${PEER_PID[1]}"
wait "${PEER_PID[1]}" 2>/dev/null || true
start_peer 1
complete 1 "$X" || fail "x not complete after kill -9 and restart"
complete 1 "$Y" || fail "y not complete after kill -9 and restart"
BLOB=$X get 1 0 "$(stat -c %s "$T/x")" "$T/ox2" || fail "re-read of x"
check_sha "$T/ox2" "${X#sha256:}"
[ "$(metric 1 bytes_from_origin_total)" = 0 ] || fail "the restarted peer fetched again"

note "B. full disk: evict unpinned blobs, else serve without caching"
need_root
mkdir -p "$T/cache2"
mount -t tmpfs -o size=24m tmpfs "$T/cache2" 2>/dev/null || skip "cannot mount a tmpfs here"
CF_MOUNTS+=("$T/cache2")
start_peer 2
for k in a b; do
    make_blob "$T/$k" 9
    push_blob "$REPO" "$T/$k"
    eval "B_$k=\$BLOB"
    get 2 0 "$(stat -c %s "$T/$k")" "$T/o$k" || fail "read of $k"
    check_sha "$T/o$k" "${BLOB#sha256:}"
done
for _ in $(seq 100); do complete 2 "$B_b" && break; sleep 0.1; done
make_blob "$T/c" 12
push_blob "$REPO" "$T/c"
B_c=$BLOB
get 2 0 "$(stat -c %s "$T/c")" "$T/oc" || fail "read of c on a full disk"
check_sha "$T/oc" "${B_c#sha256:}"
for _ in $(seq 100); do complete 2 "$B_c" && break; sleep 0.1; done
complete 2 "$B_c" || fail "c was not cached after eviction"
complete 2 "$B_a" && fail "a was not evicted to make room"
"$CLIENT_BIN" "$T/p2.sock" pin "$B_c" || fail "pin c"
complete 2 "$B_b" && { "$CLIENT_BIN" "$T/p2.sock" pin "$B_b" || fail "pin b"; }
make_blob "$T/d" 14
push_blob "$REPO" "$T/d"
B_d=$BLOB
# no digest list (no scheduler) and no room to hash the blob: a verified-only read is refused,
# a cut-through reader (the FUSE reader checks its chunks) is served from memory
out=$(get 2 0 "$(stat -c %s "$T/d")" "$T/od") && fail "verified-only read of d served unverified bytes"
echo "$out" | grep -q "^error 12: cache full" || fail "expected NO_SPACE (cache full), got: $out"
DAEMON_CLIENT_UV=1 get 2 0 "$(stat -c %s "$T/d")" "$T/od" ||
    fail "read of d with the disk full of pinned blobs"
check_sha "$T/od" "${B_d#sha256:}"
grep -q "cache full" "$T/peer2.log" || fail "no 'cache full' notice"
complete 2 "$B_c" || fail "pinned c was evicted"
df -h "$T/cache2" | tail -1
peer_alive_or_fail 1
peer_alive_or_fail 2
finish_peers
echo PASS
