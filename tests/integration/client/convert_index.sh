#!/usr/bin/env bash
# chunkfly convert of a two-platform image index (linux/amd64 + linux/arm64, made with umoci,
# pushed with skopeo, the index PUT by hand) between two real docker-registries. Checks:
#  - every platform converted, its Nydus manifest pushed by digest, the index last by tag;
#  - each platform's tree (chunkfly-mount --image --platform) equals `umoci unpack` of its source;
#  - `chunkfly check` checks every platform of the index;
#  - --merge-platform: one index with the original manifests and the Nydus ones (artifactType,
#    os.features nydus.remoteimage.v1, the Nydus config media type), checked and mounted;
#  - --platform keeps the one-platform behaviour (a manifest, no index);
#  - a second run pushes no blob and gives the same index;
#  - a platform that fails midway (its layer deleted from the source): a clear error naming the
#    platform and the layer, and no index published.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/mount/mount_lib.sh"
. "$CHUNKFLY_SRC/tests/lib/nydus_image.sh"
command -v umoci >/dev/null || skip "umoci not installed"
command -v skopeo >/dev/null || skip "skopeo not installed"
need_bin chunkfly
CF=$CHUNKFLY_BIN/chunkfly
MANIFEST="python3 $CHUNKFLY_SRC/tests/lib/tree_manifest.py"

L="$T/layers"
mkdir -p "$L/base" "$L/amd64" "$L/arm64"
( cd "$L/base" || exit 1
  mkdir -p etc usr/bin gone; echo base >etc/os-release; echo x >gone/x
  head -c 300000 /dev/urandom >usr/bin/shared; ln usr/bin/shared usr/bin/shared-hard
  setfattr -n user.base -v 1 etc/os-release )
( cd "$L/amd64" || exit 1
  mkdir -p usr/bin; echo amd64 >usr/bin/arch; head -c 200000 /dev/urandom >usr/bin/tool-amd64
  : >.wh.gone )
( cd "$L/arm64" || exit 1
  mkdir -p usr/bin opt; echo arm64 >usr/bin/arch; head -c 150000 /dev/urandom >opt/tool-arm64
  ln -s ../usr/bin/arch opt/arch-link; chmod 4755 opt/tool-arm64 )
cd "$T" || exit 1
umoci init --layout oci >/dev/null
for a in amd64 arm64; do
    umoci new --image "oci:$a" >/dev/null
    # the base layer is the same tar in both: one blob, built once
    [ -e "$T/base.tar" ] ||
        tar --xattrs --xattrs-include='*' --numeric-owner -C "$L/base" -cf "$T/base.tar" .
    tar --xattrs --xattrs-include='*' --numeric-owner -C "$L/$a" -cf "$T/$a.tar" .
    umoci raw add-layer --image "oci:$a" "$T/base.tar" >/dev/null
    umoci raw add-layer --image "oci:$a" "$T/$a.tar" >/dev/null
    umoci config --image "oci:$a" --os linux --architecture "$a" >/dev/null
    umoci unpack --image "oci:$a" "$T/bundle-$a" >/dev/null 2>&1 || fail "umoci unpack $a"
    $MANIFEST --exclude . "$T/bundle-$a/rootfs" | grep -v '^\.	' >"$T/want-$a"
done
cmp -s "$T/want-amd64" "$T/want-arm64" && fail "the two platforms have the same tree"

start_registry 127.0.0.1 "" source
SREG=$REGISTRY
REGISTRY_LOG="{level: info, fields: {service: registry}}" start_registry 127.0.0.1 "" target
TREG=$REGISTRY
TDIR=$REGISTRY_DIR
entries=""
for a in amd64 arm64; do
    skopeo copy -q --dest-tls-verify=false "oci:$T/oci:$a" "docker://$SREG/multi/app:$a" ||
        fail "skopeo push of $a"
    curl -sSf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$SREG/v2/multi/app/manifests/$a" >"$T/src-$a.json"
    entries+="{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$(sha256sum <"$T/src-$a.json" | cut -d' ' -f1)\",\"size\":$(stat -c %s "$T/src-$a.json"),\"platform\":{\"architecture\":\"$a\",\"os\":\"linux\"}},"
done
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
    "${entries%,}" >"$T/index.json"
SIX=$(oci_push_manifest "$SREG" multi/app v1 "$T/index.json" application/vnd.oci.image.index.v1+json)

conv() { "$CF" convert --work-dir "$T/work" "${@:2}" 2>"$1"; }
summary() { grep '^converted ' "$1" || fail "no summary in $1: $(cat "$1")"; }
getm() { # getm REF FILE: the target's manifest or index document
    curl -sSf -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' \
        "http://$TREG/v2/multi/app/manifests/$1" >"$2" || fail "GET manifest $1"
}
tree_of() { # tree_of REF PLATFORM OUT: the tree mounted with chunkfly-mount
    mount_start "$T/m.log" "$T/mnt" --image "$TREG/multi/app:$1" --platform "$2" --cache-dir "$T/mcache"
    $MANIFEST --exclude . "$T/mnt" | grep -v '^\.	' >"$3"
    mount_stop "$MOUNT_PID" "$T/mnt"
}

