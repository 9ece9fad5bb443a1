#!/usr/bin/env bash
# chunkfly-mount's registry backend against a real docker-registry: ranged reads (whole blob,
# a range, 8 threads of random reads compared with the source), size from the blob table or a
# HEAD; token auth (our token server): base64 "auth", a static registry_token, renewed
# credentials (set_auth), wrong password and private repository refused clearly; https with
# ca_cert_files; a registry stopped mid-blob and a hung one fail clearly within the configured
# timeout, and the same backend reads again once the registry is back.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/mount/backend_lib.sh"
. "$CHUNKFLY_SRC/tests/integration/proto/registry_lib.sh"

start_registry_cfg plain 127.0.0.1 ""
PLAIN_PID=$REGISTRY_PID
PLAIN=$REG
head -c 5000000 /dev/urandom >"$T/blob"
D=$(push_blob "$REG" lib/app "$T/blob")
ID=${D#sha256:}
SIZE=$(stat -c %s "$T/blob")
registry_config "$T/plain.json" "$REG" lib/app '"timeout": 3, "retry_limit": 2'

note "whole blob, size learned by HEAD, 1 MiB pieces"
out=$("$READ" --compare "$T/blob" "$T/plain.json" "$ID") || { echo "$out"; fail "read failed"; }
[ "$(field "$out" sha256)" = "$ID" ] || fail "sha256 differs: $out"
[ "$(stat_of "$out" registry)" = "$SIZE" ] || fail "registry bytes: $out"
[ "$(stat_of "$out" healthy)" = -1 ] || fail "no proxy configured: $out"

note "a range with the size from the blob table; a range running past the end is cut there"
out=$("$READ" --size "$SIZE" --range 1234567:100000 --chunk 7000 --compare "$T/blob" \
    "$T/plain.json" "$ID") || { echo "$out"; fail "range failed"; }
[ "$(field "$out" bytes)" = 100000 ] || fail "range: $out"
out=$("$READ" --size "$SIZE" --range $((SIZE - 10)):100 "$T/plain.json" "$ID")
[ "$(field "$out" bytes)" = 10 ] || fail "tail range: $out"

note "8 threads x 64 random reads on one source"
out=$("$READ" --threads 8 --reads 64 --chunk 300000 --compare "$T/blob" "$T/plain.json" "$ID") ||
    { echo "$out"; fail "random reads failed"; }

note "unknown blob: ENOENT naming it"
out=$("$READ" "$T/plain.json" "$(printf '0%.0s' $(seq 64))" 2>"$T/err") && fail "unknown blob read"
grep -q "error ENOENT" <<<"$out" || fail "unknown blob: $out"
grep -q "not found in repository lib/app" "$T/err" || fail "unknown blob message: $(cat "$T/err")"

note "token auth: auth (base64 user:pass), registry_token, set_auth, refusals"
start_token_registry
REG=$TREG
DP=$(push_tok tok/private "$T/blob")
[ "$DP" = "$D" ] || fail "push to the token registry"
ALICE=$(printf alice:s3cret | base64)
registry_config "$T/tok.json" "$REG" tok/private "\"auth\": \"$ALICE\""
out=$("$READ" --size "$SIZE" --compare "$T/blob" "$T/tok.json" "$ID") ||
    { echo "$out"; fail "read with auth failed"; }
grep -q "GET user=alice scope=repository:tok/private:pull status=200" "$T/tok/log" ||
    fail "no token for alice: $(cat "$T/tok/log")"

registry_config "$T/anon.json" "$REG" tok/private
out=$("$READ" --size "$SIZE" --range 0:100 "$T/anon.json" "$ID" 2>"$T/err") && fail "anonymous read of a private repo"
grep -q "error EACCES" <<<"$out" || fail "anonymous: $out"
grep -q "denied for user anonymous" "$T/err" || fail "anonymous message: $(cat "$T/err")"
note "... renewed credentials (mount_backend_set_auth) make the same backend work"
out=$("$READ" --size "$SIZE" --auth "$ALICE" --range 0:100000 --compare "$T/blob" "$T/anon.json" "$ID") ||
    { echo "$out"; fail "read after set_auth failed"; }

BAD=$(printf alice:nope | base64)
registry_config "$T/bad.json" "$REG" tok/private "\"auth\": \"$BAD\""
out=$("$READ" --size "$SIZE" --range 0:100 "$T/bad.json" "$ID" 2>"$T/err") && fail "wrong password read"
grep -q "error EACCES" <<<"$out" || fail "wrong password: $out"
grep -q "authentication failed for user alice" "$T/err" || fail "wrong password message: $(cat "$T/err")"
registry_config "$T/notb64.json" "$REG" tok/private '"auth": "not base64!"'
out=$("$READ" "$T/notb64.json" "$ID") && fail "bad auth accepted"
grep -q "auth is not base64 of user:password" <<<"$out" || fail "bad auth message: $out"

note "... a static registry_token (no credentials), and one the registry refuses"
before=$(grep -c "user=alice" "$T/tok/log")
registry_config "$T/rt.json" "$REG" tok/private \
    "\"registry_token\": \"$(ptoken repository:tok/private:pull)\""
out=$("$READ" --size "$SIZE" --compare "$T/blob" "$T/rt.json" "$ID") ||
    { echo "$out"; fail "read with registry_token failed"; }
[ "$(grep -c "user=alice" "$T/tok/log")" = $((before + 1)) ] || fail "registry_token: token server used"
registry_config "$T/rt2.json" "$REG" tok/private "\"registry_token\": \"garbage\", \"auth\": \"$ALICE\""
out=$("$READ" --size "$SIZE" --range 0:4096 --compare "$T/blob" "$T/rt2.json" "$ID") ||
    { echo "$out"; fail "refused registry_token did not fall back to the token flow"; }

note "https: ca_cert_files trusts the registry's certificate; without it a TLS error"
mkdir -p "$T/tls"
cp -r "$T/plain/data" "$T/tls/data" # the same blobs, served over TLS
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tls/key.pem" -out "$T/tls/cert.pem" \
    -days 2 -subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
start_registry_cfg tls 127.0.0.1 "  tls: {certificate: $T/tls/cert.pem, key: $T/tls/key.pem}"
registry_config "$T/tls.json" "$REG" lib/app "\"ca_cert_files\": [\"$T/tls/cert.pem\"]"
sed -i 's/"scheme": "http"/"scheme": "https"/' "$T/tls.json"
out=$("$READ" --range 0:300000 --compare "$T/blob" "$T/tls.json" "$ID") ||
    { echo "$out"; fail "https with ca_cert_files failed"; }
sed -i 's/"ca_cert_files": \[[^]]*\]/"skip_verify": false/' "$T/tls.json"
out=$("$READ" --range 0:100 "$T/tls.json" "$ID" 2>"$T/err") && fail "untrusted certificate accepted"
grep -q "error EPROTO" <<<"$out" || fail "untrusted: $out"
sed -i 's/"skip_verify": false/"skip_verify": true/' "$T/tls.json"
"$READ" --range 0:100 "$T/tls.json" "$ID" >/dev/null || fail "skip_verify did not skip"

note "registry stopped mid-blob: a clear error at once; the same backend reads again once it is back"
registry_config "$T/down.json" "$PLAIN" lib/app '"timeout": 2, "retry_limit": 2'
rm -f "$T/s1" "$T/s2" "$T/s1.ready" "$T/s2.ready"
"$READ" --size "$SIZE" --compare "$T/blob" --step 1048576:"$T/s1" --step "$SIZE":"$T/s2" \
    "$T/down.json" "$ID" >"$T/down.out" 2>"$T/down.err" &
rpid=$!
for _ in $(seq 200); do [ -e "$T/s1.ready" ] && break; sleep 0.05; done
[ -e "$T/s1.ready" ] || fail "reader did not reach 1 MiB"
bg_stop "$PLAIN_PID"
touch "$T/s1"
for _ in $(seq 200); do [ -e "$T/s2.ready" ] && break; sleep 0.05; done
[ -e "$T/s2.ready" ] || { cat "$T/down.out"; fail "the read did not fail with the registry stopped"; }
bg_start "$T/plain/log2" docker-registry serve "$T/plain/config.yml" # same address, same data
wait_port 127.0.0.1 "${PLAIN#*:}"
touch "$T/s2"
rc=0
wait "$rpid" || rc=$?
out=$(cat "$T/down.out")
echo "$out"
[ "$rc" = 0 ] || { cat "$T/down.err"; fail "no read after the registry came back"; }
grep -q "^error ECONNREFUSED after" <<<"$out" || fail "stopped registry: $out"
ms=$(awk '$1=="error"{print $4; exit}' <<<"$out")
[ "$ms" -lt 2500 ] || fail "stopped registry: the error took $ms ms (timeout 2 s)"
grep -q "registry $PLAIN: .*Connection refused" "$T/down.err" || fail "stopped registry message: $(cat "$T/down.err")"
[ "$(field "$out" sha256)" = "$ID" ] || fail "sha256 after the registry came back: $out"

note "hung registry: ETIMEDOUT within the timeout (2 s)"
bg_start "$T/silent.stderr" "$PY" "$HERE/dead_server.py" --mode silent --port-file "$T/silent.port"
for _ in $(seq 50); do [ -s "$T/silent.port" ] && break; sleep 0.1; done
registry_config "$T/hung.json" "127.0.0.1:$(cat "$T/silent.port")" lib/app '"timeout": 2, "retry_limit": 1'
t0=$(date +%s%N)
out=$("$READ" --size "$SIZE" --range 0:4096 "$T/hung.json" "$ID" 2>"$T/err") && fail "read from a hung registry"
ms=$((($(date +%s%N) - t0) / 1000000))
grep -q "error ETIMEDOUT" <<<"$out" || fail "hung registry: $out $(cat "$T/err")"
note "hung registry failed after $ms ms"
[ "$ms" -lt 7000 ] || fail "hung registry took $ms ms (timeout 2 s)"
echo PASS
