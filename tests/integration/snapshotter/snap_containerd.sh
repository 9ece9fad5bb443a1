#!/bin/bash
# chunkfly-snapshotter as containerd 1.6's proxy snapshotter "chunkfly", with real runc
# containers (a private containerd, snap_lib.sh; the harness itself: snap_harness.sh). Images:
# a 4-layer gzip OCI image with whiteouts, an opaque dir and busybox (src), its Nydus conversion
# by `chunkfly convert` (nydus), a second plain image (plain), a Nydus image with a garbage
# bootstrap (broken). Every container hashes its files; they must equal `umoci unpack` of the
# source. Checks, in order (each needs what the earlier ones set up):
#  1. Nydus lazy pull: `ctr-remote images rpull --snapshotter chunkfly` fetches no data blob
#     (remote snapshots; containerd stores no content for them), `ctr run`: tree (whiteout and
#     whited-out dir gone, opaque dir holding only its upper entry) and contents == source.
#  2. ordinary images through chunkfly (`ctr pull --snapshotter chunkfly`): plain and src run
#     the same way (whiteouts applied by containerd's differ onto the snapshotter's mounts).
#  3. registry stopped after the pull and first run (page cache of the mounts dropped): the
#     files already read still read (from the snapshotter's cache); registry restarted.
#  4. kill -9 of the snapshotter while a container runs (loop reading a file + `task exec`
#     reads): the container keeps working; the snapshotter restarted on the same --root:
#     containerd reconnects, a new container starts, the old one still reads.
#  5. kill -9 of the shared chunkfly-mount (ROOT/mount.pid): a read of a never-read file through
#     a running container's rootfs, and in a new process in it, fails with EIO within 5 s
#     (timeout: never hangs); the snapshotter starts a new mount; a new container reads every
#     file (lazy/ included) correctly.
#  6. the Nydus image removed (`ctr images rm --sync`: containerd's GC removes its snapshots):
#     its snapshot dirs and its cache files (named by blob digest) are gone; the other images
#     still run.
#  7. bad input: `snapshots info nosuchkey`, through containerd and straight to the
#     snapshotter's socket: a NotFound error; the broken Nydus image fails (rpull or run) with
#     an error naming the bootstrap, in bounded time; the snapshotter keeps serving (a Nydus
#     image is pulled and run again); a Nydus image whose data blob the registry lost: the
#     rpull fails with NotFound naming the blob.
#  Then SIGTERM: the snapshotter exits 0; no sanitizer report in its logs.
# Needs: root, /dev/fuse, overlayfs, containerd + runc (Debian 1.6.20), ctr-remote (Debian
# stargz-snapshotter), umoci, skopeo, docker-registry, busybox-static, build/bin/{chunkfly,
# chunkfly-mount,chunkfly-snapshotter}. SNAP_FS_DRIVER=erofs runs it all with --fs-driver erofs.
# 35-45 s in Release or Sanitize on a quiet machine, up to 100 s at load 9 (images: 10-15 s).
# An argument "erofs" = SNAP_FS_DRIVER=erofs (how CI runs the second variant).
[ "${1:-}" = erofs ] && export SNAP_FS_DRIVER=erofs
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/snap_lib.sh"
snap_need_tools ctr-remote
[ -e /dev/fuse ] || skip "/dev/fuse missing"
[ -x "$CHUNKFLY_BIN/chunkfly-snapshotter" ] ||
    skip "chunkfly-snapshotter not built yet ($CHUNKFLY_BIN/chunkfly-snapshotter)"
need_bin chunkfly
need_bin chunkfly-mount

