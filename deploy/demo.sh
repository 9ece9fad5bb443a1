#!/usr/bin/env bash
# The main job on an embedded default: build Chunkfly, make a sample Nydus image from a
# deterministic tree, verify it with our checker and with the kernel's EROFS, and inspect it.
# (When the peer mesh lands, this also starts a local cluster and fetches the blobs through it.)
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
bin=build/bin
work=$(mktemp -d /tmp/chunkfly-demo.XXXXXX)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== making a sample tree"
src=$work/rootfs
mkdir -p "$src/etc" "$src/usr/bin" "$src/usr/share/doc"
for i in $(seq 1 40); do
  seq 1 $((i * 500)) | sed "s/^/line /" >"$src/usr/share/doc/file$i.txt"
done
head -c 3000000 /dev/zero | tr '\0' 'x' >"$src/usr/bin/big"
echo "chunkfly demo" >"$src/etc/motd"
ln -s ../etc/motd "$src/usr/motd-link"
ln "$src/etc/motd" "$src/etc/motd.hard"

echo "== chunkfly-image create"
"$bin/chunkfly-image" create -t dir-rafs -B "$work/image.boot" -D "$work/blobs" \
  --blob-cache-dir "$work/cache" "$src"
echo "== chunkfly-image check (metadata + every chunk digest)"
"$bin/chunkfly-image" check "$work/image.boot" -D "$work/blobs"
echo "== chunkfly-image inspect -R stats"
"$bin/chunkfly-image" inspect "$work/image.boot" -R stats
