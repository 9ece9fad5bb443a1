# shellcheck shell=bash
# Helpers for the chunkfly-snapshotter tests and tests/bench/bench_lazy_start.sh: test images in a
# real docker-registry, a private containerd 1.6 with the snapshotter as its proxy plugin
# "chunkfly", the snapshotter's start/stop/kill -9, and running containers that hash their files.
# Source after testlib.sh (uses $T, bg_start, fail, note, start_registry).
#
# Images (snap_build_images; refs in SNAP_REF[src|nydus|plain], expected trees per ref):
#   src    4-layer gzip OCI image (GNU tar + `umoci raw add-layer`): busybox-static as /bin/sh
#          and its applets, ~6 MiB of random files in data/, a file replaced in layer 2,
#          whiteouts (special/delete-me in layer 2, dir2 in layer 3), an opaque directory
#          (special/opaque-dir: layer 2 keeps only its own entry c), a hard link and a symlink;
#          layer 4 holds only lazy/ (1.5 MB): no container reads it before the mount-kill
#          check, and being alone in its layer (its own Nydus blob) no readahead or read
#          amplification of another file brings its bytes into a cache.
#   nydus  src converted by `chunkfly convert` (needs $CHUNKFLY_BIN/chunkfly).
#   plain  another 2-layer gzip OCI image (busybox + data2/, one whiteout): "the other image".
# The expected content comes from `umoci unpack` of the pushed OCI layout (never from
# containerd): $SNAP_IMG/NAME.tree (every path under the image's top-level dirs, sorted) and
# NAME.sums (sha256sum of every regular file, sorted by path); SNAP_ABSENT[NAME] lists paths the
# merged tree must not have.
#
# containerd (start_containerd_snap / stop_containerd): root, state, opt and sockets under
# $T/ctrd; containers live in the containerd namespace $SNAP_NS (unique per test run, so runc's
# cgroups /$SNAP_NS/<id> cannot meet another run's in the machine-wide hierarchy). CTR=(ctr ...)
# and CTRR=(ctr-remote ...) talk to it. stop_containerd kills our tasks, containerd and its shims
# (found by our socket in their command line), unmounts everything under $T and removes our
# cgroup directories: never anything else on the machine.
#
# Environment quirks of this machine kind (../shared/docs/test-environment.md; checked by
# snap_harness.sh): `ctr run` with runc 1.1.5 needs no cgroup options (cgroup v1 hierarchies
# plus a cgroup2 at /sys/fs/cgroup/unified; the default runtime io.containerd.runc.v2 works);
# PID 1 does not reap orphans, so a killed daemon's child (chunkfly-mount) may linger as a
# zombie: liveness is checked with `ps -o stat` (testlib's is_alive).
. "$CHUNKFLY_SRC/tests/lib/nydus_image.sh" # oci_push_blob, oci_push_manifest
: "${SNAP_NS:=cfsnap$$}"
SNAP_IMG=$T/images
SNAP_DIR=$T/snap
SNAP_SOCK=$SNAP_DIR/snapshotter.sock
SNAP_ROOT=$SNAP_DIR/root
SNAP_PID=""
SNAP_STARTS=0
CTRD_DIR=$T/ctrd
CTRD_PID=""
CTR=(ctr -a "$CTRD_DIR/containerd.sock" -n "$SNAP_NS")
# shellcheck disable=SC2034 # used by the scripts that source this
CTRR=(ctr-remote -a "$CTRD_DIR/containerd.sock" -n "$SNAP_NS")
# busybox applets the containers use (links to /bin/busybox in the images)
SNAP_APPLETS="sh sha256sum cat sleep find sort xargs ls head wc echo test true false mv"
declare -A SNAP_REF=() SNAP_WANT=() SNAP_ABSENT=()

# snap_need_tools [EXTRA...]: skip (exit 77, with the reason) unless root and the container
# tools are here
snap_need_tools() {
    need_root
    local b
    for b in containerd ctr runc umoci skopeo docker-registry curl python3 "$@"; do
        command -v "$b" >/dev/null || skip "$b not installed (.ci/install-deps: containerd runc umoci skopeo docker-registry stargz-snapshotter busybox-static)"
    done
    [ -x /bin/busybox ] && /bin/busybox --list | grep -qx sha256sum ||
        skip "/bin/busybox (Debian busybox-static) not installed"
    # a static busybox: the test images hold no libc
    ! ldd /bin/busybox >/dev/null 2>&1 || skip "/bin/busybox is not static (install busybox-static)"
    grep -qw overlay /proc/filesystems || skip "no overlayfs in this kernel"
}

