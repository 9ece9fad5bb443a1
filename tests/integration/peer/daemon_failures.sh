#!/bin/bash
# Failures around a transfer (real registry, scheduler, peers on 127.0.0.11-13):
#  1. the parent is killed (-9) mid-transfer: the child completes, bytes correct;
#  2. a downloading peer is killed (-9) and restarted: the download resumes from the pieces its
#     index recorded (fewer than the whole blob fetched again), result correct, index consistent
#     (stat complete, list shows one entry);
#  3. the parents freeze (SIGSTOP) mid-transfer: the per-piece timeout drops them, the child
#     completes from the origin;
#  4. the scheduler is killed mid-download: the child completes (parent + origin) well before
#     the mesh-stall timeout.
# Parents are slowed with upload_bandwidth so the kills land mid-transfer.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

start_registry 127.0.0.9
REPO=test/failures
make_blob "$T/blob" 32
push_blob "$REPO" "$T/blob"
SIZE=$(stat -c %s "$T/blob")
start_scheduler
check_sha() { [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "${BLOB#sha256:}" ] || fail "$1: sha256 differs"; }

start_peer 1 --set upload_bandwidth=8M
get 1 0 "$SIZE" "$T/o1" || fail "peer 1 read"
check_sha "$T/o1"
for _ in $(seq 50); do grep -q "digest list published" "$T/peer1.log" && break; sleep 0.1; done

note "1. parent killed mid-transfer"
start_peer 2 --set mesh_stall=3s --set piece_timeout=3s
get 2 0 "$SIZE" "$T/o2" & g=$!
for _ in $(seq 100); do
    [ "$(metric 2 bytes_from_parents_total)" -gt 4000000 ] && break
    sleep 0.05
done
got=$(metric 2 bytes_from_parents_total)
[ "$got" -lt "$SIZE" ] || fail "transfer finished before the kill (got $got)"
kill -9 "${PEER_PID[1]}"
note "killed peer 1 after $got bytes"
start=$(date +%s)
wait $g || fail "peer 2 read failed after its parent died"
check_sha "$T/o2"
echo "peer 2 completed $(($(date +%s) - start)) s after the kill: parents $(metric 2 bytes_from_parents_total) origin $(metric 2 bytes_from_origin_total)"
[ "$(metric 2 bytes_from_origin_total)" -gt 0 ] || fail "peer 2 never went to the origin"

note "2. downloading peer killed -9 and restarted"
start_peer 1 --set upload_bandwidth=8M # cache still holds the blob: a slow parent again
start_peer 3 --set mesh_stall=30s
# make peer 2 slow too, so peer 3 can only crawl
bg_stop "${PEER_PID[2]}"
get 3 0 "$SIZE" "$T/o3" & g=$!
for _ in $(seq 200); do
    [ "$(metric 3 bytes_from_parents_total 2>/dev/null || echo 0)" -gt 12000000 ] && break
    sleep 0.05
done
before=$(metric 3 bytes_from_parents_total)
sleep 0.5 # let a flush record some pieces durably
kill -9 "${PEER_PID[3]}"
wait $g 2>/dev/null || true
note "killed peer 3 after $before bytes"
start_peer 3 --set mesh_stall=30s
"$CLIENT_BIN" "$T/p3.sock" stat "$BLOB" | tee "$T/stat3"
have=$(sed -n 's/.* have=\([0-9]*\) .*/\1/p' "$T/stat3")
[ -n "$have" ] && [ "$have" -gt 0 ] || fail "the index recorded no piece before the kill"
get 3 0 "$SIZE" "$T/o3" || fail "peer 3 read after restart"
check_sha "$T/o3"
after=$(( $(metric 3 bytes_from_parents_total) + $(metric 3 bytes_from_origin_total) ))
echo "after restart peer 3 fetched $after bytes (blob $SIZE, $have pieces kept)"
[ "$after" -lt "$SIZE" ] || fail "restart fetched the whole blob again"
for _ in $(seq 50); do
    "$CLIENT_BIN" "$T/p3.sock" stat "$BLOB" | grep -q complete=1 && break
    sleep 0.1
done
"$CLIENT_BIN" "$T/p3.sock" stat "$BLOB" | grep -q complete=1 || fail "not complete after resume"
[ "$("$CLIENT_BIN" "$T/p3.sock" list | wc -l)" = 1 ] || fail "list is not one entry"

note "3. parent stopped (SIGSTOP) mid-transfer: per-piece timeout, child completes"
start_peer 5 --set piece_timeout=2s --set mesh_stall=5s
get 5 0 "$SIZE" "$T/o5" & g=$!
for _ in $(seq 200); do
    [ "$(metric 5 bytes_from_parents_total 2>/dev/null || echo 0)" -gt 2000000 ] && break
    sleep 0.05
done
kill -STOP "${PEER_PID[1]}"
kill -STOP "${PEER_PID[3]}" # the other holder: nobody left in the mesh that answers
start=$(date +%s)
wait $g || fail "peer 5 read failed after its parents froze"
el=$(($(date +%s) - start))
kill -CONT "${PEER_PID[1]}" "${PEER_PID[3]}"
check_sha "$T/o5"
echo "peer 5 completed $el s after its parents froze: timeouts $(metric 5 parent_timeouts_total), origin $(metric 5 bytes_from_origin_total)"
[ "$(metric 5 parent_timeouts_total)" -ge 1 ] || fail "no parent timeout counted"
[ "$el" -le 20 ] || fail "took ${el}s after the parents froze"

note "4. scheduler killed mid-download"
# peer 1 was frozen long enough for the scheduler to drop it: wait until it is back
for _ in $(seq 300); do [ "$(metric 1 schedulers_connected)" = 1 ] && break; sleep 0.1; done
[ "$(metric 1 schedulers_connected)" = 1 ] || fail "peer 1 did not reconnect to the scheduler"
make_blob "$T/blob3" 24
push_blob "$REPO" "$T/blob3"
SIZE3=$(stat -c %s "$T/blob3")
get 1 0 "$SIZE3" "$T/s1" || fail "peer 1 read of blob 3"
for _ in $(seq 50); do
    "$CLIENT_BIN" "$T/p1.sock" stat "$BLOB" | grep -q complete=1 && break
    sleep 0.1
done
start_peer 4 --set mesh_stall=60s
get 4 0 "$SIZE3" "$T/s4" & g=$!
for _ in $(seq 200); do
    [ "$(metric 4 bytes_from_parents_total 2>/dev/null || echo 0)" -gt 2000000 ] && break
    sleep 0.05
done
[ "$(metric 4 bytes_from_parents_total)" -gt 0 ] || fail "peer 4 did not start from its parent"
kill -9 "$SCHED_PID"
start=$(date +%s)
wait $g || fail "peer 4 read failed after the scheduler died"
el=$(($(date +%s) - start))
check_sha "$T/s4"
echo "peer 4 completed $el s after the scheduler died: parents $(metric 4 bytes_from_parents_total) origin $(metric 4 bytes_from_origin_total)"
[ "$el" -le 20 ] || fail "took ${el}s without a scheduler"
for n in 1 3 4 5; do peer_alive_or_fail "$n"; done
finish_peers
echo PASS
