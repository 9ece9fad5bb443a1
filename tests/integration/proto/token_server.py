#!/usr/bin/python3
"""Test-only token server for docker-registry's token auth (loopback only).

Issues RS256 JWTs the registry accepts: claims iss/sub/aud/exp/nbf/iat/jti/access, header kid =
libtrust key id of the signing certificate's public key.
  GET  /token?service=S&scope=repository:NAME:ACTIONS[&scope=...]   (Basic auth optional)
  POST /token   form grant_type=password&username&password&scope&service  (containerd)
Known users get the actions they ask for, except on a repository with an --acl rule, where only
the users it names get any; anonymous callers get "pull" only, and nothing on --private or --acl
repositories; a wrong password is a 401. Every request is appended to --log as
"METHOD user=NAME scope=SCOPE status=CODE", so tests can count token fetches.

Needs Debian's python3-jwt and python3-cryptography: run with /usr/bin/python3.
"""
import argparse
import base64
import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

ap = argparse.ArgumentParser()
ap.add_argument("--key", required=True)
ap.add_argument("--cert", required=True)
ap.add_argument("--listen", default="127.0.0.1:0")
ap.add_argument("--port-file", required=True, help="written with the bound port once listening")
ap.add_argument("--user", action="append", default=[], help="name:password (repeatable)")
ap.add_argument("--issuer", default="chunkfly-test-issuer")
ap.add_argument("--ttl", type=int, default=300)
ap.add_argument("--ttl-for", action="append", default=[], help="name:seconds, per-user TTL")
ap.add_argument("--private", action="append", default=[],
                help="repository anonymous callers get no access to")
ap.add_argument("--acl", action="append", default=[],
                help="REPO=user[,user...]: only these users get access to REPO (repeatable)")
ap.add_argument("--log", required=True)
args = ap.parse_args()

host, _, port = args.listen.rpartition(":")
if not host.startswith("127."):
    raise SystemExit("token_server: refusing to listen outside 127.0.0.0/8")

with open(args.key, "rb") as f:
    KEY = f.read()
with open(args.cert, "rb") as f:
    CERT = x509.load_pem_x509_certificate(f.read())


def libtrust_kid(pub):
    """docker/libtrust KeyID: base32 of the first 240 bits of sha256(DER SPKI), 4-char groups."""
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


KID = libtrust_kid(CERT.public_key())
USERS = dict(u.split(":", 1) for u in args.user)
TTL_FOR = {k: int(v) for k, v in (t.split(":", 1) for t in args.ttl_for)}
ACL = {r: set(u.split(",")) for r, _, u in (a.partition("=") for a in args.acl)}
LOCK = threading.Lock()


def parse_scope(scope):
    """"repository:a/b:pull,push" -> dict; the name may not contain ':' here (no ports)."""
    parts = scope.split(":")
    if len(parts) < 3:
        return None
    return {"type": parts[0], "name": ":".join(parts[1:-1]), "actions": parts[-1].split(",")}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):  # keep stderr quiet; our own log is the record
        pass

    def record(self, user, scopes, status):
        with LOCK, open(args.log, "a") as f:
            f.write("%s user=%s scope=%s status=%d\n"
                    % (self.command, user, " ".join(scopes) or "-", status))

    def reply(self, status, body=b"", ctype="application/json", user="-", scopes=()):
        self.record(user, scopes, status)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def issue(self, user, scopes, service):
        access = []
        for sc in scopes:
            for one in sc.split(" "):
                p = parse_scope(one)
                if p is None:
                    continue
                if p["name"] in ACL and user not in ACL[p["name"]]:
                    p["actions"] = []
                elif user == "anonymous":
                    p["actions"] = [a for a in p["actions"]
                                    if a == "pull" and p["name"] not in args.private]
                access.append(p)
        now = int(time.time())
        ttl = TTL_FOR.get(user, args.ttl)
        claims = {"iss": args.issuer, "sub": user, "aud": service, "iat": now, "nbf": now - 5,
                  "exp": now + ttl, "jti": os.urandom(12).hex(), "access": access}
        tok = jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": KID})
        body = {"token": tok, "access_token": tok, "expires_in": ttl,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
        self.reply(200, json.dumps(body).encode(), user=user, scopes=scopes)

    def do_GET(self):
        u = urlsplit(self.path)
        if u.path != "/token":
            return self.reply(404, b'{"error":"not found"}')
        q = parse_qs(u.query)
        scopes, service = q.get("scope", []), q.get("service", [""])[0]
        user = "anonymous"
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                name, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                return self.reply(400, b'{"error":"bad basic auth"}', scopes=scopes)
            if USERS.get(name) != pw:
                return self.reply(401, b'{"error":"invalid credentials"}', user=name,
                                  scopes=scopes)
            user = name
        self.issue(user, scopes, service)

    def do_POST(self):
        if urlsplit(self.path).path != "/token":
            return self.reply(404, b'{"error":"not found"}')
        n = int(self.headers.get("Content-Length", "0"))
        q = parse_qs(self.rfile.read(n).decode())
        scopes, service = q.get("scope", []), q.get("service", [""])[0]
        grant = q.get("grant_type", [""])[0]
        if grant != "password":
            return self.reply(400, b'{"error":"unsupported_grant_type"}', scopes=scopes)
        name, pw = q.get("username", [""])[0], q.get("password", [""])[0]
        if USERS.get(name) != pw:
            return self.reply(401, b'{"error":"invalid_grant"}', user=name, scopes=scopes)
        self.issue(name, scopes, service)


srv = ThreadingHTTPServer((host, int(port)), Handler)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(args.port_file + ".tmp", args.port_file)
srv.serve_forever()
