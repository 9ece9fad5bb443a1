#!/bin/bash
# The peer's registry mirror (docs/mirror.md) with curl against a real docker-registry: /v2/,
# blob GET/HEAD through the mesh (task = digest; the second peer gets it from the first: origin
# bytes ~1x), Range (206/416/400), keep-alive, absolute-form targets, upstream choice (?ns=,
# X-Chunkfly-Upstream, default) and the allow-list (403), the loop guard, path tricks, an unknown
# blob (404) and a down upstream (fast 502), manifests (by tag, by digest from memory, HEAD),
# the tags list, a client that disconnects mid-blob.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

start_registry 127.0.0.9
REPO=test/mirror
make_blob "$T/blob" 9
SIZE=$(stat -c %s "$T/blob")
push_blob "$REPO" "$T/blob"
BIG=$BLOB
make_blob "$T/big2" 24
push_blob "$REPO" "$T/big2"
BIG2=$BLOB
note "blob $BIG ($SIZE bytes)"
DOWN=127.0.0.9:$(free_port 127.0.0.9) # allowed, nothing listens there

start_scheduler
M1P=$(free_port 127.0.0.11)
M2P=$(free_port 127.0.0.12)
start_peer 1 --set mirror_listen="127.0.0.11:$M1P" --set mirror_upstreams="$REGISTRY,$DOWN" \
    --set origin_timeout=3s
start_peer 2 --set mirror_listen="127.0.0.12:$M2P" --set mirror_upstreams="http://$REGISTRY" \
    --set mirror_default_upstream="$REGISTRY" --set origin_timeout=3s
wait_port 127.0.0.11 "$M1P"
wait_port 127.0.0.12 "$M2P"
M1="http://127.0.0.11:$M1P"
M2="http://127.0.0.12:$M2P"

# code URL [CURL ARGS...]: the HTTP status (body in $T/body, headers in $T/hdr)
code() {
    local url=$1; shift
    curl -sS -o "$T/body" -D "$T/hdr" -w '%{http_code}' "$@" "$url"
}
hdr() {
    tr -d '\r' <"$T/hdr" | awk -v h="$1" 'tolower($1)==h":"{sub(/^[^:]*: */, ""); print}'
}

note "/v2/ answers 200 (GET and HEAD)"
[ "$(code "$M1/v2/")" = 200 ] || fail "/v2/ not 200"
[ "$(code "$M1/v2/" -I)" = 200 ] || fail "HEAD /v2/ not 200"

note "full GET through peer 1 (?ns=, as containerd asks)"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY")" = 200 ] || { cat "$T/body"; fail "GET not 200"; }
cmp "$T/body" "$T/blob" || fail "blob bytes differ"
[ "$(hdr content-length)" = "$SIZE" ] || fail "Content-Length $(hdr content-length)"
[ "$(hdr docker-content-digest)" = "$BIG" ] || fail "Docker-Content-Digest"

note "HEAD: the length, no body"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" -I)" = 200 ] || fail "HEAD not 200"
[ "$(hdr content-length)" = "$SIZE" ] || fail "HEAD Content-Length $(hdr content-length)"
# a HEAD that sent a body would garble the next answer on the same connection
curl -sS -I "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" --next -o "$T/body2" \
    "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" >/dev/null || fail "HEAD then GET"
cmp "$T/body2" "$T/blob" || fail "GET after HEAD on one connection differs"

note "Range: a-b and a- (206), past the end (416), several / malformed (400)"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" -H 'Range: bytes=1000-1999')" = 206 ] ||
    fail "range not 206"
cmp "$T/body" <(tail -c +1001 "$T/blob" | head -c 1000) || fail "range bytes differ"
[ "$(hdr content-range)" = "bytes 1000-1999/$SIZE" ] || fail "Content-Range $(hdr content-range)"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" -H 'Range: bytes=5000000-')" = 206 ] ||
    fail "open range not 206"
cmp "$T/body" <(tail -c +5000001 "$T/blob") || fail "open range bytes differ"
[ "$(hdr content-range)" = "bytes 5000000-$((SIZE - 1))/$SIZE" ] || fail "open Content-Range"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" -H "Range: bytes=100-$((SIZE + 99))")" = 206 ] ||
    fail "range past the end not clamped"
[ "$(hdr content-length)" = "$((SIZE - 100))" ] || fail "clamped Content-Length"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" -H "Range: bytes=$SIZE-")" = 416 ] ||
    fail "range at the end not 416"