note "convert the index: every platform, then the index"
t0=$(date +%s%N)
out=$(conv "$T/c1.log" "$SREG/multi/app:v1" "$TREG/multi/app:v1") || fail "convert: $(cat "$T/c1.log")"
note "index conversion: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
cat "$T/c1.log"
IX=${out##*@}
summary "$T/c1.log" | grep -q "2 platforms, 4 layers (3 built, 1 converted before)" ||
    fail "summary: $(summary "$T/c1.log")"
getm v1 "$T/tix.json"
[ "sha256:$(sha256sum <"$T/tix.json" | cut -d' ' -f1)" = "$IX" ] || fail "index digest"
for d in $(python3 -c 'import json,sys; print(" ".join(m["digest"] for m in json.load(open(sys.argv[1]))["manifests"]))' "$T/tix.json"); do
    getm "$d" "$T/tm-${d#sha256:}.json"
done
python3 - "$T/tix.json" "$T" "$SIX" "$SREG/multi/app:v1" <<'PY' || fail "index packaging"
import json, sys
ix = json.load(open(sys.argv[1])); T = sys.argv[2]
assert ix["schemaVersion"] == 2 and ix["mediaType"] == "application/vnd.oci.image.index.v1+json", ix
assert ix["annotations"] == {"containerd.io/snapshot/nydus-source-digest": sys.argv[3],
                             "containerd.io/snapshot/nydus-source-reference": sys.argv[4]}, ix
ms = ix["manifests"]
assert [m["platform"] for m in ms] == [{"architecture": "amd64", "os": "linux"},
                                       {"architecture": "arm64", "os": "linux"}], ms
for m in ms:
    assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json" and "artifactType" not in m
    n = json.load(open("%s/tm-%s.json" % (T, m["digest"][7:])))
    assert n["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert n["layers"][-1]["annotations"]["containerd.io/snapshot/nydus-bootstrap"] == "true"
    assert all(l["mediaType"] == "application/vnd.oci.image.layer.nydus.blob.v1" for l in n["layers"][:-1])
    assert n["annotations"]["containerd.io/snapshot/nydus-source-reference"] == sys.argv[4]
# the shared base layer is one blob
assert len({json.load(open("%s/tm-%s.json" % (T, m["digest"][7:])))["layers"][0]["digest"] for m in ms}) == 1
PY
# push order: blobs, then the two manifests (by digest), then the index (by tag)
grep -oE '"(PUT|POST|PATCH) /v2/multi/app/[a-z]+/[^ ?"]*' "$TDIR/log" | sed 's/sha256:[0-9a-f]*/D/' |
    awk '{print $2}' | uniq >"$T/order"
[ "$(tail -3 "$T/order" | tr '\n' ' ')" = "/v2/multi/app/manifests/D /v2/multi/app/manifests/v1 " ] ||
    [ "$(grep -n manifests "$T/order" | tail -2 | cut -d: -f2 | tr '\n' ' ')" = "/v2/multi/app/manifests/D /v2/multi/app/manifests/v1 " ] ||
    fail "push order: $(cat "$T/order")"
grep -q manifests/D "$T/order" && [ "$(tail -1 "$T/order")" = /v2/multi/app/manifests/v1 ] ||
    fail "the index is not pushed last: $(cat "$T/order")"

note "each platform's tree equals umoci unpack of its source"
for a in amd64 arm64; do
    tree_of v1 "linux/$a" "$T/got-$a"
    diff -u "$T/want-$a" "$T/got-$a" || fail "$a: converted tree differs from umoci unpack"
done

note "chunkfly check: every platform of the index"
"$CF" check --work-dir "$T/work" "$SREG/multi/app:v1" "$TREG/multi/app:v1" 2>"$T/check.log" ||
    fail "check: $(cat "$T/check.log")"
grep -q "^platform linux/amd64" "$T/check.log" && grep -q "^platform linux/arm64" "$T/check.log" &&
    grep -q "^index: 2 platforms checked" "$T/check.log" || fail "check output: $(cat "$T/check.log")"
# a target whose arm64 entry is the amd64 image: named, exit 1
python3 - "$T/tix.json" >"$T/bad.json" <<'PY'
import json, sys
ix = json.load(open(sys.argv[1])); ms = ix["manifests"]
ms[1] = dict(ms[0], platform=ms[1]["platform"]); print(json.dumps(ix), end="")
PY
oci_push_manifest "$TREG" multi/app bad "$T/bad.json" application/vnd.oci.image.index.v1+json >/dev/null
if "$CF" check --work-dir "$T/work" "$SREG/multi/app:v1" "$TREG/multi/app:bad" 2>"$T/check2.log"; then
    fail "check of a wrong arm64 entry passed"
fi
grep -q "PROBLEM: opt: in the source, missing in the target" "$T/check2.log" ||
    fail "check differences unclear: $(cat "$T/check2.log")"

note "second run: no blob pushed, same index"
out=$(conv "$T/c2.log" "$SREG/multi/app:v1" "$TREG/multi/app:v1") || fail "second run: $(cat "$T/c2.log")"
[ "${out##*@}" = "$IX" ] || fail "second run made another index: $out"
summary "$T/c2.log" | grep -q "(0 built, 4 converted before).*blobs pushed 0 " ||
    fail "second run: $(summary "$T/c2.log")"

note "--merge-platform: originals and Nydus manifests in one index"
out=$(conv "$T/c3.log" --merge-platform "$SREG/multi/app:v1" "$TREG/multi/app:merged") ||
    fail "merge: $(cat "$T/c3.log")"
getm merged "$T/mix.json"
for d in $(python3 -c 'import json,sys; print(" ".join(m["digest"] for m in json.load(open(sys.argv[1]))["manifests"]))' "$T/mix.json"); do
    getm "$d" "$T/tm-${d#sha256:}.json"
done
python3 - "$T/mix.json" "$T/index.json" "$T" <<'PY' || fail "merged index fields"
import json, sys
ix = json.load(open(sys.argv[1])); src = json.load(open(sys.argv[2])); T = sys.argv[3]
ms = ix["manifests"]
assert len(ms) == 4, ms
orig, nyd = ms[0::2], ms[1::2]
assert orig == src["manifests"], (orig, src["manifests"])
for o, n in zip(orig, nyd):
    assert n["artifactType"] == "application/vnd.nydus.image.manifest.v1+json", n
    assert n["platform"] == dict(o["platform"], **{"os.features": ["nydus.remoteimage.v1"]}), n
    m = json.load(open("%s/tm-%s.json" % (T, n["digest"][7:])))
    assert m["config"]["mediaType"] == "application/vnd.nydus.image.config.v1+json", m["config"]
    assert m["artifactType"] == "application/vnd.nydus.image.manifest.v1+json"
PY
"$CF" check --work-dir "$T/work" "$SREG/multi/app:v1" "$TREG/multi/app:merged" 2>"$T/check3.log" ||
    fail "check of the merged index: $(cat "$T/check3.log")"
grep -q "^index: 2 platforms checked (merged" "$T/check3.log" || fail "merged check: $(cat "$T/check3.log")"
tree_of merged linux/arm64 "$T/got-merged"
diff -u "$T/want-arm64" "$T/got-merged" || fail "merged index: arm64 tree differs"

note "--platform: one platform, one manifest (no index)"
out=$(conv "$T/c4.log" --platform linux/arm64 "$SREG/multi/app:v1" "$TREG/multi/app:arm") ||
    fail "--platform: $(cat "$T/c4.log")"
getm arm "$T/arm.json"
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); assert m["mediaType"].endswith("manifest.v1+json") and "layers" in m' "$T/arm.json" ||
    fail "--platform did not give a manifest"
summary "$T/c4.log" | grep -q "1 platform, 2 layers" || fail "--platform: $(summary "$T/c4.log")"
if conv "$T/c5.log" --all-platforms --platform linux/arm64 "$SREG/multi/app:v1" "$TREG/multi/app:x"; then
    fail "--all-platforms with --platform accepted"
fi
if conv "$T/c6.log" --merge-platform "$SREG/multi/app:amd64" "$TREG/multi/app:x"; then
    fail "--merge-platform of a manifest accepted"
fi
grep -q "is not an index" "$T/c6.log" || fail "merge refusal unclear: $(cat "$T/c6.log")"

note "a platform failing midway: a clear error and no index published"
# the arm64-only layer deleted from the source: amd64 converts, arm64 cannot be fetched
ad=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][1]["digest"])' "$T/src-arm64.json")
curl -sSf -X DELETE "http://$SREG/v2/multi/app/blobs/$ad" || fail "DELETE of the arm64 layer"
if conv "$T/c7.log" --work-dir "$T/work-fresh" "$SREG/multi/app:v1" "$TREG/multi/app:half" >"$T/c7.out"; then
    fail "a conversion with a missing source layer passed"
fi
grep -q "platform linux/arm64: layer 2 (${ad:0:19}): download: .*HTTP 404" "$T/c7.log" ||
    fail "error unclear: $(cat "$T/c7.log")"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.index.v1+json' \
    "http://$TREG/v2/multi/app/manifests/half")
[ "$code" = 404 ] || fail "an index was published for the half-converted image (HTTP $code)"
echo PASS
