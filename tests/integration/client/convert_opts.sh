#!/usr/bin/env bash
# chunkfly convert's nydusify options (docs/convert.md), between an anonymous docker-registry
# (sources, pushed with skopeo) and one with token auth (targets):
#  - --prefetch-patterns: the paths read from stdin are the merged bootstrap's prefetch table
#    (relative and missing ones skipped); without it the table is ["/"], as nydusify's;
#  - --with-referrer: the Nydus manifest's subject is the source manifest's descriptor
#    (mediaType, digest, size, no platform), for an OCI and a Docker source;
#  - --oci: a Docker schema 2 source (skopeo --format v2s2) gives a Docker target by default
#    and an OCI one (manifest, config, bootstrap layer) with --oci;
#  - --chunk-dict bootstrap:registry:REF (image A converted) for an image B sharing a file
#    with A: that file's chunks are not stored again (B's blob holds only its own data; fewer
#    bytes pushed), the manifest lists A's blob (mounted into B's repository), `chunkfly
#    check` passes, the tree via `chunkfly-mount --image` equals `umoci unpack` of B,
#    `chunkfly-image check` accepts the bootstrap; bootstrap:local:PATH; and
#    `chunkfly-image create --chunk-dict bootstrap=PATH` read back by fsck.erofs;
#  - `chunkfly check` passes for each.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/mount/mount_lib.sh"
. "$CHUNKFLY_SRC/tests/integration/mount/backend_lib.sh"
command -v umoci >/dev/null || skip "umoci not installed"
command -v skopeo >/dev/null || skip "skopeo not installed"
need_bin chunkfly
need_bin chunkfly-image
CF=$CHUNKFLY_BIN/chunkfly
CFI=$CHUNKFLY_BIN/chunkfly-image

# image A: two layers (the second shares a file with the first under another name)
L="$T/layers"
mkdir -p "$L/a1/etc" "$L/a1/usr/bin" "$L/a1/opt/data" "$L/a2/opt/app"
echo base >"$L/a1/etc/config"; echo tool >"$L/a1/usr/bin/tool"
head -c 1500000 /dev/urandom >"$L/a1/opt/data/shared.bin"
head -c 300000 /dev/urandom >"$L/a1/opt/data/only-a.bin"
echo app >"$L/a2/opt/app/run"; cp "$L/a1/opt/data/shared.bin" "$L/a2/opt/app/copy.bin"
cd "$T" || exit 1
umoci init --layout oci >/dev/null
umoci new --image oci:a >/dev/null
for l in a1 a2; do
    tar --numeric-owner -C "$L/$l" -cf "$T/$l.tar" .
    umoci raw add-layer --image oci:a "$T/$l.tar" >/dev/null
done
# image B: its first layer holds A's shared.bin (another path) and data of its own
mkdir -p "$L/b1/srv" "$L/b2/etc"
cp "$L/a1/opt/data/shared.bin" "$L/b1/srv/from-a.bin"
head -c 200000 /dev/urandom >"$L/b1/srv/only-b.bin"
echo b >"$L/b2/etc/config"
umoci new --image oci:b >/dev/null
for l in b1 b2; do
    tar --numeric-owner -C "$L/$l" -cf "$T/$l.tar" .
    umoci raw add-layer --image oci:b "$T/$l.tar" >/dev/null
done
umoci unpack --image oci:b "$T/bundle-b" >/dev/null 2>&1 || fail "umoci unpack of B"

start_registry 127.0.0.1 "" source
SREG=$REGISTRY
skopeo copy -q --dest-tls-verify=false oci:"$T/oci:a" "docker://$SREG/src/a:oci" ||
    fail "skopeo push of the OCI source"
skopeo copy -q --dest-tls-verify=false oci:"$T/oci:b" "docker://$SREG/src/b:v1" ||
    fail "skopeo push of B"
skopeo copy -q --format v2s2 --dest-tls-verify=false oci:"$T/oci:a" "docker://$SREG/src/a:docker" ||
    fail "skopeo push of the Docker source"
start_token_registry
mkdir -p "$T/dc"
printf '{"auths":{"%s":{"auth":"%s"}}}' "$TREG" "$(printf alice:s3cret | base64 -w0)" \
    >"$T/dc/config.json"
export DOCKER_CONFIG=$T/dc

