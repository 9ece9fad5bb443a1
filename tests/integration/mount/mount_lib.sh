# shellcheck shell=bash
# Helpers for chunkfly-mount integration tests, and what each needs. Source after testlib.sh:
# brings create_lib.sh (images are made with chunkfly-image create) and skips without root or
# /dev/fuse.
. "$CHUNKFLY_SRC/tests/integration/rafs/create_lib.sh"
need_root
need_bin chunkfly-image
need_bin chunkfly-mount
[ -e /dev/fuse ] || skip "no /dev/fuse"

CFM=${CHUNKFLY_BIN}/chunkfly-mount

# is_mounted DIR: a FUSE mount of chunkfly-mount (type fuse.rafs) is at DIR
is_mounted() {
    local d
    d=$(realpath -m "$1")
    awk -v d="$d" '$2 == d && $3 == "fuse.rafs" {f=1} END {exit !f}' /proc/self/mounts
}

# mount_start LOG MNT ARGS...: starts chunkfly-mount (foreground daemon) with --mountpoint MNT
# and ARGS, waits until MNT is mounted (10 s). Sets MOUNT_PID.
mount_start() {
    local log=$1 mnt=$2 i
    shift 2
    mkdir -p "$mnt"
    bg_start "$log" "$CFM" fuse --mountpoint "$mnt" "$@"
    MOUNT_PID=$CF_LAST_PID
    CF_MOUNTS+=("$mnt")
    for i in $(seq 100); do
        # statfs reaches the daemon: a dead mount left by a killed one does not count
        is_mounted "$mnt" && stat -f "$mnt" >/dev/null 2>&1 && return 0
        is_alive "$MOUNT_PID" || fail "chunkfly-mount exited before mounting: $(tail -5 "$log")"
        sleep 0.1
    done
    fail "chunkfly-mount did not mount $mnt within 10 s: $(tail -5 "$log")"
}

# mount_stop PID MNT: SIGTERM, the daemon must unmount and exit within 5 s.
mount_stop() {
    local pid=$1 mnt=$2 i
    kill -TERM "$pid"
    for i in $(seq 50); do is_alive "$pid" || break; sleep 0.1; done
    is_alive "$pid" && fail "chunkfly-mount ($pid) still running 5 s after SIGTERM"
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 127 ] || fail "chunkfly-mount exited with status $rc after SIGTERM"
    is_mounted "$mnt" && fail "$mnt still mounted after SIGTERM"
    return 0
}

# map_complete CACHE BLOB_ID: the chunk_map says every chunk is ready (all_ready in the header)
map_complete() {
    python3 - "$1/$2.blob.data.chunk_map" <<'PY'
import struct, sys
h = open(sys.argv[1], "rb").read(16)
sys.exit(0 if len(h) == 16 and struct.unpack("<4I", h)[3] == 0x4D4D4150 else 1)
PY
}

# no_sanitizer_reports: no daemon log under $T holds an ASan/UBSan/LSan report
no_sanitizer_reports() {
    local f
    for f in "$T"/*.log; do
        [ -f "$f" ] || continue
        if grep -qE 'Sanitizer|runtime error:' "$f"; then
            fail "sanitizer report in $f: $(grep -m3 -E 'Sanitizer|runtime error:' "$f")"
        fi
    done
}
