#!/usr/bin/env bash
# chunkfly-mount's command line and start-up checks, and two real images:
#  - --version has a "Git Commit:" line, --help, nydusd's flags are accepted, unknown flags and
#    bad values are refused (exit 2);
#  - bad inputs fail with a clear message BEFORE anything is mounted: garbage bootstrap, RAFS v5
#    bootstrap (unsupported), missing blob, missing mountpoint, no backend;
#  - the real Nydus fixture (nydus-image 2.2 output) through localfs: the tree equals the
#    kernel's EROFS view of the same bootstrap (SKIP of that part when the fixture is absent);
#  - a real program runs from the mount: chroot into an image holding Debian's static busybox.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/mount_lib.sh"

"$CFM" --version | grep -Eq '^Git Commit:[[:space:]]+[0-9a-f]{7,}|^Git Commit:[[:space:]]+unknown' ||
    fail "--version has no Git Commit line: $("$CFM" --version)"
"$CFM" --help | grep -q -- --mountpoint || fail "--help"
set +e
"$CFM" --no-such-flag >/dev/null 2>&1; [ $? = 2 ] || fail "unknown flag not refused with exit 2"
"$CFM" --thread-num zero --mountpoint /x >/dev/null 2>&1; [ $? = 2 ] || fail "bad --thread-num accepted"
set -e

# a tiny image
mkdir -p "$T/src/d" "$T/mnt"
echo hello >"$T/src/d/f"
"$CFI" create -l warn -t dir-rafs -B "$T/boot" -D "$T/blobs" -J "$T/c.json" "$T/src" || fail create
id=$(json_blob "$T/c.json")

# expect_refused NAME PATTERN ARGS...: exits non-zero, says PATTERN, mounts nothing
expect_refused() {
    local name=$1 pat=$2
    shift 2
    if "$CFM" "$@" >"$T/out" 2>&1; then fail "$name: accepted"; fi
    grep -Eq "$pat" "$T/out" || fail "$name: message '$(cat "$T/out")' does not say /$pat/"
    is_mounted "$T/mnt" && fail "$name: something was mounted"
    note "$name: $(head -1 "$T/out")"
}
head -c 8192 /dev/urandom >"$T/garbage.boot"
expect_refused "garbage bootstrap" "bootstrap .*garbage.boot" \
    fuse --bootstrap "$T/garbage.boot" --blob-dir "$T/blobs" --mountpoint "$T/mnt"
v5=$CHUNKFLY_FIXTURES/nydus/v5/sha256-nocompress-repeatable
if [ -f "$v5" ]; then
    expect_refused "RAFS v5 bootstrap" "RAFS v5 is not supported" \
        fuse --bootstrap "$v5" --blob-dir "$T/blobs" --mountpoint "$T/mnt"
else
    note "RAFS v5 fixture absent: v5 refusal not checked"
fi
expect_refused "missing blob" "data blob .*$id.*No such file" \
    --bootstrap "$T/boot" --blob-dir "$T/src" --mountpoint "$T/mnt"
expect_refused "missing mountpoint" "mountpoint .*does not exist|No such file" \
    --bootstrap "$T/boot" --blob-dir "$T/blobs" --mountpoint "$T/nowhere"
expect_refused "no backend" "no backend" --bootstrap "$T/boot" --mountpoint "$T/mnt"
expect_refused "missing bootstrap file" "bootstrap .*No such file" \
    --bootstrap "$T/none.boot" --blob-dir "$T/blobs" --mountpoint "$T/mnt"

# nydusd JSON configs: an unknown key is refused naming it, before mounting; localfs works
echo '{"device":{"backend":{"type":"localfs","config":{"dri":"/x"}}}}' >"$T/bad.json"
expect_refused "unknown config key" "device.backend.config.dri: unknown key" \
    --config "$T/bad.json" --bootstrap "$T/boot" --mountpoint "$T/mnt"
