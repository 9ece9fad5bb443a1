#!/usr/bin/env bash
# chunkfly-mount through the peer of a local cluster (deploy/local-cluster.sh: docker-registry,
# a scheduler, 2 chunkfly-peer daemons): an image made by chunkfly-image create from a varied
# tar, its blob in the registry, a registry backend with proxy.url = unix:<the peer's socket>.
#  - on peer 1: the mounted tree equals the source; every byte came through the peer;
#  - on peer 2 (its own cache): the same files read back equal while the registry serves no
#    more blob bytes: peer 2 took them from peer 1 (its bytes_from_parents, peer 1's uploads);
#  - peer 2 killed (-9) in the middle of a file, with a read in flight: reads continue from
#    the registry (fallback counted) and every byte is still right.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/mount_lib.sh"
. "$(dirname "$0")/backend_lib.sh"
. "$CHUNKFLY_SRC/tests/integration/peer/cluster_lib.sh"

S=$T/src
make_tree "$S"
rm -f "$S/sock" # GNU tar cannot archive sockets
mkdir "$S/big"
for i in 1 2 3; do random_file "$S/big/r$i" 4 "mount-cluster-$i"; done
tar --xattrs --xattrs-include='*' --numeric-owner -C "$S" -cf "$T/src.tar" .
$MANIFEST "$S" >"$T/src.manifest"
"$CFI" create -l warn -t tar-rafs -B "$T/boot" -D "$T/blobs" -J "$T/create.json" "$T/src.tar" ||
    fail "chunkfly-image create"
id=$(json_blob "$T/create.json")
SIZE=$(stat -c %s "$T/blobs/$id")

cluster_up --peers 2 --schedulers 1
[ "$(push_blob "$REGISTRY" mount/cluster "$T/blobs/$id")" = "sha256:$id" ] || fail "blob digest is not its id"
note "image: $(wc -l <"$T/src.manifest") entries, one $((SIZE / 1024)) KiB blob in http://$REGISTRY/mount/cluster"
# a long timeout: a peer slowed by load must not look dead (a killed one fails at once: reset)
for n in 1 2; do
    sock=PEER_SOCK_$n
    sock=${!sock}
    registry_config "$T/cfg$n.json" "$REGISTRY" mount/cluster '"timeout": 10' \
        "{\"url\": \"unix:$sock\", \"fallback\": true, \"check_interval\": 1}"
done
# mbackend N KEY: a counter of mount N's GET /api/v1/metrics/backend (flat JSON of integers)
mbackend() {
    curl -s --unix-socket "$T/api$1.sock" http://x/api/v1/metrics/backend |
        grep -o "\"$2\":[0-9]*" | cut -d: -f2
}

note "mount 1 through peer 1: tree == source, every byte through the peer"
mount_start "$T/m1.log" "$T/mnt1" --config "$T/cfg1.json" --bootstrap "$T/boot" \
    --cache-dir "$T/cache1" --apisock "$T/api1.sock"
M1=$MOUNT_PID
$MANIFEST "$T/mnt1" >"$T/mnt1.manifest"
diff -u "$T/src.manifest" "$T/mnt1.manifest" >"$T/diff" || fail "mount 1 differs: $(head -30 "$T/diff")"
[ "$(mbackend 1 bytes_from_registry)" = 0 ] || fail "mount 1 read $(mbackend 1 bytes_from_registry) bytes from the registry"
[ "$(mbackend 1 bytes_from_proxy)" -gt 0 ] || fail "mount 1 read nothing through the peer"
# peer 1 holds the whole blob (its background fetch) before peer 2 asks for it
for _ in $(seq 100); do
    "$CF" status --peer "$PEER_SOCK_1" | grep -q "^sha256:$id .* complete" && break
    sleep 0.1
done
"$CF" status --peer "$PEER_SOCK_1" | grep -q "^sha256:$id .* complete" || fail "peer 1 never completed the blob"
reg0=$(registry_blob_bytes)
note "mount 1: $(mbackend 1 bytes_from_proxy) bytes through peer 1; registry served $reg0 blob bytes (blob: $SIZE)"

note "mount 2 through peer 2: the same files from peer 1, nothing more from the registry"
mount_start "$T/m2.log" "$T/mnt2" --config "$T/cfg2.json" --bootstrap "$T/boot" \
    --cache-dir "$T/cache2" --apisock "$T/api2.sock"
