#!/usr/bin/env bash
# chunkfly-snapshotter's gRPC API (containerd's snapshots v1) driven by python3-grpcio with
# messages that Google's protoc generates from snapshotter/proto/snapshots.proto: every method,
# their error codes (NotFound, AlreadyExists, FailedPrecondition, InvalidArgument), a Nydus
# data layer committed as a remote snapshot, a refused Nydus bootstrap, malformed bytes, List
# streaming 250+ snapshots, Cleanup; then kill -9 and restart: the state is still there (LMDB).
. "$(dirname "$0")/../../lib/testlib.sh"
need_bin chunkfly-snapshotter
PY=/usr/bin/python3
$PY -c 'import grpc, google.protobuf' 2>/dev/null || skip "python3-grpcio/python3-protobuf not installed"
command -v protoc >/dev/null || skip "protoc (protobuf-compiler) not installed"
mkdir -p "$T/pb"
protoc --python_out="$T/pb" -I "$CHUNKFLY_SRC/snapshotter/proto" \
    "$CHUNKFLY_SRC/snapshotter/proto/snapshots.proto" || fail "protoc"

# The snapshotter leaves its chunkfly-mount running on exit (containers keep reading): stop it
# by the PID it recorded, then testlib's cleanup.
stop_mountd() {
    local rc=$? pid
    set +e
    pid=$(cat "$T/root/mount.pid" 2>/dev/null)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    for _ in $(seq 50); do [ -n "$pid" ] && is_alive "$pid" || break; sleep 0.1; done
    umount -l "$T/root/mnt" 2>/dev/null
    (exit $rc)
    cf_cleanup
}
trap stop_mountd EXIT

MPORT=$(free_port 127.0.0.1)
start_snap() {
    bg_start "$T/snap.log" "$CHUNKFLY_BIN/chunkfly-snapshotter" --root "$T/root" \
        --address "$T/snap.sock" --log-level debug --metrics-listen "127.0.0.1:$MPORT"
    SNAP_PID=$CF_LAST_PID
    for _ in $(seq 100); do [ -S "$T/snap.sock" ] && break; sleep 0.05; done
    [ -S "$T/snap.sock" ] || { cat "$T/snap.log"; fail "snapshotter did not start"; }
}
start_snap
$PY "$(dirname "$0")/snap_api.py" "$T/pb" "$T/snap.sock" "$T/root" main || { tail -20 "$T/snap.log"; fail "API checks"; }
note "metrics"
curl -sf "http://127.0.0.1:$MPORT/metrics" >"$T/metrics" || fail "GET /metrics"
grep -q "^chunkfly_snapshotter_snapshots 5$" "$T/metrics" || { cat "$T/metrics"; fail "snapshot count"; }
grep -q "^chunkfly_snapshotter_mount_errors_total 1$" "$T/metrics" || { cat "$T/metrics"; fail "attach errors"; }
grep -q "^chunkfly_snapshotter_errors_total [1-9]" "$T/metrics" || fail "errors_total"
note "kill -9 and restart"
kill -9 "$SNAP_PID"; wait "$SNAP_PID" 2>/dev/null || true
rm -f "$T/snap.sock"
start_snap
$PY "$(dirname "$0")/snap_api.py" "$T/pb" "$T/snap.sock" "$T/root" after_restart || { tail -20 "$T/snap.log"; fail "after restart"; }
kill "$SNAP_PID"; rc=0; wait "$SNAP_PID" || rc=$?
[ "$rc" = 0 ] || fail "snapshotter exited $rc on SIGTERM"
note "snapshotter API: all checks passed"
