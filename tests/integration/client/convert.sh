#!/usr/bin/env bash
# chunkfly convert SOURCE TARGET between two real docker-registries (source: anonymous, target:
# token auth with our token server, credentials from a docker config). The source is a 3-layer
# OCI image made with umoci (whiteouts, an opaque dir, hardlinks, symlinks, xattrs, owners,
# non-UTF-8 names)
# and pushed with skopeo. Checks:
#  - the converted image's packaging (media types, annotations, config diff_ids and history,
#    the bootstrap tar with image.boot and one blob.meta per blob);
#  - `chunkfly check` passes, and names the differences against another source;
#  - its tree, mounted with `chunkfly-mount fuse --image`, equals `umoci unpack` of the source;
#  - a second run rebuilds nothing and pushes nothing (same manifest digest);
#  - to another repository with the same work dir: the blobs are mounted, not rebuilt;
#  - kill -9 of the converter after layer 1: a re-run completes with the same image;
#  - the target registry stopped mid-conversion: a clear error and no manifest; a re-run
#    after the restart completes, reusing the layers converted before the failure.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/mount/mount_lib.sh"
. "$CHUNKFLY_SRC/tests/integration/mount/backend_lib.sh"
command -v umoci >/dev/null || skip "umoci not installed"
command -v skopeo >/dev/null || skip "skopeo not installed"
need_bin chunkfly
CF=$CHUNKFLY_BIN/chunkfly

L="$T/layers"
mkdir -p "$L/1" "$L/2" "$L/3"
( cd "$L/1" || exit 1
  mkdir -p etc usr/bin special/opaque-dir/inner dir2/sub keep
  echo base >etc/config; echo v1 >usr/bin/tool; chmod 755 usr/bin/tool
  head -c 2500000 /dev/urandom >usr/bin/big
  cp usr/bin/big usr/bin/big-copy   # its 3 chunks (1 MiB chunks) are stored once: dedup
  echo gone >special/delete-me; echo a >special/opaque-dir/a; echo b >special/opaque-dir/inner/b
  echo x >dir2/sub/x
  echo kept >keep/k; ln keep/k keep/k-hard; ln -s ../etc/config keep/cfg-link
  chown 1000:1000 keep/k; chmod 4755 usr/bin/tool
  setfattr -n user.layer -v one etc/config; setfattr -n trusted.t -v two keep/k
  # names are bytes: latin-1 (not UTF-8) and UTF-8
  echo latin >"$(printf 'caf\351')"; echo utf >"héllo-日本語.txt" )
( cd "$L/2" || exit 1
  mkdir -p etc special/opaque-dir usr/bin data
  echo changed >etc/config; echo v2 >usr/bin/tool2
  head -c 12000000 /dev/urandom >data/large   # gives the fault test time to stop the target
  : >special/.wh.delete-me
  : >special/opaque-dir/.wh..wh..opq; echo c >special/opaque-dir/c )
( cd "$L/3" || exit 1
  mkdir -p special
  : >.wh.dir2; echo back >special/delete-me
  echo t >t; ln t t-hard )
cd "$T" || exit 1
umoci init --layout oci >/dev/null
umoci new --image oci:v1 >/dev/null
for i in 1 2 3; do
    tar --xattrs --xattrs-include='*' --numeric-owner -C "$L/$i" -cf "$T/l$i.tar" .
    umoci raw add-layer --image oci:v1 "$T/l$i.tar" >/dev/null
done
umoci unpack --image oci:v1 "$T/bundle" >/dev/null 2>&1 || fail "umoci unpack failed"
$MANIFEST --exclude . "$T/bundle/rootfs" | grep -v '^\.	' >"$T/want"

start_registry 127.0.0.1 "" source
SREG=$REGISTRY
skopeo copy -q --dest-tls-verify=false oci:"$T/oci:v1" "docker://$SREG/src/app:v1" ||
    fail "skopeo push of the source image"
REGISTRY_LOG="{level: info, fields: {service: registry}}" start_token_registry
TPID=$REGISTRY_PID
TDIR=$REGISTRY_DIR
mkdir -p "$T/dc"
printf '{"auths":{"%s":{"auth":"%s"}}}' "$TREG" "$(printf alice:s3cret | base64 -w0)" \
    >"$T/dc/config.json"
export DOCKER_CONFIG=$T/dc

conv() { # conv LOG ARGS... : runs chunkfly convert, stderr in LOG, prints stdout
    "$CF" convert --work-dir "$T/work" "${@:2}" 2>"$1"
}
summary() { grep '^converted ' "$1" || fail "no summary in $1: $(cat "$1")"; }

