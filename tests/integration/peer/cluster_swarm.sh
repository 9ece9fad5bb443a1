#!/usr/bin/env bash
# 4 peers + scheduler + docker-registry on loopback: all 4 `chunkfly get` the same blob at the
# same moment. Every copy's sha256 must match, and the registry (its access log) must have
# served about one copy: origin bytes / blob size <= 1.5.
# Size: $CHUNKFLY_SWARM_MIB, default 200 MiB (64 MiB under Sanitize); printed.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/peer/cluster_lib.sh"

MIB=${CHUNKFLY_SWARM_MIB:-$(is_sanitize && echo 64 || echo 200)}
PEERS=4
note "blob size ${MIB} MiB, $PEERS peers (set CHUNKFLY_SWARM_MIB to change)"
cluster_up --peers $PEERS --schedulers 1

random_file "$T/blob" "$MIB" swarm
digest=$(push_blob "$REGISTRY" swarm/app "$T/blob")
size=$(stat -c %s "$T/blob")
before=$(registry_blob_bytes)
note "pushed $digest; registry served $before blob bytes so far"

note "all $PEERS peers get it at once"
t0=$(date +%s.%N)
pids=()
for i in $(seq $PEERS); do
    eval "sock=\$PEER_SOCK_$i"
    "$CF" get -q --peer "$sock" "$REGISTRY/swarm/app@$digest" -o "$T/out$i" >"$T/get$i.log" 2>&1 &
    pids+=($!)
done
rc=0
for i in $(seq $PEERS); do
    if ! wait "${pids[$((i - 1))]}"; then
        echo "peer $i: chunkfly get failed:" >&2
        cat "$T/get$i.log" >&2
        rc=1
    fi
done
t1=$(date +%s.%N)
[ $rc = 0 ] || fail "some downloads failed"
want=$(sha_of "$T/blob")
for i in $(seq $PEERS); do
    [ "$(sha_of "$T/out$i")" = "$want" ] || fail "peer $i: copy differs from the blob"
    [ ! -e "$T/out$i.part" ] || fail "peer $i: $T/out$i.part left behind"
done

after=$(registry_blob_bytes)
origin=$((after - before))
ratio=$(awk -v o="$origin" -v s="$size" 'BEGIN{printf "%.3f", o/s}')
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
for i in $(seq $PEERS); do
    note "peer $i: from parents $(metric "$i" chunkfly_peer_bytes_from_parents_total) B, from origin $(metric "$i" chunkfly_peer_bytes_from_origin_total) B, served to peers $(metric "$i" chunkfly_peer_bytes_served_peers_total) B"
done
echo "swarm: peers=$PEERS size=${MIB}MiB origin_bytes=$origin ratio=$ratio (origin bytes / blob size) all_done=${secs}s"
awk -v r="$ratio" 'BEGIN{exit !(r <= 1.5)}' ||
    fail "the registry served $ratio x the blob size to $PEERS peers (limit 1.5)"
awk -v r="$ratio" 'BEGIN{exit !(r >= 0.99)}' ||
    fail "the registry's access log shows only $ratio x the blob: log parsing broken?"
note "ok"
