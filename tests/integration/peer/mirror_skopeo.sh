#!/bin/bash
# skopeo (containers/image: what podman and CRI-O use) copies an image through the peer's
# registry mirror configured in a registries.conf (docs/mirror.md, "CRI-O, podman, skopeo"):
# the content equals a direct copy and the blobs went through the peer (its mirror and cache
# counters; a second copy is answered from the cache). With curl on the same mirror: HEAD of a
# blob, an unknown digest (a fast 404), a Range request and the resume of an interrupted
# download (-C -) give the right bytes. The peer stopped: skopeo falls back to the registry.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

for b in skopeo umoci; do
    command -v "$b" >/dev/null || skip "$b not installed"
done
MKIMG=$CHUNKFLY_SRC/../shared/tools/make-test-image.sh
[ -x "$MKIMG" ] || skip "$MKIMG missing"
# skopeo would otherwise send the loopback registry's traffic to a proxy of the environment
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

start_registry 127.0.0.9
REPO=test/sk
note "building and pushing a 3-layer image (4 with the whiteout layer)"
"$MKIMG" --registry "$REGISTRY" --repo "$REPO" --tag v1 --size-mb 8 --layers 3 --seed 11 \
    --workdir "$T/img" >"$T/img.log" 2>&1 || { tail "$T/img.log"; fail "image build"; }

start_scheduler
MPORT=$(free_port 127.0.0.11)
# no ?ns= from containers/image: the default upstream names the registry. small_blob=64K: the
# layers go through the peer's download task (and its cache), not straight to the origin.
start_peer 1 --set mirror_listen="127.0.0.11:$MPORT" --set mirror_upstreams="$REGISTRY" \
    --set mirror_default_upstream="$REGISTRY" --set small_blob=64K --set origin_timeout=3s
wait_port 127.0.0.11 "$MPORT"
M=http://127.0.0.11:$MPORT

# registries.conf files: none (direct), and the registry with the peer's mirror
printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "%s"\ninsecure = true\n' \
    "$REGISTRY" >"$T/direct.conf"
cat >"$T/mirror.conf" <<TOML
unqualified-search-registries = []
[[registry]]
location = "$REGISTRY"
insecure = true
[[registry.mirror]]
location = "127.0.0.11:$MPORT"
insecure = true
TOML
# copy CONF DEST [SKOPEO ARGS]: skopeo copy of the image into the OCI layout DEST
copy() {
    skopeo --registries-conf "$1" "${@:3}" copy --retry-times 0 "docker://$REGISTRY/$REPO:v1" "oci:$2:v1" \
        >"$2.log" 2>&1 || { tail "$2.log"; fail "skopeo copy with $(basename "$1") into $2"; }
}

note "direct copy, then a copy through the mirror (--registries-conf)"
copy "$T/direct.conf" "$T/direct"
copy "$T/mirror.conf" "$T/mirror"
diff -r "$T/direct/blobs" "$T/mirror/blobs" || fail "content through the mirror differs"
# the layers: the blobs of the image's manifest other than the config (sizes from the layout)
read -r -a LAYERS < <(python3 - "$T/direct" <<'PY'
import json, sys
d = sys.argv[1]
man = json.load(open(d + "/index.json"))["manifests"][0]["digest"]
m = json.load(open(d + "/blobs/sha256/" + man.split(":")[1]))
print(" ".join(l["digest"] for l in m["layers"]))
PY
)
total=0
for l in "${LAYERS[@]}"; do total=$((total + $(stat -c %s "$T/direct/blobs/sha256/${l#sha256:}"))); done
served=$(metric 1 mirror_bytes_total)
origin=$(metric 1 bytes_from_origin_total)
note "${#LAYERS[@]} layers, $total bytes; the mirror served $served, the peer fetched $origin from the origin"
[ "${#LAYERS[@]}" -ge 3 ] || fail "expected 3 layers, found ${#LAYERS[@]}"
[ "$served" -ge "$total" ] || fail "the layers did not come through the mirror"
[ "$origin" -ge "$total" ] || fail "the peer's tasks did not fetch the layers"

# (skopeo 1.9, Debian 12, reads neither REGISTRIES_CONFIG_PATH nor CONTAINERS_REGISTRIES_CONF:
# tried, both ignored; --registries-conf it is)
note "a second copy: answered from the peer's cache"
# the tasks finish (whole-blob digest, cache index) a moment after the last byte was served
for _ in $(seq 100); do
    [ "$(metric 1 tasks_completed_total)" -ge "${#LAYERS[@]}" ] && break
    sleep 0.1
done
[ "$(metric 1 tasks_completed_total)" -ge "${#LAYERS[@]}" ] ||
    fail "only $(metric 1 tasks_completed_total) tasks completed after the first copy"
