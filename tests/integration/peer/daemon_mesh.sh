#!/bin/bash
# Real docker-registry + real chunkfly-scheduler + 3 chunkfly-peers on 127.0.0.11-13:
# peer 1 reads a blob (from the origin), peer 2 reads it (from peer 1, checked in the metrics),
# the first verifier publishes the per-piece digest list and peer 3 checks pieces on arrival;
# bytes and sha256 correct everywhere. Then: the scheduler is killed (peers complete a new blob
# from the origin) and restarted (the swarm is rebuilt: a new peer downloads from the others).
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

start_registry 127.0.0.9
REPO=test/mesh
make_blob "$T/blob" 24
push_blob "$REPO" "$T/blob"
SIZE=$(stat -c %s "$T/blob")
start_scheduler
for n in 1 2 3; do start_peer "$n" --set timing.scheduler_retry=1s; done

check_sha() { [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "${BLOB#sha256:}" ] || fail "$1: sha256 differs"; }
wait_complete() { # wait_complete N
    for _ in $(seq 100); do
        "$CLIENT_BIN" "$T/p$1.sock" stat "$BLOB" 2>/dev/null | grep -q complete=1 && return 0
        sleep 0.1
    done
    fail "peer $1: blob not complete+verified"
}

note "peer 1: from the origin"
get 1 0 "$SIZE" "$T/o1" || fail "peer 1 read"
check_sha "$T/o1"
wait_complete 1
[ "$(metric 1 bytes_from_origin_total)" -ge "$SIZE" ] || fail "peer 1 did not fetch from the origin"

note "peer 2: from peer 1"
get 2 0 "$SIZE" "$T/o2" || fail "peer 2 read"
check_sha "$T/o2"
wait_complete 2
o2=$(metric 2 bytes_from_origin_total); p2=$(metric 2 bytes_from_parents_total)
echo "peer 2: origin $o2 parents $p2; peer 1 served $(metric 1 bytes_served_peers_total)"
[ "$p2" -ge "$SIZE" ] || fail "peer 2 got only $p2 bytes from parents"
[ "$o2" = 0 ] || fail "peer 2 fetched $o2 bytes from the origin"
[ "$(metric 1 bytes_served_peers_total)" -gt 0 ] || fail "peer 1 served nothing"
# issue 14's gauges: present, and nothing waits once the blobs are complete
for g in pieces_missing piece_requests_parents piece_requests_origin pieces_waiting_parent \
    pieces_waiting_origin pieces_waiting_origin_mine; do
    [ "$(metric 2 "$g")" = 0 ] || fail "peer 2: $g is '$(metric 2 "$g")' after completion, expected 0"
done
[ "$(metric 1 upload_slots_idle)" = 16 ] || fail "peer 1: upload_slots_idle '$(metric 1 upload_slots_idle)', expected 16 (all idle)"

note "peer 3: digest list known, pieces checked on arrival"
get 3 5000000 3000000 "$T/o3r" || fail "peer 3 range read"
cmp "$T/o3r" <(tail -c +5000001 "$T/blob" | head -c 3000000) || fail "peer 3 range differs"
get 3 0 "$SIZE" "$T/o3" || fail "peer 3 read"
check_sha "$T/o3"
grep -q "digest list received" "$T/peer3.log" || fail "peer 3 did not fetch the digest list"
[ "$(metric 3 bytes_from_origin_total)" = 0 ] || fail "peer 3 used the origin"
# Nothing restarted or moved: no task may have had its origin grants held for a recovery. A
# peer re-asking the scheduler (REGISTER_TASK again while pieces lack a known holder) once
# flagged it as a re-registration, which held every task created in the next 5 s for 0.5 s.
holds=$(curl -fsS "http://$SCHED_HTTP/metrics" | awk '$1=="chunkfly_scheduler_origin_grant_holds_total"{print $2}')
[ "$holds" = 0 ] || fail "scheduler held origin grants $holds time(s) without a restart"

note "scheduler killed: a new blob completes from the origin"
kill -9 "$SCHED_PID"
make_blob "$T/blob2" 6
push_blob "$REPO" "$T/blob2"
start=$(date +%s)
get 1 0 "$(stat -c %s "$T/blob2")" "$T/n1" || fail "read without scheduler"
cmp "$T/n1" "$T/blob2" || fail "bytes differ without scheduler"
echo "completed in $(($(date +%s) - start)) s without a scheduler"

note "scheduler restarted: swarm rebuilt, a fresh peer downloads from the others"
start_scheduler
# peers re-connect (scheduler_retry 1s here) and re-register what they hold
for _ in $(seq 100); do
    [ "$(curl -fsS "http://${PEER_HTTP[3]}/metrics" | awk '$1=="chunkfly_peer_schedulers_connected"{print $2}')" = 1 ] &&
        [ "$(metric 1 schedulers_connected)" = 1 ] && [ "$(metric 2 schedulers_connected)" = 1 ] && break
    sleep 0.1
done
sleep 2.5 # their tasks re-register on the next tick (every 2 s at most)
BLOB=$(printf 'sha256:%s' "$(sha256sum <"$T/blob" | cut -d' ' -f1)")
start_peer 4 --set timing.scheduler_retry=1s
get 4 0 "$SIZE" "$T/o4" || fail "peer 4 read"
check_sha "$T/o4"
p4=$(metric 4 bytes_from_parents_total); o4=$(metric 4 bytes_from_origin_total)
echo "peer 4: parents $p4 origin $o4"
[ "$p4" -ge "$SIZE" ] || fail "peer 4 did not get the blob from the rebuilt swarm"
[ "$o4" = 0 ] || fail "peer 4 used the origin although the swarm holds the blob"
for n in 1 2 3 4; do peer_alive_or_fail "$n"; done
finish_peers
echo PASS