note "convert $SREG/src/app:v1 -> $TREG/dst/app:v1"
t0=$(date +%s%N)
out=$(conv "$T/c1.log" "$SREG/src/app:v1" "$TREG/dst/app:v1") ||
    fail "convert failed: $(cat "$T/c1.log")"
note "first conversion: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
cat "$T/c1.log"
MD=${out##*@}
[ "$out" = "$TREG/dst/app:v1@$MD" ] || fail "stdout: $out"
grep -q "^layer 1/3 " "$T/c1.log" && grep -q "^layer 3/3 " "$T/c1.log" || fail "no per-layer progress"
summary "$T/c1.log" | grep -q "3 layers (3 built, 0 converted before)" || fail "summary: $(summary "$T/c1.log")"
summary "$T/c1.log" | grep -q "; chunks deduplicated 3 (2.4 MiB)" ||
    fail "dedup in summary (usr/bin/big-copy): $(summary "$T/c1.log")"

note "packaging: media types, annotations, config"
tok=$(ptoken repository:dst/app:pull)
get() { curl -sS -f -H "Authorization: Bearer $tok" "$@"; }
get -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$TREG/v2/dst/app/manifests/v1" >"$T/man.json"
[ "sha256:$(sha256sum <"$T/man.json" | cut -d' ' -f1)" = "$MD" ] || fail "manifest digest"
get "http://$TREG/v2/dst/app/blobs/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["digest"])' "$T/man.json")" >"$T/cfg.json"
bd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][-1]["digest"])' "$T/man.json")
get "http://$TREG/v2/dst/app/blobs/$bd" >"$T/boot.tgz"
python3 - "$T/man.json" "$T/cfg.json" "$T/boot.tgz" "$SREG/src/app:v1" <<'PY' || fail "packaging"
import gzip, hashlib, json, sys, tarfile
m = json.load(open(sys.argv[1])); c = json.load(open(sys.argv[2]))
assert m["schemaVersion"] == 2 and m["mediaType"] == "application/vnd.oci.image.manifest.v1+json", m
assert m["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
L = m["layers"]
assert len(L) == 4, len(L)
for l in L[:3]:
    assert l["mediaType"] == "application/vnd.oci.image.layer.nydus.blob.v1", l
    assert l["annotations"] == {"containerd.io/snapshot/nydus-blob": "true"}, l
b = L[3]
assert b["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip", b
assert b["annotations"] == {"containerd.io/snapshot/nydus-bootstrap": "true",
                            "containerd.io/snapshot/nydus-fs-version": "6"}, b
a = m["annotations"]
assert a["containerd.io/snapshot/nydus-fs-version"] == "6"
assert a["containerd.io/snapshot/nydus-source-reference"] == sys.argv[4]
assert a["containerd.io/snapshot/nydus-source-digest"].startswith("sha256:")
raw = gzip.decompress(open(sys.argv[3], "rb").read())
want = [l["digest"] for l in L[:3]] + ["sha256:" + hashlib.sha256(raw).hexdigest()]
assert c["rootfs"]["diff_ids"] == want, (c["rootfs"], want)
assert c["history"][-1] == {"created_by": "Nydus Converter", "comment": "Nydus Bootstrap Layer"}
assert c["os"] == "linux" and c["architecture"]
t = tarfile.open(sys.argv[3])
ms = t.getmembers()
metas = ["image/%s.blob.meta" % l["digest"][7:] for l in L[:3]]
assert [x.name for x in ms] == ["image", "image/image.boot"] + metas, [x.name for x in ms]
assert ms[0].isdir() and ms[0].mode == 0o755
assert all(x.mode == 0o444 and x.mtime == 0 and x.uid == 0 for x in ms[1:])
# a blob.meta: the ci array padded to 4 KiB, then the 4 KiB blob meta header
assert all(x.size >= 8192 and x.size % 4096 == 0 for x in ms[2:]), [x.size for x in ms[2:]]
PY

note "the converted image mounted with chunkfly-mount --image equals umoci unpack"
mount_start "$T/m.log" "$T/mnt" --image "$TREG/dst/app:v1" --cache-dir "$T/mcache"
$MANIFEST --exclude . "$T/mnt" | grep -v '^\.	' >"$T/got"
mount_stop "$MOUNT_PID" "$T/mnt"
diff -u "$T/want" "$T/got" || fail "converted image differs from umoci unpack"
grep -q '^special/delete-me	' "$T/got" && ! grep -q '^dir2' "$T/got" &&
    ! grep -q 'opaque-dir/a' "$T/got" || fail "whiteouts not applied"

note "chunkfly check: structure, every blob and chunk, tree equal to the source's layers"
"$CF" check --work-dir "$T/work" "$SREG/src/app:v1" "$TREG/dst/app:v1" 2>"$T/check.log" ||
    fail "check failed: $(cat "$T/check.log")"
grep -q "^check passed: .*(3 blobs" "$T/check.log" || fail "check: $(cat "$T/check.log")"
# against a source without layer 3: the differences are named
oci_push_plain_image "$SREG" src/app two "$T/l1.tar" "$T/l2.tar" >/dev/null
if "$CF" check --work-dir "$T/work" "$SREG/src/app:two" "$TREG/dst/app:v1" 2>"$T/check2.log"; then
    fail "check of a different source passed"
fi
grep -q "PROBLEM: t: in the target only" "$T/check2.log" &&
    grep -q "PROBLEM: dir2: in the source, missing in the target" "$T/check2.log" &&
    grep -q "does not match" "$T/check2.log" || fail "check differences unclear: $(cat "$T/check2.log")"

note "second run: nothing rebuilt, nothing pushed, same manifest"
puts() { grep -cE '"(PUT|PATCH|POST) /v2/' "$TDIR/log" || true; }
p0=$(puts)
out=$(conv "$T/c2.log" "$SREG/src/app:v1" "$TREG/dst/app:v1") || fail "second run: $(cat "$T/c2.log")"
summary "$T/c2.log" | grep -q "3 layers (0 built, 3 converted before).*blobs pushed 0 " ||
    fail "second run summary: $(summary "$T/c2.log")"
[ "${out##*@}" = "$MD" ] || fail "second run made another manifest: $out"
p1=$(puts)
# only the manifest PUT (same bytes, idempotent) reaches the registry
[ $((p1 - p0)) -le 1 ] || fail "second run made $((p1 - p0)) upload requests"

note "another repository, same work dir: blobs mounted across repositories"
out=$(conv "$T/c3.log" "$SREG/src/app:v1" "$TREG/dst/copy:v1") || fail "copy: $(cat "$T/c3.log")"
summary "$T/c3.log" | grep -q "(0 built, 3 converted before).*mounted 3" ||
    fail "copy summary: $(summary "$T/c3.log")"
[ "${out##*@}" = "$MD" ] || fail "copy got another manifest: $out"

note "on a terminal: a status line of the layers in flight, redrawn in place"
# script(1) gives convert a pseudo-terminal; a fresh work dir makes it build every layer
script -qefc "$(printf '%q ' "$CF" convert --work-dir "$T/work-tty" "$SREG/src/app:v1" \
    "$TREG/dst/tty:v1")" /dev/null >"$T/tty.log" 2>&1 </dev/null || fail "on a tty: $(cat "$T/tty.log")"
tr '\r' '\n' <"$T/tty.log" >"$T/tty.lines"
grep -qE '^.\[Klayers 0/3 done; [0-9]: downloading [0-9.]+ [KM]iB of [0-9.]+ [KM]iB' "$T/tty.lines" ||
    fail "no download status line on a tty: $(cat -v "$T/tty.log" | head -c 2000)"
grep -qE 'layers [0-3]/3 done.*: building, blob ' "$T/tty.lines" ||
    fail "no build status line on a tty: $(cat -v "$T/tty.log" | head -c 2000)"
grep -qE '^.\[Klayer [1-3]/3 .* built in ' "$T/tty.lines" ||
    fail "a progress line must replace the status line: $(cat -v "$T/tty.log" | head -c 2000)"
grep -q "^converted .*(3 built, 0 converted before)" "$T/tty.lines" ||
    fail "tty summary: $(cat -v "$T/tty.log" | head -c 2000)"
# without a terminal (every other run here) no escape sequence reaches the log
! grep -q $'\033' "$T/c1.log" || fail "escape sequences in a log that is not a terminal"

note "the same layers as zstd, plain tar and gzip: built again into byte-identical blobs"
zstd -q -f "$T/l1.tar" -o "$T/l1.tar.zst"; gzip -n -c "$T/l3.tar" >"$T/l3.tar.gz"
layers=""; diffs=""; i=0
for f in l1.tar.zst l2.tar l3.tar.gz; do
    i=$((i + 1))
    case $f in *.zst) mt=tar+zstd ;; *.gz) mt=tar+gzip ;; *) mt=tar ;; esac
    d=$(oci_push_blob "$SREG" src/app "$T/$f")
    layers+=$(_json_desc "application/vnd.oci.image.layer.v1.$mt" "$d" "$(stat -c %s "$T/$f")"),
    diffs+="\"sha256:$(sha256sum "$T/l$i.tar" | cut -d' ' -f1)\","
