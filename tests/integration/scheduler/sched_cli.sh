#!/usr/bin/env bash
# chunkfly-scheduler command line: --help, config file + flags overriding it, clear errors for
# unknown keys / bad values / busy ports, /healthz and /status answer, SIGINT exits 0.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/scheduler/lib_sched.sh"

"$SCHED" --help | grep -q -- "--listen HOST:PORT" || fail "--help does not document --listen"
"$SCHED" --version | grep -q "chunkfly-scheduler" || fail "--version"

mp=$(free_port); hp=$(free_port); hp2=$(free_port)
cat >"$T/sched.conf" <<CONF
# test config
listen = 127.0.0.1:$mp
http = 127.0.0.1:$hp
max_candidates = 2
[timing]
heartbeat_interval = 1s
CONF
note "config file, --http overrides the file's value"
bg_start "$T/s.log" "$SCHED" --config "$T/sched.conf" --http "127.0.0.1:$hp2" --log-level debug
pid=$CF_LAST_PID
wait_port 127.0.0.1 "$mp"
wait_port 127.0.0.1 "$hp2"
curl -fsS "http://127.0.0.1:$hp2/healthz" | grep -qx ok || fail "/healthz"
curl -fsS "http://127.0.0.1:$hp2/status" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["hosts"] == [] and d["tasks"] == []' \
    || fail "/status is not the expected JSON"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hp2/status/task?id=sha256:nope")
[ "$code" = 404 ] || fail "/status/task of an unknown task answered $code"
(exec 3<>"/dev/tcp/127.0.0.1/$hp") 2>/dev/null && fail "the file's http port is used although --http overrides it"
note "the policy from the config file is in effect (K = 2)"
"$SIM" --sched "127.0.0.1:$mp" --peers 12 --pieces 64 --timeout 30 >"$T/sim.out" 2>&1 || fail "sim: $(cat "$T/sim.out")"
expect "$T/sim.out" max_candidates_seen -eq 2
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" = 0 ] || fail "SIGINT: exit code $rc"
grep -q "stopped" "$T/s.log" || fail "no clean stop"

note "errors name what is wrong"
out=$("$SCHED" --config "$T/nope.conf" 2>&1) && fail "missing config accepted"
echo "$out" | grep -q "nope.conf" || fail "missing config error does not name the file: $out"
printf 'listen = 127.0.0.1:1\nlisten_typo = 1\n' >"$T/bad.conf"
out=$("$SCHED" --config "$T/bad.conf" 2>&1) && fail "unknown key accepted"
echo "$out" | grep -q "listen_typo" || fail "unknown key not named: $out"
out=$("$SCHED" --listen nonsense 2>&1) && fail "bad --listen accepted"
echo "$out" | grep -q "HOST:PORT" || fail "bad --listen message: $out"
out=$("$SCHED" --set max_candidates=99 2>&1) && fail "max_candidates=99 accepted"
echo "$out" | grep -q "max_candidates" || fail "bad value not named: $out"
out=$("$SCHED" --log-level loud 2>&1) && fail "bad log level accepted"
echo "$out" | grep -q "loud" || fail "bad log level not named: $out"
# a busy port is a clear error, not a crash
bg_start "$T/s2.log" "$SCHED" --listen "127.0.0.1:$mp" --http "127.0.0.1:$hp2"
wait_port 127.0.0.1 "$mp"
out=$("$SCHED" --listen "127.0.0.1:$mp" --http "127.0.0.1:$(free_port)" 2>&1) && fail "busy port accepted"
echo "$out" | grep -qi "address already in use" || fail "busy port message: $out"

note "/status lists task digests: refused to clients not on this host unless status_remote"
# needs an address of this host that is not loopback (the traffic stays on the host)
ext=$(ip -4 -o addr show scope global 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')
if [ -z "$ext" ]; then
    note "SKIP: no non-loopback IPv4 address on this host"
else
    for remote in false true; do
        p=$(free_port)
        bg_start "$T/s3.log" "$SCHED" --listen "127.0.0.1:$(free_port)" --http "$ext:$p" \
            --set status_remote=$remote
        wait_port "$ext" "$p"
        code=$(curl -s -o "$T/st.json" -w '%{http_code}' --interface "$ext" "http://$ext:$p/status")
        codet=$(curl -s -o /dev/null -w '%{http_code}' --interface "$ext" "http://$ext:$p/status/task?id=sha256:nope")
        hz=$(curl -s -o /dev/null -w '%{http_code}' --interface "$ext" "http://$ext:$p/healthz")
        echo "from $ext: status_remote=$remote -> /status $code, /status/task $codet, /healthz $hz"
        [ "$hz" = 200 ] || fail "/healthz from $ext: $hz"
        if [ "$remote" = false ]; then
            [ "$code" = 403 ] && [ "$codet" = 403 ] || fail "/status served to $ext: $code/$codet"
            grep -q status_remote "$T/st.json" || fail "the 403 does not name the setting: $(cat "$T/st.json")"
        else
            [ "$code" = 200 ] && [ "$codet" = 404 ] || fail "status_remote=true: $code/$codet"
        fi
        kill "$CF_LAST_PID"; wait "$CF_LAST_PID" 2>/dev/null || true
    done
fi
echo PASS
