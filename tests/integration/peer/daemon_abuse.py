#!/usr/bin/env python3
"""Hostile clients against chunkfly-peer's sockets (used by daemon_abuse.sh).

usage: daemon_abuse.py tcp HOST PORT | unix PATH   [SECONDS]
       daemon_abuse.py halfsent tcp HOST PORT | unix PATH   N
       daemon_abuse.py fdflood PATH TASK ORIGIN N

Sends random bytes, valid headers with huge lengths, bad magic/version, undecodable bodies,
messages before HELLO, wrong message types, requests for unknown tasks/pieces, overflowing
ranges, many connections, and slowloris connections trickling a frame. Exits 0 when done; the
shell script then checks the daemon is alive and still serves correctly."""
import os
import random
import socket
import struct
import sys
import time

MAGIC = 0x31574643


def mp_str(s):
    b = s.encode()
    if len(b) < 32:
        return bytes([0xA0 | len(b)]) + b
    return bytes([0xD9, len(b)]) + b


def mp_uint(v):
    if v < 128:
        return bytes([v])
    return b"\xcf" + struct.pack(">Q", v)


def mp_val(v):
    """msgpack of a bool, non-negative int, str, bytes (bin) or list of those."""
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        return mp_uint(v)
    if isinstance(v, bytes):
        return b"\xc6" + struct.pack(">I", len(v)) + v
    if isinstance(v, list):
        return b"\xdd" + struct.pack(">I", len(v)) + b"".join(mp_val(x) for x in v)
    return mp_str(v)


def mp_map(d):
    """msgpack map with str keys (the other helpers of the peer tests import it)."""
    return bytes([0x80 | len(d)]) + b"".join(mp_str(k) + mp_val(v) for k, v in d.items())


def frame(t, body, payload=b"", magic=MAGIC, ver=1, blen=None, plen=None):
    h = struct.pack("<IBBHII", magic, ver, t, 0, len(body) if blen is None else blen,
                    len(payload) if plen is None else plen)
    return h + body + payload


HELLO = frame(0x01, mp_map({"v": 1, "mv": 1, "id": "abuser", "ro": 3}))
TASK = "sha256:" + "ab" * 32


def connect(target):
    if target[0] == "tcp":
        s = socket.create_connection((target[1], int(target[2])), timeout=2)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(target[1])
    return s


def shoot(target, data, read=True):
    try:
        s = connect(target)
        s.sendall(data)
        if read:
            try:
                s.recv(65536)
            except OSError:
                pass
        s.close()
    except OSError:
        pass


def halfsent(target, n):
    """n connections each announce a 1 MiB body before HELLO and send 900 KiB of it, then hold
    the connection open for a second: the daemon must not keep what they sent."""
    socks = []
    for _ in range(n):
        try:
            s = connect(target)
            s.sendall(frame(0x01, b"", blen=1 << 20))
            s.settimeout(0.2)
            try:
                s.sendall(b"\x00" * (900 << 10))
            except OSError:
                pass
            socks.append(s)
        except OSError:
            pass
    time.sleep(1)
    return socks


