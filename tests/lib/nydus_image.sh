# shellcheck shell=bash
# Push Nydus images (and plain OCI images, indexes) to a registry with curl, packaged the way
# nydusify / nydus-snapshotter's converter packages them (../shared/docs/nydus-format.md §5.1):
#   layers = one per data blob (application/vnd.oci.image.layer.nydus.blob.v1, annotation
#            containerd.io/snapshot/nydus-blob "true"), then the bootstrap layer, last: a gzip
#            tar of image/ + image/image.boot (sorted, mtime 0, uid/gid 0, gzip -n: the same
#            bootstrap always gives the same digest), annotations
#            containerd.io/snapshot/nydus-bootstrap "true", containerd.io/snapshot/nydus-fs-version
#            "6";
#   config = {os, architecture, rootfs.diff_ids = the blob digests + the tar's uncompressed
#            digest, history}; manifest = OCI image manifest under TAG.
# Source after testlib.sh (uses fail, $T). Needs curl, tar, gzip, sha256sum, python3.
#
# Stable interface (other tests and tests/bench use it):
#   nydus_push_image REG REPO TAG BOOTSTRAP [BLOB_FILE...]
#       Pushes the blobs (files written by `chunkfly-image create -D DIR`, named by blob id, or
#       any file: its digest is its sha256), the bootstrap layer, the config and the manifest;
#       prints the manifest digest (sha256:HEX). TAG may be "" to push by digest only. Blobs the
#       registry already has are not uploaded again. What it pushed stays in
#       $(nydus_pushed_dir sha256:HEX): manifest.json, config.json, boot.tar.gz (the bootstrap
#       layer; its digest is its sha256).
#   nydus_pushed_dir MANIFEST_DIGEST    -> prints that directory
#   oci_push_index REG REPO TAG MANIFEST_DIGEST[@OS/ARCH[/VARIANT]]...
#       Pushes an OCI index listing the (already pushed) manifests, each with its platform
#       (default: the pushed platform, $NYDUS_OS/$NYDUS_ARCH); prints the index digest.
#   oci_push_plain_image REG REPO TAG FILE...
#       A plain (non-Nydus) OCI image whose layers are FILEs pushed as tar+gzip layers
#       (contents are not checked by a registry); prints the manifest digest.
#   oci_push_blob REG REPO FILE [DIGEST] -> prints sha256:HEX (skips if already present; a
#                                       known DIGEST saves hashing FILE)
#   oci_push_manifest REG REPO REF FILE [MEDIA_TYPE]  -> prints sha256:HEX of FILE
#   nydus_boot_tgz BOOTSTRAP OUT.tar.gz  -> writes the deterministic bootstrap layer
# Settings (environment, read on each call):
#   NYDUS_PUSH_AUTH   user:password. Empty: anonymous. A registry answering 401 with
#                     "Bearer realm=..." (token auth, e.g. start_token_registry) gets a token
#                     for repository:REPO:pull,push from its realm (with these credentials if
#                     set; kept 50 s in $T/.nydus-push-auth.*); one answering "Basic" gets
#                     them as basic auth.
#   NYDUS_PUSH_SCHEME http (default) or https (then curl gets $NYDUS_PUSH_CACERT if set).
#   NYDUS_OS / NYDUS_ARCH / NYDUS_VARIANT  platform written into the config and index
#                     (default linux / the host's GOARCH name / none).
#   NYDUS_FS_VERSION  the fs-version annotation (default 6; tests of refusals set 5).
#   NYDUS_PUSH_DIR    where pushed files are kept (default $T/nydus-push).

# _reg_url REG: the registry's base URL
_reg_url() { echo "${NYDUS_PUSH_SCHEME:-http}://$1"; }

_reg_curl() {
    local ca=()
    [ -n "${NYDUS_PUSH_CACERT:-}" ] && ca=(--cacert "$NYDUS_PUSH_CACERT")
    curl -sS "${ca[@]}" "$@"
}