echo '{"device":' >"$T/broken.json"
expect_refused "broken config JSON" "broken.json" --config "$T/broken.json" --bootstrap "$T/boot" --mountpoint "$T/mnt"
cat >"$T/localfs.json" <<JSON
{"device": {"backend": {"type": "localfs", "config": {"dir": "$T/blobs"}},
            "cache": {"type": "blobcache", "compressed": false, "config": {"work_dir": "$T/wd"}}},
 "mode": "direct", "digest_validate": false, "iostats_files": false, "enable_xattr": true,
 "amplify_io": 1048576,
 "fs_prefetch": {"enable": false, "threads_count": 4, "merging_size": 1048576, "bandwidth_rate": 0}}
JSON
mount_start "$T/cfg.log" "$T/mnt" --config "$T/localfs.json" --bootstrap "$T/boot"
[ "$(cat "$T/mnt/d/f")" = hello ] || fail "content through the localfs config"
[ -f "$T/wd/$id.blob.data" ] && [ -f "$T/wd/$id.blob.data.chunk_map" ] || fail "no cache files in work_dir"
mount_stop "$MOUNT_PID" "$T/mnt"
note "nydusd localfs config: mounted, cache in its work_dir"

# the bootstrap's prefetch table (fs_prefetch.enable, prefetch_all off): /p/first is filled in
# the background without being read, /p/second is not
mkdir -p "$T/psrc/p"
head -c 200000 /dev/urandom >"$T/psrc/p/first"
head -c 200000 /dev/urandom >"$T/psrc/p/second"
echo /p/first | "$CFI" create -l warn -t dir-rafs --prefetch-policy fs -B "$T/pboot" -D "$T/pblobs" \
    -J "$T/p.json" "$T/psrc" || fail "create with a prefetch table"
pid_=$(json_blob "$T/p.json")
cat >"$T/pcfg.json" <<JSON
{"device": {"backend": {"type": "localfs", "config": {"dir": "$T/pblobs"}},
            "cache": {"type": "blobcache", "config": {"work_dir": "$T/pcache"}}},
 "fs_prefetch": {"enable": true, "prefetch_all": false, "threads_count": 1}}
