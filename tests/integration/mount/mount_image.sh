#!/usr/bin/env bash
# chunkfly-mount --image: one command from an image reference to a lazy mount, through a real
# docker-registry with token auth (our token server; credentials from $DOCKER_CONFIG). A
# two-layer Nydus image is pushed the way nydusify packages it (tests/lib/nydus_image.sh), then
#  - mounted by tag, by digest and through an OCI index: the tree equals the source each time;
#    the first mount fetches the bootstrap layer once, later mounts reuse the extracted one (no
#    GET of that blob in the registry's access log);
#  - the same through the kernel-EROFS mode (erofs --image), when the kernel has EROFS;
#  - with --config: a registry backend without host/repo completed from the reference, a
#    localfs backend used as is (no data blob GET);
#  - refused before anything is mounted, with a message saying why: an unknown tag, a plain
#    OCI image, a RAFS v5 image (annotation), a bootstrap layer holding a symlink, wrong
#    credentials, no credentials, an index without the asked platform.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/mount_lib.sh"
. "$(dirname "$0")/backend_lib.sh"
command -v curl >/dev/null || skip "curl not installed"

# two layers, merged (the blob table lists both blobs); small: mount_tree.sh covers every file
# kind, this test the way from a reference to the mount
S=$T/src
mkdir -p "$S/l1/dir/sub" "$S/l1/empty-dir"
echo hello >"$S/l1/a.txt"
: >"$S/l1/empty"
head -c 1500000 /dev/urandom >"$S/l1/dir/random.bin"
seq 1 100000 >"$S/l1/dir/sub/seq.txt"
ln -s a.txt "$S/l1/link"
ln "$S/l1/a.txt" "$S/l1/dir/hard-a"
mknod "$S/l1/null-dev" c 1 3
chmod 4755 "$S/l1/a.txt"; chown 1000:1000 "$S/l1/dir/sub/seq.txt"
setfattr -n user.greeting -v hello "$S/l1/a.txt"
touch -d '2001-02-03 04:05:06' "$S/l1/dir/sub"
mkdir -p "$S/l2/etc" && head -c 200000 /dev/urandom >"$S/l2/etc/extra" && echo top >"$S/l2/top"
for l in l1 l2; do
    "$CFI" create -l warn -t dir-rafs -B "$T/$l.boot" -D "$T/blobs" "$S/$l" || fail "create $l"
done
"$CFI" merge -l warn -B "$T/boot" "$T/l1.boot" "$T/l2.boot" 2>"$T/merge.err" ||
    fail "merge: $(cat "$T/merge.err")"
mkdir -p "$T/all" && cp -a "$S/l1/." "$T/all/" && cp -a "$S/l2/." "$T/all/"
$MANIFEST "$T/all" >"$T/src.manifest"

