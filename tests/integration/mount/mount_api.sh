#!/usr/bin/env bash
# chunkfly-mount's API over --apisock (nydusd's subset, runtime-contracts.md §1):
#  - shared mode (no --bootstrap): two images attached at /<sid> with POST /api/v1/mount (one
#    with a nydusd localfs config string, one with a blobcache work_dir), both served, daemon
#    info RUNNING with both in backend_collection, metrics per image, blobcache
#    underlying_files, one detached with DELETE (gone from the mount, the other still served);
#  - bad input gets a JSON {"code","message"} and the daemon keeps serving: unknown path, bad
#    JSON, missing bootstrap, a bad config key, a name taken twice, DELETE of an unknown name;
#  - one keep-alive connection serves requests before and after idling;
#  - dedicated mode with --apisock: RUNNING within 2 s of the socket appearing, POST refused;
#  - PUT /api/v1/daemon/exit unmounts and ends the daemon.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/mount_lib.sh"
command -v curl >/dev/null || skip "curl not installed"

for n in 1 2; do
    mkdir -p "$T/src$n/dir"
    echo "image $n" >"$T/src$n/dir/name"
    head -c $((n * 3000000)) /dev/urandom >"$T/src$n/data"
    "$CFI" create -l warn -t dir-rafs -B "$T/boot$n" -D "$T/blobs$n" "$T/src$n" || fail "create $n"
done
SOCK=$T/api.sock
api() { # api METHOD PATH [BODY] -> prints "CODE BODY"
    local m=$1 p=$2
    shift 2
    curl -s --unix-socket "$SOCK" -X "$m" "http://localhost$p" ${1:+--data-binary "$1"} -w ' %{http_code}'
}
expect() { # expect CODE PATTERN METHOD PATH [BODY]
    local code=$1 pat=$2 out
    shift 2
    out=$(api "$@")
    [ "${out##* }" = "$code" ] || fail "$1 $2: HTTP ${out##* }, want $code: $out"
    echo "${out% *}" | grep -Eq -- "$pat" || fail "$1 $2: body '${out% *}' does not match /$pat/"
}

mkdir -p "$T/mnt"
bg_start "$T/shared.log" "$CFM" fuse --mountpoint "$T/mnt" --apisock "$SOCK" --id shared-1 \
    --log-level info
PID=$CF_LAST_PID
CF_MOUNTS+=("$T/mnt")
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || fail "no API socket after 10 s: $(tail -3 "$T/shared.log")"
expect 200 '"state":"RUNNING"' GET /api/v1/daemon
expect 200 '"id":"shared-1".*"git_commit"' GET /api/v1/daemon

cfg1=$(python3 -c 'import json,sys; print(json.dumps(json.dumps({"device": {"backend": {"type": "localfs", "config": {"dir": sys.argv[1]}}, "cache": {"type": "blobcache", "config": {"work_dir": sys.argv[2]}}}, "mode": "direct", "digest_validate": False, "enable_xattr": True})))' "$T/blobs1" "$T/cache1")
cfg2=$(python3 -c 'import json,sys; print(json.dumps(json.dumps({"device": {"backend": {"type": "localfs", "config": {"dir": sys.argv[1]}}}})))' "$T/blobs2")
expect 204 '' POST '/api/v1/mount?mountpoint=/sid1' "{\"fs_type\":\"rafs\",\"source\":\"$T/boot1\",\"config\":$cfg1}"
expect 204 '' POST '/api/v1/mount?mountpoint=/sid2' "{\"fs_type\":\"rafs\",\"source\":\"$T/boot2\",\"config\":$cfg2,\"prefetch_files\":[\"/data\"]}"
[ "$(cat "$T/mnt/sid1/dir/name")" = "image 1" ] || fail "/sid1 content"
[ "$(cat "$T/mnt/sid2/dir/name")" = "image 2" ] || fail "/sid2 content"
cmp "$T/src1/data" "$T/mnt/sid1/data" || fail "/sid1/data differs"
cmp "$T/src2/data" "$T/mnt/sid2/data" || fail "/sid2/data differs"
[ "$(ls "$T/mnt" | tr '\n' ' ')" = "sid1 sid2 " ] || fail "root lists $(ls "$T/mnt")"
expect 200 '"backend_collection":\{.*"sid1".*"sid2"' GET /api/v1/daemon
expect 200 '"id":"sid1".*"data_read":[1-9]' GET '/api/v1/metrics?id=/sid1'
expect 200 '"chunks_fetched":[1-9]' GET '/api/v1/metrics'
expect 200 "\"underlying_files\":\\[\"$T/cache1/[0-9a-f]{64}\\.blob\\.data\"" GET '/api/v1/metrics/blobcache?id=/sid1'
expect 204 '' GET /api/v1/metrics/inflight
note "two images attached in shared mode, served, listed, metrics per image"