JSON
mount_start "$T/pf.log" "$T/mnt" --config "$T/pcfg.json" --bootstrap "$T/pboot"
for _ in $(seq 50); do grep -q "prefetch of .*1 files filled" "$T/pf.log" && break; sleep 0.1; done
grep -q "prefetch of .*1 files filled, 0 failed" "$T/pf.log" || fail "prefetch table: $(grep prefetch "$T/pf.log")"
python3 - "$T/pcache/$pid_.blob.data.chunk_map" <<'PY' || fail "prefetch table: wrong chunks ready"
import sys
m = open(sys.argv[1], "rb").read()
bits = [(m[4096 + i // 8] >> (7 - i % 8)) & 1 for i in range((len(m) - 4096) * 8)]
if sum(bits) != 1: sys.exit("ready chunks: %s" % bits)
PY
cmp "$T/psrc/p/first" "$T/mnt/p/first" && cmp "$T/psrc/p/second" "$T/mnt/p/second" || fail "prefetched image content"
mount_stop "$MOUNT_PID" "$T/mnt"
note "bootstrap prefetch table: its file filled in the background, nothing else"

# every flag nydus-snapshotter passes (dedicated mode, as in runtime-contracts.md §1)
mount_start "$T/flags.log" "$T/mnt" --thread-num 4 --id dev-1 --bootstrap "$T/boot" \
    --blob-dir "$T/blobs" --cache-dir "$T/cache" --log-level info --log-rotation-size 100 \
    --supervisor "$T/sup.sock" --log-file "$T/daemon.log" --prefetch-files /d/f /d \
    --backend-source http://example.invalid --failover-policy resend
[ "$(cat "$T/mnt/d/f")" = hello ] || fail "content"
grep -q "mounted" "$T/daemon.log" || fail "--log-file not written"
mount_stop "$MOUNT_PID" "$T/mnt"
note "nydusd flags accepted, --log-file used"

# ---- the real Nydus fixture ---------------------------------------------------------------
fx=$CHUNKFLY_FIXTURES/nydus/v6
if [ -f "$fx/rafs-v6-2.2.boot" ]; then
    mount_start "$T/fx.log" "$T/mnt" --bootstrap "$fx/rafs-v6-2.2.boot" --blob-dir "$fx" \
        --cache-dir "$T/fxcache"
    $MANIFEST "$T/mnt" >"$T/fx.fuse"
    # content through our own reader (check/inspect), then the kernel's view of the metadata
    "$CFI" inspect --manifest -D "$fx" "$fx/rafs-v6-2.2.boot" >"$T/fx.ours"
    diff -u "$T/fx.ours" "$T/fx.fuse" >"$T/fx.diff" || fail "fixture: FUSE view differs from inspect --manifest: $(head -20 "$T/fx.diff")"
    fxid=be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef
    if grep -qw erofs /proc/filesystems && [ -x "$RAWMOUNT" ] && map_complete "$T/fxcache" "$fxid"; then
        mkdir -p "$T/kmnt"
        if "$RAWMOUNT" "$fx/rafs-v6-2.2.boot" "$T/kmnt" erofs "device=$T/fxcache/$fxid.blob.data" 2>/dev/null; then
            CF_MOUNTS+=("$T/kmnt")
            $MANIFEST "$T/kmnt" >"$T/fx.kernel"
            umount "$T/kmnt"
            diff -u "$T/fx.kernel" "$T/fx.fuse" >"$T/fx.kdiff" || fail "fixture: differs from the kernel's view: $(head -20 "$T/fx.kdiff")"
            note "fixture: identical to the kernel's EROFS view over our cache"
        fi
    fi
    mount_stop "$MOUNT_PID" "$T/mnt"
    note "real Nydus fixture (rafs-v6-2.2.boot + its blob) mounted through localfs: $(wc -l <"$T/fx.fuse") entries"
else
    note "SKIPPED PART: Nydus fixture $fx/rafs-v6-2.2.boot absent"
fi

# ---- a real program from the mount -----------------------------------------------------------
BB=/bin/busybox
if [ -x "$BB" ] && file -L "$BB" | grep -q 'statically linked'; then
    R=$T/rootfs
    mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/proc"
    cp "$BB" "$R/bin/busybox"
    for a in sh ls cat sha256sum wc echo; do ln -s busybox "$R/bin/$a"; done
    echo "chunkfly" >"$R/etc/hostname"
    tar -C "$R" -cf "$T/rootfs.tar" .
    "$CFI" create -l warn -t tar-rafs -B "$T/bb.boot" -D "$T/bbblobs" "$T/rootfs.tar" || fail "create busybox image"
    mount_start "$T/bb.log" "$T/bbmnt" --bootstrap "$T/bb.boot" --blob-dir "$T/bbblobs" --cache-dir "$T/bbcache"
    out=$(chroot "$T/bbmnt" /bin/sh -c 'cat /etc/hostname; ls /bin | wc -l; sha256sum /bin/busybox') ||
        fail "chroot into the mount failed"
    want=$(sha256sum "$BB" | cut -d' ' -f1)
    echo "$out" | grep -q '^chunkfly$' || fail "busybox output: $out"
    echo "$out" | grep -q "^$want " || fail "busybox sha256sum in the chroot: $out"
    mount_stop "$MOUNT_PID" "$T/bbmnt"
    note "static busybox ran from the mount (chroot): $(echo "$out" | tr '\n' ' ')"
else
    note "SKIPPED PART: Debian's static busybox not installed (apt-get install busybox-static)"
fi
no_sanitizer_reports
echo "PASS: command line, start-up checks, fixture, busybox"
