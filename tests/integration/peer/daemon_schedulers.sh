#!/bin/bash
# Two schedulers (rendezvous over the list): every peer registers a task with the same one
# (checked in /status), the mesh works through it; when it is killed, the peers' tasks move to
# the other scheduler (health: failed connection) and a new peer still gets the blob from the
# mesh, not the origin.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

start_registry 127.0.0.9
REPO=test/scheds
make_blob "$T/blob" 16
push_blob "$REPO" "$T/blob"
SIZE=$(stat -c %s "$T/blob")
start_scheduler; S0=$SCHED; P0=$SCHED_PID
SCHED_PORT='' start_scheduler; S1=$SCHED; P1=$SCHED_PID
SCHED=
args=(--scheduler "$S0" --scheduler "$S1" --set timing.scheduler_retry=1s)
start_peer 1 "${args[@]}"
start_peer 2 "${args[@]}"
check_sha() { [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "${BLOB#sha256:}" ] || fail "$1: sha256 differs"; }
sched_of() { curl -fsS "http://${PEER_HTTP[$1]}/status" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print([t["scheduler"] for t in d["tasks"] if t["id"] == sys.argv[1]][0])' "$BLOB"; }

get 1 0 "$SIZE" "$T/o1" || fail "peer 1 read"
get 2 0 "$SIZE" "$T/o2" || fail "peer 2 read"
check_sha "$T/o2"
a=$(sched_of 1); b=$(sched_of 2)
echo "task on scheduler index $a (peer 1) / $b (peer 2)"
[ "$a" = "$b" ] && [ "$a" -ge 0 ] || fail "peers disagree on the scheduler"
[ "$(metric 2 bytes_from_origin_total)" = 0 ] || fail "peer 2 used the origin"

note "kill the task's scheduler"
if [ "$a" = 0 ]; then kill -9 "$P0"; else kill -9 "$P1"; fi
for _ in $(seq 100); do
    c=$(sched_of 1)
    [ "$c" != "$a" ] && [ "$c" != -1 ] && break
    sleep 0.1
done
echo "peer 1 moved the task to scheduler index $(sched_of 1)"
[ "$(sched_of 1)" != "$a" ] || fail "task did not move"
sleep 2.5 # peer 2's seed re-registers too (tick)
start_peer 3 "${args[@]}"
get 3 0 "$SIZE" "$T/o3" || fail "peer 3 read"
check_sha "$T/o3"
echo "peer 3: parents $(metric 3 bytes_from_parents_total) origin $(metric 3 bytes_from_origin_total)"
[ "$(metric 3 bytes_from_origin_total)" = 0 ] || fail "peer 3 used the origin"
for n in 1 2 3; do peer_alive_or_fail "$n"; done
finish_peers
echo PASS
