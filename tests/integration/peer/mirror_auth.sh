#!/bin/bash
# The peer's registry mirror in front of a token-auth docker-registry (our token server with
# per-repository rules: priv/app only for alice; bob is a known user without access to it): a
# manifest request without a token gets the upstream's 401 and WWW-Authenticate unchanged; with
# the client's token (forwarded) it is answered. Blobs: a public one is served to everyone
# (anonymous, bob); the private one is fetched and cached for alice (Basic: the task uses her
# credentials on this node), then refused to bob (Basic and Bearer) and to anonymous clients
# (the upstream's 401 + WWW-Authenticate) although it is cached, and served again to alice
# (Bearer) from the cache: no new origin bytes. Then containerd pulls the public image through
# the mirror (401 flow, token fetched by containerd; ctr content fetch: the layers are not tars)
# and the private one with -u alice (its private layer from the mirror's cache), content equal
# to the pushed bytes, and with -u bob it gets no private layer. Last, the registry stopped: a
# remembered verdict still serves the cache, an unchecked credential gets a fast 502.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"
need_pyjwt
command -v openssl >/dev/null || skip "openssl missing"

REGISTRY_LOG="{level: info, fields: {service: registry}}" token_registry_start 127.0.0.9 --user alice:s3cret --user bob:b0b --acl priv/app=alice
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

note "public blob: anonymous (the task's anonymous token flow), bob (Basic and Bearer)"
[ "$(code "$M/v2/pub/app/blobs/$PUBL?ns=$REG")" = 200 ] || { cat "$T/body"; fail "public blob"; }
cmp "$T/body" "$T/layer-pub" || fail "public blob differs"
[ "$(code "$M/v2/pub/app/blobs/$PUBL?ns=$REG" -u bob:b0b)" = 200 ] || fail "public blob, bob"
cmp "$T/body" "$T/layer-pub" || fail "public blob differs (bob)"
btok=$(token repository:pub/app:pull -u bob:b0b)
[ "$(code "$M/v2/pub/app/blobs/$PUBL?ns=$REG" -H "Authorization: Bearer $btok")" = 200 ] ||
    fail "public blob, bob's token"

note "private blob, not cached: anonymous gets the upstream's 401 + WWW-Authenticate, bob 401"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG")" = 401 ] || fail "private blob anonymous: $(cat "$T/body")"
hdr www-authenticate | grep -q "realm=\"http://$TOK/token\"" || fail "no WWW-Authenticate"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -u bob:b0b)" = 401 ] || fail "private blob, bob"
[ "$(metric 1 bytes_from_origin_total)" -eq "$(stat -c %s "$T/layer-pub")" ] ||
    fail "origin bytes $(metric 1 bytes_from_origin_total) before alice's pull"

note "alice (Basic) pulls the private blob through the mirror: fetched with her credentials, cached"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -u alice:s3cret)" = 200 ] ||
    { cat "$T/body"; fail "private blob, alice"; }
cmp "$T/body" "$T/layer-priv" || fail "private blob differs (alice)"
origin=$(metric 1 bytes_from_origin_total)
hits=$(metric 1 mirror_cache_hits_total)

note "cached, but still refused: anonymous (401 + WWW-Authenticate), bob (Basic, Bearer), a Range"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG")" = 401 ] || fail "cached private blob anonymous"
hdr www-authenticate | grep -q "realm=\"http://$TOK/token\"" || fail "no WWW-Authenticate (cached)"
grep -q UNAUTHORIZED "$T/body" || fail "no OCI UNAUTHORIZED"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -I)" = 401 ] || fail "cached private blob HEAD anonymous"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -u bob:b0b)" = 401 ] || fail "cached private blob, bob"
btok=$(token repository:priv/app:pull -u bob:b0b)
c=$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -H "Authorization: Bearer $btok" -H 'Range: bytes=0-99')
[ "$c" = 401 ] || [ "$c" = 403 ] || fail "cached private blob, bob's token: $c"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -u alice:wrong)" = 401 ] ||
    fail "cached private blob, a wrong password"
note "bob through a repository he may read: the upstream does not link the blob there"
c=$(code "$M/v2/pub/app/blobs/$PRIVL?ns=$REG" -u bob:b0b)
[ "$c" = 404 ] || fail "private blob named through pub/app: $c"
c=$(code "$M/v2/pub/app/blobs/$PRIVL?ns=$REG")
[ "$c" = 404 ] || fail "private blob named through pub/app, anonymous: $c"

