#!/usr/bin/env bash
# chunkfly-convertd between two real docker-registries: the source notifies convertd of every
# push (its config's notifications.endpoints, with the Authorization header), convertd converts
# into the target registry (tag + "-nydus"). Images: small umoci images pushed with skopeo.
# Checks:
#  - a push to the source triggers a job; the target passes `chunkfly check` and carries the
#    Nydus annotations (nydus-source-digest = the source's digest);
#  - the API: POST ?sync=true, the task list, /api/v1/health, /metrics; an already converted
#    source completes as "already converted" without converting; a target as source is skipped;
#  - a missing or wrong Authorization header: 401 and no job; malformed and oversized bodies:
#    400 / 413;
#  - single flight: a second trigger for a queued source joins its job;
#  - kill -9 with queued jobs (one running, held up by the target registry being down): after
#    the restart every job completes, the running one counted as recovered;
#  - a Harbor PUSH_ARTIFACT webhook converts.
. "$(dirname "$0")/../../lib/testlib.sh"
command -v umoci >/dev/null || skip "umoci not installed"
command -v skopeo >/dev/null || skip "skopeo not installed"
need_bin chunkfly-convertd
need_bin chunkfly
CVD=$CHUNKFLY_BIN/chunkfly-convertd
CF=$CHUNKFLY_BIN/chunkfly
SECRET="Bearer s3cret-$$"

note "source images (umoci): one base layer, one small layer per tag"
mkdir -p "$T/base/etc" "$T/base/usr/bin"
echo base >"$T/base/etc/config"; head -c 300000 /dev/urandom >"$T/base/usr/bin/tool"
tar --numeric-owner -C "$T/base" -cf "$T/base.tar" .
cd "$T" || exit 1
umoci init --layout oci >/dev/null
TAGS="v1 v2 v3 v4 v5 v6 h1"
for t in $TAGS; do
    mkdir -p "$T/l-$t/data"
    # v3..v6 are bigger: converting one takes long enough to find the others queued at a kill
    case $t in v[3-6]) size=12000000 ;; *) size=200000 ;; esac
    echo "tag $t" >"$T/l-$t/data/which"; head -c $size /dev/urandom >"$T/l-$t/data/blob"
    tar --numeric-owner -C "$T/l-$t" -cf "$T/l-$t.tar" .
    umoci new --image "oci:$t" >/dev/null
    umoci raw add-layer --image "oci:$t" "$T/base.tar" >/dev/null
    umoci raw add-layer --image "oci:$t" "$T/l-$t.tar" >/dev/null
done

