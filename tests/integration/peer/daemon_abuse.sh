#!/bin/bash
# Bad input on every socket of chunkfly-peer (upload server, local API, HTTP): random bytes,
# huge lengths, bad magic/version, undecodable bodies, messages out of order, unknown tasks,
# overflowing ranges, 300 connections at once, slowloris, 600 pipelined reads taking the file
# that the client never reads. The daemon must stay up, keep serving a correct read, count the
# bad frames, and hold a bounded number of files for the reader that does not read.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

start_registry 127.0.0.9
REPO=test/abuse
make_blob "$T/blob" 3
push_blob "$REPO" "$T/blob"
SIZE=$(stat -c %s "$T/blob")
start_peer 1 --set upload_max_connections=64 --set local_max_connections=64
get 1 0 "$SIZE" "$T/o" || fail "read"
ip=${PEER_LISTEN[1]%:*}; port=${PEER_LISTEN[1]##*:}

note "upload server"
python3 "$(dirname "$0")/daemon_abuse.py" tcp "$ip" "$port" 12 || fail "abuse script (tcp)"
peer_alive_or_fail 1
note "upload server: 60 connections half-send a 1 MiB frame before HELLO"
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
rss0=$(rss_kib "${PEER_PID[1]}")
coproc HALF { python3 "$(dirname "$0")/daemon_abuse.py" halfsent tcp "$ip" "$port" 60; }
read -r -u "${HALF[0]}" line || fail "halfsent script failed"
rss1=$(rss_kib "${PEER_PID[1]}")
echo "$line; peer RSS ${rss0} KiB -> ${rss1} KiB"
echo >&"${HALF[1]}"
wait "$HALF_PID" || true
# each would hold up to 1 MiB without the pre-HELLO body limit (60 MiB in all)
[ $((rss1 - rss0)) -lt $((16 * 1024)) ] || fail "half-sent frames grew the peer by $((rss1 - rss0)) KiB"
peer_alive_or_fail 1
note "local API"
python3 "$(dirname "$0")/daemon_abuse.py" unix "$T/p1.sock" 12 || fail "abuse script (unix)"
peer_alive_or_fail 1
note "local API: 600 reads taking the file, pipelined, answers not read"
nfd() { ls "/proc/$1/fd" | wc -l; }
fd0=$(nfd "${PEER_PID[1]}")
coproc FLOOD { python3 "$(dirname "$0")/daemon_abuse.py" fdflood "$T/p1.sock" "$BLOB" \
    "$REGISTRY/$REPO@$BLOB" 600; }
read -r -u "${FLOOD[0]}" line || fail "fdflood script failed"
sleep 1
fd1=$(nfd "${PEER_PID[1]}")
echo >&"${FLOOD[1]}"
read -r -u "${FLOOD[0]}" line || fail "fdflood script failed reading the answers"
wait "$FLOOD_PID" || true
echo "peer open files ${fd0} -> ${fd1} while the answers sat unread; client: $line"
# without the queue's weight per passed descriptor, ~100,000 answers (and files) fit before
# the queue looks congested; with it ~64, and the connection takes at most 256 reads
[ $((fd1 - fd0)) -lt 100 ] || fail "the unread answers held $((fd1 - fd0)) open files"
set -- $line
[ "$2" -ge 1 ] && [ "$6" -ge 1 ] && [ $(($2 + $4)) -eq 600 ] && [ "$8" -eq "$2" ] ||
    fail "unexpected answers: $line"
peer_alive_or_fail 1
note "HTTP"
for _ in $(seq 20); do
    head -c 3000 /dev/urandom | curl -s -m 2 --data-binary @- "http://${PEER_HTTP[1]}/metrics" >/dev/null || true
    printf 'GET /%s HTTP/1.1\r\nHost: x\r\n\r\n' "$(head -c 20000 /dev/zero | tr '\0' a)" |
        timeout 2 bash -c "exec 3<>/dev/tcp/${PEER_HTTP[1]%:*}/${PEER_HTTP[1]##*:}; cat >&3; cat <&3 >/dev/null" || true
done
peer_alive_or_fail 1

note "/status (task digests) refused to clients not on this host"
ext=$(ip -4 -o addr show scope global 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')
if [ -z "$ext" ]; then
    note "SKIP: no non-loopback IPv4 address on this host"
else
    hp=$(free_port)
    bg_start "$T/peer9.log" "$PEER_BIN" --listen "127.0.0.19:$(free_port 127.0.0.19)" --http "$ext:$hp" \
        --cache-dir "$T/cache9" --api-socket "$T/p9.sock" --set mirror_listen=
    p9=$CF_LAST_PID
    wait_port "$ext" "$hp"
    code=$(curl -s -o "$T/st9" -w '%{http_code}' --interface "$ext" "http://$ext:$hp/status")
    hz=$(curl -s -o /dev/null -w '%{http_code}' --interface "$ext" "http://$ext:$hp/healthz")
    echo "from $ext: /status $code, /healthz $hz"
    [ "$code" = 403 ] && grep -q status_remote "$T/st9" || fail "/status served to $ext: $code"
    [ "$hz" = 200 ] || fail "/healthz from $ext: $hz"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://${PEER_HTTP[1]}/status")
    [ "$code" = 200 ] || fail "/status over loopback: $code"
    kill "$p9"; wait "$p9" 2>/dev/null || true
fi

note "still serving correctly"
get 1 0 "$SIZE" "$T/o2" || fail "read after abuse"
cmp "$T/blob" "$T/o2" || fail "bytes differ after abuse"
bad=$(metric 1 bad_frames_total)
echo "bad frames counted: $bad"
[ "$bad" -gt 5 ] || fail "bad frames not counted"
[ "$(metric 1 upload_connections)" -le 2 ] || fail "upload connections linger: $(metric 1 upload_connections)"
[ "$(metric 1 local_connections)" -le 2 ] || fail "local connections linger: $(metric 1 local_connections)"
kill "${PEER_PID[1]}"
wait "${PEER_PID[1]}" || fail "exit code $? after SIGTERM"
finish_peers
echo PASS