hits=$(metric 1 mirror_cache_hits_total)
copy "$T/mirror.conf" "$T/again"
diff -r "$T/direct/blobs" "$T/again/blobs" || fail "second copy differs"
[ $(($(metric 1 mirror_cache_hits_total) - hits)) -ge "${#LAYERS[@]}" ] ||
    fail "second copy not from the cache ($hits -> $(metric 1 mirror_cache_hits_total) hits)"
[ "$(metric 1 bytes_from_origin_total)" = "$origin" ] || fail "second copy went to the origin"

L=${LAYERS[0]}
F=$T/direct/blobs/sha256/${L#sha256:}
SIZE=$(stat -c %s "$F")
hdr() { tr -d '\r' <"$T/hdr" | awk -v h="$1" 'tolower($1)==h":"{sub(/^[^:]*: */, ""); print}'; }

note "HEAD of a blob: its length and digest, no body"
c=$(curl -sS -I -D "$T/hdr" -o /dev/null -w '%{http_code} %{size_download}' "$M/v2/$REPO/blobs/$L")
[ "$c" = "200 0" ] || fail "HEAD answered $c (status, body bytes)"
[ "$(hdr content-length)" = "$SIZE" ] || fail "HEAD Content-Length $(hdr content-length), want $SIZE"
[ "$(hdr docker-content-digest)" = "$L" ] || fail "HEAD Docker-Content-Digest"

note "unknown digest: 404 at once"
UNK=sha256:$(echo "no such blob $RANDOM" | sha256sum | cut -d' ' -f1)
c=$(curl -sS -o "$T/body" -w '%{http_code} %{time_total}' --max-time 20 "$M/v2/$REPO/blobs/$UNK")
note "unknown digest: $c s"
[ "${c% *}" = 404 ] || fail "unknown digest answered ${c% *}"
grep -q BLOB_UNKNOWN "$T/body" || fail "no BLOB_UNKNOWN error"
awk -v t="${c#* }" 'BEGIN {exit !(t < 3)}' || fail "unknown digest took ${c#* } s"

note "Range, then a resumed download"
half=$((SIZE / 2 + 777))
c=$(curl -sS -r "0-$((half - 1))" -D "$T/hdr" -o "$T/part" -w '%{http_code}' "$M/v2/$REPO/blobs/$L")
[ "$c" = 206 ] || fail "range answered $c"
[ "$(hdr content-range)" = "bytes 0-$((half - 1))/$SIZE" ] || fail "Content-Range $(hdr content-range)"
[ "$(stat -c %s "$T/part")" = "$half" ] || fail "range length $(stat -c %s "$T/part")"
# continue where the first request stopped, as a client resuming does (curl -C -: bytes=N-)
c=$(curl -sS -C - -D "$T/hdr" -o "$T/part" -w '%{http_code}' "$M/v2/$REPO/blobs/$L")
[ "$c" = 206 ] || fail "resume answered $c"
[ "$(hdr content-range)" = "bytes $half-$((SIZE - 1))/$SIZE" ] || fail "resume Content-Range $(hdr content-range)"
cmp "$T/part" "$F" || fail "range + resume bytes differ"
# a download cut off mid-way (its reader goes away after 600000 bytes), then resumed: the
# largest layer
L2=$(for l in "${LAYERS[@]}"; do echo "$(stat -c %s "$T/direct/blobs/sha256/${l#sha256:}") $l"; done |
    sort -n | tail -1 | cut -d' ' -f2)
F2=$T/direct/blobs/sha256/${L2#sha256:}
{ curl -sS "$M/v2/$REPO/blobs/$L2" 2>/dev/null || true; } | head -c 600000 >"$T/cut"
got=$(stat -c %s "$T/cut")
[ "$got" = 600000 ] && [ "$(stat -c %s "$F2")" -gt "$got" ] || fail "cut download has $got bytes"
curl -sS -C - -o "$T/cut" "$M/v2/$REPO/blobs/$L2" || fail "resume of the cut download"
cmp "$T/cut" "$F2" || fail "resumed download differs (cut at $got bytes)"
note "resumed at $got of $(stat -c %s "$F2") bytes"

note "peer stopped: skopeo falls back to the registry"
finish_peers
t0=$(date +%s.%N)
copy "$T/mirror.conf" "$T/fallback" --debug
note "fallback copy in $(echo "$(date +%s.%N) - $t0" | bc) s"
grep -q "127.0.0.11:$MPORT.*connection refused" "$T/fallback.log" ||
    fail "skopeo did not try the stopped mirror first"
diff -r "$T/direct/blobs" "$T/fallback/blobs" || fail "fallback copy differs"
echo PASS
