#!/usr/bin/env bash
# Our reader vs the kernel on a rich image: a tree with every file type, xattrs, hard links,
# 255-byte names, a directory spanning several dirent blocks, empty/4095/1MiB+1/multi-MiB files,
# built by chunkfly-image create with each compressor and two chunk sizes. For each image:
# check -D passes, and inspect --manifest -D (our chunk reads) equals tree_manifest.py over the
# kernel's EROFS mount backed by make_blob_cache's uncompressed blob (the kernel's reads).
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
need_root
need_bin chunkfly-image
CFI=$CHUNKFLY_BIN/chunkfly-image
RAWMOUNT=$CHUNKFLY_BUILD/tests/rawmount
MANIFEST="python3 $CHUNKFLY_SRC/tests/lib/tree_manifest.py"

S=$T/src
mkdir -p "$S/d1/d2/d3" "$S/wide" "$S/empty-dir"
: >"$S/empty"
head -c 4095 /dev/urandom >"$S/d1/4095"
head -c 1048577 /dev/urandom >"$S/d1/d2/1MiB+1"
head -c 3500000 /dev/urandom >"$S/d1/d2/d3/big"
seq 1 200000 >"$S/seq.txt"
cp "$S/seq.txt" "$S/d1/seq-dup.txt"
ln "$S/seq.txt" "$S/d1/d2/hard1"
ln "$S/seq.txt" "$S/hard2"
ln -s seq.txt "$S/rel-link"
ln -s "$(printf 'x%.0s' $(seq 1 1000))" "$S/long-target"
mkfifo "$S/fifo"
mknod "$S/chr" c 1 3
mknod "$S/blk" b 7 200
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$S/sock"
echo x >"$S/$(printf 'n%.0s' $(seq 1 255))"
for i in $(seq 1 400); do echo "$i" >"$S/wide/entry-with-a-longish-name-$i"; done
setfattr -n user.color -v blue "$S/seq.txt" 2>/dev/null || true
setfattr -n trusted.overlay.opaque -v y "$S/d1" 2>/dev/null || true
setfattr -n security.note -v "$(printf 'v%.0s' $(seq 1 300))" "$S/d1/4095" 2>/dev/null || true

truncate -s 64M "$T/zero"
mkdir -p "$T/mnt"
n=0
for comp in zstd lz4_block none; do
    for cs in 0x1000 0x100000; do
        n=$((n + 1))
        out=$T/img$n
        mkdir -p "$out/blobs" "$out/cache"
        $CFI create -t dir-rafs --compressor "$comp" --chunk-size "$cs" --features blob-toc \
            -B "$out/boot" -D "$out/blobs" -l warn "$S" >"$out/create.log" 2>&1 ||
            fail "create ($comp, $cs) failed: $(tail -3 "$out/create.log")"
        $CFI check "$out/boot" -D "$out/blobs" >"$out/check.log" 2>&1 ||
            fail "check ($comp, $cs): $(tail -3 "$out/check.log")"
        "$CHUNKFLY_BUILD/tests/make_blob_cache" "$out/boot" "$out/blobs" "$out/cache" ||
            fail "make_blob_cache ($comp, $cs)"
        devs=""
        for b in $($CFI inspect "$out/boot" -R blobs | python3 -c \
            'import json,sys; print(" ".join(b["blob_id"] for b in json.load(sys.stdin)))'); do
            devs="${devs:+$devs,}device=$out/cache/$b.blob.data"
        done
        [ -n "$devs" ] || devs="device=$T/zero"
        if ! "$RAWMOUNT" "$out/boot" "$T/mnt" erofs "$devs" 2>"$T/mount.err"; then
            skip "kernel cannot mount a file-backed EROFS image: $(cat "$T/mount.err")"
        fi
        CF_MOUNTS+=("$T/mnt")
        $MANIFEST "$T/mnt" >"$out/kernel"
        umount "$T/mnt"
        $CFI inspect --manifest -D "$out/blobs" "$out/boot" >"$out/ours" ||
            fail "inspect --manifest ($comp, $cs)"
        diff -u "$out/kernel" "$out/ours" >"$out/diff" ||
            fail "($comp, $cs): our listing differs from the kernel's: $(head -20 "$out/diff")"
        note "$comp chunk $cs: $(wc -l <"$out/ours") entries identical to the kernel's view"
        if [ $n = 1 ]; then
            # every name of the multi-block directory resolves through the binary search, and
            # misses (before, between, after the entries) do not
            for i in $(seq 1 400); do echo "stat /wide/entry-with-a-longish-name-$i"; done |
                $CFI inspect "$out/boot" >"$out/stats.json" || fail "stat lookups in wide/"
            [ "$(grep -c '"inode"' "$out/stats.json")" = 400 ] || fail "not all 400 names found"
            for miss in /wide/a /wide/entry-with-a-longish-name-0 /wide/entry-with-a-longish-name-1x /wide/zzz; do
                if $CFI inspect "$out/boot" -R "stat $miss" 2>/dev/null; then fail "$miss found"; fi
            done
        fi
    done
done
echo PASS
