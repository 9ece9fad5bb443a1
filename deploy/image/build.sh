#!/usr/bin/env bash
# build.sh: the Chunkfly OCI image (every binary, exactly the shared libraries they load, CA
# certificates, a non-root user), built with umoci: no Docker daemon, no base image.
#
#   deploy/image/build.sh [--push REGISTRY/REPO:TAG] [--out DIR] [--build-dir DIR]
#                         [--bin-dir DIR] [--print-ref]
#
# The image's name and tag: IMAGE= in deploy/image/image.env, the one place they are written (the
# Kubernetes manifests take them from the same file: deploy/image/kustomization.yaml).
# Steps: a Release build of only the packaged targets (`cmake -B BUILD -DCMAKE_BUILD_TYPE=Release`;
# --bin-dir DIR packages DIR's binaries instead and builds nothing), a root filesystem holding
# the stripped binaries, their ldd closure and ld.so, then one layer added with
# `umoci raw add-layer`. Outputs, under --out (default BUILD/image):
#   oci/              OCI image layout, tag = IMAGE's tag
#   chunkfly.oci.tar  the same layout as one archive (`ctr images import`, `skopeo copy oci-archive:`)
#   digest            the manifest digest (sha256:...)
# and prints "image REF DIGEST COMPRESSED_BYTES".
# Reproducible: every mtime and the image's dates are SOURCE_DATE_EPOCH (default: the commit
# time of HEAD), files sorted, owners numeric, no tar atime/ctime: the same tree and the same
# Debian packages give the same digest.
# --push REF copies the image with skopeo (add SKOPEO_ARGS, e.g. "--dest-tls-verify=false").
set -euo pipefail
export LC_ALL=C TZ=UTC

PROG=${0##*/}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$SRC/build
OUT=""
BIN_DIR=""
PUSH=""
# what the image contains; chunkfly-sched-sim and tests are not shipped
BINARIES=(chunkfly-peer chunkfly-scheduler chunkfly-mount chunkfly-snapshotter chunkfly-convertd chunkfly chunkfly-image)
# the image's non-root user (k8s: runAsUser); the daemons' default directories belong to it
IMAGE_UID=65532

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "$PROG: $*" >&2; exit 1; }

REF=$(sed -n 's/^IMAGE=//p' "$HERE/image.env")
[[ $REF =~ ^[a-z0-9.:-]+(/[a-z0-9._-]+)+:[A-Za-z0-9._-]+$ ]] ||
  die "$HERE/image.env: IMAGE='$REF' is not REGISTRY/REPO:TAG"
TAG=${REF##*:}

while [ $# -gt 0 ]; do
  case $1 in
    --push) PUSH=${2:?--push needs REGISTRY/REPO:TAG}; shift 2 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --build-dir) BUILD=${2:?--build-dir needs a directory}; shift 2 ;;
    --bin-dir) BIN_DIR=${2:?--bin-dir needs a directory}; shift 2 ;;
    --print-ref) echo "$REF"; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$PROG: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for t in umoci tar ldd strip sha256sum python3; do
  command -v "$t" >/dev/null || die "$t not found (Debian: .ci/install-deps)"
done
[ -z "$PUSH" ] || command -v skopeo >/dev/null || die "--push needs skopeo"
[ -r /etc/ssl/certs/ca-certificates.crt ] || die "no /etc/ssl/certs/ca-certificates.crt (Debian: ca-certificates)"

if [ -z "$BIN_DIR" ]; then
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"${JOBS:-2}" --target "${BINARIES[@]}" >/dev/null
  BIN_DIR=$BUILD/bin