# ------------------------------------------------------------------------------------ images ---

# _snap_layer_tar DIR OUT: a layer tar as image builders write them (sorted, owner 0, pinned
# mtimes, PAX); `umoci raw add-layer` gzips it
_snap_layer_tar() {
    local top=()
    mapfile -t top < <(ls -A "$1")
    tar -C "$1" --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
        --format=pax --pax-option=delete=atime,delete=ctime -cf "$2" "${top[@]}"
}

# _snap_rand FILE BYTES SEED: deterministic incompressible bytes
_snap_rand() {
    # (a pipe into head would fail under pipefail when openssl gets SIGPIPE)
    head -c "$2" < <(openssl enc -aes-128-ctr -nosalt -pass "pass:$3" -pbkdf2 -in /dev/zero 2>/dev/null) >"$1"
    [ "$(stat -c %s "$1")" = "$2" ] || fail "openssl: no random bytes for $1"
}

# _snap_busybox DIR: /bin/busybox and links for the applets the tests use
_snap_busybox() {
    local a
    mkdir -p "$1/bin"
    cp /bin/busybox "$1/bin/busybox"
    for a in $SNAP_APPLETS; do ln -s busybox "$1/bin/$a"; done
}

# snap_image_push NAME REG REPO TAG LAYERDIR...: builds the OCI image from the layer dirs,
# pushes it with skopeo, unpacks it with umoci and writes the expected tree and sums
snap_image_push() {
    local name=$1 reg=$2 repo=$3 tag=$4 d=$SNAP_IMG/$1 i=0 l tops
    shift 4
    mkdir -p "$d"
    umoci init --layout "$d/oci" >/dev/null
    umoci new --image "$d/oci:$tag" >/dev/null
    for l in "$@"; do
        i=$((i + 1))
        _snap_layer_tar "$l" "$d/l$i.tar"
        umoci raw add-layer --image "$d/oci:$tag" --history.created_by "snap_lib layer $i" \
            "$d/l$i.tar" >/dev/null || fail "umoci raw add-layer ($name layer $i)"
        rm -f "$d/l$i.tar"
    done
    umoci config --image "$d/oci:$tag" --config.cmd /bin/sh --config.workingdir / \
        --architecture amd64 --os linux >/dev/null
    umoci gc --layout "$d/oci"
    skopeo copy -q --dest-tls-verify=false "oci:$d/oci:$tag" "docker://$reg/$repo:$tag" ||
        fail "skopeo push of $reg/$repo:$tag"
    umoci unpack --image "$d/oci:$tag" "$d/bundle" >/dev/null 2>&1 || fail "umoci unpack of $name"
    # the container lists the image's own top-level dirs (runc adds /proc, /dev, /sys ...)
    tops=$(cd "$d/bundle/rootfs" && find . -mindepth 1 -maxdepth 1 -type d -printf '%P\n' | LC_ALL=C sort | tr '\n' ' ')
    echo "$tops" >"$d/tops"
    (cd "$d/bundle/rootfs" && find $tops | LC_ALL=C sort) >"$d/tree"
    (cd "$d/bundle/rootfs" && find $tops -type f | LC_ALL=C sort | xargs sha256sum) >"$d/sums"
    SNAP_REF[$name]="$reg/$repo:$tag"
    SNAP_WANT["$reg/$repo:$tag"]=$d
}

