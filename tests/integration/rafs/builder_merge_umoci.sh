#!/usr/bin/env bash
# merge: a 3-layer OCI image (GNU tar layers added with `umoci raw add-layer`) with OCI
# whiteouts, opaque directories and type changes. Each layer tar -> chunkfly-image create,
# then merge; the kernel's view of the merged bootstrap must equal `umoci unpack` of the image.
set -euo pipefail
: "${CHUNKFLY_SRC:=$(cd "$(dirname "$0")/../../.." && pwd)}"
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/rafs/create_lib.sh"
need_root
need_bin chunkfly-image
command -v umoci >/dev/null || skip "umoci not installed"

L="$T/layers"
mkdir -p "$L/1" "$L/2" "$L/3"
# layer 1: a base tree
( cd "$L/1"
  mkdir -p etc usr/bin special/opaque-dir/inner dir2/sub replaced-by-file keep
  echo base >etc/config; echo v1 >usr/bin/tool; chmod 755 usr/bin/tool
  head -c 2500000 /dev/urandom >usr/bin/big
  echo gone >special/delete-me; echo a >special/opaque-dir/a; echo b >special/opaque-dir/inner/b
  echo x >dir2/sub/x; echo file >replaced-by-dir; echo inside >replaced-by-file/f
  echo kept >keep/k; ln keep/k keep/k-hard; ln -s ../etc/config keep/cfg-link
  setfattr -n user.layer -v one etc/config )
# layer 2: modify, whiteout, opaque dir
( cd "$L/2"
  mkdir -p etc special/opaque-dir usr/bin
  echo changed >etc/config; echo v2 >usr/bin/tool2
  : >special/.wh.delete-me
  : >special/opaque-dir/.wh..wh..opq; echo c >special/opaque-dir/c )
# layer 3: whiteout a directory, swap types, re-add a deleted name
( cd "$L/3"
  mkdir -p replaced-by-dir special
  : >.wh.dir2; : >.wh.replaced-by-file; echo now-a-file >replaced-by-file
  echo nested >replaced-by-dir/n; : >.wh.replaced-by-dir
  echo back >special/delete-me )
# In OCI a whiteout and a same-named entry in one layer mean "replace": drop the whiteout for
# replaced-by-dir / replaced-by-file (umoci applies whiteouts first, as we do).
cd "$T"
umoci init --layout oci >/dev/null
umoci new --image oci:v1 >/dev/null
for i in 1 2 3; do
    tar --xattrs --xattrs-include='*' --numeric-owner -C "$L/$i" -cf "$T/l$i.tar" .
    umoci raw add-layer --image oci:v1 "$T/l$i.tar" >/dev/null
done
umoci unpack --image oci:v1 "$T/bundle" >/dev/null 2>&1 || fail "umoci unpack failed"

devs=""
for i in 1 2 3; do
    "$CFI" create -l warn -t tar-rafs -B "$T/l$i.boot" -D "$T/blobs" --blob-cache-dir "$T/cache" \
        -J "$T/l$i.json" "$T/l$i.tar" || fail "create layer $i"
    fsck.erofs --device="$T/cache/$(json_blob "$T/l$i.json").blob.data" "$T/l$i.boot" >/dev/null 2>&1 ||
        fail "fsck.erofs rejected layer $i"
done
"$CFI" merge -l warn -B "$T/merged.boot" -J "$T/merged.json" "$T/l1.boot" "$T/l2.boot" "$T/l3.boot" ||
    fail "merge failed"
ids=$(python3 -c "import json; print(' '.join(json.load(open('$T/merged.json'))['blobs']))")
for id in $ids; do devs="${devs:+$devs,}$T/cache/$id.blob.data"; done
note "merged blobs: $ids"
fsckdev=()
for id in $ids; do fsckdev+=("--device=$T/cache/$id.blob.data"); done
fsck.erofs "${fsckdev[@]}" "$T/merged.boot" \
    >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "fsck.erofs rejected the merged bootstrap"; }
reader_check "$T/merged.boot" "$T/blobs"
mount_or_skip "$T/merged.boot" "$T/mnt" "$devs"
# umoci's rootfs root dir comes from the runtime bundle, not the layers: compare below it
$MANIFEST --exclude . "$T/bundle/rootfs" | grep -v '^\.	' >"$T/want"
$MANIFEST --exclude . "$T/mnt" | grep -v '^\.	' >"$T/got"
umount "$T/mnt"
diff -u "$T/want" "$T/got" || fail "merged image differs from umoci unpack"
grep -q '^special/delete-me	' "$T/got" || fail "re-added file missing"
! grep -q '^dir2' "$T/got" || fail "whited-out dir2 still present"
! grep -q 'opaque-dir/a' "$T/got" || fail "opaque dir kept lower entries"

# inconsistent inputs: a different chunk size must be refused with exit code 2
"$CFI" create -l warn -t tar-rafs --chunk-size 0x10000 -B "$T/odd.boot" -D "$T/blobs" "$T/l2.tar"
set +e
"$CFI" merge -l warn -B "$T/bad.boot" "$T/l1.boot" "$T/odd.boot" 2>"$T/merge.err"; rc=$?
set -e
[ $rc = 2 ] || fail "merge of inconsistent inputs returned $rc, expected 2"
grep -q 'chunk size' "$T/merge.err" || fail "no clear message: $(cat "$T/merge.err")"
[ ! -e "$T/bad.boot" ] || fail "inconsistent merge left an output"
echo "PASS: merged 3-layer image equals umoci unpack"
