#!/usr/bin/env python3
"""A lying host for tests: publishes a wrong per-piece digest list for a task.

usage: poison_digests.py SCHED_HOST:PORT TASK_ID ORIGIN LENGTH PIECE_SIZE

Announces host "poisoner" (its upload address leads nowhere), registers the task, reports
every piece as fetched from the origin, publishes random digests, prints "published" once the
scheduler accepted the list, then stays connected (heartbeats) until stdin closes."""
import os
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon_abuse import MAGIC, frame, mp_map  # noqa: E402


def read_frame(s):
    hdr = b""
    while len(hdr) < 16:
        d = s.recv(16 - len(hdr))
        if not d:
            raise SystemExit("scheduler closed the connection")
        hdr += d
    magic, _, t, _, bl, pl = struct.unpack("<IBBHII", hdr)
    assert magic == MAGIC
    rest = b""
    while len(rest) < bl + pl:
        d = s.recv(bl + pl - len(rest))
        if not d:
            raise SystemExit("scheduler closed the connection")
        rest += d
    return t, rest


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    task, origin, length, ps = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    count = (length + ps - 1) // ps
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(frame(0x01, mp_map({"v": 1, "mv": 1, "id": "poisoner", "ro": 1})))
    s.sendall(frame(0x10, mp_map({"id": "poisoner", "a": ["127.0.0.99"], "up": 9, "us": 4,
                                  "fd": 1 << 30})))
    s.sendall(frame(0x11, mp_map({"t": task, "cl": length, "o": origin})))
    s.sendall(frame(0x12, mp_map({"t": task, "p": [0, count], "pa": ""})))
    s.sendall(frame(0x19, mp_map({"t": task, "ps": ps, "pc": count, "d": os.urandom(32 * count)})))
    while True:
        t, body = read_frame(s)
        if t == 0x26:  # DIGESTS_ACK
            break
        if t == 0x02:  # ERROR
            raise SystemExit(f"scheduler refused: {body!r}")
    print("published", flush=True)
    seq = 1
    while True:
        r, _, _ = select.select([sys.stdin, s], [], [], 1.0)
        if sys.stdin in r and not sys.stdin.readline():
            return 0
        if s in r:
            read_frame(s)
        s.sendall(frame(0x18, mp_map({"id": "poisoner", "s": seq})))
        seq += 1


if __name__ == "__main__":
    sys.exit(main())
