#!/usr/bin/env bash
# Replays the nydus-snapshotter converter's exact command lines (nydus-format.md §7.2) against
# chunkfly-image: the `create -h` feature probe; per layer `create` reading the tar from a FIFO
# and writing the blob to a FIFO (read and hashed by another process, as the Go side does);
# image.boot extracted from each blob through its TOC (by an independent Python reader) and
# named by the layer digest; `merge` with prefetch patterns on stdin and --output-json; `unpack`.
# The result must equal `umoci unpack` of the same OCI image.
set -euo pipefail
: "${CHUNKFLY_SRC:=$(cd "$(dirname "$0")/../../.." && pwd)}"
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/rafs/create_lib.sh"
need_bin chunkfly-image
need_root
command -v umoci >/dev/null || skip "umoci not installed"
command -v zstd >/dev/null || skip "zstd not installed"

# feature probe
help=$("$CFI" create -h)
for s in --type tar-rafs --batch-size --encrypt; do
    grep -q -- "$s" <<<"$help" || fail "create -h does not mention $s (converter probe)"
done

# a 3-layer image: base tree, then changes with OCI whiteouts / opaque dir, then an empty layer
make_tree "$T/l1"; rm -f "$T/l1/sock"
setfattr -x user.empty "$T/l1/empty" # umoci 0.4.7 unpack drops empty-valued xattrs
mkdir -p "$T/l2/dir" "$T/l2/big-dir" "$T/l3"
echo changed >"$T/l2/a.txt"; : >"$T/l2/.wh.random.bin"; : >"$T/l2/big-dir/.wh..wh..opq"
echo only >"$T/l2/big-dir/new"; head -c 5000000 /dev/urandom >"$T/l2/dir/new-big"
cd "$T"
umoci init --layout oci >/dev/null
umoci new --image oci:v1 >/dev/null
for i in 1 2 3; do
    tar --xattrs --xattrs-include='*' --numeric-owner -C "$T/l$i" -cf "$T/l$i.tar" .
    umoci raw add-layer --image oci:v1 "$T/l$i.tar" >/dev/null
done
umoci unpack --image oci:v1 "$T/bundle" >/dev/null 2>&1 || fail "umoci unpack failed"

mkdir -p "$T/blobs" "$T/boots"
boots=()
for i in 1 2 3; do
    rm -f "$T/tar.fifo" "$T/blob.fifo"
    mkfifo "$T/tar.fifo" "$T/blob.fifo"
    cat "$T/l$i.tar" >"$T/tar.fifo" &
    feeder=$!
    ( tee "$T/layer$i.blob" <"$T/blob.fifo" | sha256sum | cut -d' ' -f1 >"$T/layer$i.digest" ) &
    reader=$!
    echo / | "$CFI" create --log-level warn --prefetch-policy fs --blob "$T/blob.fifo" \
        --whiteout-spec none --fs-version 6 --type tar-rafs --blob-inline-meta \
        --features blob-toc --compressor zstd --aligned-chunk --chunk-size 0x100000 \
        --batch-size 0 "$T/tar.fifo" || fail "converter create of layer $i"
    wait $feeder; wait $reader
    d=$(cat "$T/layer$i.digest")
    [ -s "$T/layer$i.blob" ] || fail "layer $i blob is empty"
    mv "$T/layer$i.blob" "$T/blobs/$d"
    # the converter's unpackNydusBlob: image.boot (and blob.meta) via the TOC, named by digest
    python3 - "$T/blobs/$d" "$T/boots/$d" <<'PY' || fail "TOC extraction from layer $i blob"
import hashlib, struct, subprocess, sys
blob = open(sys.argv[1], "rb").read()
def hdr(off):
    h = blob[off:off + 512]
    name = h[:100].rstrip(b"\0").decode()
    assert h[257:265] == b"ustar  \0", "not a GNU tar header"
    chk = int(h[148:155].strip(b"\0 ") or b"0", 8)
    assert chk == sum(h[:148]) + 256 + sum(h[156:]), "bad tar checksum"
    return name, int(h[124:136].strip(b"\0 "), 8)
