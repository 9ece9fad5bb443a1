#!/bin/bash
# Real containerd 1.6 pulls a multi-layer image through the peer's registry mirror (hosts.toml
# files written by `chunkfly init containerd` into a --hosts-dir; node 3 uses its --all, i.e.
# _default/): the layers come through the mirror, the content equals a direct pull by a second
# containerd; two more containerds pull through their own peers' mirrors and the origin serves
# the layers' bytes ~once for the 3 nodes (mesh); with the peers stopped containerd falls back
# to the upstream (the generated file's server). skopeo: mirror_skopeo.sh.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

need_root
for b in containerd ctr umoci; do
    command -v "$b" >/dev/null || skip "$b not installed"
done
MKIMG=$CHUNKFLY_SRC/../shared/tools/make-test-image.sh
[ -x "$MKIMG" ] || skip "$MKIMG missing"

start_registry 127.0.0.9
note "building and pushing two 3-layer images"
"$MKIMG" --registry "$REGISTRY" --repo test/ctr --tag v1 --size-mb 12 --layers 3 --seed 7 \
    --workdir "$T/img1" >"$T/img1.log" 2>&1 || { tail "$T/img1.log"; fail "image build"; }
"$MKIMG" --registry "$REGISTRY" --repo test/ctr --tag v2 --size-mb 6 --layers 2 --seed 8 \
    --workdir "$T/img2" >"$T/img2.log" 2>&1 || { tail "$T/img2.log"; fail "image build"; }

start_scheduler
# small_blob=64K: the ~4 MiB layers go through the mesh, not straight to the origin
declare -A MPORT
for i in 1 2 3; do
    MPORT[$i]=$(free_port "127.0.0.1$i")
    start_peer "$i" --set mirror_listen="127.0.0.1$i:${MPORT[$i]}" --set mirror_upstreams="$REGISTRY" \
        --set mirror_default_upstream="$REGISTRY" --set small_blob=64K
    wait_port "127.0.0.1$i" "${MPORT[$i]}"
done

# start_containerd NAME: containerd with its own root, state and socket under $T/NAME
declare -A CTRD_PID
start_containerd() {
    local d=$T/$1
    mkdir -p "$d"
    cat >"$d/config.toml" <<TOML
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd-ttrpc.sock"
TOML
    bg_start "$d/containerd.log" containerd --config "$d/config.toml"
    CTRD_PID[$1]=$CF_LAST_PID
    for _ in $(seq 100); do [ -S "$d/containerd.sock" ] && break; sleep 0.1; done
    ctr -a "$d/containerd.sock" version >/dev/null 2>&1 || fail "containerd $1 did not start"
}
stop_containerds() {
    local n
    for n in "${!CTRD_PID[@]}"; do
        kill "${CTRD_PID[$n]}" 2>/dev/null || true
        wait "${CTRD_PID[$n]}" 2>/dev/null || true
        umount -R "$T/$n/root" 2>/dev/null || true
    done
}
# stop containerd first (its mounts), then testlib's cleanup with the test's exit status
ctrd_cleanup() {
    local rc=$?
    set +e
    stop_containerds
    (exit $rc)
    cf_cleanup
}
trap ctrd_cleanup EXIT
start_containerd mirror
start_containerd direct
start_containerd node2
start_containerd node3

# hosts_dir I [--all]: `chunkfly init containerd` writes a hosts dir sending $REGISTRY pulls (or,
# with --all, every registry's: _default/) to peer I's mirror first, the registry as fallback
hosts_dir() {
    local what=(--registry "$REGISTRY")
    [ "${2:-}" = --all ] && what=(--all)
    "$CHUNKFLY_BIN/chunkfly" init containerd "${what[@]}" --config-path "$T/certs$1.d" \
        --mirror "http://127.0.0.1$1:${MPORT[$1]}" --containerd-config "$T/mirror/config.toml" \
        >"$T/init$1.log" 2>&1 || { cat "$T/init$1.log"; fail "chunkfly init containerd for node $1"; }
}
need_bin chunkfly
hosts_dir 1
hosts_dir 2
hosts_dir 3 --all # node 3 proves containerd 1.6 reads _default/hosts.toml
grep -qxF "server = \"http://$REGISTRY\"" "$T/certs1.d/$REGISTRY/hosts.toml" ||
    fail "generated hosts.toml: $(cat "$T/certs1.d/$REGISTRY/hosts.toml")"