REGISTRY_LOG="{level: info, fields: {service: registry}}" start_token_registry
export NYDUS_PUSH_AUTH=alice:s3cret
MD=$(nydus_push_image "$TREG" tok/private v1 "$T/boot" "$T/blobs"/*)
ID=$(oci_push_index "$TREG" tok/private multi "$MD")
PLAIN=$(oci_push_plain_image "$TREG" tok/private plain "$T/l1.boot")
NYDUS_FS_VERSION=5 nydus_push_image "$TREG" tok/private v5 "$T/boot" "$T/blobs"/* >/dev/null
# the same image with a bootstrap layer that also holds a symlink (extraction must refuse it)
mkdir -p "$T/odd/image" && cp "$T/boot" "$T/odd/image/image.boot" && ln -s /etc/passwd "$T/odd/image/evil"
tar -C "$T/odd" -cf - image | gzip -n >"$T/odd.tgz"
ODD=$(oci_push_blob "$TREG" tok/private "$T/odd.tgz")
python3 - "$(nydus_pushed_dir "$MD")/manifest.json" "$ODD" "$(stat -c %s "$T/odd.tgz")" >"$T/odd.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["layers"][-1].update(digest=sys.argv[2], size=int(sys.argv[3]))
print(json.dumps(m))
PY
oci_push_manifest "$TREG" tok/private odd "$T/odd.json" >/dev/null
BOOTD=sha256:$(sha256sum "$(nydus_pushed_dir "$MD")/boot.tar.gz" | cut -d' ' -f1)
note "pushed $MD (index $ID, plain $PLAIN), bootstrap layer $BOOTD"
unset NYDUS_PUSH_AUTH

docker_cfg() { # docker_cfg DIR USER:PASS
    mkdir -p "$1"
    printf '{"auths":{"%s":{"auth":"%s"}}}' "$TREG" "$(printf %s "$2" | base64 -w0)" >"$1/config.json"
}
docker_cfg "$T/dc-good" alice:s3cret
docker_cfg "$T/dc-bad" alice:wrong
boot_gets() { grep -c '"GET /v2/tok/private/blobs/'"$BOOTD" "$REGISTRY_DIR/log" || true; }
data_re=$(find "$T/blobs" -type f -printf '%f\n' | paste -sd'|')
data_gets() { grep -cE '"GET /v2/tok/private/blobs/sha256:('"$data_re"')' "$REGISTRY_DIR/log" || true; }
check_tree() { # check_tree WHAT
    $MANIFEST "$T/mnt" >"$T/mnt.manifest"
    diff -u "$T/src.manifest" "$T/mnt.manifest" >"$T/diff" || fail "$1: tree differs: $(head -20 "$T/diff")"
}

export DOCKER_CONFIG=$T/dc-good
t0=$(date +%s%N)
mount_start "$T/m1.log" "$T/mnt" --image "$TREG/tok/private:v1" --cache-dir "$T/cache"
note "mounted $TREG/tok/private:v1 in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
check_tree "by tag"
[ "$(boot_gets)" = 1 ] || fail "bootstrap layer fetched $(boot_gets) times, want 1"
[ -f "$T/cache/${BOOTD#sha256:}.image.boot" ] || fail "no extracted bootstrap in the cache dir"
mount_stop "$MOUNT_PID" "$T/mnt"
note "by tag: tree equals the source; bootstrap layer fetched once, extracted into the cache dir"

g0=$(boot_gets)
mount_start "$T/m2.log" "$T/mnt" --image "$TREG/tok/private@$MD" --cache-dir "$T/cache"
check_tree "by digest"
mount_stop "$MOUNT_PID" "$T/mnt"
mount_start "$T/m3.log" "$T/mnt" --image "$TREG/tok/private:multi" --cache-dir "$T/cache"
grep -q "index $ID: manifest $MD" "$T/m3.log" || fail "index not followed: $(grep -m2 index "$T/m3.log")"
check_tree "through the index"
mount_stop "$MOUNT_PID" "$T/mnt"
[ "$(boot_gets)" = "$g0" ] || fail "later mounts fetched the bootstrap layer again"
note "by digest and through the index: trees equal; 0 bootstrap bytes from the registry"

# --config: its backend serves the image's blobs. A registry backend naming no host/repo gets
# them from the reference (credentials from the docker config); a localfs one reads the blob
# directory; the bootstrap lands in the config's work_dir.
cfg() { # cfg FILE BACKEND_JSON WORK_DIR
    printf '{"device":{"backend":%s,"cache":{"type":"blobcache","config":{"work_dir":"%s"}}},"mode":"direct","digest_validate":false,"enable_xattr":true,"fs_prefetch":{"enable":false}}' \
        "$2" "$3" >"$1"
}
cfg "$T/reg.json" '{"type":"registry","config":{"scheme":"http","timeout":5}}' "$T/cache4"
mount_start "$T/m4.log" "$T/mnt" --image "$TREG/tok/private:v1" --config "$T/reg.json"
check_tree "--config registry without host/repo"
mount_stop "$MOUNT_PID" "$T/mnt"
[ -f "$T/cache4/${BOOTD#sha256:}.image.boot" ] || fail "bootstrap not in the config's work_dir"
cfg "$T/local.json" "{\"type\":\"localfs\",\"config\":{\"dir\":\"$T/blobs\"}}" "$T/cache5"
g0=$(data_gets)
mount_start "$T/m5.log" "$T/mnt" --image "$TREG/tok/private:v1" --config "$T/local.json"
check_tree "--config localfs"
mount_stop "$MOUNT_PID" "$T/mnt"
[ "$(data_gets)" = "$g0" ] || fail "--config localfs: data blobs were read from the registry"
note "--config: a registry backend completed from the reference, a localfs backend used as is"

if grep -qw erofs /proc/filesystems; then
    rm -rf "$T/cache2"
    bg_start "$T/e1.log" "$CFM" erofs --mountpoint "$T/mnt" --image "$TREG/tok/private:v1" \
        --cache-dir "$T/cache2"
    PID=$CF_LAST_PID
    for _ in $(seq 100); do
        grep -q "with the kernel's EROFS" "$T/e1.log" && break
        is_alive "$PID" || break
        sleep 0.1
    done
    if grep -q "with the kernel's EROFS" "$T/e1.log"; then
        check_tree "erofs --image"
        mount_stop "$PID" "$T/mnt" 2>/dev/null || { kill "$PID"; wait "$PID" 2>/dev/null || true; }
        note "erofs --image: tree equals the source"
    elif grep -q "needs a kernel that mounts EROFS from a regular file" "$T/e1.log"; then
        note "erofs --image skipped: $(grep -m1 EROFS "$T/e1.log")"
    else
        fail "erofs --image: $(tail -3 "$T/e1.log")"
    fi
fi

# refusals: exit status 1 within seconds, nothing mounted, a message that says why
refuse() { # refuse WHAT PATTERN ARGS...
    local what=$1 pat=$2
    shift 2
    mkdir -p "$T/mnt"
    if timeout 30 "$CFM" fuse --mountpoint "$T/mnt" --cache-dir "$T/cache3" "$@" >"$T/out" 2>&1; then
        fail "$what: chunkfly-mount succeeded"
    fi
    is_mounted "$T/mnt" && fail "$what: something was mounted"
    grep -qE 'Sanitizer|runtime error:' "$T/out" && fail "$what: sanitizer report: $(cat "$T/out")"
    grep -qiE "$pat" "$T/out" || fail "$what: message '$(cat "$T/out")' lacks /$pat/"
    note "$what: $(grep -m1 -iE "$pat" "$T/out" | cut -c1-200)"
}
refuse "unknown tag" "tok/private:nope.*(not found|unknown)" --image "$TREG/tok/private:nope"
refuse "plain OCI image" "not a Nydus image" --image "$TREG/tok/private:plain"
refuse "RAFS v5 image" "RAFS v5" --image "$TREG/tok/private:v5"
refuse "bootstrap layer with a symlink" "unexpected entry .*image/evil" --image "$TREG/tok/private:odd"
DOCKER_CONFIG=$T/dc-bad refuse "wrong credentials" "authentication failed|denied|401" \
    --image "$TREG/tok/private:v1"
DOCKER_CONFIG=$T/nowhere refuse "no credentials" "authentication|denied|401" \
    --image "$TREG/tok/private:v1"
refuse "index without this platform" "no manifest for platform linux/s390x in the index \(it has: linux/" \
    --image "$TREG/tok/private:multi" --platform linux/s390x
refuse "--image with --bootstrap" "exclude" --image "$TREG/tok/private:v1" --bootstrap "$T/boot"
refuse "--platform without --image" "go with --image" --platform linux/amd64 --bootstrap "$T/boot"
[ ! -e "$T/cache3" ] || [ -z "$(ls "$T/cache3")" ] || fail "a refused image left files: $(ls "$T/cache3")"
no_sanitizer_reports
echo "PASS: --image by tag, digest and index through a token-auth registry; cached bootstrap; refusals"
