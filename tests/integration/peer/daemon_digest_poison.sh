#!/bin/bash
# A poisoned digest list: a lying host registers a blob, claims every piece and publishes random
# per-piece digests before any honest peer. Peer 1 then downloads it: the origin's bytes disagree
# with the list, the origin wins (the list is dropped here and at the scheduler, the download
# completes with the right bytes); peer 2 takes the blob from peer 1 and nobody is banned. The
# liar cannot publish again for that task. (Before: peer 1's download failed.)
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

start_registry 127.0.0.9
REPO=test/poison
make_blob "$T/blob" 8
push_blob "$REPO" "$T/blob"
SIZE=$(stat -c %s "$T/blob")
start_scheduler

note "the liar publishes random digests for $BLOB (8 pieces of 1 MiB)"
coproc LIAR { python3 "$(dirname "$0")/poison_digests.py" "$SCHED" "$BLOB" "$REGISTRY/$REPO@$BLOB" "$SIZE" 1048576; }
read -r -t 20 -u "${LIAR[0]}" line || fail "the liar could not publish"
[ "$line" = published ] || fail "liar: $line"

for n in 1 2; do start_peer "$n" --set timing.scheduler_retry=1s; done
note "peer 1: the origin contradicts the list; the download completes"
get 1 0 "$SIZE" "$T/o1" || fail "peer 1 read failed (the poisoned list won)"
cmp "$T/blob" "$T/o1" || fail "peer 1 bytes differ"
d1=$(metric 1 digest_lists_discredited_total)
echo "peer 1: lists discredited $d1, bans $(metric 1 bans_total)"
[ "$d1" -ge 1 ] || fail "peer 1 did not discredit the list"
grep -q "disagrees with the scheduler's digest list" "$T/peer1.log" || fail "no log line naming the list"

note "peer 2: from peer 1, nobody banned"
get 2 0 "$SIZE" "$T/o2" || fail "peer 2 read"
cmp "$T/blob" "$T/o2" || fail "peer 2 bytes differ"
echo "peer 2: parents $(metric 2 bytes_from_parents_total), origin $(metric 2 bytes_from_origin_total), bans $(metric 2 bans_total)"
[ "$(metric 2 bans_total)" = 0 ] || fail "peer 2 banned an honest parent"
[ "$(metric 1 bans_total)" = 0 ] || fail "peer 1 banned someone"
grep -q "list dropped" "$T"/sched.log.* || fail "the scheduler did not drop the list"

exec {LIAR[1]}>&-
wait "$LIAR_PID" 2>/dev/null || true
finish_peers
echo PASS
