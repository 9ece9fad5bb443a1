#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_grpc_server (tests/fuzz/proto/corpus/fuzz_grpc_server/):
HTTP/2 client frames after the preface (flag bit 0 set), HPACK literals without Huffman."""
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "corpus", "fuzz_grpc_server")
os.makedirs(out, exist_ok=True)


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def lit(name, value):  # literal header field without indexing, new name
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def headers(sid, path, ctype="application/grpc", end_stream=False, extra=()):
    block = lit(":method", "POST") + lit(":scheme", "http") + lit(":path", path) + \
        lit(":authority", "x") + lit("content-type", ctype) + lit("te", "trailers")
    for k, v in extra:
        block += lit(k, v)
    return frame(1, 0x4 | (0x1 if end_stream else 0), sid, block)


def msg(body, flag=0, length=None):
    return bytes([flag]) + struct.pack(">I", len(body) if length is None else length) + body


def data(sid, payload, end_stream=True):
    return frame(0, 0x1 if end_stream else 0, sid, payload)


def rst(sid):
    return frame(3, 0, sid, struct.pack(">I", 8))


seeds = {
    "unary": headers(1, "/a") + data(1, msg(b"hello")),
    "unary_split": headers(1, "/a") + data(1, msg(b"hello")[:3], False) + data(1, msg(b"hello")[3:]),
    "empty_body": headers(1, "/a", end_stream=True),
    "stream": headers(1, "/s") + data(1, msg(b"x" * 100)),
    "deferred": headers(1, "/d") + data(1, msg(b"later")) + headers(3, "/d") + data(3, msg(b"")) + rst(3),
    "unknown": headers(1, "/nope") + data(1, msg(b"x")),
    "bad_type": headers(1, "/a", ctype="text/plain") + data(1, b"x"),
    "over_limit": headers(1, "/a") + data(1, msg(b"y" * 100, length=5000), False) + data(1, b"z" * 50),
    "compressed": headers(1, "/a", extra=[("grpc-encoding", "gzip")]) + data(1, msg(b"q", flag=1)),
    "two_messages": headers(1, "/a") + data(1, msg(b"1") + msg(b"2")),
    "truncated": headers(1, "/a") + data(1, msg(b"abc")[:6]),
    "many_streams": b"".join(headers(i, "/d") + data(i, msg(b"m")) for i in range(1, 24, 2)),
    "ping_window_goaway": frame(6, 0, 0, b"12345678") + frame(8, 0, 0, struct.pack(">I", 1000)) +
    headers(1, "/a") + data(1, msg(b"p")) + frame(7, 0, 0, struct.pack(">II", 1, 0)),
    # three 4 KiB messages pass the fuzzer's lowered queue bound: -ENOBUFS
    "stream_max": headers(1, "/s") + data(1, msg(b"s" * 4096)),
    # three streams each announcing 4 KiB, none complete: the third passes the request budget
    "budget": b"".join(headers(i, "/a") + data(i, msg(b"b" * 10, length=4096), False)
                       for i in (1, 3, 5)) + data(1, b"b" * 4086),
    "trailers": headers(1, "/a") + data(1, msg(b"t"), False) + frame(1, 0x5, 1, lit("x-t", "1")),
}
for name, body in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([1, 255]) + body)  # flags: preface; 256-byte receive chunks
with open(os.path.join(out, "raw_preface"), "wb") as f:
    f.write(bytes([6, 7]) + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + seeds["unary"])
