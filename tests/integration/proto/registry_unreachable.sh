#!/usr/bin/env bash
# An unreachable or hung origin gives a clear error within 10 s with default settings:
# refused port (retried with backoff), connect timeout (SYNs dropped by a full accept queue),
# and a server that accepts but never answers (stall timeout).
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"

d="sha256:$(printf x | sha256sum | cut -d' ' -f1)"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
start_dead() { # MODE -> DEAD=host:port
    bg_start "$T/$1.stderr" "$PY" "$HERE/dead_server.py" --mode "$1" --port-file "$T/$1.port"
    for _ in $(seq 100); do [ -s "$T/$1.port" ] && break; sleep 0.1; done
    [ -s "$T/$1.port" ] || fail "dead_server $1 did not start"
    DEAD="127.0.0.1:$(cat "$T/$1.port")"
}

note "refused port"
port=$(free_port)
t0=$(now_ms)
expect_fail "$FETCH" --plain-http --no-config -o "$T/out" "127.0.0.1:$port/r/x@$d"
ms=$(($(now_ms) - t0))
[ "$ms" -lt 10000 ] || fail "refused port took $ms ms"
grep -q "registry 127.0.0.1:$port: GET http://127.0.0.1:$port/v2/r/x/blobs/$d: .*refused.*(5 attempts in" \
    "$T/err" || fail "refused: message unclear"
grep -q "\[ECONNREFUSED\]" "$T/err" || fail "refused: not ECONNREFUSED"

note "connect timeout (accept queue full, SYNs dropped)"
start_dead blackhole
t0=$(now_ms)
expect_fail "$FETCH" --plain-http --no-config --head "$DEAD/r/x@$d"
ms=$(($(now_ms) - t0))
[ "$ms" -lt 10000 ] || fail "connect timeout took $ms ms"
[ "$ms" -ge 4000 ] || fail "connect timeout after only $ms ms (default connect timeout is 5 s)"
grep -qi "timeout\|timed out" "$T/err" || fail "connect timeout: message unclear"
grep -q "\[ETIMEDOUT\]" "$T/err" || fail "not ETIMEDOUT"

note "hung server, 1 s stall timeout, retried within the budget"
start_dead silent
t0=$(now_ms)
expect_fail "$FETCH" --plain-http --no-config --stall-timeout 1000 --retries 2 -o "$T/out" "$DEAD/r/x@$d"
ms=$(($(now_ms) - t0))
[ "$ms" -lt 10000 ] || fail "stall took $ms ms"
grep -q "\[ETIMEDOUT\]" "$T/err" || fail "stall: not ETIMEDOUT"
grep -q "attempts in" "$T/err" || fail "stall: not retried"

note "retries can be turned off"
t0=$(now_ms)
expect_fail "$FETCH" --plain-http --no-config --retries -1 -o "$T/out" "127.0.0.1:$port/r/x@$d"
grep -q "(1 attempt in" "$T/err" || fail "--retries -1 still retried"
echo PASS
