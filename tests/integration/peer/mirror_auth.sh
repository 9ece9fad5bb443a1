#!/bin/bash
# The peer's registry mirror in front of a token-auth docker-registry (our token server, with a
# private repository anonymous callers cannot pull): a manifest request without a token gets
# the upstream's 401 and WWW-Authenticate unchanged; with the client's token (forwarded) it is
# answered; a public blob comes through the mesh (the task does the anonymous token flow with
# the node's own identity); a private blob is never fetched with a client's credentials: 404, so
# the client goes to the upstream itself. Then containerd pulls the public image through the
# mirror (401 flow, token fetched by containerd; ctr content fetch: the layers are not tars) and
# the private one with -u (fallback for the
# private layer), content equal to the pushed bytes.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"
need_pyjwt
command -v openssl >/dev/null || skip "openssl missing"

mkdir -p "$T/tok"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tok/key.pem" -out "$T/tok/cert.pem" \
    -days 2 -subj /CN=chunkfly-test-token 2>/dev/null
bg_start "$T/tok/stderr" "$PY" "$HERE/token_server.py" --key "$T/tok/key.pem" \
    --cert "$T/tok/cert.pem" --listen 127.0.0.9:0 --port-file "$T/tok/port" \
    --user alice:s3cret --private priv/app --log "$T/tok/log"
for _ in $(seq 100); do [ -s "$T/tok/port" ] && break; sleep 0.1; done
[ -s "$T/tok/port" ] || { cat "$T/tok/stderr"; fail "token server did not start"; }
TOK="127.0.0.9:$(cat "$T/tok/port")"
start_registry_cfg token 127.0.0.9 "auth:
  token:
    realm: http://$TOK/token
    service: test-registry
    issuer: chunkfly-test-issuer
    rootcertbundle: $T/tok/cert.pem"
token() { # SCOPE [CURL ARGS]: a token from the token server
    local scope=$1; shift
    curl -sS -f "$@" "http://$TOK/token?service=test-registry&scope=$scope" |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
for r in pub/app priv/app; do
    ptok=$(token "repository:$r:pull,push" -u alice:s3cret)
    head -c 3000000 /dev/urandom >"$T/layer-${r%/*}"
    push_image "$REG" "$r" v1 "$T/layer-${r%/*}" "$T/manifest-${r%/*}" -H "Authorization: Bearer $ptok"
done
PUBL=sha256:$(sha256sum "$T/layer-pub" | cut -d' ' -f1)
PRIVL=sha256:$(sha256sum "$T/layer-priv" | cut -d' ' -f1)

MP=$(free_port 127.0.0.11)
start_peer 1 --set mirror_listen="127.0.0.11:$MP" --set mirror_upstreams="$REG" \
    --set docker_config=""
wait_port 127.0.0.11 "$MP"
M="http://127.0.0.11:$MP"
code() {
    local url=$1; shift
    curl -sS -o "$T/body" -D "$T/hdr" -w '%{http_code}' "$@" "$url"
}
hdr() {
    tr -d '\r' <"$T/hdr" | awk -v h="$1" 'tolower($1)==h":"{sub(/^[^:]*: */, ""); print}'
}

note "manifest without a token: the upstream's 401 and its WWW-Authenticate, unchanged"
[ "$(code "$M/v2/priv/app/manifests/v1?ns=$REG")" = 401 ] || fail "no 401"
hdr www-authenticate | grep -q "realm=\"http://$TOK/token\"" || fail "WWW-Authenticate: $(hdr www-authenticate)"
note "with alice's token (forwarded to the upstream)"
atok=$(token repository:priv/app:pull -u alice:s3cret)
[ "$(code "$M/v2/priv/app/manifests/v1?ns=$REG" -H "Authorization: Bearer $atok" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json')" = 200 ] || fail "token not forwarded"
cmp "$T/body" "$T/manifest-priv" || fail "private manifest differs"
note "a token for another repository: the upstream's refusal is passed on"
otok=$(token repository:pub/app:pull)
c=$(code "$M/v2/priv/app/manifests/v1?ns=$REG" -H "Authorization: Bearer $otok")
[ "$c" = 401 ] || [ "$c" = 403 ] || fail "wrong token answered $c"

note "public blob through the mesh (anonymous token flow by the task)"
[ "$(code "$M/v2/pub/app/blobs/$PUBL?ns=$REG")" = 200 ] || { cat "$T/body"; fail "public blob"; }
cmp "$T/body" "$T/layer-pub" || fail "public blob differs"
note "private blob: never fetched with a client's credentials -> 404 (client asks the upstream)"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -H "Authorization: Bearer $atok")" = 404 ] ||
    fail "private blob with a client token: $(cat "$T/body")"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG")" = 404 ] || fail "private blob anonymous"

if [ "$(id -u)" = 0 ] && command -v containerd >/dev/null && command -v ctr >/dev/null; then
    d=$T/ctrd
    mkdir -p "$d" "$T/certs.d/$REG"
    cat >"$d/config.toml" <<TOML
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd-ttrpc.sock"
TOML
    bg_start "$d/containerd.log" containerd --config "$d/config.toml"
    CPID=$CF_LAST_PID
    # stop containerd first (its mounts), then testlib's cleanup with the test's exit status
    ctrd_cleanup() {
        local rc=$?
        set +e
        kill "$CPID" 2>/dev/null
        wait "$CPID" 2>/dev/null
        umount -R "$d/root" 2>/dev/null
        (exit $rc)
        cf_cleanup
    }
    trap ctrd_cleanup EXIT
    for _ in $(seq 100); do [ -S "$d/containerd.sock" ] && break; sleep 0.1; done
    cat >"$T/certs.d/$REG/hosts.toml" <<TOML
server = "http://$REG"

[host."$M"]
  capabilities = ["pull", "resolve"]
TOML
    note "containerd: public image through the mirror (401 flow for the manifest)"
    before=$(metric 1 mirror_bytes_total)
    ctr -a "$d/containerd.sock" content fetch --hosts-dir "$T/certs.d" --plain-http "$REG/pub/app:v1" \
        >"$T/pull1.log" 2>&1 || { tail "$T/pull1.log"; fail "containerd public pull"; }
    ctr -a "$d/containerd.sock" content get "$PUBL" | cmp - "$T/layer-pub" || fail "public layer differs"
    note "containerd: private image with -u (the private layer from the upstream)"
    ctr -a "$d/containerd.sock" content fetch --hosts-dir "$T/certs.d" --plain-http -u alice:s3cret \
        "$REG/priv/app:v1" >"$T/pull2.log" 2>&1 || { tail "$T/pull2.log"; fail "containerd private pull"; }
    ctr -a "$d/containerd.sock" content get "$PRIVL" | cmp - "$T/layer-priv" || fail "private layer differs"
    note "mirror bytes during the pulls: $(($(metric 1 mirror_bytes_total) - before))"
else
    note "containerd part skipped (needs root and containerd)"
fi
finish_peers
echo PASS
