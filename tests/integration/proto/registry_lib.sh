# Helpers for the proto/registry integration tests (source after testlib.sh).
# Registries are real docker-registry processes; test data is pushed with curl (the
# distribution push protocol), independently of the client under test.

# Test traffic stays on loopback: no proxy from the environment for curl/skopeo.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
FETCH="$CHUNKFLY_BUILD/tests/registry_fetch"
[ -x "$FETCH" ] || fail "$FETCH not built"
PY=/usr/bin/python3
HERE="$CHUNKFLY_SRC/tests/integration/proto"

# start_registry_cfg NAME HOST EXTRA_YAML: testlib's start_registry with extra config lines
# (auth:, proxy:) and the access log on; sets REG=host:port and REG_DIR.
start_registry_cfg() {
    REGISTRY_LOG="{level: info, fields: {service: registry}}" start_registry "$2" "$3" "$1"
    REG=$REGISTRY
    REG_DIR=$REGISTRY_DIR
}

# push_blob REG REPO FILE [CURL_AUTH_ARGS...]: prints the digest.
push_blob() {
    local reg=$1 repo=$2 file=$3; shift 3
    local digest loc
    digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
    loc=$(curl -sS -f -X POST -D - -o /dev/null "$@" "http://$reg/v2/$repo/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    [ -n "$loc" ] || fail "push to $reg/$repo: no upload Location"
    case "$loc" in /*) loc="http://$reg$loc" ;; esac
    case "$loc" in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
    curl -sS -f -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$file" \
        "$@" "$loc" -o /dev/null || fail "push of $file to $reg/$repo failed"
    echo "$digest"
}

# push_image REG REPO TAG LAYER_FILE OUT_MANIFEST [CURL_AUTH_ARGS...]: a one-layer OCI image;
# writes the manifest bytes to OUT_MANIFEST.
push_image() {
    local reg=$1 repo=$2 tag=$3 layer=$4 man=$5; shift 5
    local cfg="$T/config-$RANDOM.json" cd ld
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$(sha256sum "$layer" | cut -d' ' -f1)" >"$cfg"
    cd=$(push_blob "$reg" "$repo" "$cfg" "$@")
    ld=$(push_blob "$reg" "$repo" "$layer" "$@")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}' \
        "$cd" "$(stat -c %s "$cfg")" "$ld" "$(stat -c %s "$layer")" >"$man"
    curl -sS -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary "@$man" "$@" "http://$reg/v2/$repo/manifests/$tag" -o /dev/null ||
        fail "manifest push to $reg/$repo:$tag failed"
}

# slice FILE OFFSET LEN: bytes [OFFSET, OFFSET+LEN) to stdout
slice() { tail -c +$(($2 + 1)) "$1" | head -c "$3"; }

# expect_fail CMD... : runs CMD, which must fail; its stderr lands in $T/err.
expect_fail() {
    if "$@" 2>"$T/err"; then fail "expected failure: $*"; fi
    cat "$T/err"
}

need_pyjwt() {
    "$PY" -c 'import jwt, cryptography' 2>/dev/null ||
        skip "python3-jwt / python3-cryptography missing for $PY (.ci/install-deps)"
}
