#!/bin/bash
# A `scheduler` entry that is a name (scheduler = NAME:PORT, as a headless Service gives): the
# peer resolves it into every address, re-resolves it every scheduler_resolve_interval and its
# table follows. The peer runs in a mount namespace of its own whose /etc/hosts is a bind mount
# of a test file (the system's is not touched), rewritten in place during the test:
#   no record yet   -> a clear warning, 0 schedulers, the read comes from the origin; retried
#   2 records       -> both join (sorted); a task goes to the rendezvous pick (SHA-256 check)
#   the task's scheduler replaced by a third -> the third joins, the old one leaves after the
#                      task moved (its scheduler sees the peer go), the task is on the new pick
# Schedulers on 127.0.0.51..53, one port; the peer on 127.0.0.11.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

need_root
command -v unshare >/dev/null || skip "unshare not installed"
need_bin chunkfly-scheduler
unshare -m true 2>/dev/null || skip "unshare -m refused (no CAP_SYS_ADMIN here)"

start_registry 127.0.0.9
REPO=test/schedns
make_blob "$T/blob" 1 # above small_blob (256K here): it goes through a scheduler
push_blob "$REPO" "$T/blob"
SIZE=$(stat -c %s "$T/blob")

# one port free on the three addresses
for _ in $(seq 20); do
    SP=$(free_port 127.0.0.51)
    python3 - "$SP" <<'PY' && break
import socket, sys
for ip in ("127.0.0.52", "127.0.0.53"):
    s = socket.socket(); s.bind((ip, int(sys.argv[1]))); s.close()
PY
done
declare -A SPID SHTTP
for n in 51 52 53; do
    SHTTP[$n]=127.0.0.$n:$(free_port "127.0.0.$n")
    bg_start "$T/sched$n.log" "$CHUNKFLY_BIN/chunkfly-scheduler" --listen "127.0.0.$n:$SP" \
        --http "${SHTTP[$n]}" --log-level info
    SPID[$n]=$CF_LAST_PID
done
for n in 51 52 53; do wait_port "127.0.0.$n" "$SP"; done
smetric() { # N NAME: chunkfly_scheduler_NAME of scheduler 127.0.0.N
    curl -fsS "http://${SHTTP[$1]}/metrics" | awk -v m="chunkfly_scheduler_$2" '$1==m{print $2}'
}

NAME=schedulers.chunkfly-test.internal
HOSTS=$T/hosts
hosts() { # IP...: the test's /etc/hosts, rewritten in place (the bind mount keeps the inode)
    { echo "127.0.0.1 localhost"; for ip in "$@"; do echo "$ip $NAME"; done; } >"$HOSTS.new"
    cat "$HOSTS.new" >"$HOSTS"
}
hosts
# the peer in its own mount namespace, /etc/hosts = $HOSTS (same PID: unshare and sh exec)
cat >"$T/peer-ns" <<EOF
#!/bin/sh
exec unshare -m sh -c 'mount --bind "\$0" /etc/hosts && exec "\$@"' "$HOSTS" "$PEER_BIN" "\$@"
EOF
chmod +x "$T/peer-ns"
SCHED=
PEER_EXEC=$T/peer-ns start_peer 1 --scheduler "$NAME:$SP" --set scheduler_resolve_interval=1s \
    --set timing.scheduler_retry=1s --set small_blob=256K
grep -q "127.0.0.51 $NAME" /etc/hosts && fail "the system's /etc/hosts was changed"

status_py() { curl -fsS "http://${PEER_HTTP[1]}/status" | python3 -c "$1" "$BLOB" "${@:2}"; }
TABLE='import json, sys; print(" ".join(s["addr"] for s in json.load(sys.stdin)["schedulers"]))'
# wait_table "ADDRS": the peer's table becomes ADDRS (in its /status order) within 10 s
wait_table() {
    local got=""
    for _ in $(seq 100); do
        got=$(status_py "$TABLE")
        [ "$got" = "$1" ] && return 0
        sleep 0.1
    done
    fail "scheduler table '$got', expected '$1'"
}