# snap_build_images REG: the src, nydus (when $CHUNKFLY_BIN/chunkfly exists, or when the
# argument "nydus" is given: then it must) and plain images; sets SNAP_REF[...]
snap_build_images() {
    local reg=$1 want_nydus=${2:-auto} L=$SNAP_IMG/layers f
    mkdir -p "$L/1" "$L/2" "$L/3" "$L/4/lazy" "$L/p1" "$L/p2"
    # src layer 1: busybox, data, whiteout and opaque-dir victims, links
    _snap_busybox "$L/1"
    mkdir -p "$L/1/data/sub" "$L/1/special/opaque-dir/inner" "$L/1/dir2/sub" "$L/1/keep"
    for f in 1 2 3 4 5; do _snap_rand "$L/1/data/f$f.bin" $((f * 173000 + 4096)) "src-$f"; done
    _snap_rand "$L/1/data/sub/deep.bin" 70000 src-deep
    echo "small text file" >"$L/1/data/small.txt"
    : >"$L/1/data/empty"
    echo gone >"$L/1/special/delete-me"
    echo a >"$L/1/special/opaque-dir/a"; echo b >"$L/1/special/opaque-dir/inner/b"
    echo x >"$L/1/dir2/sub/x"
    echo kept >"$L/1/keep/k"; ln "$L/1/keep/k" "$L/1/keep/k-hard"
    ln -s ../data/small.txt "$L/1/keep/small-link"
    # src layer 2: a replaced file, a new big one, the whiteout and the opaque marker
    mkdir -p "$L/2/data" "$L/2/special/opaque-dir"
    _snap_rand "$L/2/data/f2.bin" 300000 src-f2-v2
    _snap_rand "$L/2/data/f6.bin" 2100000 src-f6
    : >"$L/2/special/.wh.delete-me"
    : >"$L/2/special/opaque-dir/.wh..wh..opq"; echo c >"$L/2/special/opaque-dir/c"
    # src layer 3: a whole directory whited out, one more file
    mkdir -p "$L/3/data"
    : >"$L/3/.wh.dir2"
    echo "layer three" >"$L/3/data/late.txt"
    # src layer 4: the never-read files
    for f in 1 2 3 4; do _snap_rand "$L/4/lazy/l$f.bin" $((f * 150000)) "lazy-$f"; done
    snap_image_push src "$reg" snap/src v1 "$L/1" "$L/2" "$L/3" "$L/4"
    SNAP_ABSENT[src]="dir2 special/delete-me special/opaque-dir/a special/opaque-dir/inner"
    # plain: the "other" image
    _snap_busybox "$L/p1"
    mkdir -p "$L/p1/data2" "$L/p2/data2"
    for f in 1 2 3; do _snap_rand "$L/p1/data2/p$f.bin" $((f * 200000)) "plain-$f"; done
    _snap_rand "$L/p2/data2/p4.bin" 500000 plain-4
    : >"$L/p2/data2/.wh.p3.bin"
    snap_image_push plain "$reg" snap/plain v1 "$L/p1" "$L/p2"
    SNAP_ABSENT[plain]="data2/p3.bin"
    rm -rf "$L"
    if [ "$want_nydus" = nydus ] || [ -x "$CHUNKFLY_BIN/chunkfly" ]; then
        snap_convert_nydus "${SNAP_REF[src]}" "$reg/snap/src:nydus"
    fi
}

# snap_convert_nydus SRC_REF DST_REF: `chunkfly convert` (loopback registries: plain HTTP);
# the result has the expected tree of SRC_REF; SNAP_REF[nydus] = DST_REF
snap_convert_nydus() {
    [ -x "$CHUNKFLY_BIN/chunkfly" ] || fail "$CHUNKFLY_BIN/chunkfly not built (needed to convert)"
    "$CHUNKFLY_BIN/chunkfly" convert -q --work-dir "$T/convert-work" "$1" "$2" \
        >"$T/convert.out" 2>"$T/convert.log" || fail "chunkfly convert $1 $2: $(cat "$T/convert.log")"
    SNAP_REF[nydus]=$2
    SNAP_WANT[$2]=${SNAP_WANT[$1]}
    SNAP_ABSENT[nydus]=${SNAP_ABSENT[src]}
}

