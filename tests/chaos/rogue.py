#!/usr/bin/python3
"""The chaos suite's rogue host: a holder of a valid mesh certificate trying issue 13's attacks.

usage: rogue.py --cert C --key K --ca CA --src IP ATTACK ARGS...

  takeover SCHED PEER VICTIM      ANNOUNCE_HOST as VICTIM at a scheduler, HELLO as VICTIM at a
                                  peer's upload port; prints "refused N of 2" (ERROR IDENTITY)
  poison LEN ORIGIN TASK SCHED... register TASK at every scheduler, claim every piece, publish
                                  random per-piece digests; prints "published N of M", then
                                  stays connected (heartbeats) while the --hold file exists
  badparent TASK LEN VICTIMS SCHED...  2 connections per scheduler report every victim (comma list)
                                  as BAD_PARENT (digest mismatch) in TASK and 4 made-up tasks;
                                  prints "reports N", stays while --hold exists
  register SCHED COUNT            COUNT REGISTER_TASKs of 4 TiB blobs; prints "answered A
                                  no_space S other O"
  halfsent ADDR COUNT             COUNT TLS connections announcing a 1 MiB frame before HELLO,
                                  900 KiB of it sent; prints "held N", holds while --hold exists
  probe PEER TASK FILE            HELLO, AVAIL_QUERY and PIECE_REQUEST 0 for a private TASK with
                                  no proof; prints "avail_bits B data D matches M error E"
                                  (FILE = the blob's bytes, to check what a leak served)

Every connection is mutual TLS from source address IP (the scheduler checks the announced
address against it). Uses only the standard library (own msgpack reader)."""
import argparse
import os
import select
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration", "peer"))
from daemon_abuse import MAGIC, frame, mp_map  # noqa: E402

ROGUE_ID = "rogue"
ERR_NO_SPACE, ERR_IDENTITY = 12, 16


def mp_read(b, i=0):
    """Decodes one msgpack object of b at i: (value, next index). Enough for our answers."""
    c = b[i]
    i += 1
    if c <= 0x7F:
        return c, i
    if 0x80 <= c <= 0x8F or c in (0xDE, 0xDF):
        n, i = (c & 0x0F, i) if c <= 0x8F else ((struct.unpack_from(">H", b, i)[0], i + 2) if c == 0xDE else (struct.unpack_from(">I", b, i)[0], i + 4))
        d = {}
        for _ in range(n):
            k, i = mp_read(b, i)
            d[k], i = mp_read(b, i)
        return d, i
    if 0x90 <= c <= 0x9F or c in (0xDC, 0xDD):
        n, i = (c & 0x0F, i) if c <= 0x9F else ((struct.unpack_from(">H", b, i)[0], i + 2) if c == 0xDC else (struct.unpack_from(">I", b, i)[0], i + 4))
        a = []
        for _ in range(n):
            v, i = mp_read(b, i)
            a.append(v)
        return a, i
    if 0xA0 <= c <= 0xBF:
        n = c & 0x1F
        return b[i:i + n].decode(errors="replace"), i + n
    if c in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        w = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[c]
        n = int.from_bytes(b[i:i + w], "big")
        raw = b[i + w:i + w + n]
        return (raw.decode(errors="replace") if c >= 0xD9 else raw), i + w + n
    if c in (0xCC, 0xCD, 0xCE, 0xCF):
        w = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}[c]
        return int.from_bytes(b[i:i + w], "big"), i + w
    if c in (0xC2, 0xC3):
        return c == 0xC3, i
    if c == 0xC0:
        return None, i
    raise ValueError(f"msgpack type 0x{c:02x} not handled")