conv() { # conv LOG ARGS... : chunkfly convert, stderr in LOG, stdout printed
    "$CF" convert --work-dir "$T/work" "${@:2}" 2>"$1"
}
check() { # check SOURCE TARGET
    "$CF" check --work-dir "$T/work" "$1" "$2" 2>"$T/check.log" ||
        fail "check $2 failed: $(cat "$T/check.log")"
    grep -q "^check passed" "$T/check.log" || fail "check $2: $(cat "$T/check.log")"
}
tok=$(ptoken repository:dst/a:pull)
tget() { curl -sS -f -H "Authorization: Bearer $tok" "$@"; }
ACCEPT='application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json'
tman() { tget -H "Accept: $ACCEPT" "http://$TREG/v2/dst/a/manifests/$1"; }
sman() { curl -sS -f -H "Accept: $ACCEPT" -o "$2" -D "$2.h" "http://$SREG/v2/src/a/manifests/$1"; }
# boot_of TAG: the merged bootstrap of dst/a:TAG into $T/TAG.boot
boot_of() {
    tman "$1" >"$T/$1.man"
    local bd
    bd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][-1]["digest"])' "$T/$1.man")
    tget "http://$TREG/v2/dst/a/blobs/$bd" | tar -xzO image/image.boot >"$T/$1.boot"
}
prefetch_paths() { "$CFI" inspect "$1" -R prefetch | python3 -c 'import json,sys; print(" ".join(e["path"] for e in json.load(sys.stdin)))'; }

note "--prefetch-patterns: stdin paths become the bootstrap's prefetch table"
t0=$(date +%s%N)
printf '/etc\n/opt/data/shared.bin\r\nrelative/path\n\n/missing\n/usr/bin/tool\n' |
    conv "$T/pf.log" --prefetch-patterns "$SREG/src/a:oci" "$TREG/dst/a:pf" >/dev/null ||
    fail "convert --prefetch-patterns: $(cat "$T/pf.log")"
grep -q "relative/path.*not absolute" "$T/pf.log" || fail "relative path not reported: $(cat "$T/pf.log")"
boot_of pf
got=$(prefetch_paths "$T/pf.boot")
[ "$got" = "/etc /opt/data/shared.bin /usr/bin/tool" ] || fail "prefetch table: $got"
"$CFI" check "$T/pf.boot" >/dev/null 2>"$T/ic.log" || fail "chunkfly-image check: $(cat "$T/ic.log")"
check "$SREG/src/a:oci" "$TREG/dst/a:pf"
note "without --prefetch-patterns: [\"/\"] as nydusify"
conv "$T/np.log" "$SREG/src/a:oci" "$TREG/dst/a:np" >/dev/null || fail "convert: $(cat "$T/np.log")"
boot_of np
[ "$(prefetch_paths "$T/np.boot")" = "/" ] || fail "default prefetch table: $(prefetch_paths "$T/np.boot")"

note "--with-referrer: subject = the source manifest's descriptor"
conv "$T/ref.log" --with-referrer "$SREG/src/a:oci" "$TREG/dst/a:ref" >/dev/null ||
    fail "convert --with-referrer: $(cat "$T/ref.log")"
sman oci "$T/src-oci.json"
tman ref >"$T/ref.man"; tman np >"$T/np.man"
python3 - "$T/ref.man" "$T/src-oci.json" "$T/np.man" <<'PY' || fail "subject"
import hashlib, json, sys
m = json.load(open(sys.argv[1])); src = open(sys.argv[2], "rb").read()
want = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + hashlib.sha256(src).hexdigest(), "size": len(src)}
assert m["subject"] == want, (m.get("subject"), want)
assert m["annotations"]["containerd.io/snapshot/nydus-source-digest"] == want["digest"]
# the rest is the manifest of a plain conversion
n = json.load(open(sys.argv[3])); del m["subject"]
assert m == n, (m, n)
PY

note "a Docker schema 2 source: Docker types by default, OCI with --oci"
sman docker "$T/src-docker.json"
grep -qi '^content-type: application/vnd.docker.distribution.manifest.v2+json' "$T/src-docker.json.h" ||
    fail "skopeo --format v2s2 did not give a Docker manifest"
conv "$T/dk.log" --with-referrer "$SREG/src/a:docker" "$TREG/dst/a:dk" >/dev/null ||
    fail "convert docker: $(cat "$T/dk.log")"
conv "$T/oci.log" --oci "$SREG/src/a:docker" "$TREG/dst/a:dk-oci" >/dev/null ||
    fail "convert --oci: $(cat "$T/oci.log")"