[ "$(hdr content-range)" = "bytes */$SIZE" ] || fail "416 Content-Range $(hdr content-range)"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" -H 'Range: bytes=1-2,5-6')" = 400 ] ||
    fail "multiple ranges not 400"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" -H 'Range: bytes=x-')" = 400 ] ||
    fail "bad range not 400"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" -H 'Range: bytes=99999999999999999999-')" = 416 ] ||
    fail "absurd range not 416"
grep -q '"errors"' "$T/body" || fail "no OCI error JSON"

note "keep-alive: two GETs on one connection"
curl -sSv -o /dev/null -o /dev/null "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" \
    "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" 2>"$T/kv" || fail "keep-alive GETs failed"
grep -qi "re-using existing connection" "$T/kv" || fail "connection not reused"

note "pipelined requests on one connection: unknown blob, range, manifest-less tag, blob"
python3 - "127.0.0.11" "$M1P" "$REPO" "$BIG" "$REGISTRY" "$SIZE" <<'PY' || fail "pipelining"
import re, socket, sys
host, port, repo, big, reg, size = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
unk = "sha256:" + "0" * 64
reqs = [f"GET /v2/{repo}/blobs/{unk}?ns={reg} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /v2/{repo}/blobs/{big}?ns={reg} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n",
        f"HEAD /v2/{repo}/blobs/{big}?ns={reg} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /v2/{repo}/blobs/{big}?ns={reg} HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9\r\n"
        "Connection: close\r\n\r\n"]
s = socket.create_connection((host, port), timeout=20)
s.sendall("".join(reqs).encode())
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
codes = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)  # bodies are not \r\n-terminated
assert codes == [b"404", b"206", b"200", b"206"], codes
PY

note "peer 2 (default upstream, X-Chunkfly-Upstream) gets the blob from peer 1 through the mesh"
[ "$(code "$M2/v2/$REPO/blobs/$BIG")" = 200 ] || fail "peer 2 GET not 200"
cmp "$T/body" "$T/blob" || fail "peer 2 bytes differ"
[ "$(metric 2 bytes_from_parents_total)" -ge $((SIZE / 2)) ] ||
    fail "peer 2 took only $(metric 2 bytes_from_parents_total) bytes from parents"
origin=$(($(metric 1 bytes_from_origin_total) + $(metric 2 bytes_from_origin_total)))
note "origin bytes for 2 peers: $origin (blob $SIZE)"
[ "$origin" -le $((SIZE + SIZE / 10)) ] || fail "origin bytes $origin > 1.1x"
[ "$(code "$M2/v2/$REPO/blobs/$BIG" -H "X-Chunkfly-Upstream: $REGISTRY" -I)" = 200 ] ||
    fail "X-Chunkfly-Upstream not accepted"

note "absolute-form target (a client using the mirror as its proxy)"
[ "$(code "http://$REGISTRY/v2/$REPO/blobs/$BIG" --proxy "$M1")" = 200 ] || fail "absolute form"
cmp "$T/body" "$T/blob" || fail "absolute-form bytes differ"

note "allow-list, no upstream, loop guard, path tricks"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=10.1.2.3:5000")" = 403 ] || fail "foreign upstream not 403"
grep -q DENIED "$T/body" || fail "403 without OCI DENIED"
[ "$(code "$M1/v2/$REPO/blobs/$BIG")" = 403 ] || fail "no upstream not 403"
[ "$(code "http://10.1.2.3:5000/v2/$REPO/blobs/$BIG" --proxy "$M1")" = 403 ] ||
    fail "absolute form to a foreign upstream not 403"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" -H 'X-Chunkfly-Mirror: 1')" = 508 ] ||
    fail "loop guard"
[ "$(code "$M1/v2/../../etc/passwd?ns=$REGISTRY" --path-as-is)" = 400 ] || fail "dot segments"
[ "$(code "$M1/v2/$REPO/blobs/sha256:abc?ns=$REGISTRY")" = 400 ] || fail "bad digest"
[ "$(code "$M1/v2/a%2fb/blobs/$BIG?ns=$REGISTRY")" = 400 ] || fail "escapes"
[ "$(code "$M1/etc/passwd")" = 404 ] || fail "non-registry path"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' a)")" = 431 ] ||
    fail "huge header not 431"
[ "$(code "$M1/v2/$REPO/blobs/$BIG?ns=$REGISTRY" -X POST)" = 405 ] || fail "POST not 405"