# bad input: JSON errors, the daemon keeps serving
expect 404 '"code":"NotFound".*no such API' GET /api/v1/nope
expect 405 '"code":"MethodNotAllowed"' POST /api/v1/daemon
expect 400 '"code":"InvalidArgument".*not a JSON object' POST '/api/v1/mount?mountpoint=/x' '{bad json'
expect 400 '"message":"bootstrap .*/missing.boot' POST '/api/v1/mount?mountpoint=/x' "{\"source\":\"$T/missing.boot\",\"config\":$cfg2}"
expect 400 'device.backend.config.dri: unknown key' POST '/api/v1/mount?mountpoint=/x' "{\"source\":\"$T/boot1\",\"config\":\"{\\\"device\\\":{\\\"backend\\\":{\\\"type\\\":\\\"localfs\\\",\\\"config\\\":{\\\"dri\\\":\\\"/\\\"}}}}\"}"
expect 409 'already mounted' POST '/api/v1/mount?mountpoint=/sid1' "{\"source\":\"$T/boot1\",\"config\":$cfg1}"
expect 400 'mountpoint=/<name> is required' POST '/api/v1/mount' "{\"source\":\"$T/boot1\",\"config\":$cfg1}"
expect 404 'not mounted' DELETE '/api/v1/mount?mountpoint=/nothere'
[ -e "$T/mnt/x" ] && fail "a failed attach left /x"
[ "$(cat "$T/mnt/sid2/dir/name")" = "image 2" ] || fail "not serving after bad input"
note "bad API input: JSON errors, daemon still serving"

# one keep-alive connection, used, idle, used again
python3 - "$SOCK" <<'PY' || fail "keep-alive connection"
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
def get():
    s.sendall(b"GET /api/v1/daemon HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data: data += s.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < n: body += s.recv(4096)
    assert b"RUNNING" in body
get(); time.sleep(2); get()
PY

# detach one
expect 204 '' DELETE '/api/v1/mount?mountpoint=/sid1'
[ -e "$T/mnt/sid1" ] && fail "/sid1 still there after DELETE"
[ "$(ls "$T/mnt")" = sid2 ] || fail "root lists $(ls "$T/mnt") after DELETE"
cmp "$T/src2/data" "$T/mnt/sid2/data" || fail "/sid2 after detaching /sid1"
expect 200 '"backend_collection":\{"sid2"' GET /api/v1/daemon
# attach again under the same name
expect 204 '' POST '/api/v1/mount?mountpoint=/sid1' "{\"source\":\"$T/boot1\",\"config\":$cfg1}"
[ "$(cat "$T/mnt/sid1/dir/name")" = "image 1" ] || fail "/sid1 after re-attach"
note "DELETE detached /sid1 (the other image kept serving), POST attached it again"

expect 204 '' PUT /api/v1/daemon/exit
for _ in $(seq 50); do is_alive "$PID" || break; sleep 0.1; done
is_alive "$PID" && fail "daemon still running after PUT /api/v1/daemon/exit"
is_mounted "$T/mnt" && fail "still mounted after exit"
[ -e "$SOCK" ] && fail "socket left behind"
note "PUT /api/v1/daemon/exit: unmounted and exited"

# dedicated mode with an API
rm -f "$SOCK"
MPORT=$(free_port)
bg_start "$T/ded.log" "$CFM" fuse --mountpoint "$T/mnt" --bootstrap "$T/boot1" --blob-dir "$T/blobs1" \
    --apisock "$SOCK" --id ded --metrics-listen "127.0.0.1:$MPORT"
PID=$CF_LAST_PID
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || fail "dedicated: no API socket"
expect 200 '"state":"RUNNING"' GET /api/v1/daemon
[ "$(cat "$T/mnt/dir/name")" = "image 1" ] || fail "dedicated content"
expect 409 'dedicated' POST '/api/v1/mount?mountpoint=/y' "{\"source\":\"$T/boot2\",\"config\":$cfg2}"
expect 200 '"data_read":[1-9]' GET /api/v1/metrics
prom=$(curl -s "http://127.0.0.1:$MPORT/metrics")
echo "$prom" | grep -Eq '^chunkfly_mount_bytes_read_total\{image="/"\} [1-9]' || fail "Prometheus: $prom"
echo "$prom" | grep -Eq '^chunkfly_mount_read_seconds_count\{image="/"\} [1-9]' || fail "Prometheus latency: $prom"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/api/v1/daemon")" = 404 ] ||
    fail "the API answers on the metrics port"
note "Prometheus /metrics on --metrics-listen (and nothing else there)"
mount_stop "$PID" "$T/mnt"
no_sanitizer_reports
echo "PASS: API (shared mode attach/detach, info, metrics, JSON errors, keep-alive, exit)"