SECONDS=0
REGISTRY_LOG='{level: info, formatter: text}' start_registry 127.0.0.1 "" registry
REG_PID=$REGISTRY_PID
REG_LOG=$REGISTRY_DIR/log
note "building the test images (registry $REGISTRY)"
snap_build_images "$REGISTRY" nydus
SRC=${SNAP_REF[src]} NY=${SNAP_REF[nydus]} PLAIN=${SNAP_REF[plain]}
BROKEN=$(snap_push_broken_nydus "$NY" broken)
# the Nydus image's data blobs (every layer but the bootstrap) and its bootstrap layer
snap_manifest "$NY" >"$T/nydus.manifest.json"
mapfile -t NY_BLOBS < <(python3 -c 'import json,sys; [print(l["digest"]) for l in json.load(open(sys.argv[1]))["layers"][:-1]]' "$T/nydus.manifest.json")
NY_BOOT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][-1]["digest"])' "$T/nydus.manifest.json")
[ ${#NY_BLOBS[@]} = 4 ] || fail "the Nydus image has ${#NY_BLOBS[@]} data blobs, want 4"
TOPS=$(cat "$SNAP_IMG/src/tops")
NOLAZY=$(tr ' ' '\n' <<<"$TOPS" | grep -vx lazy | tr '\n' ' ')
note "images ready after ${SECONDS}s"

start_snapshotter
start_containerd_snap
# snap_ready: containerd reaches the snapshotter (it redials a restarted one with a backoff)
snap_ready() {
    local i
    for i in $(seq "${1:-50}"); do
        timeout 10 "${CTR[@]}" snapshots --snapshotter chunkfly ls >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}
snap_ready || fail "containerd cannot use the chunkfly snapshotter: $("${CTR[@]}" plugins ls | grep chunkfly)"
# reg_blob_gets OFFSET: the blob GET lines the registry logged since OFFSET of its log
reg_blob_gets() { tail -c +$(($1 + 1)) "$REG_LOG" | grep -E '"GET /v2/[^ ]*/blobs/sha256:' || true; }
# exec_in ID EXEC_ID CMD...: `ctr task exec` bounded to 10 s
exec_in() { timeout 10 "${CTR[@]}" task exec --exec-id "$2" "$1" "${@:3}"; }
want_sum() { grep " $1\$" "$SNAP_IMG/src/sums" | sed "s| $1\$| /$1|"; }

# ---- 1. Nydus lazy pull + run (needs: snapshotter, chunkfly-mount, FUSE, ctr-remote) ----
note "1. rpull of the Nydus image: no data blob fetched"
off=$(stat -c %s "$REG_LOG")
timeout 60 "${CTRR[@]}" images rpull --snapshotter chunkfly --plain-http "$NY" >"$T/rpull.log" 2>&1 ||
    fail "rpull $NY: $(tail -5 "$T/rpull.log")"
reg_blob_gets "$off" >"$T/rpull.gets"
"${CTR[@]}" content ls -q >"$T/content.ls"
for b in "${NY_BLOBS[@]}"; do
    ! grep -q "/blobs/$b" "$T/rpull.gets" || fail "rpull fetched data blob $b: $(grep "/blobs/$b" "$T/rpull.gets")"
    ! grep -qx "$b" "$T/content.ls" || fail "containerd stored the content of data blob $b"
done
note "   rpull: $(wc -l <"$T/rpull.gets") blob GETs (bootstrap and config), no data blob"
run_and_hash "$NY" n1 chunkfly "$NOLAZY"

# ---- 2. ordinary images (needs: snapshotter only; containerd fetches and unpacks) ----
note "2. ordinary gzip images through chunkfly"
for r in "$PLAIN" "$SRC"; do
    timeout 60 "${CTR[@]}" images pull --snapshotter chunkfly --plain-http "$r" >"$T/pull.log" 2>&1 ||
        fail "ctr pull --snapshotter chunkfly $r: $(tail -5 "$T/pull.log")"
done
run_and_hash "$PLAIN" p1
run_and_hash "$SRC" s1

# ---- 3. registry down (needs: the snapshotter's cache of what check 1 read) ----
note "3. registry stopped: files already read still read"
bg_stop "$REG_PID"
snap_drop_file_cache "$SNAP_ROOT"
run_and_hash "$NY" n2 chunkfly "$NOLAZY"
run_and_hash "$PLAIN" p2
bg_start "$REGISTRY_DIR/log.2" docker-registry serve "$REGISTRY_DIR/config.yml"
REG_PID=$CF_LAST_PID REG_LOG=$REGISTRY_DIR/log.2
wait_port 127.0.0.1 "${REGISTRY##*:}"

# ---- 4. kill -9 of the snapshotter (needs: mounts that outlive it; restart on the same root) ----
# (k1 writes its results to a temporary file and renames it: an exec never reads a half-written
# one)
note "4. kill -9 of the snapshotter while a container runs"
"${CTR[@]}" run -d --null-io --snapshotter chunkfly "$NY" k1 \
    sh -c 'i=0; while :; do sha256sum /data/f3.bin >/l.tmp || echo ERR >/l.tmp; mv /l.tmp /last; i=$((i+1)); echo $i >/c.tmp; mv /c.tmp /count; sleep 0.2; done' \
    >"$T/k1.log" 2>&1 || fail "ctr run -d k1: $(cat "$T/k1.log")"
sleep 1
c1=$(exec_in k1 e1 cat /count) || fail "k1 is not running"
MPID=$(snap_mount_pid | head -1)
[ -n "$MPID" ] || fail "no live chunkfly-mount in $SNAP_ROOT/mount.pid"
kill9_snapshotter
sleep 1
snap_drop_file_cache "$SNAP_ROOT"
c2=$(exec_in k1 e2 cat /count) || fail "k1 exec after the kill"
[ "$c2" -gt "$c1" ] || fail "k1's loop stopped when the snapshotter died ($c1 -> $c2)"
[ "$(exec_in k1 e3 cat /last)" = "$(want_sum data/f3.bin)" ] || fail "k1's loop read wrong data: $(exec_in k1 e3x cat /last)"
[ "$(exec_in k1 e4 sha256sum /data/f4.bin)" = "$(want_sum data/f4.bin)" ] || fail "k1 read after the kill"
rc=0; timeout 15 "${CTR[@]}" snapshots --snapshotter chunkfly ls >"$T/dead.out" 2>&1 || rc=$?
[ "$rc" != 124 ] || fail "containerd hangs on a dead proxy snapshotter"
note "   with the snapshotter down containerd says (exit $rc): $(tail -1 "$T/dead.out")"
start_snapshotter
snap_ready 75 || fail "containerd did not reconnect to the restarted snapshotter in 15 s"
run_and_hash "$NY" n3 chunkfly "$NOLAZY"
c3=$(exec_in k1 e5 cat /count) || fail "k1 exec after the restart"
[ "$c3" -gt "$c2" ] || fail "k1's loop stopped after the restart ($c2 -> $c3)"
[ "$(exec_in k1 e6 sha256sum /data/f5.bin)" = "$(want_sum data/f5.bin)" ] || fail "k1 read after the restart"
[ "$(snap_mount_pid | head -1)" = "$MPID" ] ||
    note "   (the restarted snapshotter runs another chunkfly-mount: $MPID -> $(snap_mount_pid | head -1))"

# ---- 5. kill -9 of chunkfly-mount (needs: the snapshotter's supervision of its mount) ----
note "5. kill -9 of chunkfly-mount: EIO for a running container, then a new mount"
"${CTR[@]}" run -d --null-io --snapshotter chunkfly "$NY" k2 sh -c 'while :; do sleep 1; done' \
    >"$T/k2.log" 2>&1 || fail "ctr run -d k2: $(cat "$T/k2.log")"
exec_in k2 e1 true || fail "k2 is not running"
# k2's rootfs, the overlay the shim mounted (the container sees the same mount): the
# never-read file is read through it from here, so the check does not depend on starting a
# new process in k2 (whose binary is on the killed mount too; tried below)
K2ROOT=$CTRD_DIR/state/io.containerd.runtime.v2.task/$SNAP_NS/k2/rootfs
mountpoint -q "$K2ROOT" || fail "k2's rootfs is not mounted at $K2ROOT"
MPID=$(snap_mount_pid | head -1)
[ -n "$MPID" ] || fail "no live chunkfly-mount in $SNAP_ROOT/mount.pid"
kill -9 "$MPID"
t0=$(date +%s%N)
rc=0; out=$(timeout 10 sha256sum "$K2ROOT/lazy/l2.bin" 2>&1) || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$rc" != 124 ] || fail "a read on the killed mount hangs (> 10 s)"
# EIO with either driver (the snapshotter answers a dead FUSE daemon's requests with EIO; EROFS
# fails blocks it cannot read). lazy/ is alone in its layer and blob, so no read of another
# file (1 MiB chunks, readahead of the blob files under EROFS) has cached these bytes.
[ "$rc" != 0 ] || fail "a never-read file read fine after chunkfly-mount was killed: $out"
grep -q "Input/output error" <<<"$out" || fail "the read failed without EIO (exit $rc in $ms ms): $out"
[ "$ms" -lt 5000 ] || fail "EIO took $ms ms"
note "   k2's read failed in $ms ms: $out"
# a new process in k2 (runc spells EIO the Go way when the exec itself fails)
rc=0; out=$(exec_in k2 e2 sha256sum /lazy/l3.bin 2>&1) || rc=$?
[ "$rc" != 124 ] || fail "ctr task exec in k2 hangs on the killed mount"
[ "$rc" != 0 ] && grep -qi "input/output error" <<<"$out" ||
    fail "a new process in k2 did not get EIO (exit $rc): $out"
note "   a new process in k2: $(tail -1 <<<"$out")"
for _ in $(seq 150); do
    m=$(snap_mount_pid | head -1)
    [ -n "$m" ] && [ "$m" != "$MPID" ] && break
    sleep 0.1
done
[ -n "$m" ] && [ "$m" != "$MPID" ] || fail "the snapshotter did not start a new chunkfly-mount in 15 s"
note "   new chunkfly-mount $m after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
run_and_hash "$NY" n4 chunkfly "$TOPS"
is_alive "$SNAP_PID" || fail "the snapshotter died"

# ---- 6. GC (needs: Remove/Cleanup deleting snapshot dirs and the blob cache) ----
note "6. the Nydus image removed: its snapshots and cache files go"
cache_files() { # the cache files named by one of the Nydus image's blob digests
    local b
    for b in "${NY_BLOBS[@]}" "$NY_BOOT"; do
        find "$SNAP_ROOT" -xdev -path "$SNAP_ROOT/snapshots" -prune -o -name "*${b#sha256:}*" -print
    done
}
[ -n "$(cache_files)" ] || fail "no cache file under $SNAP_ROOT is named by a blob digest of $NY: $(find "$SNAP_ROOT" -maxdepth 3 | head -20)"
snap_rm_containers
timeout 60 "${CTR[@]}" images rm --sync "$NY" >/dev/null || fail "ctr images rm $NY"
for _ in $(seq 100); do
    n_snap=$("${CTR[@]}" snapshots --snapshotter chunkfly ls | tail -n +2 | wc -l)
    n_dirs=$(snap_dir_count "$SNAP_ROOT/snapshots")
    [ -z "$(cache_files)" ] && [ "$n_dirs" = "$n_snap" ] && break
    sleep 0.2
done
[ -z "$(cache_files)" ] || fail "cache files of the removed image left: $(cache_files)"
[ "$n_dirs" = "$n_snap" ] ||
    fail "$n_dirs snapshot dirs for $n_snap snapshots (src 4 + plain 2) after the GC: $(ls "$SNAP_ROOT/snapshots")"
[ "$n_snap" = 6 ] || fail "$n_snap snapshots left, want 6 (src 4 + plain 2): $("${CTR[@]}" snapshots --snapshotter chunkfly ls)"
run_and_hash "$PLAIN" p3
run_and_hash "$SRC" s2

# ---- 7. bad input (needs: the snapshotter's error paths) ----
note "7. bad input"
rc=0; "${CTR[@]}" snapshots --snapshotter chunkfly info nosuchkey >"$T/nf1.out" 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -qi "not found" "$T/nf1.out" || fail "info nosuchkey via containerd: $(cat "$T/nf1.out")"
# containerd answers that one from its own metadata: ask the snapshotter itself
rc=0; timeout 10 ctr -a "$SNAP_SOCK" -n "$SNAP_NS" snapshots --snapshotter chunkfly info nosuchkey \
    >"$T/nf2.out" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -qi "not found" "$T/nf2.out" ||
    fail "info nosuchkey on the snapshotter's socket (exit $rc): $(cat "$T/nf2.out")"
note "   snapshotter: $(cat "$T/nf2.out")"
rc=0; timeout 60 "${CTRR[@]}" images rpull --snapshotter chunkfly --plain-http "$BROKEN" >"$T/broken.log" 2>&1 || rc=$?
[ "$rc" != 124 ] || fail "rpull of the broken image hangs"
if [ "$rc" = 0 ]; then
    rc=0; timeout 60 "${CTR[@]}" run --snapshotter chunkfly --rm "$BROKEN" b1 true >>"$T/broken.log" 2>&1 || rc=$?
    [ "$rc" != 124 ] || fail "ctr run of the broken image hangs"
    [ "$rc" != 0 ] || fail "a container started from an image with a garbage bootstrap"
fi
grep -Eqi "bootstrap|rafs|image\.boot|superblock" "$T/broken.log" ||
    fail "the broken image's error does not say what is wrong: $(cat "$T/broken.log")"
note "   broken image: $(grep -Ei "bootstrap|rafs|image\.boot|superblock" "$T/broken.log" | tail -1)"
is_alive "$SNAP_PID" || fail "the snapshotter died on the broken image"
snap_rm_containers
timeout 60 "${CTR[@]}" images rm --sync "$BROKEN" >/dev/null 2>&1 || true
timeout 60 "${CTRR[@]}" images rpull --snapshotter chunkfly --plain-http "$NY" >"$T/rpull2.log" 2>&1 ||
    fail "rpull after the broken image: $(tail -5 "$T/rpull2.log")"
run_and_hash "$NY" n5 chunkfly "$TOPS"
# a Nydus image whose data blob the registry does not have: the pull fails, naming the blob
# (the same layers as $NY: remove that first, or containerd finds the layers already there)
snap_rm_containers
timeout 60 "${CTR[@]}" images rm --sync "$NY" >/dev/null 2>&1 || fail "ctr images rm $NY"
MISSING=$REGISTRY/snap/missing:v1
skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "docker://$NY" "docker://$MISSING" ||
    fail "skopeo copy to $MISSING"
curl -sf -X DELETE "http://$REGISTRY/v2/snap/missing/blobs/${NY_BLOBS[1]}" ||
    fail "deleting ${NY_BLOBS[1]} from snap/missing"
rc=0; timeout 60 "${CTRR[@]}" images rpull --snapshotter chunkfly --plain-http "$MISSING" \
    >"$T/missing.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -q "${NY_BLOBS[1]} is not in the registry" "$T/missing.log" ||
    fail "rpull of an image with a missing blob (exit $rc): $(tail -3 "$T/missing.log")"
note "   missing blob: $(grep -o "image .*is not in the registry[^:]*" "$T/missing.log" | tail -1)"
is_alive "$SNAP_PID" || fail "the snapshotter died on the missing blob"

note "SIGTERM: the snapshotter exits 0"
snap_rm_containers
kill -TERM "$SNAP_PID"
rc=0
for _ in $(seq 100); do is_alive "$SNAP_PID" || break; sleep 0.1; done
is_alive "$SNAP_PID" && fail "the snapshotter ignores SIGTERM for 10 s"
wait "$SNAP_PID" || rc=$?
SNAP_PID=""
[ "$rc" = 0 ] || fail "the snapshotter exited $rc on SIGTERM: $(tail -5 "$SNAP_LOG")"
if grep -lE 'Sanitizer|runtime error:' "$SNAP_DIR"/*.log $(find "$SNAP_ROOT" -name '*.log' 2>/dev/null) 2>/dev/null; then
    fail "sanitizer reports in the logs above"
fi
note "done in ${SECONDS}s"
echo PASS
