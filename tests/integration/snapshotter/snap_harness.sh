#!/bin/bash
# The snapshotter tests' harness (snap_lib.sh) proven without chunkfly-snapshotter: the test
# images built and pushed, a private containerd 1.6 with the "chunkfly" proxy plugin configured
# (nothing listening: containerd dials lazily, the built-in snapshotters keep working), the
# images pulled and run with containerd's own overlayfs snapshotter, their files hashed in the
# container == `umoci unpack` of the source (so the expected trees, whiteouts and opaque dir
# included, are what a correct snapshotter must show); a detached container read through
# `ctr task exec` and through its rootfs mount (what the kill tests use); cleanup leaves no
# mount, shim or cgroup behind.
# With SNAP_HARNESS_STARGZ=/path/to/containerd-stargz-grpc (built by
# ../shared/tools/anchor-lazy-pull.sh into /var/tmp/anchor-cache/bin) also the remote-snapshot
# path: the src image converted to eStargz, `ctr-remote images rpull --snapshotter stargz`, run
# and hashed; and ctr speaking the snapshots API straight to a proxy snapshotter's socket
# (NotFound for a missing key), as snap_containerd.sh does with ours.
# Run by hand (it tests no code of ours, so it is not registered with ctest):
#   bash tests/integration/snapshotter/snap_harness.sh
# About 15-25 s (25-30 s with stargz) on the loaded 2-core machine.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/snap_lib.sh"
snap_need_tools

REGISTRY_LOG='{level: info, formatter: text}' start_registry 127.0.0.1 "" registry
note "building the test images (registry $REGISTRY)"
t0=$(date +%s%N)
snap_build_images "$REGISTRY"
note "images built and pushed in $(( ($(date +%s%N) - t0) / 1000000 )) ms: ${SNAP_REF[*]}"

PROXIES=("chunkfly=$SNAP_SOCK")
if [ -n "${SNAP_HARNESS_STARGZ:-}" ]; then
    command -v ctr-remote >/dev/null || skip "ctr-remote (stargz-snapshotter) not installed"
    SGZ=$T/sgz
    mkdir -p "$SGZ/root"
    bg_start "$SGZ/stargz.log" "$SNAP_HARNESS_STARGZ" -address "$SGZ/stargz.sock" -root "$SGZ/root" \
        -plain-http "$REGISTRY"
    SGZ_PID=$CF_LAST_PID
    for _ in $(seq 100); do snap_sock_ready "$SGZ/stargz.sock" && break; sleep 0.1; done
    PROXIES+=("stargz=$SGZ/stargz.sock")
fi
start_containerd_snap "${PROXIES[@]}"
"${CTR[@]}" plugins ls | grep -E '^io.containerd.snapshotter.v1 +chunkfly +.* ok *$' >/dev/null ||
    fail "proxy plugin chunkfly not loaded: $("${CTR[@]}" plugins ls | grep snapshotter)"

note "overlayfs: pull + run the src and plain images, contents == umoci unpack"
for n in src plain; do
    "${CTR[@]}" images pull --plain-http "${SNAP_REF[$n]}" >"$T/pull-$n.log" 2>&1 ||
        fail "ctr pull ${SNAP_REF[$n]}: $(tail -3 "$T/pull-$n.log")"
    run_and_hash "${SNAP_REF[$n]}" "h-$n" overlayfs
done

note "a detached container reads files through ctr task exec; kill + delete"
"${CTR[@]}" run -d --null-io --snapshotter overlayfs "${SNAP_REF[src]}" d1 \
    sh -c 'i=0; while :; do cat /data/small.txt >/dev/null; i=$((i+1)); echo $i >/c.tmp; mv /c.tmp /count; sleep 0.2; done' ||
    fail "ctr run -d"
sleep 0.6
c1=$("${CTR[@]}" task exec --exec-id e1 d1 cat /count) || fail "task exec"
got=$("${CTR[@]}" task exec --exec-id e2 d1 sha256sum /lazy/l3.bin) || fail "task exec sha256sum"
[ "$got" = "$(grep ' lazy/l3.bin$' "$SNAP_IMG/src/sums" | sed 's| lazy/| /lazy/|')" ] ||
    fail "exec read: $got"
sleep 0.5
c2=$("${CTR[@]}" task exec --exec-id e3 d1 cat /count)
[ "$c2" -gt "$c1" ] || fail "the detached container's loop does not run ($c1 -> $c2)"
# its rootfs as the shim mounted it (snap_containerd.sh reads through it after killing the mount)
D1ROOT=$CTRD_DIR/state/io.containerd.runtime.v2.task/$SNAP_NS/d1/rootfs
mountpoint -q "$D1ROOT" || fail "d1's rootfs is not mounted at $D1ROOT"
[ "$(cd "$D1ROOT" && sha256sum lazy/l1.bin)" = "$(grep ' lazy/l1.bin$' "$SNAP_IMG/src/sums")" ] ||
    fail "reading through d1's rootfs mount"
if [ -n "${SNAP_HARNESS_STARGZ:-}" ]; then
    note "stargz: eStargz of src, rpull (remote snapshots) + run"
    ES=$REGISTRY/snap/src:esgz
    "${CTR[@]}" content fetch --plain-http "${SNAP_REF[src]}" >/dev/null 2>&1 || fail "content fetch"
    "${CTRR[@]}" images convert --estargz --oci "${SNAP_REF[src]}" "$ES" >"$T/esgz.log" 2>&1 ||
        fail "eStargz convert: $(tail -3 "$T/esgz.log")"
    "${CTRR[@]}" images push --plain-http "$ES" >>"$T/esgz.log" 2>&1 || fail "eStargz push"
    "${CTR[@]}" images rm "$ES" >/dev/null
    SNAP_WANT[$ES]=${SNAP_WANT[${SNAP_REF[src]}]}
    "${CTRR[@]}" images rpull --snapshotter stargz --plain-http "$ES" >"$T/rpull.log" 2>&1 ||
        fail "rpull: $(tail -3 "$T/rpull.log")"
    awk -v d="$SGZ/" 'index($5, d) == 1' /proc/self/mountinfo | grep -q fuse ||
        fail "rpull made no FUSE mount under $SGZ (not a remote snapshot?)"
    run_and_hash "$ES" h-esgz stargz
    note "ctr straight on the proxy socket: NotFound for a missing key"
    rc=0; ctr -a "$SGZ/stargz.sock" snapshots --snapshotter stargz info nosuchkey >"$T/nf.out" 2>&1 || rc=$?
    [ "$rc" != 0 ] && grep -qi "not found" "$T/nf.out" || fail "direct info nosuchkey: rc $rc: $(cat "$T/nf.out")"
    note "  $(cat "$T/nf.out")"
fi

note "cleanup: nothing of ours left"
stop_containerd
[ -z "$(_snap_our_shims)" ] || fail "shims left: $(_snap_our_shims)"
if [ -n "${SGZ_PID:-}" ]; then bg_stop "$SGZ_PID"; umount_under "$SGZ"; fi
[ -z "$(awk -v d="$T/" 'index($5, d) == 1' /proc/self/mountinfo)" ] || fail "mounts left under $T"
! ls -d /sys/fs/cgroup/*/"$SNAP_NS" 2>/dev/null || fail "cgroup dirs left"
echo PASS
