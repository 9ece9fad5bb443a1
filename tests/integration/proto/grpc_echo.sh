#!/usr/bin/env bash
# proto/grpc against independent clients: python3-grpcio (gRPC C-core) for unary and
# server-streaming calls, sizes, statuses, limits, concurrency, cancellation and max_conns;
# curl (HTTP/2 prior knowledge) for what grpcio cannot send: a wrong content-type (415), an
# oversized header block, an HTTP/1.1 request. The server must stop cleanly on SIGTERM (exit 0,
# so no leak under the Sanitize build).
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"

PY=/usr/bin/python3 # Debian's, which has python3-grpcio (a pyenv python3 may not)
"$PY" -c 'import grpc' 2>/dev/null || skip "python3-grpcio not installed for $PY"
SERVER="$CHUNKFLY_BUILD/tests/grpc_echo_server"
[ -x "$SERVER" ] || fail "$SERVER not built"
SOCK="$T/grpc.sock"
MAX_CONNS=4

note "stale socket file is replaced"
"$PY" -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$SOCK"
bg_start "$T/server.log" "$SERVER" "$SOCK" "$MAX_CONNS"
SPID=$CF_LAST_PID
for _ in $(seq 100); do grep -q ready "$T/server.log" && break; sleep 0.05; done
grep -q ready "$T/server.log" || { cat "$T/server.log"; fail "server did not start"; }
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "socket mode $(stat -c %a "$SOCK"), want 600"

"$PY" "$CHUNKFLY_SRC/tests/integration/proto/grpc_echo_client.py" "$SOCK" "$MAX_CONNS" ||
    { tail -20 "$T/server.log"; fail "grpcio client checks"; }

url=http://localhost/test.Echo/Unary
printf '\0\0\0\0\2hi' >"$T/req"
# A gRPC echo through curl (HTTP/2 prior knowledge, no grpc library involved).
curl_echo() {
    curl -s --http2-prior-knowledge --unix-socket "$SOCK" -o "$T/resp" \
        -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @"$T/req" "$url" &&
        cmp -s "$T/req" "$T/resp"
}
note "curl echo (once the server has seen the python connections close: max_conns)"
for _ in $(seq 50); do curl_echo && break; sleep 0.1; done
curl_echo || fail "curl gRPC echo"

note "content-type not application/grpc: HTTP 415"
# Without a body: with one, the answer comes before the upload ends and is followed by
# RST_STREAM(NO_ERROR) (RFC 9113 8.1), which curl 7.88 reports as error 92 half of the time.
code=$(curl -s --http2-prior-knowledge --unix-socket "$SOCK" -o /dev/null -w '%{http_code}' \
    -X POST -H 'content-type: text/plain' "$url")
[ "$code" = 415 ] || fail "content-type text/plain: HTTP $code, want 415"

note "header block over 16 KiB: stream reset, server keeps serving"
big=$(head -c 20000 /dev/zero | tr '\0' a)
if curl -s --http2-prior-knowledge --unix-socket "$SOCK" -o /dev/null -H "x-big: $big" \
    -H 'content-type: application/grpc' --data-binary x "$url"; then
    fail "a 20 KB header was accepted"
fi

note "HTTP/1.1 instead of HTTP/2: connection closed, not hung"
timeout 5 curl -s --unix-socket "$SOCK" -o /dev/null http://localhost/ || [ $? != 124 ] ||
    fail "HTTP/1.1 request hung"

note "still serving after all that"
curl_echo || fail "curl gRPC echo after the bad requests"

note "SIGTERM with a Slow call pending: the call outlives the server, clean exit"
"$PY" -c '
import grpc, sys
ch = grpc.insecure_channel("unix:" + sys.argv[1])
ch.unary_unary("/test.Echo/Unary")(b"connect", timeout=5)
f = ch.unary_unary("/test.Echo/Slow").future(b"z", timeout=5)
print("sent", flush=True)
try:
    f.result()
    print("Slow call completed")
except grpc.RpcError as e:
    print("Slow call ended:", e.code())
' "$SOCK" >"$T/pending.log" 2>&1 &
PPID_SLOW=$!
for _ in $(seq 100); do grep -q sent "$T/pending.log" && break; sleep 0.02; done
sleep 0.05 # the request reaches the server; its 200 ms timer is pending
kill "$SPID"
rc=0
wait "$SPID" || rc=$?
wait "$PPID_SLOW" || true
[ $rc = 0 ] || { tail -30 "$T/server.log"; fail "server exit status $rc (leak or handles left?)"; }
grep -q "Slow call ended" "$T/pending.log" || fail "pending Slow call: $(cat "$T/pending.log")"
grep -q "exit: slow_gone=3 slow_epipe=3 slow_done=1" "$T/server.log" ||
    fail "pending call not seen gone: $(grep exit: "$T/server.log")"
[ ! -e "$SOCK" ] || fail "socket file left behind"
echo "PASS"
