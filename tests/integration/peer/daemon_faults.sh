#!/bin/bash
# A lying parent: peer 1 runs with the test-only fault CHUNKFLY_FAULT_CORRUPT_UPLOAD=1 (flips
# bytes of every piece it uploads; compiled only with -DCHUNKFLY_FAULTS=ON).
#  A. list known: peer 1 verified the blob from the origin and published the digest list; peer 2
#     checks each piece from peer 1 on arrival, reports bad-parent, bans it, completes correct.
#  B. no list yet: peers 1 and 3 download a new blob at the same time (each gets origin grants
#     and relays to the other); peer 3's whole-blob check fails (or the list arrives first), it
#     bans peer 1 and completes correct. Peer 3's reader asks for verified bytes only (the
#     default): the liar's bytes never reach it, its first read is already correct.
#  C. repeated lies: after lying in ban_after_lies (2 here) tasks, peer 2 ignores peer 1 for
#     every task (no more mismatches, no more requests to it).
#  D. `chunkfly get` (cut-through reads, its own sha256) through a fresh peer 4 relaying a new
#     blob with peer 1: the file is right, a bad byte only costs a verified-only second read.
#  E. the same, forced: peer 5 lies and never publishes a digest list
#     (CHUNKFLY_FAULT_NO_DIGEST_PUBLISH=1); once it holds a new blob, `chunkfly get` through a
#     fresh peer 6 takes the lies (no list to check them on arrival), its own sha256 fails, it
#     removes its .part and reads again, verified bytes only: peer 6's whole-blob check fails,
#     it bans peer 5, fetches from the origin, and the file is right.
# The faults binary: see faults_peer_bin in daemon_lib.sh.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

faults_peer_bin