name, size = hdr(len(blob) - 512)
assert name == "rafs.blob.toc" and size % 128 == 0, (name, size)
toc = blob[len(blob) - 512 - size:len(blob) - 512]
entries = {}
for i in range(size // 128):
    e = toc[i * 128:(i + 1) * 128]
    flags, n = struct.unpack_from("<I4x16s", e)
    off, csize, usize = struct.unpack_from("<QQQ", e, 56)
    entries[n.rstrip(b"\0").decode()] = (flags, e[24:56], off, csize, usize)
for need in ("image.blob", "blob.meta", "blob.meta.header", "blob.digest", "image.boot"):
    assert need in entries, "TOC lacks " + need
flags, digest, off, csize, usize = entries["image.boot"]
data = blob[off:off + csize]
if flags & 0x2:
    data = subprocess.run(["zstd", "-d", "-c"], input=data, capture_output=True, check=True).stdout
assert len(data) == usize and hashlib.sha256(data).digest() == digest, "image.boot digest"
# the tar header after the data names it (reverse tar)
assert hdr(off + csize) == ("image.boot", csize)
open(sys.argv[2], "wb").write(data)
PY
    boots+=("$T/boots/$d")
done

# merge, as the converter runs it (prefetch patterns on stdin)
echo / | "$CFI" merge --log-level warn --prefetch-policy fs --output-json "$T/merge.json" \
    --bootstrap "$T/image.boot" "${boots[@]}" || fail "converter merge"
python3 - "$T/merge.json" "$T/image.boot" "${boots[@]}" <<'PY' || fail "merge output"
import json, os, struct, sys
j = json.load(open(sys.argv[1]))
for k in ("version", "bootstrap", "blobs", "fs_version", "compressor"):
    assert k in j, "JSON lacks " + k
layers = [os.path.basename(p) for p in sys.argv[3:]]
# every blob id is a layer digest (the converter turns them into sha256:<id> descriptors)
assert j["blobs"] and all(b in layers for b in j["blobs"]), (j["blobs"], layers)
b = open(sys.argv[2], "rb").read()
ext = 1152
pf_off, pf_size = struct.unpack_from("<QI", b, ext + 40)
assert pf_size == 4 and struct.unpack_from("<I", b, pf_off)[0] == 128, "prefetch table is not [root]"
feat = [struct.unpack_from("<I", b, struct.unpack_from("<Q", b, ext + 8)[0] + 256 * i + 84)[0]
        for i in range(len(j["blobs"]))]
assert all(f == 0x70000021 for f in feat), [hex(f) for f in feat]
PY

# unpack, as the converter runs it; one blob -> --blob (layer 1 alone), many -> --blob-dir
"$CFI" unpack --log-level warn --bootstrap "${boots[0]}" --output "$T/l1.out.tar" \
    --blob "$T/blobs/$(basename "${boots[0]}")" || fail "converter unpack --blob"
diff <(tar_listing "$T/l1.tar") <(tar_listing "$T/l1.out.tar") || fail "layer 1 unpack differs"
"$CFI" unpack --log-level warn --bootstrap "$T/image.boot" --output "$T/image.tar" \
    -D "$T/blobs" || fail "unpack of the merged image"
tar --xattrs --xattrs-include='*' --numeric-owner -C "$T/bundle/rootfs" -cf "$T/rootfs.tar" .
diff -u <(tar_listing "$T/rootfs.tar") <(tar_listing "$T/image.tar") ||
    fail "converted image differs from umoci unpack"
# the reader's full check (every chunk of every blob). Note: merged inline-meta layers keep
# features 0x70000023 in their blob's ci header while the merged blob table says 0x70000021
# (INLINED_FS_META dropped, as nydus-image merge does), so a reader must not require them equal.
reader_check "$T/image.boot" "$T/blobs"
echo "PASS: converter command lines produce a valid image equal to umoci unpack"