class Conn:
    def __init__(self, args, addr, hello_id=ROGUE_ID, role=1):
        host, port = addr.rsplit(":", 1)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # we dial IPs; the chain is still verified
        ctx.load_cert_chain(args.cert, args.key)
        ctx.load_verify_locations(args.ca)
        raw = socket.socket()
        raw.settimeout(10)
        raw.bind((args.src, 0))
        raw.connect((host, int(port)))
        self.s = ctx.wrap_socket(raw)
        self.buf = b""
        if hello_id is not None:
            self.send(0x01, {"v": 1, "mv": 1, "id": hello_id, "ro": role})

    def send(self, t, body):
        self.s.sendall(frame(t, mp_map(body)))

    def read(self, timeout):
        """One frame (type, body dict, payload) or None on timeout/close."""
        end = time.time() + timeout
        while True:
            if len(self.buf) >= 16:
                magic, _, t, _, bl, pl = struct.unpack("<IBBHII", self.buf[:16])
                if magic != MAGIC:
                    return None
                if len(self.buf) >= 16 + bl + pl:
                    body = mp_read(self.buf, 16)[0] if bl else {}
                    payload = self.buf[16 + bl:16 + bl + pl]
                    self.buf = self.buf[16 + bl + pl:]
                    return t, body, payload
            left = end - time.time()
            if left <= 0:
                return None
            if not self.s.pending():
                r, _, _ = select.select([self.s], [], [], left)
                if not r:
                    return None
            try:
                d = self.s.recv(1 << 20)
            except (OSError, ssl.SSLError):
                return None
            if not d:
                return None
            self.buf += d

    def wait_for(self, types, timeout):
        """Frames until one of types (or ERROR 0x02) arrives: that frame, or None."""
        end = time.time() + timeout
        while time.time() < end:
            f = self.read(end - time.time())
            if f is None:
                return None
            if f[0] in types or f[0] == 0x02:
                return f
        return None

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def announce(c, args, host_id=ROGUE_ID):
    c.send(0x10, {"id": host_id, "a": [args.src], "up": 9, "us": 4, "fd": 1 << 30})


def held(args):
    """True while the driver wants us to stay: its --hold file exists (a file, not a pipe: the
    daemons the driver restarts would inherit a pipe's write end)."""
    return args.hold is not None and os.path.exists(args.hold)


def hold(args, conns):
    """Heartbeats on every connection while held() (the driver ends the round)."""
    seq = 1
    while held(args):
        time.sleep(0.5)
        for c in conns:
            try:
                while c.read(0.01):
                    pass
                c.send(0x18, {"id": ROGUE_ID, "s": seq})
            except (OSError, ssl.SSLError):
                pass
        seq += 1
    return 0


def takeover(args, sched, peer, victim):
    refused = 0
    c = Conn(args, sched)
    announce(c, args, victim)
    f = c.wait_for((), 5)
    if f and f[0] == 0x02 and f[1].get("c") == ERR_IDENTITY:
        refused += 1
    c.close()
    try:
        c = Conn(args, peer, hello_id=victim)
        f = c.wait_for((0x01,), 5)
        if f and f[0] == 0x02 and f[1].get("c") == ERR_IDENTITY:
            refused += 1
        c.close()
    except (OSError, ssl.SSLError):
        pass
    print(f"refused {refused} of 2", flush=True)


def poison(args, length, origin, task, scheds):
    conns, published = [], 0
    for a in scheds:
        try:
            c = Conn(args, a)
            announce(c, args)
            c.send(0x11, {"t": task, "cl": length, "o": origin})
            f = c.wait_for((0x20,), 5)
            if not f or f[0] != 0x20:
                conns.append(c)
                continue
            ps, pc = f[1]["ps"], f[1]["pc"]
            c.send(0x12, {"t": task, "p": [0, pc], "pa": ""})
            c.send(0x13, {"t": task, "cl": length, "vf": True})
            c.send(0x19, {"t": task, "ps": ps, "pc": pc, "d": os.urandom(32 * pc)})
            f = c.wait_for((0x26,), 5)
            if f and f[0] == 0x26:
                published += 1
            conns.append(c)
        except (OSError, ssl.SSLError):
            pass
    print(f"published {published} of {len(scheds)}", flush=True)
    return hold(args, conns)


