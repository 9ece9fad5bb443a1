#!/usr/bin/env bash
# The main job on an embedded default: build Chunkfly, make a sample Nydus image from a
# deterministic tree, check and inspect it, start a local cluster (docker-registry, a scheduler,
# 3 peers), push the image, mount it lazily through peer 1 with chunkfly-mount and read one file
# (printing the bytes fetched against the image's size), then fetch its blobs whole on every
# peer with `chunkfly get` (printing where the bytes came from). Everything stops on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
bin=build/bin
work=$(mktemp -d /tmp/chunkfly-demo.XXXXXX)
cluster_up=0
mount_pid=""
cleanup() {
  [ -z "$mount_pid" ] || kill "$mount_pid" 2>/dev/null || true
  [ -z "$mount_pid" ] || wait "$mount_pid" 2>/dev/null || true
  umount "$work/mnt" 2>/dev/null || true
  [ "$cluster_up" = 0 ] || deploy/local-cluster.sh down --state-dir "$work/cluster" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

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

echo "== local cluster: docker-registry, 1 scheduler, 3 peers on loopback"
# small_blob=0: the demo's blobs are small, and the daemon would otherwise fetch blobs under
# 4 MiB straight from the registry without the mesh
CHUNKFLY_BIN=$PWD/$bin deploy/local-cluster.sh up --peers 3 --state-dir "$work/cluster" \
  --base-port "${CHUNKFLY_DEMO_PORT:-17000}" --peer-arg --set=small_blob=0
cluster_up=1
. "$work/cluster/cluster.env"

echo "== pushing the image's bootstrap and blobs to http://$REGISTRY (repo demo/image)"
push() { # FILE -> digest (the OCI push protocol: POST an upload, PUT it with ?digest=)
  local d loc
  d="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  loc=$(curl -sS -f -X POST -D - -o /dev/null "http://$REGISTRY/v2/demo/image/blobs/uploads/" |
    tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case $loc in /*) loc="http://$REGISTRY$loc" ;; esac
  case $loc in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
  curl -sS -f -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" "$loc" -o /dev/null
  echo "$d"
}
digests=()
for f in "$work/image.boot" "$work"/blobs/*; do
  [ -f "$f" ] || continue
  d=$(push "$f")
  digests+=("$d")
  printf '  %-12s %9d bytes  %s\n' "$(basename "$f" | cut -c1-12)" "$(stat -c %s "$f")" "$d"
done

echo "== lazy mount through peer 1: chunkfly-mount, registry backend with proxy.url = unix:$PEER_SOCK_1"
if [ -e /dev/fuse ] && [ "$(id -u)" = 0 ]; then
  # the bootstrap (metadata only) whole, through peer 1; the data blob's chunks only when read
  "$bin/chunkfly" get -q --peer "$PEER_SOCK_1" "$REGISTRY/demo/image@${digests[0]}" -o "$work/pulled.boot"
  cat >"$work/mount.json" <<JSON
{"device": {"backend": {"type": "registry", "config": {"host": "$REGISTRY", "repo": "demo/image",
              "scheme": "http", "proxy": {"url": "unix:$PEER_SOCK_1", "fallback": true}}},
            "cache": {"type": "blobcache", "config": {"work_dir": "$work/mount-cache"}}},
 "mode": "direct", "fs_prefetch": {"enable": false}}
JSON
  mkdir -p "$work/mnt"
  "$bin/chunkfly-mount" fuse --config "$work/mount.json" --bootstrap "$work/pulled.boot" \
    --mountpoint "$work/mnt" --apisock "$work/mount.sock" >"$work/mount.log" 2>&1 &
  mount_pid=$!
  for _ in $(seq 100); do
    grep -q " $work/mnt fuse" /proc/self/mounts && [ -S "$work/mount.sock" ] && break
    sleep 0.1
  done
  grep -q " $work/mnt fuse" /proc/self/mounts || { cat "$work/mount.log" >&2; echo "chunkfly-mount did not mount" >&2; exit 1; }
  echo "  mounted: $(find "$work/mnt" | wc -l) entries, $(du -sb --apparent-size "$work/mnt" | cut -f1) bytes of files (metadata only so far)"
  f=usr/share/doc/file7.txt
  cmp "$src/$f" "$work/mnt/$f" || { echo "$f differs from the source" >&2; exit 1; }
  echo "  read /$f ($(stat -c %s "$work/mnt/$f") bytes): equal to the source"
  backend() { curl -s --unix-socket "$work/mount.sock" http://x/api/v1/metrics/backend |
    python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
  chunks=$(($(backend bytes_from_proxy) + $(backend bytes_from_registry)))
  boot=$(stat -c %s "$work/pulled.boot")
  image=$boot
  for b in "$work"/blobs/*; do [ -f "$b" ] && image=$((image + $(stat -c %s "$b"))); done
  echo "  fetched $((boot + chunks)) of the image's $image bytes: the bootstrap ($boot) and $chunks" \
    "bytes of chunks ($(backend bytes_from_proxy) through peer 1, $(backend bytes_from_registry) from the registry)"
  kill "$mount_pid"
  wait "$mount_pid" || { cat "$work/mount.log" >&2; echo "chunkfly-mount failed" >&2; exit 1; }
  mount_pid=""
  echo "  unmounted (SIGTERM)"
else
  echo "  skipped: needs root and /dev/fuse"
fi

metric() { # PEER NAME -> value from the peer's /metrics
  local http
  eval "http=\$PEER_HTTP_$1"
  curl -s "http://$http/metrics" | awk -v n="$2" '$1 == n {print $2}'
}
for i in 1 2 3; do
  eval "sock=\$PEER_SOCK_$i"
  echo "== peer $i: chunkfly get of every blob"
  for d in "${digests[@]}"; do
    "$bin/chunkfly" get -q --peer "$sock" "$REGISTRY/demo/image@$d" -o "$work/get-$i-${d:7:12}"
  done
  echo "  peer $i: $(metric $i chunkfly_peer_bytes_from_origin_total) bytes from the registry," \
    "$(metric $i chunkfly_peer_bytes_from_parents_total) bytes from other peers (sha256 verified)"
done
for d in "${digests[@]}"; do
  cmp -s "$work/get-1-${d:7:12}" "$work/get-3-${d:7:12}" || { echo "peer copies of $d differ" >&2; exit 1; }
done
total=0
for d in "${digests[@]}"; do total=$((total + $(stat -c %s "$work/get-1-${d:7:12}"))); done
served=$(deploy/local-cluster.sh status --state-dir "$work/cluster" | awk '$1 == "registry_blob_bytes" {print $2}')
echo "== the registry served $served blob bytes for 3 peers x $total bytes of blobs"
echo "== chunkfly status of peer 3"
"$bin/chunkfly" status --peer "$PEER_SOCK_3" --http "$PEER_HTTP_3" | sed -n '1,/^metrics/p' | sed '$d'
