#!/usr/bin/env python3
"""A reverse HTTP proxy that waits DELAY_MS before forwarding each GET: a registry "further
away" for benchmarks (netem is absent on the development machines).

  delay_proxy.py LISTEN_HOST:PORT UPSTREAM_HOST:PORT DELAY_MS [RATE_KIB_S]

Every request (HTTP/1.1, keep-alive, any method with a Content-Length body or none) is
forwarded to the upstream over one connection per client connection; a GET first sleeps
DELAY_MS. Responses are streamed through in 1 MiB pieces, headers unchanged. Prints
"listening on LISTEN_HOST:PORT" once it accepts connections; SIGTERM stops it. One thread
per client connection, so concurrent requests are delayed independently, as by a longer path.
RATE_KIB_S (optional, 0 = unlimited) paces each response body to that rate, in 64 KiB pieces:
a slow origin whose bytes trickle in.
"""
import http.client
import http.server
import signal
import socketserver
import sys
import time

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the upstream keeps the access log
        pass

    def forward(self):
        if self.command == "GET":
            time.sleep(DELAY)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        up = getattr(self, "up", None)
        if up is None:
            up = self.up = http.client.HTTPConnection(UPSTREAM, timeout=120)
        try:
            up.request(self.command, self.path, body=body, headers=headers)
            resp = up.getresponse()
        except (OSError, http.client.HTTPException):
            up.close()
            self.up = None
            self.send_error(502)
            return
        self.send_response_only(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        chunked = length is None and self.command != "HEAD" and resp.status not in (204, 304)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        step = (64 << 10) if RATE else (1 << 20)
        while self.command != "HEAD":
            piece = resp.read(step)
            if not piece:
                break
            if RATE:
                time.sleep(len(piece) / RATE)
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        resp.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    host, port = sys.argv[1].rsplit(":", 1)
    UPSTREAM = sys.argv[2]
    DELAY = float(sys.argv[3]) / 1000.0
    RATE = float(sys.argv[4]) * 1024.0 if len(sys.argv) > 4 else 0.0
    srv = Server((host, int(port)), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("listening on %s:%s" % (host, port), flush=True)
    srv.serve_forever()
