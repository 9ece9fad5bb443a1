#!/usr/bin/python3
"""Test-only unresponsive endpoints on loopback.
--mode blackhole: a listening socket whose accept queue is full and never drained, so the
  kernel drops new SYNs: clients see a connect timeout, like an unreachable origin.
--mode silent: accepts connections, reads requests, never answers (a hung server).
Writes the port to --port-file once ready."""
import argparse
import os
import socket
import threading

ap = argparse.ArgumentParser()
ap.add_argument("--mode", choices=["blackhole", "silent"], required=True)
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port-file", required=True)
args = ap.parse_args()
if not args.host.startswith("127."):
    raise SystemExit("dead_server: loopback only")

srv = socket.socket()
srv.bind((args.host, 0))
port = srv.getsockname()[1]
keep = []
if args.mode == "blackhole":
    srv.listen(0)
    # Fill the accept queue (backlog 0 admits one); later SYNs are dropped by the kernel.
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect((args.host, port))
        except BlockingIOError:
            pass
        keep.append(c)
else:
    srv.listen(16)

    def serve():
        while True:
            c, _ = srv.accept()
            keep.append(c)  # never answered, never closed

    threading.Thread(target=serve, daemon=True).start()

with open(args.port_file + ".tmp", "w") as f:
    f.write(str(port))
os.rename(args.port_file + ".tmp", args.port_file)
threading.Event().wait()
