#!/usr/bin/env bash
# Redirects: a registry front on 127.0.0.2 (Basic or Bearer auth) redirects blob GETs first to
# itself (relative Location, credentials still needed) and then to blob storage on 127.0.0.3,
# which must NEVER see an Authorization header. Also: the pre-signed query never shows up in
# logs or errors, and a flaky storage (503, then a connection dropped mid-body) is retried and
# resumed with a Range request.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"
ip route get 127.0.0.2 2>/dev/null | grep -q "dev lo" || skip "127.0.0.2 is not on lo"

head -c 1500000 /dev/urandom >"$T/blob"
d="sha256:$(sha256sum "$T/blob" | cut -d' ' -f1)"
size=1500000

# start_front NAME ARGS...: sets FRONT (host:port) and LOG
start_front() {
    local name=$1; shift
    LOG="$T/$name.log"
    : >"$LOG"
    bg_start "$T/$name.stderr" "$PY" "$HERE/redirect_server.py" --front 127.0.0.2:0 \
        --storage 127.0.0.3:0 --port-file "$T/$name.ports" --blob "$T/blob" --log "$LOG" "$@"
    for _ in $(seq 100); do [ -s "$T/$name.ports" ] && break; sleep 0.1; done
    [ -s "$T/$name.ports" ] || { cat "$T/$name.stderr"; fail "redirect server did not start"; }
    FRONT="127.0.0.2:$(cut -d' ' -f1 "$T/$name.ports")"
}
check_log() {
    grep -q "^storage GET" "$LOG" || fail "storage never reached: $(cat "$LOG")"
    if grep -q "^storage .* auth=present" "$LOG"; then
        fail "Authorization header leaked to the storage host: $(grep '^storage' "$LOG")"
    fi
    grep -q "^front GET /same-origin/blobs/.* auth=present .* status=307" "$LOG" ||
        fail "same-origin redirect lost the credentials: $(cat "$LOG")"
}

for mode in basic bearer; do
    note "$mode auth: whole blob, range and HEAD through two redirects"
    start_front "$mode" --auth "$mode"
    ref="$FRONT/r/x@$d"
    "$FETCH" --plain-http --no-config --user alice:s3cret --verify -v -o "$T/out" "$ref" 2>"$T/v.log"
    cmp "$T/blob" "$T/out" || fail "$mode: whole blob differs"
    "$FETCH" --plain-http --no-config --user alice:s3cret --range 777-88887 -o "$T/out" "$ref"
    cmp <(slice "$T/blob" 777 88111) "$T/out" || fail "$mode: range differs"
    [ "$("$FETCH" --plain-http --no-config --user alice:s3cret --head "$ref")" = $size ] ||
        fail "$mode: HEAD size"
    check_log
    grep -q "^storage GET .* range=bytes=777-88887 status=206" "$LOG" || fail "range not forwarded"
    if grep -q s3cr3tsig "$T/v.log"; then fail "pre-signed query printed in logs"; fi
    grep -q "127.0.0.3:[0-9]*/storage/$d" "$T/v.log" || fail "no debug line for the storage hop"
    expect_fail "$FETCH" --plain-http --no-config --user alice:wrong -o "$T/out" "$ref"
    grep -q "authentication failed for user alice" "$T/err" || fail "$mode: wrong password unclear"
done

note "a cached token the registry stops accepting is dropped and fetched again"
start_front expiring --auth bearer --token-uses 4 # 2 uses per fetch (two front hops)
"$FETCH" --plain-http --no-config --user alice:s3cret --range 0-99 --repeat 3 -o "$T/out" \
    "$FRONT/r/x@$d" || fail "refetch after a refused cached token failed"
cmp <(slice "$T/blob" 0 100) "$T/out" || fail "expiring: bytes differ"
[ "$(grep -c '^front GET /token .* status=200' "$LOG")" = 2 ] ||
    fail "expected 2 token fetches: $(grep '^front' "$LOG")"

note "flaky storage: 503, then a dropped connection mid-body -> retried and resumed"
start_front flaky --auth bearer --flaky
"$FETCH" --plain-http --no-config --user alice:s3cret --verify -v -o "$T/out" "$FRONT/r/x@$d" \
    2>"$T/v.log" || { cat "$T/v.log"; fail "flaky fetch failed"; }
cmp "$T/blob" "$T/out" || fail "flaky: bytes differ"
grep -q "^storage GET .* status=503" "$LOG" || fail "no 503 served"
grep -q "^storage GET .* range=bytes=$((size / 2))- status=206" "$LOG" ||
    fail "no resume from byte $((size / 2)): $(grep '^storage' "$LOG")"
grep -q "retry 2/" "$T/v.log" || fail "retries not logged"
check_log
echo PASS