def recv_exact(s, n, fds):
    """n bytes from s; descriptors that come with them are appended to fds."""
    b = b""
    while len(b) < n:
        data, anc, _, _ = s.recvmsg(n - len(b), socket.CMSG_SPACE(4 * 4))
        if not data:
            raise OSError("closed")
        for lvl, typ, cd in anc:
            if lvl == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.extend(struct.unpack("%di" % (len(cd) // 4), cd[: len(cd) - len(cd) % 4]))
        b += data
    return b


def fdflood(path, task, origin, n):
    """n reads that take the file (LOCAL_READ "fd") of a cached blob, sent at once and not read
    while the caller counts the daemon's open files; then every answer is read: prints the
    LOCAL_FILE answers, the ERRORs (BUSY past the per-connection limit) and the descriptors."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(HELLO)
    fds = []
    h = recv_exact(s, 16, fds)
    recv_exact(s, struct.unpack("<I", h[8:12])[0], fds)
    s.sendall(b"".join(frame(0x40, mp_map({"r": i + 1, "t": task, "o": origin, "off": 0,
                                            "len": 1, "fd": True})) for i in range(n)))
    print("sent", n, flush=True)
    sys.stdin.readline()
    files = errors = busy = 0
    s.settimeout(10)
    while files + errors < n:
        h = recv_exact(s, 16, fds)
        _, _, t, _, bl, pl = struct.unpack("<IBBHII", h)
        body = recv_exact(s, bl + pl, fds)
        if t == 0x4A:
            files += 1
        elif t == 0x02:
            errors += 1
            busy += b"too many reads" in body
    for fd in fds:
        os.close(fd)
    print("files", files, "errors", errors, "busy", busy, "fds", len(fds), flush=True)
    return 0


def main():
    a = sys.argv[1:]
    if a[0] == "fdflood":
        return fdflood(a[1], a[2], a[3], int(a[4]))
    if a[0] == "halfsent":
        target = a[1:4] if a[1] == "tcp" else a[1:3]
        socks = halfsent(target, int(a[len(target) + 1]))
        # the caller samples the daemon's RSS now (signalled by this line), then we close
        print("held", len(socks), flush=True)
        sys.stdin.readline()
        for s in socks:
            s.close()
        return 0
    target = a[:3] if a[0] == "tcp" else a[:2]
    secs = float(a[len(target)]) if len(a) > len(target) else 5
    rnd = random.Random(42)
    cases = [
        os.urandom(64),
        b"\x00" * 16,
        frame(1, b"", magic=0xDEADBEEF),
        frame(1, b"", ver=9),
        frame(1, b"", blen=0xFFFFFFFF),
        frame(1, b"", plen=0xFFFFFFFF),
        frame(0x34, b"", blen=10, plen=1 << 30),
        frame(1, b"\xc1\xc1\xc1"),  # undecodable body
        frame(1, b"\xdd\xff\xff\xff\xff"),  # array claiming 4G elements
        frame(0x33, mp_map({"r": 1, "t": TASK, "pn": 0})),  # before HELLO
        HELLO + frame(0x7F, mp_map({"x": 1})),  # unknown type
        HELLO + frame(0x33, mp_map({"r": 1, "t": TASK, "pn": 0})),
        HELLO + frame(0x33, mp_map({"r": 1, "t": "sha256:zz", "pn": 0})),
        HELLO + frame(0x33, mp_map({"r": 2, "t": TASK, "pn": 0xFFFFFFFF})),
        HELLO + frame(0x30, mp_map({"t": TASK, "sub": True})),
        HELLO + frame(0x40, mp_map({"r": 3, "t": TASK, "o": "127.0.0.1:1/x@" + TASK,
                                     "off": 0xFFFFFFFFFFFFFFF0, "len": 0xFFFF})),
        HELLO + frame(0x40, mp_map({"r": 3, "t": TASK, "o": "::::", "off": 0, "len": 1})),
        HELLO + frame(0x43, mp_map({"r": 4, "t": TASK})),
        HELLO + frame(0x45, mp_map({"r": 5, "t": TASK})),
        HELLO + frame(0x46, mp_map({"r": 6, "t": TASK})),
        HELLO + frame(0x47, mp_map({"r": 7})),
        HELLO + frame(0x10, mp_map({"id": "x"})),  # scheduler message to a peer
        HELLO + HELLO,
    ]
    for c in cases:
        shoot(target, c)
    # many connections at once
    conns = []
    for _ in range(300):
        try:
            conns.append(connect(target))
        except OSError:
            break
    for s in conns:
        s.close()
    # slowloris: trickle a frame header claiming a 1 MiB body
    slow = []
    for _ in range(20):
        try:
            s = connect(target)
            s.sendall(frame(1, b"", blen=1 << 20)[:16])
            slow.append(s)
        except OSError:
            pass
    end = time.time() + secs
    while time.time() < end:
        for s in slow:
            try:
                s.send(b"\x00")
            except OSError:
                pass
        # random fuzz frames after HELLO
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 200)))
        shoot(target, HELLO + frame(rnd.randint(0, 255), body), read=False)
        time.sleep(0.2)
    for s in slow:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
