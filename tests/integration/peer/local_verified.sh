#!/bin/bash
# Local reads return verified bytes only unless the client opts in to cut-through (LOCAL_READ
# "uv", docs/protocol.md §3). No scheduler, so no per-piece digest list: a piece can only be
# verified by the whole blob's sha256. The origin is slow (tests/lib/delay_proxy.py at 3 MiB/s)
# and the peer fetches only what readers wait for (fetch_whole_blob=false).
#  A. "uv" read of the first MiB: answered from the first stored piece, long before the blob is
#     complete (the blob is in fact never completed: nobody wants the rest).
#  B. default read of the first MiB of another blob: the daemon fetches the whole blob to verify
#     it and answers only then: when the answer arrives the blob is complete and verified.
#  C. (in the background meanwhile) `chunkfly get --timeout 12` of a blob whose verification
#     takes ~17 s (its own proxy at 256 KiB/s): the daemon's keepalives (an empty LOCAL_DATA every
#     10 s) keep the client's idle timeout from firing; the bytes are right.
#  D. a read that takes the file (LOCAL_READ "fd") of a complete, verified blob gets a read-only
#     descriptor of the daemon's data file (LOCAL_FILE): whole and sub-range reads, the bytes
#     right, writing through it refused; an incomplete blob is still answered with frames; a
#     `chunkfly get` of a cached blob copies from the file (as did C once its blob was verified).
# (A parent lying about a piece never reaching a verified-only reader: daemon_faults.sh B.)
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

start_registry 127.0.0.9
REPO=test/verified
make_blob "$T/a" 6
push_blob "$REPO" "$T/a"
A=$BLOB
make_blob "$T/b" 6
push_blob "$REPO" "$T/b"
B=$BLOB
SIZE=$(stat -c %s "$T/b")
make_blob "$T/c" 4
push_blob "$REPO" "$T/c"
C=$BLOB
cp=$(free_port 127.0.0.9)
bg_start "$T/delay_proxy_c.log" python3 "$CHUNKFLY_SRC/tests/lib/delay_proxy.py" \
    "127.0.0.9:$cp" "$REGISTRY" 0 256
wait_port 127.0.0.9 "$cp"
dp=$(free_port 127.0.0.9)
bg_start "$T/delay_proxy.log" python3 "$CHUNKFLY_SRC/tests/lib/delay_proxy.py" \
    "127.0.0.9:$dp" "$REGISTRY" 0 3072
wait_port 127.0.0.9 "$dp"
REGISTRY=127.0.0.9:$dp # the peer's origin: the slow proxy
start_peer 1 --set fetch_whole_blob=false
ms() { date +%s%3N; }
stat1() { "$CLIENT_BIN" "$T/p1.sock" stat "$1"; }
tc0=$(ms)
"$CHUNKFLY_BIN/chunkfly" get -q --plain-http --verified-only --timeout 12 --peer "$T/p1.sock" \
    "127.0.0.9:$cp/$REPO@$C" -o "$T/oc" 2>"$T/get_c.err" &
gc=$!

note "A. cut-through (uv): bytes before the blob is verified"
t0=$(ms)
BLOB=$A DAEMON_CLIENT_UV=1 get 1 0 1048576 "$T/oa" || fail "uv read"
ta=$(($(ms) - t0))
cmp "$T/oa" <(head -c 1048576 "$T/a") || fail "uv read: bytes differ"
stat1 "$A" | tee "$T/sta"
grep -q "complete=0" "$T/sta" || fail "the uv read waited for the whole blob"
echo "uv read of 1 MiB: $ta ms (whole blob: ~2000 ms at 3 MiB/s)"

note "B. verified only (default): the answer waits for the whole blob's sha256"
t0=$(ms)
BLOB=$B get 1 0 1048576 "$T/ob" || fail "verified read"
tb=$(($(ms) - t0))
stat1 "$B" | tee "$T/stb"
grep -q "complete=1" "$T/stb" || fail "bytes were returned before the blob was verified"
cmp "$T/ob" <(head -c 1048576 "$T/b") || fail "verified read: bytes differ"
echo "verified read of 1 MiB: $tb ms"
[ "$(metric 1 bytes_from_origin_total)" -ge "$SIZE" ] || fail "the whole blob was not fetched"
[ "$ta" -lt "$tb" ] || fail "the uv read ($ta ms) was not faster than the verified one ($tb ms)"

note "C. a verified read longer than the client's idle timeout: kept alive"
wait $gc || fail "chunkfly get --timeout 12 of blob C failed: $(cat "$T/get_c.err")"
tc=$(($(ms) - tc0))
cmp "$T/oc" "$T/c" || fail "blob C differs"
echo "chunkfly get of blob C (verified only, ~17 s at 256 KiB/s) with --timeout 12: $tc ms"
[ "$tc" -gt 12000 ] || fail "blob C took only $tc ms: the idle timeout was not put to the test"

note "a verified read of a complete blob is a cache hit"
BLOB=$B get 1 0 "$SIZE" "$T/ob2" || fail "re-read"
cmp "$T/ob2" "$T/b" || fail "re-read bytes differ"

note "D. a complete, verified blob is handed over as its file"
passed0=$(metric 1 local_files_passed_total)
BLOB=$B DAEMON_CLIENT_FD=1 get 1 0 "$SIZE" "$T/ob3" 2>"$T/ob3.err" || fail "fd read"
grep -q "file passed" "$T/ob3.err" || fail "no LOCAL_FILE for a verified blob: $(cat "$T/ob3.err")"
cmp "$T/ob3" "$T/b" || fail "fd read: bytes differ"
BLOB=$B DAEMON_CLIENT_FD=1 get 1 1000 70000 "$T/ob4" 2>"$T/ob4.err" || fail "fd range read"
grep -q "file passed (70000 bytes)" "$T/ob4.err" || fail "range not passed as a file"
cmp "$T/ob4" <(tail -c +1001 "$T/b" | head -c 70000) || fail "fd range read: bytes differ"
BLOB=$A DAEMON_CLIENT_FD=1 DAEMON_CLIENT_UV=1 get 1 0 1048576 "$T/oa2" 2>"$T/oa2.err" ||
    fail "fd read of an incomplete blob"
grep -q "file passed" "$T/oa2.err" && fail "an incomplete blob was passed as a file"
cmp "$T/oa2" <(head -c 1048576 "$T/a") || fail "incomplete blob: bytes differ"
"$CHUNKFLY_BIN/chunkfly" get -q --plain-http --peer "$T/p1.sock" "$REGISTRY/$REPO@$B" \
    -o "$T/ob5" || fail "chunkfly get of the cached blob B"
cmp "$T/ob5" "$T/b" || fail "chunkfly get of the cached blob B: bytes differ"
passed=$(($(metric 1 local_files_passed_total) - passed0))
echo "reads answered with the file: $passed (want 3)"
[ "$passed" -eq 3 ] || fail "$passed reads were answered with the file, want 3"

peer_alive_or_fail 1
finish_peers
echo PASS