$MANIFEST --exclude big "$T/mnt2" >"$T/mnt2.manifest"
awk -F'\t' '$1 != "big" && $1 !~ /^big\//' "$T/src.manifest" >"$T/src-nobig.manifest"
diff -u "$T/src-nobig.manifest" "$T/mnt2.manifest" >"$T/diff" || fail "mount 2 differs: $(head -30 "$T/diff")"
# half of big/r1: the kill comes in the middle of this file
cmp -n $((2 * 1048576)) "$S/big/r1" "$T/mnt2/big/r1" || fail "mount 2: first half of big/r1 differs"
[ "$(registry_blob_bytes)" = "$reg0" ] || fail "registry served $(($(registry_blob_bytes) - reg0)) more blob bytes for mount 2"
[ "$(mbackend 2 bytes_from_registry)" = 0 ] || fail "mount 2 read $(mbackend 2 bytes_from_registry) bytes from the registry"
p2=$(metric 2 chunkfly_peer_bytes_from_parents_total)
[ "$p2" -gt 0 ] || fail "peer 2 took no bytes from parents"
[ "$(metric 2 chunkfly_peer_bytes_from_origin_total)" = 0 ] || fail "peer 2 went to the registry"
[ "$(metric 1 chunkfly_peer_bytes_served_peers_total)" -gt 0 ] || fail "peer 1 served no peer"
"$CF" status --raw-tasks --peer "$PEER_SOCK_2" |
    awk -F'\t' -v d="sha256:$id" -v a="$PEER_ADDR_1" '$1 == d && $5 > 0 && $8 == a {f = 1} END {exit !f}' ||
    fail "peer 2's task does not name peer 1 ($PEER_ADDR_1) as its parent: $("$CF" status --raw-tasks --peer "$PEER_SOCK_2")"
note "mount 2: $(mbackend 2 bytes_from_proxy) bytes through peer 2, which took $p2 bytes from peer 1" \
    "and 0 from the registry ($(registry_blob_bytes) blob bytes served in all)"

note "peer 2 killed (-9) mid-file, a read in flight: reads continue from the registry"
cmp "$S/big/r2" "$T/mnt2/big/r2" >"$T/cmp2.out" 2>&1 &
cmp_pid=$!
kill -9 "$(peer_pid 2)"
t0=$(date +%s%N)
cmp "$S/big/r1" "$T/mnt2/big/r1" || fail "big/r1 differs after peer 2 died"
ms=$((($(date +%s%N) - t0) / 1000000))
wait "$cmp_pid" || fail "the read in flight when peer 2 died: $(cat "$T/cmp2.out")"
cmp "$S/big/r3" "$T/mnt2/big/r3" || fail "big/r3 differs after peer 2 died"
$MANIFEST "$T/mnt2" >"$T/mnt2-all.manifest"
diff -u "$T/src.manifest" "$T/mnt2-all.manifest" >"$T/diff" || fail "mount 2 differs after the kill: $(head -30 "$T/diff")"
fb=$(mbackend 2 fallbacks)
rb=$(mbackend 2 bytes_from_registry)
[ "$fb" -ge 1 ] || fail "no fallback counted"
[ "$rb" -gt 0 ] || fail "no bytes from the registry after peer 2 died"
[ "$(registry_blob_bytes 2>/dev/null)" -gt "$reg0" ] || fail "the registry served nothing after peer 2 died"
grep -q "reads go to the registry" "$T/m2.log" || fail "no log line for the fallback"
note "after the kill: rest of big/r1 in $ms ms; $rb bytes from the registry, $fb fallback(s); tree still equal"
mount_stop "$MOUNT_PID" "$T/mnt2"
mount_stop "$M1" "$T/mnt1"
no_sanitizer_reports
# the cluster's own logs too (peer 2 was killed: its log has no exit report)
"$CLUSTER" down --state-dir "$CLUSTER_STATE" >/dev/null
CLUSTER_UP=0
if grep -l 'Sanitizer\|runtime error:' "$CLUSTER_STATE"/peer-*/*.log "$CLUSTER_STATE"/scheduler-*/*.log; then
    fail "sanitizer report in a cluster log (above)"
fi
echo "PASS: lazy mount through the cluster's peers, mesh sharing, peer killed mid-file"
