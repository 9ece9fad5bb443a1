#!/bin/bash
# Mutual TLS on the mesh (docs/security.md): certificates from deploy/make-certs.sh, a real
# docker-registry, chunkfly-scheduler and two chunkfly-peers with tls_* set. A blob goes origin ->
# peer 1 -> peer 2 over TLS with correct bytes. Then the refusals, each seen in the refusing
# daemon's log: plaintext clients on the TLS upload and scheduler ports, a client without a
# certificate, a client certificate from another CA (a real peer, against the scheduler and the
# upload port), and a valid certificate whose identity is not the host id it announces (refused
# by the scheduler; the real host keeps its connection), an announced address that is not the
# connection's source, and (a scheduler with check_source = false, as for peers behind NAT) a
# parent whose announced address answers with another node's valid certificate (the child
# refuses it, takes no byte from it and completes from the origin). Last, certificates
# re-issued and
# reloaded with SIGHUP (a broken key file is refused and the old certificate stays).
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"
command -v openssl >/dev/null || skip "openssl CLI missing"

PKI=$T/pki
ROGUE=$T/rogue
"$CHUNKFLY_SRC/deploy/make-certs.sh" "$PKI" scheduler peer-1 peer-2 peer-4 peer-5 peer-6 peer-7 >/dev/null
"$CHUNKFLY_SRC/deploy/make-certs.sh" "$ROGUE" peer-3 >/dev/null
tls() { # tls DIR NAME [CA]: the --set flags of node NAME
    echo "--set tls_cert=$1/$2.crt --set tls_key=$1/$2.key --set tls_ca=${3:-$1/ca.crt}"
}
wait_log() { # wait_log FILE REGEX: until FILE has a line matching REGEX (5 s)
    for _ in $(seq 50); do grep -Eq "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    fail "$1: no line matching '$2'"
}
check_sha() { [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "${BLOB#sha256:}" ] || fail "$1: sha256 differs"; }

start_registry 127.0.0.9
REPO=test/tls
make_blob "$T/blob" 12
push_blob "$REPO" "$T/blob"
SIZE=$(stat -c %s "$T/blob")
# shellcheck disable=SC2046  # word splitting of the flags is meant
start_scheduler $(tls "$PKI" scheduler)
SLOG=$(ls "$T"/sched.log.*)
wait_log "$SLOG" "mutual TLS required"
# shellcheck disable=SC2046
for n in 1 2; do start_peer "$n" --set timing.scheduler_retry=1s $(tls "$PKI" "peer-$n"); done
for n in 1 2; do
    grep -q "peer peer-$n: upload .* (mutual TLS)" "$T/peer$n.log" || fail "peer $n: no TLS or wrong host id"
done

note "origin -> peer 1 -> peer 2 over TLS"
get 1 0 "$SIZE" "$T/o1" || fail "peer 1 read"
check_sha "$T/o1"
[ "$(metric 1 schedulers_connected)" = 1 ] || fail "peer 1 not connected to the TLS scheduler"
sleep 0.5 # peer 1 reports its pieces
get 2 0 "$SIZE" "$T/o2" || fail "peer 2 read"
check_sha "$T/o2"
p2=$(metric 2 bytes_from_parents_total); o2=$(metric 2 bytes_from_origin_total)
echo "peer 2: parents $p2 origin $o2; peer 1 served $(metric 1 bytes_served_peers_total)"
[ "$p2" -ge "$SIZE" ] || fail "peer 2 got only $p2 bytes from peer 1"
[ "$o2" = 0 ] || fail "peer 2 used the origin"