# snap_manifest REF: prints the OCI manifest JSON of REF (plain HTTP registry)
snap_manifest() {
    local ref=$1 host repo tag
    host=${ref%%/*}; repo=${ref#*/}; tag=${repo##*:}; repo=${repo%:*}
    curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$host/v2/$repo/manifests/$tag"
}

# snap_push_broken_nydus NYDUS_REF DST_TAG: the same Nydus image with its bootstrap layer
# replaced by a well-formed gzip tar whose image/image.boot is garbage (not RAFS); config
# diff_ids fixed, so only the bootstrap content is wrong. Prints the ref.
snap_push_broken_nydus() {
    local ref=$1 tag=$2 host repo d=$T/broken cfgd
    host=${ref%%/*}; repo=${ref#*/}; repo=${repo%:*}
    mkdir -p "$d/st/image"
    snap_manifest "$ref" >"$d/manifest.src.json" || fail "no manifest for $ref"
    cfgd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["digest"])' "$d/manifest.src.json")
    curl -fsS "http://$host/v2/$repo/blobs/$cfgd" >"$d/config.src.json" || fail "no config for $ref"
    # RAFS v6 has its superblock at 1024: garbage there, and a size that is not a block multiple
    _snap_rand "$d/st/image/image.boot" 12345 broken-boot
    chmod 0755 "$d/st/image"; chmod 0444 "$d/st/image/image.boot"
    tar -C "$d/st" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
        -cf - image | gzip -n >"$d/boot.tar.gz"
    local bd tard
    bd=$(oci_push_blob "$host" "$repo" "$d/boot.tar.gz")
    tard="sha256:$(gzip -dc "$d/boot.tar.gz" | sha256sum | cut -d' ' -f1)"
    python3 - "$d" "$bd" "$(stat -c %s "$d/boot.tar.gz")" "$tard" <<'PY' || fail "broken image JSON"
import json, sys
d, bd, bsize, tard = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
m = json.load(open(d + "/manifest.src.json")); c = json.load(open(d + "/config.src.json"))
m["layers"][-1]["digest"] = bd; m["layers"][-1]["size"] = bsize
c["rootfs"]["diff_ids"][-1] = tard
c.setdefault("history", []).append({"created_by": "snap_lib: broken bootstrap"})
json.dump(c, open(d + "/config.json", "w"))
json.dump(m, open(d + "/manifest.json", "w"))
PY
    local cd
    cd=$(oci_push_blob "$host" "$repo" "$d/config.json")
    python3 - "$d" "$cd" "$(stat -c %s "$d/config.json")" <<'PY' || fail "broken image manifest"
import json, sys
m = json.load(open(sys.argv[1] + "/manifest.json"))
m["config"]["digest"] = sys.argv[2]; m["config"]["size"] = int(sys.argv[3])
json.dump(m, open(sys.argv[1] + "/manifest.json", "w"))
PY
    oci_push_manifest "$host" "$repo" "$tag" "$d/manifest.json" >/dev/null
    echo "$host/$repo:$tag"
}

# ----------------------------------------------------------------------------- containerd ---