tman dk >"$T/dk.man"; tman dk-oci >"$T/dk-oci.man"
python3 - "$T/dk.man" "$T/dk-oci.man" "$T/src-docker.json" <<'PY' || fail "media types"
import hashlib, json, sys
d = json.load(open(sys.argv[1])); o = json.load(open(sys.argv[2]))
src = open(sys.argv[3], "rb").read()
D, O = "application/vnd.docker.", "application/vnd.oci.image."
assert d["mediaType"] == D + "distribution.manifest.v2+json", d["mediaType"]
assert d["config"]["mediaType"] == D + "container.image.v1+json", d["config"]
assert d["layers"][-1]["mediaType"] == D + "image.rootfs.diff.tar.gzip", d["layers"][-1]
assert d["subject"] == {"mediaType": D + "distribution.manifest.v2+json",
                        "digest": "sha256:" + hashlib.sha256(src).hexdigest(),
                        "size": len(src)}, d["subject"]
assert o["mediaType"] == O + "manifest.v1+json", o["mediaType"]
assert o["config"]["mediaType"] == O + "config.v1+json", o["config"]
assert o["layers"][-1]["mediaType"] == O + "layer.v1.tar+gzip", o["layers"][-1]
assert "subject" not in o
for m in (d, o):
    assert all(l["mediaType"] == O + "layer.nydus.blob.v1" for l in m["layers"][:-1])
# the same blobs and bootstrap layer: only the types differ
assert [l["digest"] for l in d["layers"]] == [l["digest"] for l in o["layers"]]
PY
check "$SREG/src/a:docker" "$TREG/dst/a:dk-oci"
note "options 1-3: $(( ($(date +%s%N) - t0) / 1000000 )) ms"

note "--chunk-dict bootstrap:registry:REF: B with A (dst/a:np) as dictionary"
t0=$(date +%s%N)
tokb=$(ptoken repository:dst/b:pull)
bget() { curl -sS -f -H "Authorization: Bearer $tokb" "$@"; }
conv "$T/b0.log" "$SREG/src/b:v1" "$TREG/dst/b:plain" >/dev/null || fail "convert B: $(cat "$T/b0.log")"
conv "$T/bd.log" --chunk-dict "bootstrap:registry:$TREG/dst/a:np" "$SREG/src/b:v1" "$TREG/dst/b:dict" \
    >/dev/null || fail "convert --chunk-dict: $(cat "$T/bd.log")"
cat "$T/bd.log"
grep -q "^chunk dictionary: [1-9][0-9]* chunks" "$T/bd.log" || fail "no dictionary chunks used"
pushed() { sed -n 's/.*blobs pushed [0-9]* (\([^)]*\)).*/\1/p' "$1"; }
note "pushed without the dictionary: $(pushed "$T/b0.log"), with it: $(pushed "$T/bd.log")"
for t in plain dict; do
    bget -H "Accept: $ACCEPT" "http://$TREG/v2/dst/b/manifests/$t" >"$T/b-$t.man"
done
bget "http://$TREG/v2/dst/b/blobs/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["digest"])' "$T/b-dict.man")" >"$T/b-dict.cfg"
python3 - "$T/b-plain.man" "$T/b-dict.man" "$T/np.man" "$T/b-dict.cfg" <<'PY' || fail "dictionary packaging"
import json, sys
p, d, a, cfg = (json.load(open(f)) for f in sys.argv[1:])
NB = "application/vnd.oci.image.layer.nydus.blob.v1"
a_blobs = {l["digest"]: l["size"] for l in a["layers"][:-1]}
own = d["layers"][:2]           # B's two layers
extra = d["layers"][2:-1]       # the dictionary's blobs used
assert len(extra) >= 1, d["layers"]
for l in extra:
    assert l["mediaType"] == NB and l["annotations"] == {"containerd.io/snapshot/nydus-blob": "true"}
    assert a_blobs.get(l["digest"]) == l["size"], (l, a_blobs)