note "plaintext clients are refused (upload port, scheduler port)"
plain_probe() { # plain_probe HOST PORT: sends a frame header in clear; prints bytes answered
    exec 3<>"/dev/tcp/$1/$2"
    printf 'CFW1\001\000\020\000\000\000\000\000\000\000\000\000' >&3
    timeout 5 cat <&3 | wc -c
    exec 3<&-
}
[ "$(plain_probe 127.0.0.11 "${PEER_LISTEN[1]#*:}")" = 0 ] || fail "upload port answered a plaintext client"
wait_log "$T/peer1.log" "plaintext connection refused"
[ "$(plain_probe 127.0.0.10 "${SCHED#*:}")" = 0 ] || fail "scheduler answered a plaintext client"
wait_log "$SLOG" "plaintext connection refused"

note "no client certificate: refused"
echo | timeout 5 openssl s_client -connect "${PEER_LISTEN[1]}" -CAfile "$PKI/ca.crt" -quiet \
    >"$T/s_client1.out" 2>&1 || true
wait_log "$T/peer1.log" "no client certificate"

note "client certificate of another CA: refused by the upload port and the scheduler"
echo | timeout 5 openssl s_client -connect "${PEER_LISTEN[1]}" -CAfile "$PKI/ca.crt" -quiet \
    -cert "$ROGUE/peer-3.crt" -key "$ROGUE/peer-3.key" >"$T/s_client2.out" 2>&1 || true
wait_log "$T/peer1.log" "certificate is not accepted"
[ "$(metric 1 tls_refused_total)" = 3 ] || fail "peer 1 counted $(metric 1 tls_refused_total) TLS refusals, not 3"
# a real peer with a rogue certificate (it trusts the mesh CA, so only its own cert is wrong)
# shellcheck disable=SC2046
start_peer 3 --set timing.scheduler_retry=1s $(tls "$ROGUE" peer-3 "$PKI/ca.crt")
get 3 0 4096 "$T/o3" || fail "peer 3 read (from the origin)" # connects to the scheduler
cmp "$T/o3" <(head -c 4096 "$T/blob") || fail "peer 3 bytes differ"
wait_log "$SLOG" "certificate is not accepted"
wait_log "$T/peer3.log" "scheduler .* (failed|lost): TLS .*alert"
[ "$(metric 3 schedulers_connected)" = 0 ] || fail "peer 3 (rogue CA) is connected to the scheduler"

note "valid certificate, other host id: refused by the scheduler, no takeover"
# shellcheck disable=SC2046
start_peer 4 --set timing.scheduler_retry=1s --host-id peer-1 $(tls "$PKI" peer-4)
wait_log "$T/peer4.log" "differs from the identity 'peer-4'"
get 4 0 4096 "$T/o4" || fail "peer 4 read (from the origin)"
wait_log "$SLOG" "host id 'peer-1' differs from this connection's certificate identity 'peer-4'"
wait_log "$T/peer4.log" "refused our host id"
grep -q "host reconnected" "$SLOG" && fail "peer 4 took over peer-1's host"
sleep 1.5 # a retry of peer 4 in between
[ "$(metric 1 schedulers_connected)" = 1 ] || fail "peer 1 lost its scheduler connection"
grep -Eq "scheduler .* lost" "$T/peer1.log" && fail "peer 1's scheduler link was dropped"

note "valid certificate, announced address not the connection's source: refused"
# shellcheck disable=SC2046
start_peer 5 --set timing.scheduler_retry=1s --set advertise=127.0.0.99:4100 $(tls "$PKI" peer-5)
get 5 0 4096 "$T/o5" || fail "peer 5 read (from the origin)"
wait_log "$SLOG" "announced address 127.0.0.99 is not this connection's source"
[ "$(metric 5 schedulers_connected)" = 0 ] || fail "peer 5 announced a foreign address"

note "a parent's address answers with another identity: refused, no bytes taken, origin instead"
# Peers behind NAT need check_source = false: the scheduler then cannot check an announced
# address, and the child's check of the parent's certificate is what stops a stand-in. On a
# second scheduler so configured, peer 6 announces the piece-server address 127.0.0.16:$IMP,
# where a TLS server of the mesh CA presents peer-4's certificate; the scheduler sends peer 7
# there for blob 3, which only peer 6 holds.
S1=$SCHED S1_PID=$SCHED_PID S1_PORT=$SCHED_PORT
# shellcheck disable=SC2046
SCHED_PORT='' start_scheduler $(tls "$PKI" scheduler) --set check_source=false
S2_PID=$SCHED_PID
IMP=$(free_port 127.0.0.16)
bg_start "$T/impostor.log" openssl s_server -accept "127.0.0.16:$IMP" -cert "$PKI/peer-4.crt" \
    -key "$PKI/peer-4.key" -CAfile "$PKI/ca.crt" -Verify 1 -quiet
IMP_PID=$CF_LAST_PID
wait_port 127.0.0.16 "$IMP"
# shellcheck disable=SC2046
start_peer 6 --set timing.scheduler_retry=1s --set advertise="127.0.0.16:$IMP" $(tls "$PKI" peer-6)
# shellcheck disable=SC2046
start_peer 7 --set timing.scheduler_retry=1s $(tls "$PKI" peer-7)
make_blob "$T/blob3" 4
push_blob "$REPO" "$T/blob3"
get 6 0 "$(stat -c %s "$T/blob3")" "$T/b6" || fail "peer 6 read of blob 3"
[ "$(metric 6 schedulers_connected)" = 1 ] || fail "peer 6 is not connected to scheduler 2"
sleep 0.5 # peer 6 reports its pieces
get 7 0 "$(stat -c %s "$T/blob3")" "$T/b7" || fail "peer 7 read of blob 3"
cmp "$T/b7" "$T/blob3" || fail "blob 3 differs on peer 7"
wait_log "$T/peer7.log" "certificate identity 'peer-4' is not the expected host 'peer-6'"
echo "peer 7: parents $(metric 7 bytes_from_parents_total) origin $(metric 7 bytes_from_origin_total)"
[ "$(metric 7 bytes_from_parents_total)" = 0 ] || fail "peer 7 counted bytes from the impostor"
[ "$(metric 7 bytes_from_origin_total)" -ge "$(stat -c %s "$T/blob3")" ] ||
    fail "peer 7 did not complete blob 3 from the origin"
bg_stop "$IMP_PID"
for n in 6 7; do
    kill "${PEER_PID[$n]}"
    wait "${PEER_PID[$n]}" || fail "peer $n exited $? after SIGTERM"
done
kill "$S2_PID"
wait "$S2_PID" || fail "scheduler 2 exited $? after SIGTERM"
SCHED=$S1 SCHED_PID=$S1_PID SCHED_PORT=$S1_PORT

note "SIGHUP reloads certificates: new connections get the new one, open ones stay"
served_fp() { # served_fp ADDR: fingerprint of the certificate the TLS server at ADDR presents
    echo | timeout 5 openssl s_client -connect "$1" -CAfile "$PKI/ca.crt" \
        -cert "$PKI/peer-2.crt" -key "$PKI/peer-2.key" 2>/dev/null |
        openssl x509 -noout -fingerprint -sha256
}
old=$(served_fp "${PEER_LISTEN[1]}")
"$CHUNKFLY_SRC/deploy/make-certs.sh" "$PKI" peer-1 scheduler >/dev/null # re-issued, new keys
kill -HUP "${PEER_PID[1]}" "$SCHED_PID"
wait_log "$T/peer1.log" "SIGHUP: TLS files reloaded"
wait_log "$SLOG" "SIGHUP: TLS files reloaded"
new=$(served_fp "${PEER_LISTEN[1]}")
[ -n "$new" ] && [ "$new" != "$old" ] || fail "peer 1 still presents its old certificate"
[ "$new" = "$(openssl x509 -in "$PKI/peer-1.crt" -noout -fingerprint -sha256)" ] || fail "not the new cert"
cp "$PKI/peer-1.key" "$T/peer-1.key.good"
echo broken >"$PKI/peer-1.key"
kill -HUP "${PEER_PID[1]}"
wait_log "$T/peer1.log" "SIGHUP: TLS files not reloaded, the old ones stay in use: tls_key"
cp "$T/peer-1.key.good" "$PKI/peer-1.key"
[ "$(served_fp "${PEER_LISTEN[1]}")" = "$new" ] || fail "a failed reload changed the certificate"

# the mesh still works for the real hosts: peer 2 reads a new blob peer 1 fetched
make_blob "$T/blob2" 6
push_blob "$REPO" "$T/blob2"
get 1 0 "$(stat -c %s "$T/blob2")" "$T/n1" || fail "peer 1 read of blob 2"
sleep 0.5
get 2 0 "$(stat -c %s "$T/blob2")" "$T/n2" || fail "peer 2 read of blob 2"
cmp "$T/n2" "$T/blob2" || fail "blob 2 differs on peer 2"
for n in 1 2 3 4 5; do peer_alive_or_fail "$n"; done
finish_peers
kill "$SCHED_PID"
wait "$SCHED_PID" || fail "scheduler exited $? after SIGTERM"
grep -q "Sanitizer\|runtime error:" "$SLOG" && fail "sanitizer report in the scheduler log"
echo PASS