note "alice again (her Bearer token): from the cache, no new origin bytes"
atok=$(token repository:priv/app:pull -u alice:s3cret)
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -H "Authorization: Bearer $atok")" = 200 ] ||
    fail "private blob, alice's token"
cmp "$T/body" "$T/layer-priv" || fail "private blob differs (alice, cached)"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -H "Authorization: Bearer $atok" -H 'Range: bytes=10-19')" = 206 ] ||
    fail "private blob range, alice"
cmp "$T/body" <(tail -c +11 "$T/layer-priv" | head -c 10) || fail "private range differs"
[ "$(metric 1 bytes_from_origin_total)" = "$origin" ] ||
    fail "origin bytes moved: $origin -> $(metric 1 bytes_from_origin_total)"
note "the verdict is remembered: the same token again costs the upstream no HEAD"
heads() { grep -c "\"HEAD /v2/priv/app/blobs/$PRIVL" "$REG_DIR/log" || true; }
h0=$(heads)
[ "$h0" -ge 1 ] || fail "no HEAD of the private blob in the registry's access log"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -H "Authorization: Bearer $atok" -I)" = 200 ] ||
    fail "private blob HEAD, alice's token"
[ "$(hdr content-length)" = "$(stat -c %s "$T/layer-priv")" ] || fail "HEAD length"
[ "$(heads)" = "$h0" ] || fail "the check was asked again: $h0 -> $(heads) HEADs"
[ "$(metric 1 mirror_cache_hits_total)" -ge $((hits + 2)) ] || fail "not served from the cache"
note "refusals sent no blob bytes: mirror bytes $(metric 1 mirror_bytes_total)"

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
    note "containerd: -u bob gets no private layer through the mirror"
    ctr -a "$d/containerd.sock" content fetch --hosts-dir "$T/certs.d" --plain-http -u bob:b0b \
        "$REG/priv/app:v1" >"$T/pull3.log" 2>&1 && fail "containerd pulled priv/app as bob"
    ctr -a "$d/containerd.sock" content get "$PRIVL" >/dev/null 2>&1 && fail "bob's pull stored the private layer"
    note "containerd: private image with -u alice (its layer from the mirror's cache)"
    mb=$(metric 1 mirror_bytes_total)
    ob=$(metric 1 bytes_from_origin_total)
    ctr -a "$d/containerd.sock" content fetch --hosts-dir "$T/certs.d" --plain-http -u alice:s3cret \
        "$REG/priv/app:v1" >"$T/pull2.log" 2>&1 || { tail "$T/pull2.log"; fail "containerd private pull"; }
    ctr -a "$d/containerd.sock" content get "$PRIVL" | cmp - "$T/layer-priv" || fail "private layer differs"
    [ "$(($(metric 1 mirror_bytes_total) - mb))" -ge "$(stat -c %s "$T/layer-priv")" ] ||
        fail "the private layer did not come from the mirror"
    # only the image's small config blob may come from the origin
    [ "$(($(metric 1 bytes_from_origin_total) - ob))" -lt 4096 ] ||
        fail "containerd's pull cost $(($(metric 1 bytes_from_origin_total) - ob)) origin bytes"
    note "mirror bytes during the pulls: $(($(metric 1 mirror_bytes_total) - before))"
else
    note "containerd part skipped (needs root and containerd)"
fi

note "upstream down: a remembered verdict still serves the cache, a new credential gets a fast 502"
atok2=$(token repository:priv/app:pull -u alice:s3cret)
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -H "Authorization: Bearer $atok2" -H 'Range: bytes=0-9')" = 206 ] ||
    fail "alice's new token"
atok3=$(token repository:priv/app:pull -u alice:s3cret)
bg_stop "$REGISTRY_PID"
[ "$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -H "Authorization: Bearer $atok2")" = 200 ] ||
    fail "remembered verdict, upstream down: $(cat "$T/body")"
cmp "$T/body" "$T/layer-priv" || fail "private blob differs (upstream down)"
t0=$(date +%s)
c=$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" -H "Authorization: Bearer $atok3" --max-time 30)
t1=$(date +%s)
[ "$c" = 502 ] || fail "unchecked credential with the upstream down answered $c"
[ $((t1 - t0)) -le 12 ] || fail "the failed check took $((t1 - t0)) s"
# anonymous: its refusal, if still remembered (10 s), else a failed check
c=$(code "$M/v2/priv/app/blobs/$PRIVL?ns=$REG" --max-time 30)
[ "$c" = 401 ] || [ "$c" = 502 ] || fail "anonymous after the upstream went down: $c"
note "upstream down: 502 in $((t1 - t0)) s"
finish_peers
echo PASS
