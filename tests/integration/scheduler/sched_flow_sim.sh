#!/usr/bin/env bash
# `chunkfly-sched-sim flow`: the in-process mesh simulator (real sched_core and piece policy,
# virtual clock) on small configurations: every node gets every piece, the origin sends the
# blob at least once, a seed gives the same run twice, mixed links and late joiners finish,
# --csv accounts for the bytes, bad options are refused with a message. The TCP mode of the
# same binary is covered by sched_swarm.sh and friends. Takes ~1 s (Release).
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/scheduler/lib_sched.sh"

# run NAME ARGS...: the simulator's output in $T/NAME.out; fails unless it exits 0
run() {
    local name=$1; shift
    "$SIM" flow "$@" >"$T/$name.out" 2>"$T/$name.err" \
        || fail "flow $*: exit $? ($(cat "$T/$name.out" "$T/$name.err" | tr '\n' ' '))"
}

note "8 nodes x 16 MiB: every node gets every piece, origin >= 1x the blob"
run base --nodes 8 --size-mib 16 --seed 7
expect "$T/base.out" result = ok
expect "$T/base.out" nodes_complete -eq 8
expect "$T/base.out" nodes_done -eq 8
expect "$T/base.out" pieces -eq 16 # proto_piece_size_for: 1 MiB pieces below 1 GiB
expect "$T/base.out" origin_bytes -ge 16777216
expect "$T/base.out" sched_decisions -ge 8
expect "$T/base.out" events -gt 0

note "same seed, same run (wall and CPU time aside)"
run again --nodes 8 --size-mib 16 --seed 7
strip() { grep -Ev '^(wall_s|sched_cpu_s|sched_clock_overhead_ns|sched_us_per_decision|sched_cpu_reliable)=' "$1"; }
diff <(strip "$T/base.out") <(strip "$T/again.out") >"$T/diff" || fail "runs differ: $(cat "$T/diff")"
run other --nodes 8 --size-mib 16 --seed 8
expect "$T/other.out" nodes_complete -eq 8

note "mixed links and late joiners finish; per-class figures are printed"
run mixed --nodes 8 --size-mib 16 --mixed 0.25:20
expect "$T/mixed.out" nodes_complete -eq 8
expect "$T/mixed.out" slow_nodes -eq 2
expect "$T/mixed.out" fast_nodes -eq 6
[ -n "$(val "$T/mixed.out" bound_slow_s)" ] || fail "no bound_slow_s"
run late --nodes 8 --size-mib 16 --late 2:5
expect "$T/late.out" nodes_complete -eq 8
expect "$T/late.out" late_nodes -eq 2
expect "$T/late.out" ontime_nodes -eq 6
# the late nodes' time counts from their own join
awk -F= '$1=="late_last_s" && $2 >= 5 {bad=1} END {exit bad}' "$T/late.out" \
    || fail "late_last_s not from the join: $(val "$T/late.out" late_last_s)"

note "per-link fair model, latency, asymmetric links, background fetch"
run fair --nodes 12 --size-mib 8 --net fair --latency-ms 20 --up-mbit 50 --down-mbit 200 \
    --origin-mbit 400 --background
expect "$T/fair.out" net_model = fair
expect "$T/fair.out" nodes_complete -eq 12

note "--csv: per-second bytes add up to what the nodes received"
run csv --nodes 4 --size-mib 8 --csv "$T/flow.csv"
head -1 "$T/flow.csv" | grep -qx 'second,node,class,bytes_in,bytes_out' || fail "csv header"
awk -F, -v want=$((4 * 8 * 1048576)) 'NR > 1 && $2 >= 0 {s += $4} NR > 1 && $2 == -1 {o += $5}
    END {if (s < want * 0.999) {print "bytes_in " s " < " want; exit 1}
         if (o < 8 * 1048576 * 0.999) {print "origin out " o; exit 1}}' "$T/flow.csv" \
    || fail "csv sums wrong"

note "time limit: exit 1, result=timeout, nothing leaks"
"$SIM" flow --nodes 8 --size-mib 64 --max-s 2 >"$T/limit.out" 2>&1 && fail "--max-s 2 exited 0"
expect "$T/limit.out" result = timeout

note "bad options are refused with a message naming them"
bad() { # bad WORD ARGS...: exit 2 and WORD in the message
    local word=$1; shift
    local rc=0
    "$SIM" flow "$@" >"$T/bad.out" 2>"$T/bad.err" || rc=$?
    [ "$rc" = 2 ] || fail "flow $*: exit $rc, expected 2"
    grep -q -- "$word" "$T/bad.err" || fail "flow $*: message without '$word': $(cat "$T/bad.err")"
}
bad --nodes --nodes 0
bad --nodes --nodes 2.5
bad --size-mib --size-mib x
bad --mixed --mixed 2:20
bad --mixed --mixed 0.5
bad --late --late 9:1 --nodes 8
bad --net --net foo
bad --up-mbit --up-mbit -1
bad unexpected --nodes 2 extra
"$SIM" flow --help | grep -q 'chunkfly-sched-sim flow' || fail "flow --help"
"$SIM" --help | grep -q 'flow' || fail "the TCP mode's usage does not mention flow"
note "ok"