# start_containerd_snap [NAME=SOCKET]...: our containerd with proxy snapshotters (default
# chunkfly=$SNAP_SOCK); the sockets need not listen yet (containerd dials lazily)
start_containerd_snap() {
    local d=$CTRD_DIR p proxies=("$@")
    [ ${#proxies[@]} -gt 0 ] || proxies=("chunkfly=$SNAP_SOCK")
    mkdir -p "$d"
    {
        cat <<TOML
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd-ttrpc.sock"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
[proxy_plugins]
TOML
        for p in "${proxies[@]}"; do
            printf '  [proxy_plugins.%s]\n    type = "snapshot"\n    address = "%s"\n' "${p%%=*}" "${p#*=}"
        done
    } >"$d/config.toml"
    bg_start "$d/containerd.log" containerd --config "$d/config.toml"
    CTRD_PID=$CF_LAST_PID
    for _ in $(seq 150); do
        "${CTR[@]}" version >/dev/null 2>&1 && break
        is_alive "$CTRD_PID" || fail "containerd exited: $(tail -5 "$d/containerd.log")"
        sleep 0.1
    done
    "${CTR[@]}" version >/dev/null 2>&1 || fail "containerd did not answer in 15 s: $(tail -5 "$d/containerd.log")"
}

# _snap_our_shims: PIDs of containerd shims started for our containerd (their command line
# holds our socket's path)
_snap_our_shims() {
    local p
    for p in /proc/[0-9]*; do
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "^[^ ]*containerd-shim.* -address $CTRD_DIR/containerd.sock " &&
            echo "${p#/proc/}"
    done
    return 0
}

# snap_rm_containers: kill and delete every task and container in our namespace
snap_rm_containers() {
    local c
    for c in $("${CTR[@]}" task ls -q 2>/dev/null); do
        timeout 10 "${CTR[@]}" task kill -s KILL "$c" >/dev/null 2>&1 || true
    done
    for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do
        for _ in $(seq 30); do
            timeout 10 "${CTR[@]}" task delete -f "$c" >/dev/null 2>&1 && break
            "${CTR[@]}" task ls -q 2>/dev/null | grep -qx "$c" || break
            sleep 0.1
        done
        timeout 10 "${CTR[@]}" containers rm "$c" >/dev/null 2>&1 || true
    done
}

# umount_under DIR: unmount everything mounted under DIR, deepest/newest first (lazy if busy)
umount_under() {
    local dir=$1 mp
    for _ in 1 2 3; do
        local left=0
        while read -r mp; do
            [ -n "$mp" ] || continue
            left=1
            umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
        done < <(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | tac)
        [ "$left" = 1 ] || return 0
    done
}

# stop_containerd: our containers, containerd, its shims, the mounts under $T, our cgroups
stop_containerd() {
    local p
    if [ -n "$CTRD_PID" ] && is_alive "$CTRD_PID"; then
        snap_rm_containers
        bg_stop "$CTRD_PID"
    fi
    CTRD_PID=""
    for p in $(_snap_our_shims); do kill -9 "$p" 2>/dev/null || true; done
    umount_under "$CTRD_DIR"
    for p in /sys/fs/cgroup/*/"$SNAP_NS" /sys/fs/cgroup/unified/"$SNAP_NS"; do
        [ -d "$p" ] && rmdir "$p" 2>/dev/null || true
    done
}

# ---------------------------------------------------------------------------- snapshotter ---

# snap_sock_ready SOCK: something accepts connections on the unix socket (a stale socket file
# left by a killed daemon does not count)
snap_sock_ready() {
    python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(1); s.connect(sys.argv[1])
PY
}

# start_snapshotter [ARGS...]: chunkfly-snapshotter on $SNAP_SOCK with state in $SNAP_ROOT,
# plain HTTP for $REGISTRY (and $SNAP_PLAIN_HTTP, space-separated), fs driver $SNAP_FS_DRIVER
# (default fuse); waits up to 20 s for the socket. Sets SNAP_PID; log $SNAP_DIR/snapshotter.N.log
start_snapshotter() {
    local bin=$CHUNKFLY_BIN/chunkfly-snapshotter h args=()
    [ -x "$bin" ] || fail "$bin not built"
    mkdir -p "$SNAP_DIR" "$SNAP_ROOT"
    for h in ${REGISTRY:-} ${SNAP_PLAIN_HTTP:-}; do args+=(--plain-http "$h"); done
    SNAP_STARTS=$((SNAP_STARTS + 1))
    SNAP_LOG=$SNAP_DIR/snapshotter.$SNAP_STARTS.log
    bg_start "$SNAP_LOG" "$bin" --address "$SNAP_SOCK" --root "$SNAP_ROOT" \
        --mount-bin "$CHUNKFLY_BIN/chunkfly-mount" --fs-driver "${SNAP_FS_DRIVER:-fuse}" \
        --log-level "${SNAP_LOG_LEVEL:-info}" "${args[@]}" "$@"
    SNAP_PID=$CF_LAST_PID
    for _ in $(seq 200); do
        snap_sock_ready "$SNAP_SOCK" && return 0
        is_alive "$SNAP_PID" || fail "chunkfly-snapshotter exited: $(tail -5 "$SNAP_LOG")"
        sleep 0.1
    done
    fail "chunkfly-snapshotter: no socket $SNAP_SOCK after 20 s: $(tail -5 "$SNAP_LOG")"
}

# snap_mount_pid: the PID of each live chunkfly-mount the snapshotter recorded, one per line:
# $SNAP_ROOT/mount.pid (the shared FUSE daemon) and, with --fs-driver erofs, one per image in
# $SNAP_ROOT/erofs/<id>/mount.pid; only processes alive and running chunkfly-mount (never a
# recycled PID)
snap_mount_pid() {
    local p f
    for f in "$SNAP_ROOT/mount.pid" "$SNAP_ROOT"/erofs/*/mount.pid; do
        p=$(cat "$f" 2>/dev/null) || continue
        [[ $p =~ ^[0-9]+$ ]] || continue
        is_alive "$p" || continue
        tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q chunkfly-mount && echo "$p"
    done
    return 0
}

# stop_snapshotter: SIGTERM (5 s, then SIGKILL), then the chunkfly-mount daemons that outlived
# it (they run in their own session on purpose: containers keep reading through them)
stop_snapshotter() {
    local m
    if [ -n "$SNAP_PID" ]; then bg_stop "$SNAP_PID"; fi
    SNAP_PID=""
    for m in $(snap_mount_pid); do
        kill "$m" 2>/dev/null || true
        for _ in $(seq 50); do is_alive "$m" || break; sleep 0.1; done
        kill -9 "$m" 2>/dev/null || true
    done
}

# kill9_snapshotter: kill -9 of the snapshotter only (its chunkfly-mount lives on)
kill9_snapshotter() {
    [ -n "$SNAP_PID" ] || fail "kill9_snapshotter: no snapshotter running"
    kill -9 "$SNAP_PID"
    wait "$SNAP_PID" 2>/dev/null || true
    SNAP_PID=""
}

# snap_cleanup: (EXIT trap) containers, containerd, snapshotter, mount, mounts, then testlib's
snap_cleanup() {
    local rc=$?
    set +e
    if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        local f
        for f in "$CTRD_DIR/containerd.log" "$SNAP_DIR"/snapshotter.*.log; do
            [ -s "$f" ] && { echo "----- tail $f" >&2; tail -n 20 "$f" >&2; }
        done
    fi
    stop_containerd
    stop_snapshotter
    umount_under "$T"
    (exit $rc)
    cf_cleanup
}
trap snap_cleanup EXIT

# ------------------------------------------------------------------------------ containers ---

# run_and_hash REF ID [SNAPSHOTTER] [DIRS]: `ctr run --rm` of REF (already pulled for
# SNAPSHOTTER, default $SNAPSHOTTER or chunkfly) printing the tree of DIRS (default: the image's
# top-level dirs) and the sha256 of every regular file in them; fails the test unless both
# equal the source image's (and the whiteout/opaque victims are absent). Output in $T/run-ID.out.
run_and_hash() {
    local ref=$1 id=$2 sn=${3:-${SNAPSHOTTER:-chunkfly}} want dirs absent name out=$T/run-$2.out
    want=${SNAP_WANT[$ref]:-}
    [ -n "$want" ] || fail "run_and_hash: no expected content for $ref"
    dirs=${4:-$(cat "$want/tops")}
    name=$(basename "$want")
    absent=${SNAP_ABSENT[$name]:-}
    local script="cd / && find $dirs | sort && echo ==== && find $dirs -type f | sort | xargs sha256sum && echo ==== && for p in $absent; do test -e \"/\$p\" && echo \"present: \$p\"; done; true"
    timeout "${SNAP_RUN_TIMEOUT:-60}" "${CTR[@]}" run --snapshotter "$sn" --rm "$ref" "$id" \
        sh -c "$script" >"$out" 2>"$out.err" ||
        fail "ctr run $ref ($sn) failed (exit $?): $(tail -5 "$out.err")"
    awk 'BEGIN{p=1} /^====$/{p++; next} p==1' "$out" >"$out.tree"
    awk 'BEGIN{p=1} /^====$/{p++; next} p==2' "$out" >"$out.sums"
    awk 'BEGIN{p=1} /^====$/{p++; next} p==3' "$out" >"$out.absent"
    _snap_filter "$want/tree" "$dirs" | diff -u - "$out.tree" >&2 || fail "$ref ($sn): tree differs from the source (above)"
    _snap_filter "$want/sums" "$dirs" 2 | diff -u - "$out.sums" >&2 || fail "$ref ($sn): file contents differ from the source (above)"
    [ ! -s "$out.absent" ] || fail "$ref ($sn): whiteouts not applied: $(cat "$out.absent")"
    note "$id: $(wc -l <"$out.sums") files of $ref equal the source ($sn)"
}

# _snap_filter FILE DIRS [FIELD]: the lines of FILE whose path (field FIELD, default 1) is in
# one of DIRS
_snap_filter() {
    awk -v dirs="$2" -v f="${3:-1}" 'BEGIN{n=split(dirs, d, " ")}
        {for (i = 1; i <= n; i++) if ($f == d[i] || index($f, d[i] "/") == 1) {print; next}}' "$1"
}

# snap_drop_file_cache DIR: drop the page cache of every regular file on the FUSE and EROFS
# mounts under DIR (posix_fadvise DONTNEED), so the next read goes to the mount's daemon or its
# blob cache: a targeted drop, not the machine-wide drop_caches. Dead mounts are skipped.
snap_drop_file_cache() {
    python3 - "$1" <<'PY'
import os, sys
root = sys.argv[1].rstrip("/") + "/"
for line in open("/proc/self/mountinfo"):
    a = line.split()
    mp, fstype = a[4], a[a.index("-") + 1]
    if not mp.startswith(root) or not (fstype.startswith("fuse") or fstype == "erofs"):
        continue
    for d, _, files in os.walk(mp, onerror=lambda e: None):
        for f in files:
            try:
                fd = os.open(os.path.join(d, f), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            os.close(fd)
PY
}

# snap_dir_count DIR: number of entries in DIR (0 if it does not exist)
snap_dir_count() { find "$1" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
