#!/usr/bin/env bash
# A parent killed mid-transfer: peer 1 holds a 32 MiB blob; peers 2..4 fetch it at once and
# peer 1 is SIGKILLed at a random moment. Every download must complete with the right bytes
# (other parents or the origin take over). 20 rounds, each with a fresh blob and a random kill
# delay; the seed is printed ($CHUNKFLY_KILL_SEED replays a run, $CHUNKFLY_KILL_ROUNDS and
# $CHUNKFLY_KILL_MIB change the size of the test).
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/peer/cluster_lib.sh"

SEED=${CHUNKFLY_KILL_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
ROUNDS=${CHUNKFLY_KILL_ROUNDS:-20}
MIB=${CHUNKFLY_KILL_MIB:-32}
RANDOM=$SEED
echo "seed $SEED (replay: CHUNKFLY_KILL_SEED=$SEED), $ROUNDS rounds, ${MIB} MiB blobs"
cluster_up --peers 4 --schedulers 1

# Kill window: twice the time one child takes to copy a blob from a parent (measured once, in
# a warm-up), so the moments fall before, during and after the children's downloads.
random_file "$T/warm" "$MIB" warm
d=$(push_blob "$REGISTRY" kill/app "$T/warm")
"$CF" get -q --peer "$PEER_SOCK_1" "$REGISTRY/kill/app@$d" -o "$T/warm.1" || fail "warm-up get on peer 1 failed"
t0=$(date +%s%N)
"$CF" get -q --peer "$PEER_SOCK_2" "$REGISTRY/kill/app@$d" -o "$T/warm.2" || fail "warm-up get on peer 2 failed"
window_ms=$(( ($(date +%s%N) - t0) / 1000000 * 2 + 50 ))
note "kill window 0..${window_ms} ms"

for round in $(seq "$ROUNDS"); do
    random_file "$T/blob" "$MIB" "kill-$SEED-$round"
    d=$(push_blob "$REGISTRY" kill/app "$T/blob")
    want=$(sha_of "$T/blob")
    ref="$REGISTRY/kill/app@$d"
    "$CF" get -q --peer "$PEER_SOCK_1" "$ref" -o "$T/p1" || fail "round $round: parent's own get failed"
    delay=$((RANDOM % window_ms))
    pids=()
    for i in 2 3 4; do
        eval "sock=\$PEER_SOCK_$i"
        "$CF" get -q --timeout 120 --peer "$sock" "$ref" -o "$T/c$i" >"$T/c$i.log" 2>&1 &
        pids+=($!)
    done
    sleep "$(awk -v d="$delay" 'BEGIN{printf "%.3f", d/1000}')"
    ppid=$(peer_pid 1)
    kill -KILL "$ppid"
    rc=0
    for j in 0 1 2; do wait "${pids[$j]}" || rc=1; done
    for i in 2 3 4; do
        if [ $rc != 0 ] || [ "$(sha_of "$T/c$i" 2>/dev/null)" != "$want" ]; then
            cat "$T/c$i.log" >&2
            fail "round $round (seed $SEED, kill after ${delay} ms): peer $i did not get the right bytes"
        fi
    done
    note "round $round: parent killed after ${delay} ms; peers 2-4 complete, sha256 ok"
    "$CLUSTER" restart-peer 1 --state-dir "$CLUSTER_STATE" >/dev/null || fail "restarting peer 1"
    rm -f "$T"/c? "$T/p1"
done
# the mesh must really have been used (else no parent was ever in the middle of a transfer)
mesh=0
for i in 2 3 4; do
    p=$(metric "$i" chunkfly_peer_bytes_from_parents_total)
    o=$(metric "$i" chunkfly_peer_bytes_from_origin_total)
    note "peer $i over all rounds: $p bytes from parents, $o from the origin"
    mesh=$((mesh + p))
done
[ "$mesh" -gt 0 ] || fail "peers 2-4 never fetched from a parent: the test exercised nothing"
echo "parent kill: $ROUNDS rounds ok (seed $SEED)"