fi
OUT=${OUT:-$BUILD/image}
for b in "${BINARIES[@]}"; do [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b not built"; done

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$SRC" log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/rootfs" "$OUT/oci" "$OUT/layer.tar" "$OUT/chunkfly.oci.tar" "$OUT/digest"
R=$OUT/rootfs
mkdir -p "$R/usr/local/bin" "$R/etc/ssl/certs" "$R/tmp" "$R/var/cache/chunkfly" "$R/run/chunkfly"

# put_file SRC DEST_IN_ROOTFS: a copy of SRC's content (symlinks followed) at DEST
put_file() {
  mkdir -p "$R$(dirname "$2")"
  cp -L "$1" "$R$2"
}

# binaries (stripped: debug info is most of their size)
for b in "${BINARIES[@]}"; do
  cp "$BIN_DIR/$b" "$R/usr/local/bin/$b"
  strip --strip-unneeded "$R/usr/local/bin/$b"
done

# the ldd closure: ldd already resolves the libraries' own dependencies. Each library goes where
# ldd found it (a directory in ld.so's default search path), the interpreter where PT_INTERP
# names it. glibc >= 2.34 has the files and dns NSS modules built in: nothing dlopen()ed.
declare -A LIBS=()
for b in "${BINARIES[@]}"; do
  while read -r line; do
    case $line in
      *"=> not found"*) die "$b: missing library: $line" ;;
      *"=> /"*) p=${line#*=> }; LIBS[${p%% (*}]=1 ;;
      /*) p=${line%% (*}; LIBS[$p]=1 ;;   # the interpreter (ld-linux)
    esac
  done < <(ldd "$BIN_DIR/$b")
done
for p in "${!LIBS[@]}"; do
  put_file "$p" "$p"
done

# the CA bundle libcurl reads by default (Debian's build: CURLOPT_CAINFO default)
put_file /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
cat >"$R/etc/passwd" <<PW
root:x:0:0:root:/root:/sbin/nologin
chunkfly:x:$IMAGE_UID:$IMAGE_UID:chunkfly:/nonexistent:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PW
cat >"$R/etc/group" <<GR
root:x:0:
chunkfly:x:$IMAGE_UID:
nogroup:x:65534:
GR
# without it glibc asks DNS before /etc/hosts
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$R/etc/nsswitch.conf"

# modes and owners: everything root-owned and read-only but the daemons' default directories
find "$R" -type d -exec chmod 0755 {} +
find "$R" -type f -exec chmod 0644 {} +
chmod 0755 "$R"/usr/local/bin/*
find "$R" -type f -name 'ld-linux*' -exec chmod 0755 {} +
chmod 1777 "$R/tmp"
chmod 0750 "$R/var/cache/chunkfly"
find "$R" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# the layer: sorted, numeric owners, fixed mtimes, no atime/ctime, no PAX noise
(cd "$R" && tar --sort=name --format=pax --numeric-owner --owner=0 --group=0 \
    --mtime="@$SOURCE_DATE_EPOCH" \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -cf - --transform="s,^\./,," . |
  python3 -c '
import sys, tarfile
# tar --owner=0 makes every entry root: give the default daemon directories to the image user
uid = int(sys.argv[1])
src = tarfile.open(fileobj=sys.stdin.buffer, mode="r|")
dst = tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT)
for m in src:
    if m.name in ("./", "."):
        continue
    if m.name in ("var/cache/chunkfly", "run/chunkfly"):
        m.uid = m.gid = uid
    m.uname = m.gname = ""
    m.pax_headers = {}
    dst.addfile(m, src.extractfile(m) if m.isfile() else None)
dst.close()
' "$IMAGE_UID") >"$OUT/layer.tar"

I="$OUT/oci:$TAG"
umoci init --layout "$OUT/oci"
umoci new --image "$I"
umoci raw add-layer --image "$I" --history.created "$CREATED" \
    --history.created_by "deploy/image/build.sh" "$OUT/layer.tar"
umoci config --image "$I" --created "$CREATED" --no-history \
    --author "Chunkfly" --config.user "$IMAGE_UID:$IMAGE_UID" \
    --config.env "PATH=/usr/local/bin:/usr/bin:/bin" --config.workingdir / \
    --config.cmd chunkfly --config.cmd --help --config.stopsignal SIGTERM \
    --config.label "org.opencontainers.image.title=chunkfly" \
    --config.label "org.opencontainers.image.version=$TAG" \
    --manifest.annotation "org.opencontainers.image.ref.name=$TAG"
# umoci leaves the blobs of the intermediate manifests/configs: drop them
umoci gc --layout "$OUT/oci"
find "$OUT/oci" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$OUT/oci" && tar --sort=name --numeric-owner --owner=0 --group=0 \
    --mtime="@$SOURCE_DATE_EPOCH" --format=ustar -cf "$OUT/chunkfly.oci.tar" \
    oci-layout index.json blobs)
rm -rf "$OUT/layer.tar" "$R"

DIGEST=$(python3 - "$OUT/oci" "$TAG" <<'PY'
import json, sys
idx = json.load(open(sys.argv[1] + "/index.json"))
for m in idx["manifests"]:
    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == sys.argv[2]:
        print(m["digest"]); break
else:
    sys.exit("no manifest tagged " + sys.argv[2])
PY
)
SIZE=$(python3 - "$OUT/oci" "$DIGEST" <<'PY'
import json, sys
d = sys.argv[1] + "/blobs/sha256/"
m = json.load(open(d + sys.argv[2].split(":")[1]))
print(sum(l["size"] for l in m["layers"]) + m["config"]["size"])
PY
)
echo "$DIGEST" >"$OUT/digest"
echo "image $REF $DIGEST $SIZE"

if [ -n "$PUSH" ]; then
  # shellcheck disable=SC2086
  skopeo copy ${SKOPEO_ARGS:-} "oci:$OUT/oci:$TAG" "docker://$PUSH"
fi
