#!/bin/bash
# --quota: three 9 MiB blobs into a 20 MiB cache (low watermark 90 %): the least recently used
# unpinned blob is evicted, a pinned one stays; reading the evicted blob again fetches it again
# (the finished task in memory notices its blob left the cache).
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

start_registry 127.0.0.9
REPO=test/quota
make_blob "$T/a" 9; push_blob "$REPO" "$T/a"; D_a=$BLOB
make_blob "$T/b" 9; push_blob "$REPO" "$T/b"; D_b=$BLOB
make_blob "$T/c" 9; push_blob "$REPO" "$T/c"; D_c=$BLOB
SIZE=$(stat -c %s "$T/a")
start_peer 1 --quota 20M
rd() { BLOB=$2 get 1 0 "$SIZE" "$T/out-$1" || fail "read $1"; cmp "$T/out-$1" "$T/$1" || fail "$1 differs"; }
wait_done() {
    for _ in $(seq 100); do
        "$CLIENT_BIN" "$T/p1.sock" stat "$1" 2>/dev/null | grep -q complete=1 && return 0
        sleep 0.1
    done
    fail "$1 not complete"
}
rd a "$D_a"; wait_done "$D_a"
"$CLIENT_BIN" "$T/p1.sock" pin "$D_a" >/dev/null || fail "pin a"
rd b "$D_b"; wait_done "$D_b"
sleep 0.3
rd c "$D_c"; wait_done "$D_c"
for _ in $(seq 50); do [ "$(metric 1 cache_evictions_total)" -ge 1 ] && break; sleep 0.1; done
"$CLIENT_BIN" "$T/p1.sock" list | tee "$T/list"
[ "$(metric 1 cache_evictions_total)" -ge 1 ] || fail "nothing evicted"
grep -q "$D_a" "$T/list" || fail "pinned blob a was evicted"
grep -q "$D_c" "$T/list" || fail "newest blob c was evicted"
grep -q "$D_b" "$T/list" && fail "LRU blob b still cached"
[ "$(metric 1 cache_bytes)" -le $((20 << 20)) ] || fail "cache over quota: $(metric 1 cache_bytes)"

note "re-read of the evicted blob"
before=$(metric 1 bytes_from_origin_total)
"$CLIENT_BIN" "$T/p1.sock" unpin "$D_a" >/dev/null || fail "unpin a"
rd b "$D_b"
[ "$(metric 1 bytes_from_origin_total)" -gt "$before" ] || fail "b was not fetched again"
peer_alive_or_fail 1
finish_peers
echo PASS
