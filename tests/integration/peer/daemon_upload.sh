#!/bin/bash
# Upload server limits (real registry + scheduler + 3 peers): a slow reader that requests every
# piece and never reads holds one upload slot and no memory (RSS), is cut off after
# upload_piece_timeout; with the other slot two children still complete, at no more than
# upload_bandwidth together, one of them getting BUSY answers.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

start_registry 127.0.0.9
REPO=test/upload
make_blob "$T/blob" 12
push_blob "$REPO" "$T/blob"
SIZE=$(stat -c %s "$T/blob")
start_scheduler
start_peer 1 --set upload_bandwidth=4M --set upload_slots=2 --set upload_piece_timeout=6s
get 1 0 "$SIZE" /dev/null || fail "peer 1 read"
rss() { awk '/VmRSS/{print $2}' "/proc/${PEER_PID[$1]}/status"; }

note "bandwidth: a child downloads at <= 4 MiB/s"
start_peer 2
start=$(date +%s.%N)
get 2 0 "$SIZE" "$T/o2" || fail "peer 2 read"
el=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", b - a}')
cmp "$T/o2" "$T/blob" || fail "peer 2 bytes differ"
p2=$(metric 2 bytes_from_parents_total)
echo "peer 2: $p2 bytes from peer 1 in ${el}s (origin $(metric 2 bytes_from_origin_total))"
# p2 bytes at 4 MiB/s, minus the 1 MiB burst and one piece of debt
min=$(awk -v p="$p2" 'BEGIN{printf "%.3f", (p - 2097152) / 4194304 - 0.2}')
awk -v e="$el" -v m="$min" 'BEGIN{exit !(e >= m)}' || fail "faster than the bandwidth limit: ${el}s < ${min}s"
bg_stop "${PEER_PID[2]}"
sleep 0.5
r0=$(rss 1)

note "slow reader requests all 13 pieces and never reads"
ip=${PEER_LISTEN[1]%:*}; port=${PEER_LISTEN[1]##*:}
(cd "$(dirname "$0")" && exec python3 daemon_upload.py "$ip" "$port" "$BLOB" 13 10) &
slow=$!
# under load (Sanitize build, parallel tests) the reader may take a while to connect: poll
for _ in $(seq 100); do [ "$(metric 1 upload_slots_used)" = 1 ] && break; sleep 0.1; done
sleep 0.5 # and let it settle: no second slot may be taken meanwhile
[ "$(metric 1 upload_slots_used)" = 1 ] || fail "slow reader holds $(metric 1 upload_slots_used) slots"
r1=$(rss 1)
echo "peer 1 RSS: ${r0} kB before, ${r1} kB with the slow reader"
[ $((r1 - r0)) -lt 4096 ] || fail "slow reader pinned $((r1 - r0)) kB"

note "slots: two children share the one free slot (BUSY answers), both complete"
start_peer 3
start_peer 4
get 4 0 "$SIZE" "$T/o4" & g4=$!
get 3 0 "$SIZE" "$T/o3" || fail "peer 3 read"
wait $g4 || fail "peer 4 read"
cmp "$T/o3" "$T/blob" || fail "peer 3 bytes differ"
cmp "$T/o4" "$T/blob" || fail "peer 4 bytes differ"
echo "busy answers $(metric 1 upload_busy_total)"
[ "$(metric 1 upload_busy_total)" -gt 0 ] || fail "no BUSY answer with one free slot for two children"

note "slow reader cut off after upload_piece_timeout"
for _ in $(seq 100); do [ "$(metric 1 upload_slots_used)" = 0 ] && break; sleep 0.1; done
[ "$(metric 1 upload_slots_used)" = 0 ] || fail "slot still held"
wait $slow 2>/dev/null || true
peer_alive_or_fail 1
finish_peers
echo PASS