# _reg_auth REG REPO: sets _REG_AUTH (curl args) for pushing to REPO. A token is kept for 50 s
# in a file under $T (pushes run in $(...) subshells, which cannot share a variable).
_reg_auth() {
    local reg=$1 repo=$2 key hdr realm service tok cred=() cache now
    key="$reg/$repo/${NYDUS_PUSH_AUTH:-}"
    _REG_AUTH=()
    now=$(date +%s)
    cache="$T/.nydus-push-auth.$(printf %s "$key" | sha256sum | cut -c1-16)"
    if [ -s "$cache" ] && [ $((now - $(stat -c %Y "$cache"))) -lt 50 ]; then
        mapfile -t _REG_AUTH <"$cache"
        return 0
    fi
    hdr=$(_reg_curl -o /dev/null -D - "$(_reg_url "$reg")/v2/" | tr -d '\r' |
        sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: //p')
    [ -n "${NYDUS_PUSH_AUTH:-}" ] && cred=(-u "$NYDUS_PUSH_AUTH")
    case "$hdr" in
    Bearer*)
        realm=$(sed -n 's/.*realm="\([^"]*\)".*/\1/p' <<<"$hdr")
        service=$(sed -n 's/.*service="\([^"]*\)".*/\1/p' <<<"$hdr")
        [ -n "$realm" ] || fail "registry $reg: no token realm in '$hdr'"
        tok=$(_reg_curl -f "${cred[@]}" -G "$realm" --data-urlencode "service=$service" \
            --data-urlencode "scope=repository:$repo:pull,push" |
            python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("token") or d["access_token"])') ||
            fail "registry $reg: no push token for $repo from $realm"
        _REG_AUTH=(-H "Authorization: Bearer $tok") ;;
    Basic*) _REG_AUTH=("${cred[@]}") ;;
    esac
    if [ ${#_REG_AUTH[@]} -gt 0 ]; then (umask 077 && printf '%s\n' "${_REG_AUTH[@]}" >"$cache"); fi
}

oci_push_blob() {
    local reg=$1 repo=$2 file=$3 digest=${4:-} loc base
    # a known digest (4th argument) saves hashing a large file; the registry checks it
    [ -n "$digest" ] || digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
    base=$(_reg_url "$reg")
    _reg_auth "$reg" "$repo"
    if _reg_curl -f -I "${_REG_AUTH[@]}" "$base/v2/$repo/blobs/$digest" -o /dev/null 2>/dev/null; then
        echo "$digest"
        return 0
    fi
    loc=$(_reg_curl -f -X POST -D - -o /dev/null "${_REG_AUTH[@]}" "$base/v2/$repo/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    [ -n "$loc" ] || fail "push to $reg/$repo: no upload Location"
    case "$loc" in /*) loc="$base$loc" ;; esac
    case "$loc" in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
    # -T streams the file (--data-binary would read a 1 GiB blob into memory)
    _reg_curl -f -X PUT -H 'Content-Type: application/octet-stream' "${_REG_AUTH[@]}" \
        -T "$file" "$loc" -o /dev/null || fail "push of $file to $reg/$repo failed"
    echo "$digest"
}

oci_push_manifest() {
    local reg=$1 repo=$2 ref=$3 file=$4 mt=${5:-application/vnd.oci.image.manifest.v1+json}
    local digest
    digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
    [ -n "$ref" ] || ref=$digest
    _reg_auth "$reg" "$repo"
    _reg_curl -f -X PUT -H "Content-Type: $mt" "${_REG_AUTH[@]}" --data-binary "@$file" \
        "$(_reg_url "$reg")/v2/$repo/manifests/$ref" -o /dev/null ||
        fail "manifest push to $reg/$repo:$ref failed"
    echo "$digest"
}

_nydus_arch() {
    if [ -n "${NYDUS_ARCH:-}" ]; then echo "$NYDUS_ARCH"; return; fi
    case "$(uname -m)" in
    x86_64) echo amd64 ;; aarch64) echo arm64 ;; armv7l) echo arm ;; i?86) echo 386 ;;
    ppc64le) echo ppc64le ;; s390x) echo s390x ;; riscv64) echo riscv64 ;; *) uname -m ;;
    esac
}

nydus_boot_tgz() {
    local boot=$1 out=$2 st
    st=$(mktemp -d "$T/nydus-boot.XXXXXX")
    mkdir "$st/image"
    cp "$boot" "$st/image/image.boot"
    chmod 0755 "$st/image"
    chmod 0444 "$st/image/image.boot"
    tar -C "$st" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
        -cf - image | gzip -n >"$out" || fail "packing $boot failed"
    rm -rf "$st"
}

# _json_desc MEDIA_TYPE FILE_OR_DIGEST SIZE [ANNOTATIONS_JSON]: one descriptor
_json_desc() {
    printf '{"mediaType":"%s","digest":"%s","size":%s%s}' "$1" "$2" "$3" \
        "${4:+,\"annotations\":$4}"
}

nydus_pushed_dir() { echo "${NYDUS_PUSH_DIR:-$T/nydus-push}/${1#sha256:}"; }

nydus_push_image() {
    local reg=$1 repo=$2 tag=$3 boot=$4; shift 4
    local b d layers="" diff_ids="" st cd bd tard md fsv=${NYDUS_FS_VERSION:-6}
    [ -f "$boot" ] || fail "nydus_push_image: no bootstrap $boot"
    mkdir -p "${NYDUS_PUSH_DIR:-$T/nydus-push}"
    st=$(mktemp -d "${NYDUS_PUSH_DIR:-$T/nydus-push}/tmp.XXXXXX")
    for b in "$@"; do
        d=$(oci_push_blob "$reg" "$repo" "$b")
        layers+="$(_json_desc application/vnd.oci.image.layer.nydus.blob.v1 "$d" \
            "$(stat -c %s "$b")" '{"containerd.io/snapshot/nydus-blob":"true"}'),"
        diff_ids+="\"$d\","
    done
    nydus_boot_tgz "$boot" "$st/boot.tar.gz"
    bd=$(oci_push_blob "$reg" "$repo" "$st/boot.tar.gz")
    tard="sha256:$(gzip -dc "$st/boot.tar.gz" | sha256sum | cut -d' ' -f1)"
    layers+=$(_json_desc application/vnd.oci.image.layer.v1.tar+gzip "$bd" \
        "$(stat -c %s "$st/boot.tar.gz")" \
        "{\"containerd.io/snapshot/nydus-bootstrap\":\"true\",\"containerd.io/snapshot/nydus-fs-version\":\"$fsv\"}")
    diff_ids+="\"$tard\""
    printf '{"architecture":"%s","os":"%s"%s,"config":{},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[{"created_by":"chunkfly tests/lib/nydus_image.sh","comment":"Nydus Bootstrap Layer"}]}' \
        "$(_nydus_arch)" "${NYDUS_OS:-linux}" "${NYDUS_VARIANT:+,\"variant\":\"$NYDUS_VARIANT\"}" \
        "$diff_ids" >"$st/config.json"
    cd=$(oci_push_blob "$reg" "$repo" "$st/config.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s],"annotations":{"containerd.io/snapshot/nydus-fs-version":"%s"}}' \
        "$(_json_desc application/vnd.oci.image.config.v1+json "$cd" "$(stat -c %s "$st/config.json")")" \
        "$layers" "$fsv" >"$st/manifest.json"
    md=$(oci_push_manifest "$reg" "$repo" "$tag" "$st/manifest.json")
    rm -rf "$(nydus_pushed_dir "$md")"
    mv "$st" "$(nydus_pushed_dir "$md")"
    echo "$md"
}

oci_push_plain_image() {
    local reg=$1 repo=$2 tag=$3; shift 3
    local f d layers="" diff_ids="" cfg cd man
    for f in "$@"; do
        d=$(oci_push_blob "$reg" "$repo" "$f")
        layers+="$(_json_desc application/vnd.oci.image.layer.v1.tar+gzip "$d" "$(stat -c %s "$f")"),"
        diff_ids+="\"$d\","
    done
    cfg=$(mktemp "$T/oci-config.XXXXXX.json")
    printf '{"architecture":"%s","os":"%s","rootfs":{"type":"layers","diff_ids":[%s]}}' \
        "$(_nydus_arch)" "${NYDUS_OS:-linux}" "${diff_ids%,}" >"$cfg"
    cd=$(oci_push_blob "$reg" "$repo" "$cfg")
    man=$(mktemp "$T/oci-manifest.XXXXXX.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
        "$(_json_desc application/vnd.oci.image.config.v1+json "$cd" "$(stat -c %s "$cfg")")" \
        "${layers%,}" >"$man"
    oci_push_manifest "$reg" "$repo" "$tag" "$man"
}

oci_push_index() {
    local reg=$1 repo=$2 tag=$3; shift 3
    local m d plat os arch var ents="" size idx base
    base=$(_reg_url "$reg")
    _reg_auth "$reg" "$repo"
    for m in "$@"; do
        d=${m%%@*}
        plat=$([ "$m" != "$d" ] && echo "${m#*@}" || echo "${NYDUS_OS:-linux}/$(_nydus_arch)${NYDUS_VARIANT:+/$NYDUS_VARIANT}")
        IFS=/ read -r os arch var <<<"$plat"
        size=$(_reg_curl -f -I "${_REG_AUTH[@]}" \
            -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
            "$base/v2/$repo/manifests/$d" | tr -d '\r' |
            sed -n 's/^[Cc]ontent-[Ll]ength: //p')
        [ -n "$size" ] || fail "oci_push_index: manifest $d not in $reg/$repo"
        ents+=$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"os":"%s","architecture":"%s"%s}},' \
            "$d" "$size" "$os" "$arch" "${var:+,\"variant\":\"$var\"}")
    done
    idx=$(mktemp "$T/oci-index.XXXXXX.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
        "${ents%,}" >"$idx"
    oci_push_manifest "$reg" "$repo" "$tag" "$idx" application/vnd.oci.image.index.v1+json
}
