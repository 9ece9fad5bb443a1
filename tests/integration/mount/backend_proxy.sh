#!/usr/bin/env bash
# chunkfly-mount's registry backend behind a proxy, with real servers: a docker-registry and a
# chunkfly-peer. proxy.url = unix:<the peer's socket> (the local API) and = http://<the peer's
# registry mirror> (absolute-form requests, as nydusd sends them) serve every byte; the peer
# killed in the middle of a blob: the next read goes to the registry at once (within the
# timeout), the fallback is counted, and reads go back to the peer once it is healthy again; a
# hung peer (SIGSTOP) costs one read the timeout, then the registry serves; without fallback a dead peer is a clear error; a failing ping_url moves reads to the registry.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/mount/backend_lib.sh"
. "$CHUNKFLY_SRC/tests/integration/peer/daemon_lib.sh"

MIB=1048576
start_registry 127.0.0.9
REPO=test/mount
make_blob "$T/blob" 9
push_blob "$REPO" "$T/blob"
ID=${BLOB#sha256:}
SIZE=$(stat -c %s "$T/blob")
MP=$(free_port 127.0.0.11)
start_peer 1 --set mirror_listen="127.0.0.11:$MP" --set mirror_upstreams="$REGISTRY"
wait_port 127.0.0.11 "$MP"
SOCK="$T/p1.sock"

note "proxy.url = unix: every byte from the peer (which fetched from the registry)"
registry_config "$T/unix.json" "$REGISTRY" "$REPO" '"timeout": 3' \
    "{\"url\": \"unix:$SOCK\", \"fallback\": true, \"check_interval\": 1}"
out=$("$READ" --size "$SIZE" --compare "$T/blob" "$T/unix.json" "$ID") || { echo "$out"; fail "unix proxy read"; }
[ "$(field "$out" sha256)" = "$ID" ] || fail "sha256: $out"
[ "$(stat_of "$out" proxy)" = "$SIZE" ] && [ "$(stat_of "$out" registry)" = 0 ] ||
    fail "unix proxy bytes: $out"
[ "$(stat_of "$out" healthy)" = 1 ] && [ "$(stat_of "$out" fallbacks)" = 0 ] || fail "unix: $out"
[ "$(metric 1 bytes_from_origin_total)" -ge "$SIZE" ] || fail "the peer did not fetch it"

note "proxy.url = http://<the peer's mirror>: absolute-form requests, size by HEAD through it"
registry_config "$T/http.json" "$REGISTRY" "$REPO" '"timeout": 3' \
    "{\"url\": \"http://127.0.0.11:$MP\", \"fallback\": true, \"check_interval\": 1}"
before=$(metric 1 mirror_bytes_total)
out=$("$READ" --compare "$T/blob" "$T/http.json" "$ID") || { echo "$out"; fail "http proxy read"; }
[ "$(stat_of "$out" proxy)" = "$SIZE" ] && [ "$(stat_of "$out" registry)" = 0 ] ||
    fail "http proxy bytes: $out"
[ $(($(metric 1 mirror_bytes_total) - before)) -ge "$SIZE" ] || fail "the mirror served less"

note "peer killed after 3 MiB: reads continue from the registry; back to the peer after restart"
rm -f "$T/s1" "$T/s2" "$T/s1.ready" "$T/s2.ready"
"$READ" --size "$SIZE" --compare "$T/blob" --step $((3 * MIB)):"$T/s1" --step $((6 * MIB)):"$T/s2" \
    "$T/unix.json" "$ID" >"$T/kill.out" 2>"$T/kill.err" &
rpid=$!
for _ in $(seq 200); do [ -e "$T/s1.ready" ] && break; sleep 0.05; done
[ -e "$T/s1.ready" ] || fail "reader did not reach 3 MiB"
kill -9 "${PEER_PID[1]}"
wait "${PEER_PID[1]}" 2>/dev/null || true
touch "$T/s1"
for _ in $(seq 400); do [ -e "$T/s2.ready" ] && break; sleep 0.05; done
[ -e "$T/s2.ready" ] || { cat "$T/kill.out"; fail "reader did not reach 6 MiB"; }
start_peer 1 --set mirror_listen="127.0.0.11:$MP" --set mirror_upstreams="$REGISTRY"
sleep 2.5 # > check_interval: the checker has seen the peer again
touch "$T/s2"
rc=0
wait "$rpid" || rc=$?
out=$(cat "$T/kill.out")
[ "$rc" = 0 ] || { echo "$out"; cat "$T/kill.err"; fail "reads failed while the peer was down"; }
echo "$out"
[ "$(field "$out" sha256)" = "$ID" ] || fail "sha256 after the fallback: $out"
resume=$(awk '$1=="resume_ms"{print $2; exit}' <<<"$out")
[ "$resume" -lt 3000 ] || fail "first read after the kill took $resume ms (timeout 3 s)"
[ "$(stat_of "$out" registry)" = $((3 * MIB)) ] || fail "registry served other than the 3 MiB: $out"
[ "$(stat_of "$out" proxy)" = $((SIZE - 3 * MIB)) ] || fail "proxy bytes: $out"
[ "$(stat_of "$out" fallbacks)" -ge 3 ] && [ "$(stat_of "$out" errors)" = 0 ] || fail "counters: $out"
grep -q "reads go to the registry" "$T/kill.err" || fail "no log line for the fallback"
grep -q "healthy again" "$T/kill.err" || fail "no log line for the recovery"

note "peer hung (SIGSTOP) before a read: that read falls back after the 3 s timeout"
rm -f "$T/h1" "$T/h1.ready"
( for _ in $(seq 100); do [ -e "$T/h1.ready" ] && break; sleep 0.05; done
  kill -STOP "${PEER_PID[1]}"; touch "$T/h1" ) &
out=$("$READ" --size "$SIZE" --compare "$T/blob" --step $MIB:"$T/h1" "$T/unix.json" "$ID" 2>"$T/err") ||
    { echo "$out"; fail "reads failed while the peer hung"; }
kill -CONT "${PEER_PID[1]}"
resume=$(awk '$1=="resume_ms"{print $2; exit}' <<<"$out")
note "first read after the hang: $resume ms"
[ "$resume" -ge 2500 ] && [ "$resume" -lt 6000 ] || fail "hung peer: first read took $resume ms"
[ "$(stat_of "$out" registry)" = $((SIZE - MIB)) ] || fail "hung peer: $out"

note "fallback false: a dead peer is a clear error naming the proxy"
kill -9 "${PEER_PID[1]}"
wait "${PEER_PID[1]}" 2>/dev/null || true
registry_config "$T/nofb.json" "$REGISTRY" "$REPO" '"timeout": 3' "{\"url\": \"unix:$SOCK\", \"fallback\": false}"
out=$("$READ" --size "$SIZE" --range 0:4096 "$T/nofb.json" "$ID" 2>"$T/err") && fail "read without the peer"
grep -Eq "error (ECONNREFUSED|ENOENT)" <<<"$out" || fail "no fallback: $out"
grep -q "proxy unix:$SOCK" "$T/err" || fail "no fallback message: $(cat "$T/err")"

note "a failing ping_url marks the proxy unhealthy: reads go to the registry"
start_peer 1 --set mirror_listen="127.0.0.11:$MP" --set mirror_upstreams="$REGISTRY"
registry_config "$T/ping.json" "$REGISTRY" "$REPO" '"timeout": 3' \
    "{\"url\": \"http://127.0.0.11:$MP\", \"ping_url\": \"http://127.0.0.11:$MP/nothing-here\", \"fallback\": true, \"check_interval\": 1}"
rm -f "$T/p1s" "$T/p1s.ready"
( for _ in $(seq 100); do [ -e "$T/p1s.ready" ] && break; sleep 0.05; done; sleep 1.6; touch "$T/p1s" ) &
out=$("$READ" --size "$SIZE" --compare "$T/blob" --step $((2 * MIB)):"$T/p1s" "$T/ping.json" "$ID" 2>"$T/err") ||
    { echo "$out"; fail "ping_url read"; }
[ "$(stat_of "$out" proxy)" = $((2 * MIB)) ] && [ "$(stat_of "$out" registry)" = $((SIZE - 2 * MIB)) ] ||
    fail "ping_url: $out"
[ "$(stat_of "$out" healthy)" = 0 ] || fail "ping_url: still healthy: $out"
grep -q "failed its health check" "$T/err" || fail "no health check message: $(cat "$T/err")"

note "token-auth registry through the peer: the config's credentials reach the peer's origin fetch"
start_token_registry
make_blob "$T/blob2" 2
D2=$(push_tok tok/private "$T/blob2")
ALICE=$(printf alice:s3cret | base64)
registry_config "$T/tokp.json" "$TREG" tok/private "\"timeout\": 3, \"auth\": \"$ALICE\"" \
    "{\"url\": \"unix:$SOCK\", \"fallback\": false}"
out=$("$READ" --compare "$T/blob2" "$T/tokp.json" "${D2#sha256:}" 2>"$T/err") ||
    { echo "$out"; cat "$T/err"; fail "private blob through the peer"; }
[ "$(stat_of "$out" proxy)" = "$(stat -c %s "$T/blob2")" ] || fail "private blob: $out"
grep -q "user=alice scope=repository:tok/private:pull status=200" "$T/tok/log" ||
    fail "the peer did not fetch a token as alice: $(cat "$T/tok/log")"
make_blob "$T/blob3" 1
D3=$(push_tok tok/private "$T/blob3")
registry_config "$T/tokn.json" "$TREG" tok/private '"timeout": 3' "{\"url\": \"unix:$SOCK\", \"fallback\": false}"
out=$("$READ" --size "$(stat -c %s "$T/blob3")" --range 0:4096 "$T/tokn.json" "${D3#sha256:}" 2>"$T/err") &&
    fail "private blob without credentials"
grep -q "error EACCES" <<<"$out" && grep -q "peer: .*(AUTH)" "$T/err" || fail "no credentials: $out $(cat "$T/err")"
echo PASS