note "unknown blob: 404; upstream down: a fast 5xx"
UNK=sha256:$(echo nothing | sha256sum | cut -d' ' -f1)
[ "$(code "$M1/v2/$REPO/blobs/$UNK?ns=$REGISTRY")" = 404 ] || fail "unknown blob not 404"
grep -q BLOB_UNKNOWN "$T/body" || fail "no BLOB_UNKNOWN"
UNK2=sha256:$(echo nothing2 | sha256sum | cut -d' ' -f1)
t0=$(date +%s)
c=$(code "$M1/v2/$REPO/blobs/$UNK2?ns=$DOWN" --max-time 30)
t1=$(date +%s)
case $c in 5??|404) ;; *) fail "down upstream answered $c" ;; esac
[ $((t1 - t0)) -le 10 ] || fail "down upstream took $((t1 - t0)) s"
note "down upstream: $c in $((t1 - t0)) s"

note "manifests: by tag proxied, by digest proxied + checked + kept in memory; tags list"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$T/cfg"
push_blob "$REPO" "$T/cfg"
CFG=$BLOB
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
    "$CFG" "$(stat -c %s "$T/cfg")" "$BIG" "$SIZE" >"$T/manifest"
MT=application/vnd.oci.image.manifest.v1+json
curl -fsS -X PUT -H "Content-Type: $MT" --data-binary "@$T/manifest" \
    "http://$REGISTRY/v2/$REPO/manifests/v1" || fail "manifest push"
MD=sha256:$(sha256sum <"$T/manifest" | cut -d' ' -f1)
[ "$(code "$M1/v2/$REPO/manifests/v1?ns=$REGISTRY" -H "Accept: $MT")" = 200 ] ||
    { cat "$T/body"; fail "manifest by tag not 200"; }
cmp "$T/body" "$T/manifest" || fail "manifest by tag differs"
[ "$(hdr docker-content-digest)" = "$MD" ] || fail "manifest Docker-Content-Digest"
[ "$(hdr content-type)" = "$MT" ] || fail "manifest Content-Type $(hdr content-type)"
[ "$(code "$M1/v2/$REPO/manifests/v1?ns=$REGISTRY" -I -H "Accept: $MT")" = 200 ] ||
    fail "manifest HEAD not 200"
[ "$(hdr content-length)" = "$(stat -c %s "$T/manifest")" ] || fail "manifest HEAD length"
for i in 1 2; do
    [ "$(code "$M1/v2/$REPO/manifests/$MD?ns=$REGISTRY" -H "Accept: $MT")" = 200 ] ||
        fail "manifest by digest not 200 ($i)"
    cmp "$T/body" "$T/manifest" || fail "manifest by digest differs ($i)"
done
[ "$(metric 1 mirror_manifest_hits_total)" -ge 1 ] || fail "manifest by digest not kept"
[ "$(code "$M1/v2/$REPO/manifests/nosuchtag?ns=$REGISTRY")" = 404 ] || fail "unknown tag not 404"
grep -q MANIFEST_UNKNOWN "$T/body" || fail "the upstream's 404 body not passed on"
[ "$(code "$M1/v2/$REPO/tags/list?ns=$REGISTRY")" = 200 ] || fail "tags list not 200"
grep -q '"v1"' "$T/body" || fail "tags list without v1"
[ "$(code "$M1/v2/$REPO/manifests/v1?ns=10.1.2.3")" = 403 ] || fail "manifest foreign upstream"

note "a client that disconnects mid-blob closes only its own read"
curl -sS -o /dev/null --limit-rate 200k --max-time 1 "$M1/v2/$REPO/blobs/$BIG2?ns=$REGISTRY" &&
    fail "slow client finished?"
[ "$(code "$M1/v2/$REPO/blobs/$BIG2?ns=$REGISTRY")" = 200 ] || fail "GET after a disconnect"
cmp "$T/body" "$T/big2" || fail "bytes after a disconnect differ"
peer_alive_or_fail 1
peer_alive_or_fail 2
[ "$(metric 1 mirror_requests_total)" -gt 10 ] || fail "mirror metrics"

note "SIGTERM with a mirror response streaming and one waiting: clean exit"
curl -sS -o /dev/null --limit-rate 100k "$M1/v2/$REPO/blobs/$BIG2?ns=$REGISTRY" 2>/dev/null &
slow=$!
curl -sS -o /dev/null "$M1/v2/$REPO/blobs/$UNK2?ns=$DOWN" 2>/dev/null &
waiting=$!
sleep 1
finish_peers
# the slow client may still be draining its socket buffer at 100 KiB/s: not worth waiting for
kill "$slow" "$waiting" 2>/dev/null || true
wait "$slow" "$waiting" 2>/dev/null || true
echo PASS
