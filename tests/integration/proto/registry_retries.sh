#!/usr/bin/env bash
# Retry policy against a scripted registry front (redirect_server.py): 5xx forever -> EAGAIN
# after the retries, within the budget; 429 with Retry-After is waited for and then succeeds;
# 4xx answers (404, 401) are never retried.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"
ip route get 127.0.0.2 2>/dev/null | grep -q "dev lo" || skip "127.0.0.2 is not on lo"

head -c 100000 /dev/urandom >"$T/blob"
d="sha256:$(sha256sum "$T/blob" | cut -d' ' -f1)"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
start_front() { # NAME ARGS...
    local name=$1; shift
    LOG="$T/$name.log"
    : >"$LOG"
    bg_start "$T/$name.stderr" "$PY" "$HERE/redirect_server.py" --front 127.0.0.2:0 \
        --storage 127.0.0.3:0 --port-file "$T/$name.ports" --blob "$T/blob" --log "$LOG" "$@"
    for _ in $(seq 100); do [ -s "$T/$name.ports" ] && break; sleep 0.1; done
    [ -s "$T/$name.ports" ] || { cat "$T/$name.stderr"; fail "redirect server did not start"; }
    FRONT="127.0.0.2:$(cut -d' ' -f1 "$T/$name.ports")"
}
blob_gets() { grep -c "^front GET /v2/r/x/blobs/.* status=$1" "$LOG" || true; }

note "503 forever: 5 attempts, then EAGAIN"
start_front s503 --fail-status 503
t0=$(now_ms)
expect_fail "$FETCH" --plain-http --no-config --user alice:s3cret -o "$T/out" "$FRONT/r/x@$d"
[ $(($(now_ms) - t0)) -lt 10000 ] || fail "503 retries exceeded 10 s"
grep -q "HTTP 503 (5 attempts in" "$T/err" || fail "503: message unclear"
grep -q "\[EAGAIN\]" "$T/err" || fail "503: not EAGAIN"
[ "$(blob_gets 503)" = 5 ] || fail "503: expected 5 blob GETs, got $(blob_gets 503)"

note "429 twice with Retry-After: 1, then success"
start_front s429 --fail-status 429 --fail-count 2 --retry-after 1
t0=$(now_ms)
"$FETCH" --plain-http --no-config --user alice:s3cret --verify -o "$T/out" "$FRONT/r/x@$d" 2>"$T/v.log" ||
    { cat "$T/v.log"; fail "429 then success failed"; }
ms=$(($(now_ms) - t0))
cmp "$T/blob" "$T/out" || fail "429: bytes differ"
[ "$ms" -ge 2000 ] || fail "Retry-After not honoured (${ms} ms for two 1 s pauses)"
grep -q "HTTP 429; retry 2/4 in 1000 ms" "$T/v.log" || fail "429 retries not logged: $(cat "$T/v.log")"

note "404 and 401 are not retried"
start_front s404 --fail-status 404
expect_fail "$FETCH" --plain-http --no-config --user alice:s3cret -o "$T/out" "$FRONT/r/x@$d"
grep -q "\[ENOENT\]" "$T/err" || fail "404: not ENOENT"
[ "$(blob_gets 404)" = 1 ] || fail "404 was retried: $(blob_gets 404) GETs"
before=$(blob_gets 401)
expect_fail "$FETCH" --plain-http --no-config --user alice:bad -o "$T/out" "$FRONT/r/x@$d"
n=$(($(blob_gets 401) - before))
[ "$n" = 2 ] || fail "401: expected 2 GETs (anonymous probe, then basic once), got $n"
echo PASS
