#!/usr/bin/python3
"""Test-only registry front + blob storage, to check redirect handling (loopback only).

front (e.g. 127.0.0.2): a registry that demands auth (Basic, or Bearer via its own /token),
  answers blob GET/HEAD with 307 to a same-origin path (auth still required there), which
  answers 307 to the storage server with a pre-signed-looking query (?X-Amz-Signature=...).
storage (e.g. 127.0.0.3): serves the blob (single Range supported) and logs whether an
  Authorization header arrived.
--flaky: storage answers the 1st GET with 503 and the 2nd with the full Content-Length but only
  half the body before closing, so clients must retry and resume.
Log lines: "<server> <METHOD> <path> auth=present|absent range=<Range or -> status=<code>".
"""
import argparse
import base64
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--front", required=True, help="127.0.0.x:port (0 = any)")
ap.add_argument("--storage", required=True)
ap.add_argument("--port-file", required=True)
ap.add_argument("--blob", required=True)
ap.add_argument("--auth", choices=["basic", "bearer"], default="basic")
ap.add_argument("--user", default="alice:s3cret")
ap.add_argument("--flaky", action="store_true")
ap.add_argument("--fail-status", type=int, default=0,
                help="front answers blob requests with this status (e.g. 503, 429, 404)")
ap.add_argument("--fail-count", type=int, default=0, help="only the first N times (0 = always)")
ap.add_argument("--retry-after", default="", help="Retry-After header value with --fail-status")
ap.add_argument("--token-uses", type=int, default=0,
                help="bearer: a token stops working after this many uses (0 = never)")
ap.add_argument("--log", required=True)
args = ap.parse_args()

for a in (args.front, args.storage):
    if not a.startswith("127."):
        raise SystemExit("redirect_server: loopback addresses only")

with open(args.blob, "rb") as f:
    BLOB = f.read()
LOCK = threading.Lock()
state = {"storage_gets": 0, "uses": {}, "fails": 0}
STORAGE_URL = None


def log(line):
    with LOCK, open(args.log, "a") as f:
        f.write(line + "\n")


class Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "?"

    def log_message(self, fmt, *a):
        pass

    def record(self, status):
        log("%s %s %s auth=%s range=%s status=%d" % (
            self.name, self.command, self.path.split("?")[0],
            "present" if self.headers.get("Authorization") else "absent",
            self.headers.get("Range", "-"), status))

    def send(self, status, body=b"", headers=(), head=False):
        self.record(status)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


class Front(Base):
    name = "front"

    def authorized(self):
        a = self.headers.get("Authorization", "")
        if args.auth == "bearer":
            if not a.startswith("Bearer ") or not a[7:].startswith("tok-"):
                return False
            with LOCK:
                n = state["uses"].get(a[7:])
                if n is None:
                    return False
                if args.token_uses and n >= args.token_uses:
                    return False
                state["uses"][a[7:]] = n + 1
            return True
        return a == "Basic " + base64.b64encode(args.user.encode()).decode()

    def challenge(self, head):
        host = "%s:%d" % self.server.server_address[:2]
        if args.auth == "bearer":
            # Two separate headers: a client must see the Bearer one even though Basic is first.
            cs = ['Basic realm="front-basic"',
                  'Bearer realm="http://%s/token",service="front",scope="repository:r/x:pull"'
                  % host]
        else:
            cs = ['Basic realm="front"']
        self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                  [("WWW-Authenticate", c) for c in cs] + [("Content-Type", "application/json")],
                  head)

    def handle_any(self, head):
        path = self.path.split("?")[0]
        if path == "/token":
            a = self.headers.get("Authorization", "")
            if a != "Basic " + base64.b64encode(args.user.encode()).decode():
                return self.send(401, b"{}", head=head)
            tok = "tok-" + os.urandom(8).hex()
            with LOCK:
                state["uses"][tok] = 0
            return self.send(200, ('{"token":"%s","expires_in":300}' % tok).encode(),
                             [("Content-Type", "application/json")], head)
        if not self.authorized():
            return self.challenge(head)
        m = re.fullmatch(r"/v2/(.+)/blobs/(sha256:[0-9a-f]{64})", path)
        if m and args.fail_status:
            with LOCK:
                state["fails"] += 1
                failing = args.fail_count == 0 or state["fails"] <= args.fail_count
            if failing:
                hdrs = [("Retry-After", args.retry_after)] if args.retry_after else []
                return self.send(args.fail_status, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}',
                                 hdrs, head)
        if m:  # relative Location: the client must resolve it against this origin
            return self.send(307, b"", [("Location", "/same-origin/blobs/%s?hop=1" % m.group(2))],
                             head)
        m = re.fullmatch(r"/same-origin/blobs/(sha256:[0-9a-f]{64})", path)
        if m:
            return self.send(307, b"", [("Location", "%s/storage/%s?X-Amz-Signature=s3cr3tsig"
                                         % (STORAGE_URL, m.group(1)))], head)
        if path == "/v2/":
            return self.send(200, b"{}", head=head)
        self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}', head=head)

    def do_GET(self):
        self.handle_any(False)

    def do_HEAD(self):
        self.handle_any(True)


class Storage(Base):
    name = "storage"

    def serve(self, head):
        if not self.path.startswith("/storage/"):
            return self.send(404, b"", head=head)
        if not head:
            with LOCK:
                state["storage_gets"] += 1
                n = state["storage_gets"]
            if args.flaky and n == 1:
                return self.send(503, b"try later", head=head)
            if args.flaky and n == 2:  # promise everything, deliver half, drop the connection
                self.record(200)
                self.send_response(200)
                self.send_header("Content-Length", str(len(BLOB)))
                self.end_headers()
                self.wfile.write(BLOB[:len(BLOB) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(BLOB) - 1
            end = min(end, len(BLOB) - 1)
            if start >= len(BLOB):
                return self.send(416, b"", [("Content-Range", "bytes */%d" % len(BLOB))], head)
            return self.send(206, BLOB[start:end + 1],
                             [("Content-Range", "bytes %d-%d/%d" % (start, end, len(BLOB)))], head)
        self.send(200, BLOB, [("Accept-Ranges", "bytes")], head)

    def do_GET(self):
        self.serve(False)

    def do_HEAD(self):
        self.serve(True)


def listen(addr, handler):
    h, _, p = addr.rpartition(":")
    srv = ThreadingHTTPServer((h, int(p)), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


storage = listen(args.storage, Storage)
STORAGE_URL = "http://%s:%d" % storage.server_address[:2]
front = listen(args.front, Front)
with open(args.port_file + ".tmp", "w") as f:
    f.write("%d %d\n" % (front.server_address[1], storage.server_address[1]))
os.rename(args.port_file + ".tmp", args.port_file)
threading.Event().wait()
