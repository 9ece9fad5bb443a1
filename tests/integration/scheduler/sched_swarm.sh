#!/usr/bin/env bash
# 20 simulated peers (real protocol over TCP) register one 64-piece task at once:
# every piece is granted to the origin exactly once while its holder lives; the grant moves
# when the holder is killed / hangs / freezes (heartbeat expiry); children of a dead parent
# are re-parented; every live peer completes.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/scheduler/lib_sched.sh"

start_sched S --log-level info

note "flash crowd: 20 peers, one 64-piece task"
"$SIM" --sched "$S_MESH" --peers 20 --pieces 64 --timeout 60 >"$T/flash.out" 2>"$T/flash.err" \
    || fail "sim failed: $(cat "$T/flash.out" "$T/flash.err")"
expect "$T/flash.out" complete -eq 20
expect "$T/flash.out" origin_fetches -eq 64
expect "$T/flash.out" max_fetch_per_piece -eq 1
expect "$T/flash.out" grants -eq 64
expect "$T/flash.out" grant_violations -eq 0
expect "$T/flash.out" self_parent -eq 0
expect "$T/flash.out" max_candidates_seen -eq 4   # K by default
[ "$(metric "$S_HTTP" chunkfly_scheduler_origin_grants_total)" = 64 ] || fail "scheduler granted $(metric "$S_HTTP" chunkfly_scheduler_origin_grants_total) pieces"
[ "$(metric "$S_HTTP" chunkfly_scheduler_peers)" = 0 ] || fail "peers left behind after disconnect"

note "the granted peer is killed: its grant moves at once"
"$SIM" --sched "$S_MESH" --peers 20 --pieces 64 --fault kill-granted --fault-after 100 \
    --timeout 60 >"$T/kill.out" 2>"$T/kill.err" || fail "sim failed: $(cat "$T/kill.out" "$T/kill.err")"
expect "$T/kill.out" complete -eq 19
expect "$T/kill.out" grant_violations -eq 0
expect "$T/kill.out" max_fetch_per_piece -le 2   # pieces only the dead peer held come back once
expect "$T/kill.out" elapsed_ms -lt 5000          # no stall wait: the disconnect moved it

note "the granted peer hangs (heartbeats continue): its grant moves after the 5 s stall"
"$SIM" --sched "$S_MESH" --peers 20 --pieces 64 --fault hang-granted --fault-after 100 \
    --timeout 60 >"$T/hang.out" 2>"$T/hang.err" || fail "sim failed: $(cat "$T/hang.out" "$T/hang.err")"
expect "$T/hang.out" complete -eq 19
expect "$T/hang.out" grant_violations -eq 0
expect "$T/hang.out" max_fetch_per_piece -eq 1
expect "$T/hang.out" regranted -ge 1
expect "$T/hang.out" elapsed_ms -lt 15000
grep -q "no origin progress" "$T/S.log" || fail "scheduler did not log the stall"

note "the granted peer freezes (no heartbeats, socket open): host expires after 3 missed beats"
"$SIM" --sched "$S_MESH" --peers 20 --pieces 64 --fault freeze-granted --fault-after 100 \
    --timeout 60 >"$T/freeze.out" 2>"$T/freeze.err" || fail "sim failed: $(cat "$T/freeze.out" "$T/freeze.err")"
expect "$T/freeze.out" complete -eq 19
expect "$T/freeze.out" grant_violations -eq 0
grep -q "no heartbeat for" "$T/S.log" || fail "scheduler did not expire the frozen host"

note "the most popular parent dies: its children get new parents"
"$SIM" --sched "$S_MESH" --peers 20 --pieces 64 --piece-ms 40 --fault kill-parent \
    --fault-after 400 --timeout 60 >"$T/parent.out" 2>"$T/parent.err" \
    || fail "sim failed: $(cat "$T/parent.out" "$T/parent.err")"
expect "$T/parent.out" complete -eq 19
expect "$T/parent.out" reparented -ge 1
expect "$T/parent.out" stale_candidates -eq 0

is_alive "$S_PID" || fail "scheduler died: $(tail -20 "$T/S.log")"
kill -TERM "$S_PID"
rc=0; wait "$S_PID" || rc=$?
[ "$rc" = 0 ] || fail "SIGTERM: exit code $rc: $(tail -5 "$T/S.log")"
grep -q "stopped" "$T/S.log" || fail "no clean shutdown: $(tail -5 "$T/S.log")"
echo PASS