# B's first blob lost the 1.5 MB file to the dictionary
assert own[0]["size"] < p["layers"][0]["size"] - 1400000, (own[0]["size"], p["layers"][0]["size"])
assert cfg["rootfs"]["diff_ids"][:-1] == [l["digest"] for l in d["layers"][:-1]], cfg["rootfs"]
print("B's layer 1 blob: %d bytes without the dictionary, %d with it" % (p["layers"][0]["size"], own[0]["size"]))
PY
check "$SREG/src/b:v1" "$TREG/dst/b:dict"
bd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][-1]["digest"])' "$T/b-dict.man")
bget "http://$TREG/v2/dst/b/blobs/$bd" | tar -xzO image/image.boot >"$T/b-dict.boot"
"$CFI" check "$T/b-dict.boot" >"$T/bic.log" 2>&1 || fail "chunkfly-image check: $(cat "$T/bic.log")"
[ "$(grep -c '^	 [0-9]*: ' "$T/bic.log")" -ge 2 ] || fail "bootstrap blob table: $(cat "$T/bic.log")"
note "B via the dictionary, mounted with chunkfly-mount --image, equals umoci unpack of B"
$MANIFEST --exclude . "$T/bundle-b/rootfs" | grep -v '^\.	' >"$T/want-b"
mount_start "$T/mb.log" "$T/mnt-b" --image "$TREG/dst/b:dict" --cache-dir "$T/mcache-b"
$MANIFEST --exclude . "$T/mnt-b" | grep -v '^\.	' >"$T/got-b"
mount_stop "$MOUNT_PID" "$T/mnt-b"
diff -u "$T/want-b" "$T/got-b" || fail "B converted with a dictionary differs from umoci unpack"

note "--chunk-dict bootstrap:local:PATH (its blobs in the target repository)"
out=$(conv "$T/bl.log" --chunk-dict "bootstrap:local:$T/np.boot" "$SREG/src/b:v1" "$TREG/dst/a:b-local") ||
    fail "convert --chunk-dict local: $(cat "$T/bl.log")"
grep -q "^chunk dictionary: [1-9]" "$T/bl.log" || fail "local dictionary unused: $(cat "$T/bl.log")"
if conv "$T/bx.log" --chunk-dict "bootstrap:local:$T/np.boot" "$SREG/src/b:v1" "$TREG/dst/other:b" >/dev/null; then
    fail "a local dictionary whose blobs the target lacks was accepted"
fi
grep -q "is not in $TREG/dst/other: push the dictionary" "$T/bx.log" || fail "unclear: $(cat "$T/bx.log")"
grep -q "nothing published" "$T/bx.log" || fail "no 'nothing published': $(cat "$T/bx.log")"
if conv "$T/by.log" --chunk-dict "nonsense" "$SREG/src/b:v1" "$TREG/dst/b:x" >/dev/null; then
    fail "a bad --chunk-dict was accepted"
fi
grep -q "want bootstrap:registry:REF" "$T/by.log" || fail "unclear: $(cat "$T/by.log")"

note "chunkfly-image create --chunk-dict bootstrap=PATH, read back by fsck.erofs"
"$CFI" create --log-level warn --type tar-rafs --bootstrap "$T/ia.boot" --blob "$T/ia.blob" \
    --blob-cache-dir "$T/icache" "$T/a1.tar" || fail "create A"
"$CFI" create --log-level info --type tar-rafs --chunk-dict "bootstrap=$T/ia.boot" \
    --bootstrap "$T/ib.boot" --blob "$T/ib.blob" --blob-cache-dir "$T/icache" "$T/b1.tar" \
    2>"$T/ib.log" || fail "create --chunk-dict: $(cat "$T/ib.log")"
grep -q "chunk dict: [1-9][0-9]* chunks" "$T/ib.log" || fail "create: no dictionary chunk: $(cat "$T/ib.log")"
[ "$(stat -c %s "$T/ib.blob")" -lt 400000 ] || fail "B's blob stored the dictionary's chunks"
"$CFI" check "$T/ib.boot" >/dev/null 2>&1 || fail "chunkfly-image check of the create --chunk-dict bootstrap"
if command -v fsck.erofs >/dev/null; then
    devs=()
    for id in $("$CFI" inspect "$T/ib.boot" -R blobs | python3 -c 'import json,sys; print(" ".join(b["blob_id"] for b in json.load(sys.stdin)))'); do
        devs+=("--device=$T/icache/$id.blob.data")
    done
    [ "${#devs[@]}" = 2 ] || fail "blob table of the create --chunk-dict bootstrap: ${devs[*]}"
    fsck.erofs "${devs[@]}" --extract="$T/fx" "$T/ib.boot" >"$T/fsck.log" 2>&1 || fail "fsck.erofs: $(cat "$T/fsck.log")"
    cmp "$T/fx/srv/from-a.bin" "$L/b1/srv/from-a.bin" && cmp "$T/fx/srv/only-b.bin" "$L/b1/srv/only-b.bin" ||
        fail "fsck.erofs extracted other bytes"
fi
note "chunk dictionary: $(( ($(date +%s%N) - t0) / 1000000 )) ms"

echo PASS
