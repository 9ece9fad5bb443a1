#!/usr/bin/env python3
"""A host with a valid mesh certificate asking a peer's upload port for blobs (mesh_private.sh).

usage: mesh_private.py HOST PORT CERT KEY CA ID STEP...

Connects with mutual TLS as ID (the certificate's name), sends HELLO, then runs each STEP in
order on that one connection and checks the answer; prints one line per step, exits 1 at the
first unexpected answer. Steps (TASK = sha256:..., FILE = the blob's bytes to compare):
  avail:TASK:EXPECT             AVAIL_QUERY; EXPECT = avail | auth
  piece:TASK:N:EXPECT[:FILE]    PIECE_REQUEST of piece N; EXPECT = data (bytes = FILE's piece N,
                                pieces of 4 MiB at most: the blob's piece size is given by AVAIL)
                                | auth
  access:TASK:REPO_REF:TOKENFILE:EXPECT   ACCESS with the token read from TOKENFILE ("-" = an
                                empty one); EXPECT = ok | auth | bad (BAD_MESSAGE, closed)
"""
import socket
import ssl
import struct
import sys

from daemon_abuse import frame, mp_val

HDR = struct.Struct("<IBBHII")
E_AUTH, E_BAD = 11, 2


def mp_str(s):
    b = s.encode()
    if len(b) < 32:
        return bytes([0xA0 | len(b)]) + b
    if len(b) < 256:
        return bytes([0xD9, len(b)]) + b
    return b"\xda" + struct.pack(">H", len(b)) + b


def mp_map(d):
    """msgpack map of str keys; str values of any length (tokens are long), else daemon_abuse's"""
    return bytes([0x80 | len(d)]) + b"".join(
        mp_str(k) + (mp_str(v) if isinstance(v, str) else mp_val(v)) for k, v in d.items())


def mp_decode(b, i=0):
    """The msgpack subset the peer sends: maps, str, bin, uint, bool, arrays."""
    t = b[i]
    if t <= 0x7F:
        return t, i + 1
    if 0x80 <= t <= 0x8F or t in (0xDE, 0xDF):
        if t <= 0x8F:
            n, i = t & 0x0F, i + 1
        elif t == 0xDE:
            n, i = struct.unpack_from(">H", b, i + 1)[0], i + 3
        else:
            n, i = struct.unpack_from(">I", b, i + 1)[0], i + 5
        d = {}
        for _ in range(n):
            k, i = mp_decode(b, i)
            v, i = mp_decode(b, i)
            d[k] = v
        return d, i
    if 0x90 <= t <= 0x9F or t in (0xDC, 0xDD):
        if t <= 0x9F:
            n, i = t & 0x0F, i + 1
        elif t == 0xDC:
            n, i = struct.unpack_from(">H", b, i + 1)[0], i + 3
        else:
            n, i = struct.unpack_from(">I", b, i + 1)[0], i + 5
        out = []
        for _ in range(n):
            v, i = mp_decode(b, i)
            out.append(v)
        return out, i
    if 0xA0 <= t <= 0xBF:
        n = t & 0x1F
        return b[i + 1:i + 1 + n].decode(), i + 1 + n
    if t in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        w = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[t]
        n = int.from_bytes(b[i + 1:i + 1 + w], "big")
        v = b[i + 1 + w:i + 1 + w + n]
        return (v.decode() if t in (0xD9, 0xDA, 0xDB) else v), i + 1 + w + n
    if t in (0xC2, 0xC3):
        return t == 0xC3, i + 1
    if t in (0xCC, 0xCD, 0xCE, 0xCF):
        w = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}[t]
        return int.from_bytes(b[i + 1:i + 1 + w], "big"), i + 1 + w
    raise ValueError("msgpack type 0x%02x" % t)


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        c = s.recv(n - len(out))
        if not c:
            raise EOFError("connection closed")
        out += c
    return out


def read_frame(s):
    _, _, typ, _, blen, plen = HDR.unpack(recv_exact(s, HDR.size))
    body = recv_exact(s, blen)
    payload = recv_exact(s, plen) if plen else b""
    return typ, mp_decode(body)[0], payload


def expect_frame(s, want_types):
    while True:
        typ, body, payload = read_frame(s)
        if typ in want_types or typ == 0x02:
            return typ, body, payload
        # AVAIL_UPDATE of an earlier subscription and the like: not what this step asked


def main():
    host, port, cert, key, ca, ident = sys.argv[1:7]
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.check_hostname = False
    ctx.load_cert_chain(cert, key)
    raw = socket.create_connection((host, int(port)), timeout=10)
    s = ctx.wrap_socket(raw)
    s.sendall(frame(0x01, mp_map({"v": 1, "mv": 1, "id": ident, "ro": 1, "c": 2})))
    typ, body, _ = read_frame(s)
    if typ != 0x01:
        print("no HELLO answer: type 0x%02x %r" % (typ, body))
        return 1
    piece_size = 4 << 20
    req = 100
    for step in sys.argv[7:]:
        f = step.split(":")
        kind, task = f[0], f[1] + ":" + f[2]
        f = f[3:]
        req += 1
        if kind == "avail":
            s.sendall(frame(0x30, mp_map({"t": task})))
            typ, body, _ = expect_frame(s, (0x31,))
            got = "avail" if typ == 0x31 else ("auth" if body.get("c") == E_AUTH else "error %r" % body)
            if typ == 0x31 and body.get("pc"):
                pass
        elif kind == "piece":
            n, want = int(f[0]), f[1]
            s.sendall(frame(0x33, mp_map({"r": req, "t": task, "pn": n})))
            typ, body, payload = expect_frame(s, (0x34,))
            if typ == 0x34:
                got = "data"
                if len(f) > 2:
                    with open(f[2], "rb") as fh:
                        fh.seek(n * len(payload) if n == 0 else n * piece_size)
                        if fh.read(len(payload)) != payload:
                            got = "wrong bytes"
            else:
                got = "auth" if body.get("c") == E_AUTH and body.get("r") == req else "error %r" % body
        elif kind == "access":
            # the repo reference is registry:port/repo: rejoin what split(":") cut
            ref = f[0] + ":" + f[1] if len(f) > 3 else f[0]
            rest = f[2:] if len(f) > 3 else f[1:]
            tokfile, want = rest[0], rest[1]
            tok = "" if tokfile == "-" else open(tokfile).read().strip()
            s.sendall(frame(0x35, mp_map({"r": req, "t": task, "o": ref, "tk": tok})))
            try:
                typ, body, _ = expect_frame(s, (0x36,))
            except EOFError:
                typ, body = None, {}
            if typ == 0x36:
                got = "ok" if body.get("r") == req else "ok for another request %r" % body
            elif typ == 0x02 and body.get("c") == E_AUTH and body.get("r") == req:
                got = "auth"
            elif typ == 0x02 and body.get("c") == E_BAD:
                got = "bad"
            else:
                got = "error %r" % body
        else:
            print("unknown step", step)
            return 2
        want = want if kind != "avail" else f[0]
        msg = body.get("m", "") if isinstance(body, dict) else ""
        print("%s %s: %s%s" % (kind, task[:19], got, " (%s)" % msg if msg and got != "data" else ""))
        if got != want:
            print("FAIL: %s: wanted %s" % (step, want))
            return 1
        if got == "bad":
            return 0  # the peer closes the connection after a bad frame
    return 0


if __name__ == "__main__":
    sys.exit(main())