done
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]}}' "${diffs%,}" >"$T/mixed-cfg.json"
cd=$(oci_push_blob "$SREG" src/app "$T/mixed-cfg.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
    "$(_json_desc application/vnd.oci.image.config.v1+json "$cd" "$(stat -c %s "$T/mixed-cfg.json")")" \
    "${layers%,}" >"$T/mixed.json"
oci_push_manifest "$SREG" src/app mixed "$T/mixed.json" >/dev/null
out=$(conv "$T/cz.log" "$SREG/src/app:mixed" "$TREG/dst/app:mixed") || fail "mixed: $(cat "$T/cz.log")"
# the config differs (a smaller source config), the 3 blobs and the bootstrap layer do not
summary "$T/cz.log" | grep -q "(3 built, 0 converted before).*blobs pushed 1 .*already there 4" ||
    fail "mixed summary: $(summary "$T/cz.log")"

note "a chunk dictionary that is not a Nydus image is refused clearly"
if "$CF" convert --chunk-dict "bootstrap:registry:$SREG/src/app:v1" "$SREG/src/app:v1" "$TREG/dst/x:v1" 2>"$T/err"; then
    fail "an OCI image taken as chunk dictionary"
fi
grep -q -- "--chunk-dict $SREG/src/app:v1 (a Nydus image)" "$T/err" || fail "refusal unclear: $(cat "$T/err")"

note "kill -9 of the converter mid-conversion, then a re-run completes"
rm -rf "$T/work"
"$CF" convert --workers 1 --work-dir "$T/work" "$SREG/src/app:v1" "$TREG/dst/killed:v1" \
    >/dev/null 2>"$T/k1.log" &
kpid=$!
for _ in $(seq 1000); do grep -q '^layer 1/3' "$T/k1.log" && break; sleep 0.01; done
kill -9 "$kpid"; wait "$kpid" 2>/dev/null || true
out=$(conv "$T/k2.log" "$SREG/src/app:v1" "$TREG/dst/killed:v1") || fail "re-run after kill -9: $(cat "$T/k2.log")"
[ "${out##*@}" = "$MD" ] || fail "re-run after kill -9 made another manifest: $out"
summary "$T/k2.log" | grep -qE "\(([0-2]) built, ([1-3]) converted before\)" ||
    fail "re-run after kill -9: $(summary "$T/k2.log")"

note "one conversion per work dir at a time"
exec 9>"$T/work/lock"; flock 9
if "$CF" convert --work-dir "$T/work" "$SREG/src/app:v1" "$TREG/dst/x:v1" 2>"$T/err"; then
    fail "a second conversion in a locked work dir ran"
fi
grep -q "in use by another conversion" "$T/err" || fail "locked work dir unclear: $(cat "$T/err")"
exec 9>&-

note "target stopped mid-conversion: clear error, no manifest; re-run completes"
rm -rf "$T/work"
# one worker: layers one after another, so the target goes away between two layers
"$CF" convert --workers 1 --work-dir "$T/work" "$SREG/src/app:v1" "$TREG/dst/fault:v1" \
    >"$T/c4.out" 2>"$T/c4.log" &
cpid=$!
for _ in $(seq 1000); do grep -q '^layer 1/3' "$T/c4.log" && break; sleep 0.01; done
grep -q '^layer 1/3' "$T/c4.log" || fail "layer 1 never converted: $(cat "$T/c4.log")"
kill -9 "$TPID"
rc=0; wait "$cpid" || rc=$?
cat "$T/c4.log"
[ "$rc" = 1 ] || fail "convert with the target down exited $rc"
# the target went away after layer 1: what failed next (layer 2's blob, or later on a slow
# machine) and why must be named
grep -q "chunkfly convert: .*registry $TREG: .*Connection refused" "$T/c4.log" ||
    fail "error does not say what failed: $(cat "$T/c4.log")"
grep -q "nothing published for $TREG/dst/fault:v1" "$T/c4.log" || fail "no 'nothing published'"
[ ! -s "$T/c4.out" ] || fail "printed a result: $(cat "$T/c4.out")"
bg_start "$TDIR/log2" docker-registry serve "$TDIR/config.yml"
wait_port 127.0.0.1 "${TREG##*:}"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(ptoken repository:dst/fault:pull)" \
    "http://$TREG/v2/dst/fault/manifests/v1")
[ "$code" = 404 ] || fail "a manifest was published for the failed conversion (HTTP $code)"
out=$(conv "$T/c5.log" "$SREG/src/app:v1" "$TREG/dst/fault:v1") || fail "re-run: $(cat "$T/c5.log")"
summary "$T/c5.log" | grep -qE "\(([0-2]) built, ([1-3]) converted before\)" ||
    fail "re-run: $(summary "$T/c5.log")"
[ "${out##*@}" = "$MD" ] || fail "re-run made another manifest: $out"
echo PASS
