#!/bin/bash
# Private blobs stay private on the mesh (docs/security.md "Private blobs"): a TLS mesh
# (deploy/make-certs.sh), a token-auth docker-registry (our token server: priv/app only for
# alice, bob a known user without access), a scheduler and peers. Peer 1 caches a private blob
# (alice's credentials) and a public one. A rogue host with a valid mesh certificate then asks
# peer 1's upload port (mesh_private.py): the private blob without proof, with a token for
# another repository, a bob token, a proof naming another registry, a garbage token -> ERROR
# AUTH each, a malformed ACCESS -> BAD_MESSAGE; alice's pull token -> ACCESS_OK and the piece's
# bytes; the public blob without proof -> served; a host of the trust group (private_peers) ->
# served without proof. Last, peer 2 with alice's credentials gets the private blob from peer 1
# through the mesh (a proof sent when peer 1 asked; no origin bytes), peer 3 with bob's or no
# credentials gets nothing (from peer 1 or the origin).
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"
need_pyjwt
command -v openssl >/dev/null || skip "openssl missing"
PEERDIR="$CHUNKFLY_SRC/tests/integration/peer"

PKI=$T/pki
"$CHUNKFLY_SRC/deploy/make-certs.sh" "$PKI" scheduler peer-1 peer-2 peer-3 rogue trusted-1 >/dev/null
tls() { echo "--set tls_cert=$PKI/$1.crt --set tls_key=$PKI/$1.key --set tls_ca=$PKI/ca.crt"; }

REGISTRY_LOG="{level: info, fields: {service: registry}}" token_registry_start 127.0.0.9 --user alice:s3cret --user bob:b0b --acl priv/app=alice
for r in pub/app priv/app; do
    ptok=$(token "repository:$r:pull,push" -u alice:s3cret)
    head -c 3000000 /dev/urandom >"$T/layer-${r%/*}"
    push_image "$REG" "$r" v1 "$T/layer-${r%/*}" "$T/manifest-${r%/*}" -H "Authorization: Bearer $ptok"
done
PUBL=sha256:$(sha256sum "$T/layer-pub" | cut -d' ' -f1)
PRIVL=sha256:$(sha256sum "$T/layer-priv" | cut -d' ' -f1)
SIZE=$(stat -c %s "$T/layer-priv")

# shellcheck disable=SC2046  # word splitting of the flags is meant
start_scheduler $(tls scheduler)
# shellcheck disable=SC2046
for n in 1 2 3; do
    start_peer "$n" --set timing.scheduler_retry=1s --set docker_config="" \
        --set private_peers="trusted-*, other" --set small_blob=0 $(tls "peer-$n")
done
read_blob() { # read_blob N REPO DIGEST OUT [user:password]
    "$CLIENT_BIN" "$T/p$1.sock" read "$3" "$REG/$2@$3" 0 "$SIZE" "$4" ${5:+"$5"}
}

note "peer 1 caches the private blob (alice) and the public one (anonymous)"
read_blob 1 priv/app "$PRIVL" "$T/p1.priv" alice:s3cret || fail "peer 1: private read"
cmp -s "$T/p1.priv" "$T/layer-priv" || fail "peer 1: private bytes differ"
read_blob 1 pub/app "$PUBL" "$T/p1.pub" || fail "peer 1: public read"
cmp -s "$T/p1.pub" "$T/layer-pub" || fail "peer 1: public bytes differ"