def badparent(args, task, length, victims, scheds):
    conns, n = [], 0
    fake = ["sha256:" + os.urandom(32).hex() for _ in range(4)]
    for a in scheds:
        for _ in range(2):  # two connections: still one reporter (one identity)
            try:
                c = Conn(args, a)
                announce(c, args)
                for t in [task] + fake:
                    c.send(0x11, {"t": t, "cl": length, "o": "127.0.0.1:1/x@" + t})
                    for v in victims:
                        for pn in range(3):
                            c.send(0x15, {"t": t, "pa": v, "rs": 3, "pn": pn})
                            n += 1
                conns.append(c)
            except (OSError, ssl.SSLError):
                pass
    print(f"reports {n}", flush=True)
    return hold(args, conns)


def register(args, sched, count):
    c = Conn(args, sched)
    announce(c, args)
    ok = nospace = other = 0
    for _ in range(count):
        t = "sha256:" + os.urandom(32).hex()
        try:
            c.send(0x11, {"t": t, "cl": 4 << 40, "o": "127.0.0.1:1/x@" + t})
        except (OSError, ssl.SSLError):
            break
    for _ in range(count):
        f = c.wait_for((0x20, 0x21, 0x22, 0x23), 3)
        if f is None:
            break
        if f[0] == 0x02:
            if f[1].get("c") == ERR_NO_SPACE:
                nospace += 1
            else:
                other += 1
        elif f[0] == 0x20:
            ok += 1
    c.close()
    print(f"answered {ok} no_space {nospace} other {other}", flush=True)


def halfsent(args, addr, count):
    socks = []
    for _ in range(count):
        try:
            c = Conn(args, addr, hello_id=None)
            c.s.sendall(frame(0x01, b"", blen=1 << 20))
            c.s.settimeout(0.2)
            try:
                c.s.sendall(b"\x00" * (900 << 10))
            except (OSError, ssl.SSLError):
                pass
            socks.append(c)
        except (OSError, ssl.SSLError):
            pass
    print(f"held {len(socks)}", flush=True)
    while held(args):
        time.sleep(0.2)
    for c in socks:
        c.close()


def probe(args, peer, task, path):
    bits = data = matches = err = 0
    c = Conn(args, peer)
    if c.wait_for((0x01,), 5) is None:
        print("avail_bits 0 data 0 matches 0 error 1 (no HELLO answer)", flush=True)
        return
    c.send(0x30, {"t": task})
    f = c.wait_for((0x31,), 5)
    if f and f[0] == 0x31:
        bits = sum(bin(x).count("1") for x in f[1].get("b", b""))
    elif f:
        err += 1
    c.send(0x33, {"r": 1, "t": task, "pn": 0})
    f = c.wait_for((0x34,), 5)
    if f and f[0] == 0x34:
        data = len(f[2])
        with open(path, "rb") as fh:
            matches = int(fh.read(data) == f[2])
    elif f:
        err += 1
    c.close()
    print(f"avail_bits {bits} data {data} matches {matches} error {err}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    for k in ("cert", "key", "ca", "src"):
        ap.add_argument("--" + k, required=True)
    ap.add_argument("--hold", help="poison, badparent, halfsent: stay while this file exists")
    ap.add_argument("attack")
    ap.add_argument("rest", nargs="*")
    args = ap.parse_args()
    r = args.rest
    if args.attack == "takeover":
        return takeover(args, r[0], r[1], r[2])
    if args.attack == "poison":
        return poison(args, int(r[0]), r[1], r[2], r[3:])
    if args.attack == "badparent":
        return badparent(args, r[0], int(r[1]), r[2].split(","), r[3:])
    if args.attack == "register":
        return register(args, r[0], int(r[1]))
    if args.attack == "halfsent":
        return halfsent(args, r[0], int(r[1]))
    if args.attack == "probe":
        return probe(args, r[0], r[1], r[2])
    ap.error("unknown attack " + args.attack)
    return 2


if __name__ == "__main__":
    sys.exit(main() or 0)