start_registry 127.0.0.9
REPO=test/faults
make_blob "$T/blob" 12
push_blob "$REPO" "$T/blob"
SIZE=$(stat -c %s "$T/blob")
start_scheduler
CHUNKFLY_FAULT_CORRUPT_UPLOAD=1 PEER_EXEC=$FAULTY start_peer 1
start_peer 2 --set ban_after_lies=2
start_peer 3
check_sha() { [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$2" ] || fail "$1: sha256 differs"; }

note "A. digest list known: the lie is caught piece by piece"
get 1 0 "$SIZE" "$T/o1" || fail "peer 1 read"
check_sha "$T/o1" "${BLOB#sha256:}"
for _ in $(seq 50); do grep -q "digest list published" "$T/peer1.log" && break; sleep 0.1; done
grep -q "digest list published" "$T/peer1.log" || fail "peer 1 did not publish the digest list"
get 2 0 "$SIZE" "$T/o2" || fail "peer 2 read"
check_sha "$T/o2" "${BLOB#sha256:}"
echo "peer 2: mismatches $(metric 2 digest_mismatches_total) bans $(metric 2 bans_total) origin $(metric 2 bytes_from_origin_total) parents $(metric 2 bytes_from_parents_total)"
[ "$(metric 2 bans_total)" -ge 1 ] || fail "peer 2 did not ban the lying parent"
[ "$(metric 2 digest_mismatches_total)" -ge 1 ] || fail "no digest mismatch counted"
grep -q "served bad bytes" "$T/peer2.log" || fail "no ban logged"

note "B. no digest list yet: relayed bytes, whole-blob check, culprit found and banned"
make_blob "$T/blob2" 40
push_blob "$REPO" "$T/blob2"
SIZE2=$(stat -c %s "$T/blob2")
get 1 0 "$SIZE2" "$T/b1" & g1=$!
# relayed pieces are stored before they can be verified; a verified-only reader (no "uv") gets
# them only once checked, so not even this first read may return the liar's bytes
get 3 0 "$SIZE2" "$T/b3" || fail "peer 3 read"
check_sha "$T/b3" "${BLOB#sha256:}"
wait $g1 || fail "peer 1 read"
check_sha "$T/b1" "${BLOB#sha256:}"
for _ in $(seq 300); do
    "$CLIENT_BIN" "$T/p3.sock" stat "$BLOB" 2>/dev/null | grep -q complete=1 && break
    sleep 0.1
done
"$CLIENT_BIN" "$T/p3.sock" stat "$BLOB" | grep -q complete=1 || fail "peer 3 never completed"
get 3 0 "$SIZE2" "$T/b3" || fail "peer 3 re-read"
check_sha "$T/b3" "${BLOB#sha256:}"
echo "peer 3: mismatches $(metric 3 digest_mismatches_total) blob mismatches $(metric 3 blob_mismatches_total) bans $(metric 3 bans_total) parents $(metric 3 bytes_from_parents_total)"
if [ "$(metric 3 bytes_from_parents_total)" -gt 0 ] || [ "$(metric 3 bans_total)" -gt 0 ]; then
    [ "$(metric 3 bans_total)" -ge 1 ] || fail "peer 3 took bytes from the liar and did not ban it"
else
    note "peer 3 happened to take nothing from peer 1 (all origin grants): nothing to catch"
fi

note "C. a second lie to peer 2 bans peer 1 for all tasks"
for k in 3 4; do
    make_blob "$T/blob$k" 6
    push_blob "$REPO" "$T/blob$k"
    get 1 0 "$(stat -c %s "$T/blob$k")" /dev/null || fail "peer 1 read of blob $k"
    for _ in $(seq 50); do
        [ "$(grep -c "digest list published" "$T/peer1.log")" -ge $((k)) ] && break
        sleep 0.1
    done
    m0=$(metric 2 digest_mismatches_total)
    get 2 0 "$(stat -c %s "$T/blob$k")" "$T/c$k" || fail "peer 2 read of blob $k"
    check_sha "$T/c$k" "${BLOB#sha256:}"
    m1=$(metric 2 digest_mismatches_total)
    echo "blob $k: peer 2 mismatches $m0 -> $m1"
    if [ "$k" = 3 ]; then
        [ "$m1" -gt "$m0" ] || fail "peer 2 was not lied to on blob 3"
        grep -q "lied in 2 tasks: banned for every task" "$T/peer2.log" || fail "no global ban"
    else
        [ "$m1" = "$m0" ] || fail "peer 2 still took pieces from the banned parent"
    fi
done
note "D. chunkfly get (cut-through by default) through a peer that may take the liar's bytes"
# No digest list: peer 4 relays with peer 1 as in B, and `chunkfly get` takes bytes as they
# arrive. Whatever it got, the file gets its name only with the right sha256: a bad byte from
# the liar fails the command's own hash, and it reads again, verified bytes only.
start_peer 4
make_blob "$T/blob5" 40
push_blob "$REPO" "$T/blob5"
get 1 0 "$(stat -c %s "$T/blob5")" /dev/null & g1=$!
"$CHUNKFLY_BIN/chunkfly" get -q --plain-http --peer "$T/p4.sock" "$REGISTRY/$REPO@$BLOB" \
    -o "$T/d4" 2>"$T/get_d.err" || fail "chunkfly get through peer 4: $(cat "$T/get_d.err")"
wait $g1 || fail "peer 1 read of blob 5"
check_sha "$T/d4" "${BLOB#sha256:}"
[ ! -e "$T/d4.part" ] || fail "chunkfly get left $T/d4.part"
echo "peer 4: blob mismatches $(metric 4 blob_mismatches_total) bans $(metric 4 bans_total) parents $(metric 4 bytes_from_parents_total); get: $(grep -c "reading again, verified bytes only" "$T/get_d.err") verified re-read(s)"
if grep -q "reading again" "$T/get_d.err"; then
    [ "$(metric 4 bans_total)" -ge 1 ] || fail "bad bytes reached the get but peer 4 banned nobody"
fi
note "E. chunkfly get takes a liar's bytes before any list exists: read again, verified only"
CHUNKFLY_FAULT_CORRUPT_UPLOAD=1 CHUNKFLY_FAULT_NO_DIGEST_PUBLISH=1 PEER_EXEC=$FAULTY start_peer 5
start_peer 6
make_blob "$T/blob6" 8
push_blob "$REPO" "$T/blob6"
get 5 0 "$(stat -c %s "$T/blob6")" /dev/null || fail "peer 5 read of blob 6"
for _ in $(seq 50); do [ "$(metric 5 tasks_completed_total)" -ge 1 ] && break; sleep 0.1; done
"$CHUNKFLY_BIN/chunkfly" get -q --plain-http --peer "$T/p6.sock" "$REGISTRY/$REPO@$BLOB" \
    -o "$T/e6" 2>"$T/get_e.err" || fail "chunkfly get through peer 6: $(cat "$T/get_e.err")"
cat "$T/get_e.err"
check_sha "$T/e6" "${BLOB#sha256:}"
[ ! -e "$T/e6.part" ] || fail "chunkfly get left $T/e6.part"
echo "peer 6: blob mismatches $(metric 6 blob_mismatches_total) bans $(metric 6 bans_total) parents $(metric 6 bytes_from_parents_total) origin $(metric 6 bytes_from_origin_total)"
grep -q "reading again, verified bytes only" "$T/get_e.err" ||
    fail "the get never saw the liar's bytes (peer 6 took $(metric 6 bytes_from_parents_total) bytes from parents): the re-read path was not exercised"
[ "$(metric 6 blob_mismatches_total)" -ge 1 ] || fail "peer 6 counted no blob mismatch"
[ "$(metric 6 bans_total)" -ge 1 ] || fail "peer 6 banned nobody"

for n in 1 2 3 4 5 6; do peer_alive_or_fail "$n"; done
finish_peers
echo PASS