token repository:priv/app:pull -u alice:s3cret >"$T/tok.alice"
token repository:pub/app:pull -u alice:s3cret >"$T/tok.pub"
token repository:priv/app:pull -u bob:b0b >"$T/tok.bob"
echo "eyJub3QiOiJhIHRva2VuIn0.Z2FyYmFnZQ.c2ln" >"$T/tok.garbage"
rogue() { # rogue ID STEP...: mesh_private.py against peer 1 as ID
    local id=$1; shift
    local h=${PEER_LISTEN[1]%:*} p=${PEER_LISTEN[1]#*:}
    "$PY" "$PEERDIR/mesh_private.py" "$h" "$p" "$PKI/$id.crt" "$PKI/$id.key" "$PKI/ca.crt" "$id" "$@"
}
OTHER=127.0.0.9:$(free_port 127.0.0.9)

note "rogue host, valid certificate: every refusal, then a valid proof"
PYTHONPATH=$PEERDIR rogue rogue \
    "avail:$PRIVL:auth" \
    "piece:$PRIVL:0:auth" \
    "access:$PRIVL:$REG/priv/app:$T/tok.pub:auth" \
    "access:$PRIVL:$REG/pub/app:$T/tok.pub:auth" \
    "access:$PRIVL:$REG/priv/app:$T/tok.bob:auth" \
    "access:$PRIVL:$OTHER/priv/app:$T/tok.alice:auth" \
    "access:$PRIVL:$REG/priv/app:$T/tok.garbage:auth" \
    "piece:$PRIVL:0:auth" \
    "access:$PRIVL:$REG/priv/app:$T/tok.alice:ok" \
    "avail:$PRIVL:avail" \
    "piece:$PRIVL:0:data:$T/layer-priv" || fail "rogue host: unexpected answer"
PYTHONPATH=$PEERDIR rogue rogue "access:$PRIVL:$REG:$T/tok.alice:bad" || fail "malformed ACCESS"
refused=$(metric 1 upload_auth_refused_total)
echo "peer 1 refused $refused private-blob requests"
[ "$refused" -ge 7 ] || fail "peer 1 counted $refused AUTH refusals, want >= 7"

note "public blob: served without proof"
PYTHONPATH=$PEERDIR rogue rogue "avail:$PUBL:avail" "piece:$PUBL:0:data:$T/layer-pub" ||
    fail "public blob refused"

note "trust group member (private_peers): served without proof"
PYTHONPATH=$PEERDIR rogue trusted-1 "avail:$PRIVL:avail" "piece:$PRIVL:0:data:$T/layer-priv" ||
    fail "trust group member refused"

note "peer 2 with alice's credentials: the private blob from peer 1 through the mesh"
read_blob 2 priv/app "$PRIVL" "$T/p2.priv" alice:s3cret || fail "peer 2: private read"
cmp -s "$T/p2.priv" "$T/layer-priv" || fail "peer 2: private bytes differ"
p2=$(metric 2 bytes_from_parents_total); o2=$(metric 2 bytes_from_origin_total)
echo "peer 2: parents $p2 origin $o2, proofs sent $(metric 2 access_proofs_sent_total)"
[ "$p2" -ge "$SIZE" ] || fail "peer 2 got only $p2 bytes from peer 1"
[ "$o2" = 0 ] || fail "peer 2 fetched $o2 bytes from the origin"
[ "$(metric 2 access_proofs_sent_total)" -ge 1 ] || fail "peer 2 sent no proof"

note "peer 3 with bob's credentials, then none: nothing from peer 1 nor the origin"
r1=$(metric 1 bytes_served_peers_total)
read_blob 3 priv/app "$PRIVL" "$T/p3.bob" bob:b0b >"$T/p3.err" 2>&1 && fail "peer 3 (bob) read the private blob"
# refused by peer 3's own local API check (error 11 AUTH, "registry ... refused the credentials")
# before any mesh request, or by peer 1 on the mesh: either way the caller is told why
grep -Ei "auth|denied|error 11|refused the credentials" "$T/p3.err" ||
    fail "peer 3: the error does not say access was denied: $(cat "$T/p3.err")"
read_blob 3 priv/app "$PRIVL" "$T/p3.anon" >"$T/p3.err" 2>&1 && fail "peer 3 (anonymous) read the private blob"
[ "$(metric 3 bytes_from_parents_total)" = 0 ] || fail "peer 3 got bytes from a parent"
[ "$(metric 3 bytes_from_origin_total)" = 0 ] || fail "peer 3 got bytes from the origin"
[ "$(metric 1 bytes_served_peers_total)" = "$r1" ] || fail "peer 1 served bytes meanwhile"

finish_peers
note "ok"