note "the name does not resolve: warning, origin, retry"
for _ in $(seq 50); do grep -q "cannot resolve" "$T/peer1.log" && break; sleep 0.1; done
grep "cannot resolve" "$T/peer1.log" | head -1
grep -q "cannot resolve the name.*retrying" "$T/peer1.log" || fail "no warning about the name"
[ "$(metric 1 schedulers)" = 0 ] || fail "schedulers: $(metric 1 schedulers), expected 0"
BLOB_SAVE=$BLOB
make_blob "$T/blob0" 1
push_blob "$REPO" "$T/blob0"
get 1 0 "$(stat -c %s "$T/blob0")" "$T/o0" || fail "read without any scheduler"
cmp -s "$T/blob0" "$T/o0" || fail "read without any scheduler: bytes differ"
BLOB=$BLOB_SAVE

note "two records: both join"
t0=$(date +%s.%N)
hosts 127.0.0.52 127.0.0.51
wait_table "127.0.0.51:$SP 127.0.0.52:$SP"
echo "table after $(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 1))") s: 127.0.0.51 127.0.0.52"
[ "$(metric 1 schedulers)" = 2 ] || fail "metric schedulers != 2"
get 1 0 "$SIZE" "$T/o1" || fail "peer read"
cmp -s "$T/blob" "$T/o1" || fail "bytes differ"
# the task's scheduler: the rendezvous pick of docs/protocol.md §7 over the table
TASK_SCHED='import json, sys
d = json.load(sys.stdin)
slot = [t["scheduler"] for t in d["tasks"] if t["id"] == sys.argv[1]][0]
print(([s["addr"] for s in d["schedulers"] if s["slot"] == slot] or ["none"])[0])'
# tasks_on ADDR: how many of the peer's tasks are registered with ADDR
tasks_on() {
    status_py 'import json, sys
d = json.load(sys.stdin)
slots = [s["slot"] for s in d["schedulers"] if s["addr"] == sys.argv[2]]
print(sum(1 for t in d["tasks"] if slots and t["scheduler"] == slots[0]))' "$1"
}
pick() { # ADDR...: the highest SHA-256(task id || addr)
    python3 -c 'import hashlib, sys
print(max(sys.argv[2:], key=lambda a: hashlib.sha256((sys.argv[1] + a).encode()).digest()))' \
        "$BLOB" "$@"
}
A=$(status_py "$TASK_SCHED")
echo "task on $A"
[ "$A" = "$(pick "127.0.0.51:$SP" "127.0.0.52:$SP")" ] || fail "task on $A, not the rendezvous pick"
an=${A%:*}; an=${an##*.}
[ "$(smetric "$an" peers)" = "$(tasks_on "$A")" ] ||
    fail "scheduler $A holds $(smetric "$an" peers) tasks of the peer, its /status says $(tasks_on "$A")"

note "the task's scheduler is replaced by a third"
if [ "$an" = 51 ]; then keep=52; else keep=51; fi
hosts 127.0.0.53 "127.0.0.$keep"
want=$(printf '%s\n' "127.0.0.$keep:$SP" "127.0.0.53:$SP" | sort | tr '\n' ' ')
wait_table "${want% }"
B=""
for _ in $(seq 50); do
    B=$(status_py "$TASK_SCHED")
    [ "$B" != "$A" ] && [ "$B" != none ] && break
    sleep 0.1
done
echo "task moved to $B"
[ "$B" = "$(pick "127.0.0.$keep:$SP" "127.0.0.53:$SP")" ] || fail "task on $B, not the new pick"
bn=${B%:*}; bn=${bn##*.}
for _ in $(seq 50); do
    [ "$(smetric "$bn" peers)" = "$(tasks_on "$B")" ] && [ "$(smetric "$an" hosts)" = 0 ] && break
    sleep 0.1
done
[ "$(smetric "$bn" peers)" = "$(tasks_on "$B")" ] ||
    fail "the new scheduler $B holds $(smetric "$bn" peers) tasks, the peer's /status says $(tasks_on "$B")"
[ "$(smetric "$an" hosts)" = 0 ] || fail "the scheduler that left ($A) still has the peer"
[ "$(smetric "$an" peers)" = 0 ] || fail "the scheduler that left ($A) still has the task"
grep -q "scheduler $A: left the table" "$T/peer1.log" || fail "no 'left the table' in the log"
grep -q "scheduler 127.0.0.53:$SP: joined the table" "$T/peer1.log" || fail "no 'joined'"

note "the name stops resolving: the last addresses stay"
hosts
sleep 2.2
wait_table "${want% }"
grep -q "keeping its 2 last address" "$T/peer1.log" || fail "no warning for the lost name"

peer_alive_or_fail 1
finish_peers
echo PASS
