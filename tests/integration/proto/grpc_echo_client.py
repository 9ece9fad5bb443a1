#!/usr/bin/python3
"""Client half of grpc_echo.sh: python3-grpcio (gRPC C-core, an implementation independent of
ours) against grpc_echo_server. Usage: grpc_echo_client.py SOCKET MAX_CONNS.
Prints one line per check; raises (exit 1) on the first failure."""
import concurrent.futures
import os
import sys
import time

import grpc

SOCK, MAX_CONNS = sys.argv[1], int(sys.argv[2])
TARGET = "unix:" + SOCK
MIB = 1 << 20
# Each channel its own connection (python channels otherwise share subchannels).
OPTS = [("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", 64 * MIB),
        ("grpc.enable_retries", 0)]


def channel():
    return grpc.insecure_channel(TARGET, options=OPTS)


def methods(ch):
    return {n: ch.unary_unary("/test.Echo/" + n)
            for n in ("Unary", "Fail", "Slow", "Stats", "Header")} | {
        "Stream": ch.unary_stream("/test.Echo/Stream"),
        "Nope": ch.unary_unary("/test.Echo/Nope")}


def expect_error(fn, req, code, timeout=10):
    try:
        fn(req, timeout=timeout)
    except grpc.RpcError as e:
        if e.code() != code:
            raise AssertionError(f"want {code}, got {e.code()}: {e.details()}")
        return e.details()
    raise AssertionError(f"want {code}, the call succeeded")


def check(name):
    print("ok", name, flush=True)


ch = channel()
m = methods(ch)

for size in (0, 1, 3 * MIB, 4 * MIB):
    data = os.urandom(size)
    got = m["Unary"](data, timeout=20)
    assert got == data, f"echo of {size} bytes differs ({len(got)} back)"
check("unary echo of 0, 1 byte, 3 MiB, 4 MiB (the limit)")

got = list(m["Stream"](b"1000", timeout=20))
assert got == [str(i).encode() for i in range(1000)], f"stream: {len(got)} messages"
check("server stream of 1000 messages, in order")

got = list(m["Stream"](b"4 3145728", timeout=20))
assert [len(x) for x in got] == [3 * MIB] * 4, "4 x 3 MiB stream"
check("server stream of 4 x 3 MiB")

# 8 MiB messages: the second one would pass the per-connection queue bound (16 MiB).
it = m["Stream"](b"5 8388608", timeout=20)
n = 0
try:
    for x in it:
        n += 1
    raise AssertionError("stream past the queue bound succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
    assert "No buffer space" in e.details() or "send 1" in e.details(), e.details()
assert n == 1, f"{n} messages before the queue bound, want 1"
check("send past the 16 MiB per-connection queue: -ENOBUFS")

for code in range(1, 15):
    d = expect_error(m["Fail"], str(code).encode(), grpc.StatusCode(code) if False else
                     [c for c in grpc.StatusCode if c.value[0] == code][0])
    want = f"échec 100% voulu: code {code}\n(fin)"
    assert d == want, f"details {d!r}, want {want!r}"
check("status codes 1..14 with non-ASCII, % and newline in grpc-message")

hdr = m["Header"]
assert hdr(b"containerd-namespace", metadata=[("containerd-namespace", "k8s.io")], timeout=5) == b"k8s.io"
assert hdr(b"Content-Type", timeout=5) == b"application/grpc"
assert hdr(b"grpc-timeout", timeout=5)  # sent by the client, ignored by the server
expect_error(hdr, b":path", grpc.StatusCode.NOT_FOUND)
expect_error(hdr, b"x-absent", grpc.StatusCode.NOT_FOUND)
check("request metadata through cf_grpc_call_header")

d = expect_error(m["Nope"], b"x", grpc.StatusCode.UNIMPLEMENTED)
assert "/test.Echo/Nope" in d, d
check("unknown method: UNIMPLEMENTED")

d = expect_error(m["Unary"], b"y" * (4 * MIB + 1), grpc.StatusCode.RESOURCE_EXHAUSTED)
assert "exceeds the limit" in d, d
assert m["Unary"](b"still", timeout=5) == b"still"
check("request over the limit: RESOURCE_EXHAUSTED, same connection keeps serving")


def one(i):
    if i % 5 == 0:
        return list(m["Stream"](b"%d" % (i + 1), timeout=20)) == [b"%d" % k for k in range(i + 1)]
    data = os.urandom(1024 * i)
    return m["Unary"](data, timeout=20) == data


t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(50) as ex:
    res = list(ex.map(one, range(50)))
assert all(res), f"concurrent: {res.count(False)} wrong answers"
check(f"50 concurrent calls from threads ({time.time() - t0:.2f}s)")

assert m["Slow"](b"late", timeout=5) == b"late"
check("deferred finish (200 ms timer)")

expect_error(m["Slow"], b"x", grpc.StatusCode.DEADLINE_EXCEEDED, timeout=0.05)
fut = m["Slow"].future(b"y", timeout=5)
time.sleep(0.05)
fut.cancel()
time.sleep(0.4)  # both timers fire
st = dict(kv.split("=") for kv in m["Stats"](b"", timeout=5).decode().split())
assert int(st["slow_gone"]) == 2 and st["slow_epipe"] == st["slow_gone"], st
check(f"deadline 50 ms and cancel: the handler sees the call gone, send -EPIPE ({st})")

# max_conns: `ch` is one connection; open the rest, then one too many.
extra = [channel() for _ in range(MAX_CONNS - 1)]
for c in extra:
    assert methods(c)["Unary"](b"c", timeout=5) == b"c"
over = channel()
expect_error(methods(over)["Unary"], b"o", grpc.StatusCode.UNAVAILABLE, timeout=3)
for c in [ch] + extra:
    assert methods(c)["Unary"](b"k", timeout=5) == b"k"
check(f"connection {MAX_CONNS + 1} refused, the {MAX_CONNS} open ones keep working")
over.close()
extra.pop().close()
deadline = time.time() + 5
while True:
    c = channel()
    try:
        assert methods(c)["Unary"](b"again", timeout=2) == b"again"
        c.close()
        break
    except grpc.RpcError:
        c.close()
        if time.time() > deadline:
            raise
        time.sleep(0.1)
check("after one closes, a new connection is served")
for c in extra:
    c.close()
ch.close()