start_registry 127.0.0.1 "" target
TREG=$REGISTRY
TPID=$REGISTRY_PID
TDIR=$REGISTRY_DIR
CPORT=$(free_port)
API=http://127.0.0.1:$CPORT
start_registry 127.0.0.1 "notifications:
  endpoints:
    - name: convertd
      url: $API/api/v1/conversions
      headers: {Authorization: [\"$SECRET\"]}
      timeout: 3s
      threshold: 5
      backoff: 1s" source
SREG=$REGISTRY

cat >"$T/convertd.conf" <<EOF
# as deploy/config/convertd.conf, with the test's ports and paths
listen = 127.0.0.1:$CPORT
auth_header = "$SECRET"
workers = 2
work_dir = $T/cvd
target_registry = $TREG
retry_backoff = 500ms
log_level = info
EOF
start_cvd() { # start_cvd LOG [FLAGS...]
    bg_start "$1" "$CVD" --config "$T/convertd.conf" "${@:2}"
    CVD_PID=$CF_LAST_PID
    wait_port 127.0.0.1 "$CPORT"
}
start_cvd "$T/cvd1.log"

post() { # post [CURL ARGS...] -> body on stdout, status in $T/status
    curl -sS -o "$T/body" -w '%{http_code}' -X POST -H "Authorization: $SECRET" \
        -H 'Content-Type: application/json' "$@" >"$T/status"
    cat "$T/body"
}
status() { cat "$T/status"; }
tasks() { curl -sSf "$API/api/v1/conversions"; }
# task_status SOURCE: the status of the newest task of SOURCE ("" when none)
task_status() {
    tasks | python3 -c 'import json,sys
t=[x for x in json.load(sys.stdin) if x["source"]==sys.argv[1]]
print(t[-1]["status"] if t else "")' "$1"
}
wait_status() { # wait_status SOURCE STATUS [SECONDS]
    local i s
    for i in $(seq $((${3:-30} * 5))); do
        s=$(task_status "$1")
        [ "$s" = "$2" ] && return 0
        [ "$s" = FAILED ] && [ "$2" != FAILED ] && { tasks; fail "$1: FAILED"; }
        sleep 0.2
    done
    tasks; fail "$1: status '$s' after ${3:-30}s, expected $2"
}
# check_target TAG: the target is a Nydus image of the source (structure, blobs, tree)
check_target() {
    "$CF" check --work-dir "$T/check" "$SREG/src/app:$1" "$TREG/src/app:$1-nydus" \
        2>"$T/check-$1.log" || fail "chunkfly check $1: $(cat "$T/check-$1.log")"
    grep -q "^check passed" "$T/check-$1.log" || fail "check $1: $(cat "$T/check-$1.log")"
}
push() { skopeo copy -q --dest-tls-verify=false "oci:$T/oci:$1" "docker://$SREG/src/app:$1"; }

note "a push to the source registry triggers a conversion (registry notifications)"
t0=$(date +%s%N)
push v1 || fail "skopeo push v1"
wait_status "$SREG/src/app:v1" COMPLETED 30
note "pushed to converted: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
check_target v1
curl -sSf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$TREG/v2/src/app/manifests/v1-nydus" >"$T/man-v1.json"
sd=$(curl -sSf -o /dev/null -w '%header{docker-content-digest}' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$SREG/v2/src/app/manifests/v1")
python3 - "$T/man-v1.json" "$sd" "$SREG/src/app:v1" <<'PY' || fail "target annotations"
import json, sys
m = json.load(open(sys.argv[1])); a = m["annotations"]
assert a["containerd.io/snapshot/nydus-source-digest"] == sys.argv[2], (a, sys.argv[2])
assert a["containerd.io/snapshot/nydus-source-reference"] == sys.argv[3], a
assert a["containerd.io/snapshot/nydus-fs-version"] == "6"
assert m["layers"][-1]["annotations"]["containerd.io/snapshot/nydus-bootstrap"] == "true"
PY
# convertd's own target pushes go to the other registry; the source registry's blob pushes and
# pulls were events too, ignored: exactly one task so far
[ "$(tasks | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 1 ] ||
    { tasks; fail "expected one task"; }

note "the API: POST ?sync=true answers when the conversion is done"
push v2 >/dev/null || fail "skopeo push v2"
# (the push's own notification may already have queued it: then this joins that job)
post "$API/api/v1/conversions?sync=true" -d "{\"src\": \"$SREG/src/app:v2\"}" >"$T/sync.json"
[ "$(status)" = 200 ] || fail "sync POST: $(status) $(cat "$T/sync.json")"
python3 - "$T/sync.json" "$TREG/src/app:v2-nydus" <<'PY' || fail "sync answer: $(cat "$T/sync.json")"
import json, sys
t = json.load(open(sys.argv[1]))["tasks"]
assert len(t) == 1 and t[0]["status"] == "COMPLETED" and t[0]["target"] == sys.argv[2], t
assert t[0]["id"] > 0 and t[0]["created"] and t[0]["finished"]
PY
check_target v2
note "an explicit target"
post "$API/api/v1/conversions?sync=true" \
    -d "{\"src\": \"$SREG/src/app:v2\", \"target\": \"$TREG/other/app:mine\"}" >/dev/null
[ "$(status)" = 200 ] || fail "explicit target: $(status) $(cat "$T/body")"
curl -sSf -o /dev/null -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://$TREG/v2/other/app/manifests/mine" || fail "explicit target missing"

note "already converted: completes without converting"
t0=$(date +%s%N)
post "$API/api/v1/conversions?sync=true" -d "{\"src\": \"$SREG/src/app:v1\"}" >"$T/again.json"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q '"reason":"already converted"' "$T/again.json" || fail "second conversion: $(cat "$T/again.json")"
note "already-converted check: $ms ms (POST to answer)"
# against client_convert's own second run (cache in its work dir: nothing built or pushed
# but the manifest): what the check saves
t0=$(date +%s%N)
"$CF" convert -q --work-dir "$T/cvd/worker-0" "$SREG/src/app:v1" "$TREG/src/app:v1-nydus" \
    >/dev/null 2>"$T/conv2.log" ||
    "$CF" convert -q --work-dir "$T/cvd/worker-1" "$SREG/src/app:v1" "$TREG/src/app:v1-nydus" \
        >/dev/null 2>"$T/conv2.log" || fail "chunkfly convert again: $(cat "$T/conv2.log")"
note "chunkfly convert of the same image again (its fast path): $(( ($(date +%s%N) - t0) / 1000000 )) ms"

note "a target as source is skipped"
post "$API/api/v1/conversions" -d "{\"src\": \"$TREG/src/app:v1-nydus\"}" >"$T/skip.json"
[ "$(status)" = 200 ] && grep -q '"skipped"' "$T/skip.json" || fail "target as source: $(cat "$T/skip.json")"

note "health and metrics"
[ "$(curl -sSf "$API/api/v1/health")" = Ok ] || fail "health"
curl -sSf "$API/metrics" >"$T/metrics"
for m in jobs_queued jobs_running jobs_done_total jobs_failed_total job_seconds_sum job_seconds_count; do
    grep -q "^chunkfly_convertd_$m " "$T/metrics" || fail "metrics: no $m"
done
done_n=$(sed -n 's/^chunkfly_convertd_jobs_done_total //p' "$T/metrics")
[ "$done_n" -ge 4 ] || fail "metrics: done $done_n, expected >= 4"

note "Authorization: missing or wrong -> 401, no job"
n0=$(tasks | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -d "{\"src\": \"$SREG/src/app:v3\"}" \
    "$API/api/v1/conversions")
[ "$code" = 401 ] || fail "no Authorization: $code"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: ${SECRET}x" \
    -d "{\"src\": \"$SREG/src/app:v3\"}" "$API/api/v1/conversions")
[ "$code" = 401 ] || fail "wrong Authorization: $code"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: ${SECRET%?}" \
    -d "{\"src\": \"$SREG/src/app:v3\"}" "$API/api/v1/conversions")
[ "$code" = 401 ] || fail "Authorization prefix: $code"
[ "$(tasks | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = "$n0" ] ||
    fail "a refused POST made a job"
grep -q '^chunkfly_convertd_requests_unauthorized_total 3$' <(curl -sSf "$API/metrics") ||
    fail "unauthorized not counted"

note "bad bodies: 400, 413"
post "$API/api/v1/conversions" -d '{"src": 5}' >/dev/null
[ "$(status)" = 400 ] && grep -q '\\"src\\": expected a string' "$T/body" || fail "bad src: $(status) $(cat "$T/body")"
post "$API/api/v1/conversions" -d '{"src": "UPPER/Case:x"}' >/dev/null
[ "$(status)" = 400 ] || fail "bad reference: $(status) $(cat "$T/body")"
post "$API/api/v1/conversions" -d 'not json' >/dev/null
[ "$(status)" = 400 ] || fail "not JSON: $(status)"
head -c 1200000 /dev/zero | tr '\0' ' ' >"$T/big.json"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: $SECRET" \
    --data-binary @"$T/big.json" "$API/api/v1/conversions" || true)
[ "$code" = 413 ] || fail "oversized body: $code"

note "kill -9 with queued jobs, restart: every job completes"
bg_stop "$CVD_PID"
# pushed while convertd is down: the registry retries its notifications until it is back
for t in v3 v4 v5 v6; do push "$t" || fail "push $t"; done
# the target registry down: the one worker's job waits on it (the registry client retries for
# ~10 s), so the others stay queued until the kill
bg_stop "$TPID"
start_cvd "$T/cvd2.log" --workers 1
# one webhook naming the four (a Harbor-style batch), v3 last: it waits behind the others
post "$API/api/v1/conversions" -d "{\"type\": \"PUSH_ARTIFACT\", \"event_data\": {\"resources\": [
  {\"resource_url\": \"$SREG/src/app:v4\"}, {\"resource_url\": \"$SREG/src/app:v5\"},
  {\"resource_url\": \"$SREG/src/app:v6\"}, {\"resource_url\": \"$SREG/src/app:v3\"}]}}" >"$T/batch.json"
[ "$(status)" = 200 ] || fail "batch: $(status) $(cat "$T/batch.json")"
# a second trigger for a queued source joins its job (single flight)
post "$API/api/v1/conversions" -d "{\"src\": \"$SREG/src/app:v3\"}" >"$T/again-v3.json"
python3 - "$T/batch.json" "$T/again-v3.json" <<'PY' || fail "single flight: $(cat "$T/batch.json" "$T/again-v3.json")"
import json, sys
b = json.load(open(sys.argv[1]))["tasks"]; a = json.load(open(sys.argv[2]))["tasks"]
assert len(b) == 4 and a[0]["id"] == b[3]["id"] and a[0]["joined"] is True, (b, a)
PY
tasks >"$T/before-kill.json"
kill -9 "$CVD_PID"
wait "$CVD_PID" 2>/dev/null || true
python3 - "$T/before-kill.json" <<'PY' || fail "no queued job at the kill: $(cat "$T/before-kill.json")"
import json, sys
t = json.load(open(sys.argv[1]))
assert sum(x["status"] == "QUEUED" for x in t) == 3, [(x["source"], x["status"]) for x in t]
assert sum(x["status"] == "PROCESSING" for x in t) == 1, [(x["source"], x["status"]) for x in t]
PY
note "at the kill: $(python3 -c 'import json,sys,collections; print(dict(collections.Counter(x["status"] for x in json.load(open(sys.argv[1])))))' "$T/before-kill.json")"
bg_start "$TDIR/log2" docker-registry serve "$TDIR/config.yml"
wait_port 127.0.0.1 "${TREG##*:}"
t0=$(date +%s%N)
start_cvd "$T/cvd3.log"
for t in v3 v4 v5 v6; do wait_status "$SREG/src/app:$t" COMPLETED 40; done
note "after the restart, all done in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
for t in v3 v6; do check_target "$t"; done
for t in v4 v5; do curl -sSf -o /dev/null -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://$TREG/v2/src/app/manifests/$t-nydus" || fail "$t-nydus missing"; done
grep -q "was running at the last stop: queued again" "$T/cvd3.log" || fail "the interrupted job was not recovered"
grep -q '^chunkfly_convertd_jobs_recovered_total 1$' <(curl -sSf "$API/metrics") || fail "recovered metric"

note "a Harbor PUSH_ARTIFACT webhook"
push h1 || fail "push h1"
post "$API/api/v1/conversions?sync=true" -d "{\"type\": \"PUSH_ARTIFACT\", \"occur_at\": 1, \"operator\": \"admin\",
  \"event_data\": {\"resources\": [{\"digest\": \"sha256:00\", \"tag\": \"h1\", \"resource_url\": \"$SREG/src/app:h1\"}],
  \"repository\": {\"name\": \"app\", \"namespace\": \"src\", \"repo_full_name\": \"src/app\"}}}" >"$T/harbor.json"
[ "$(status)" = 200 ] && grep -q '"status":"COMPLETED"' "$T/harbor.json" || fail "harbor webhook: $(cat "$T/harbor.json")"
check_target h1
# other Harbor events are ignored
post "$API/api/v1/conversions" -d '{"type": "DELETE_ARTIFACT", "event_data": {"resources": []}}' >/dev/null
[ "$(status)" = 200 ] || fail "DELETE_ARTIFACT: $(status)"

note "convertd peak RSS (4 conversions of 12 MiB images, 2 workers): $(sed -n 's/^VmHWM:[[:space:]]*//p' "/proc/$CVD_PID/status")"
bg_stop "$CVD_PID"
grep -q "stopping" "$T/cvd3.log" || fail "no clean stop"
! grep -qiE "ERROR|AddressSanitizer|runtime error" "$T"/cvd*.log || { cat "$T"/cvd*.log; fail "errors in convertd's log"; }
echo ok