[ -f "$T/certs3.d/_default/hosts.toml" ] || fail "no _default/hosts.toml"
ln -s "$T/certs1.d" "$T/certs.d"

note "pull through the mirror"
t0=$(date +%s.%N)
ctr -a "$T/mirror/containerd.sock" images pull --hosts-dir "$T/certs.d" --plain-http \
    "$REGISTRY/test/ctr:v1" >"$T/pull1.log" 2>&1 || { tail "$T/pull1.log"; fail "mirror pull"; }
note "pulled in $(echo "$(date +%s.%N) - $t0" | bc) s"
ctr -a "$T/direct/containerd.sock" images pull --plain-http "$REGISTRY/test/ctr:v1" \
    >"$T/pull2.log" 2>&1 || { tail "$T/pull2.log"; fail "direct pull"; }

note "content equal to the direct pull; the layers came through the mirror"
layers=$(ctr -a "$T/direct/containerd.sock" content ls -q | sort)
[ "$(ctr -a "$T/mirror/containerd.sock" content ls -q | sort)" = "$layers" ] ||
    fail "content digests differ"
total=0
n=0
for dg in $layers; do
    ctr -a "$T/mirror/containerd.sock" content get "$dg" >"$T/a"
    ctr -a "$T/direct/containerd.sock" content get "$dg" >"$T/b"
    cmp "$T/a" "$T/b" || fail "content $dg differs"
    s=$(stat -c %s "$T/a")
    if [ "$s" -gt 100000 ]; then total=$((total + s)); n=$((n + 1)); fi
done
served=$(metric 1 mirror_bytes_total)
note "mirror served $served bytes; the $n layers are $total bytes"
[ "$n" -ge 3 ] || fail "expected 3 layers, found $n"
[ "$served" -ge "$total" ] || fail "the layers did not come through the mirror"
ctr -a "$T/mirror/containerd.sock" images check 2>&1 | grep -q "complete" ||
    fail "image not complete in containerd"

note "nodes 2 and 3 pull through their own peers' mirrors: the registry's blob bytes ~1x"
for i in 2 3; do
    ctr -a "$T/node$i/containerd.sock" images pull --hosts-dir "$T/certs$i.d" --plain-http \
        "$REGISTRY/test/ctr:v1" >"$T/pull-n$i.log" 2>&1 || { tail "$T/pull-n$i.log"; fail "node $i pull"; }
    for dg in $layers; do
        ctr -a "$T/node$i/containerd.sock" content get "$dg" >"$T/a"
        ctr -a "$T/direct/containerd.sock" content get "$dg" | cmp - "$T/a" ||
            fail "node $i content $dg differs"
    done
done
for i in 2 3; do
    [ "$(metric "$i" mirror_bytes_total)" -ge "$total" ] ||
        fail "node $i's layers did not come through its mirror (certs$i.d)"
done
origin=0
for i in 1 2 3; do origin=$((origin + $(metric "$i" bytes_from_origin_total))); done
note "origin bytes for 3 nodes: $origin (layers $total); from parents: $(metric 2 bytes_from_parents_total) + $(metric 3 bytes_from_parents_total)"
[ "$origin" -le $((total + total / 10)) ] || fail "origin bytes $origin > 1.1x the layers"

note "peer stopped: containerd falls back to the upstream"
finish_peers
ctr -a "$T/mirror/containerd.sock" images pull --hosts-dir "$T/certs.d" --plain-http \
    "$REGISTRY/test/ctr:v2" >"$T/pull3.log" 2>&1 || { tail "$T/pull3.log"; fail "fallback pull"; }
echo PASS
