#!/bin/bash
# Crash safety of the peer piece store: kill -9 a writer (cache_torture write: random pieces,
# reads, leases, flushes, verifies, purges, pins, quota evictions) 20 times at random moments;
# after each kill reopen the cache and check that every piece the index calls present has
# exactly the right bytes and the index agrees with the data files (cache_torture fsck), and
# that LMDB's own tool reads the environment. Then finish every blob and check each data file
# with sha256sum against its digest. The seed is printed; rerun with CF_SEED=<seed>.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"

TOOL=${CACHE_TORTURE:-$CHUNKFLY_BUILD/tests/cache_torture}
[ -x "$TOOL" ] || fail "$TOOL not built"
command -v sha256sum >/dev/null || skip "sha256sum not installed"
KILLS=${CF_KILLS:-20}
SEED=${CF_SEED:-$(( $(date +%s%N) % 1000000 ))}
echo "seed: $SEED (rerun with CF_SEED=$SEED)"
RANDOM=$SEED
dir=$T/cache

for i in $(seq 1 "$KILLS"); do
    log=$T/write-$i.log
    bg_start "$log" "$TOOL" write "$dir" $((SEED * 100 + i)) 120000
    pid=$CF_LAST_PID
    for _ in $(seq 600); do grep -q ready "$log" && break; is_alive "$pid" || break; sleep 0.05; done
    grep -q ready "$log" || fail "writer $i did not start: $(cat "$log")"
    ms=$(( 20 + RANDOM % 700 ))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    is_alive "$pid" || fail "writer $i exited before the kill: $(cat "$log")"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    out=$("$TOOL" fsck "$dir" 2>&1) || fail "kill $i after ${ms} ms: fsck failed: $out"
    echo "kill $i after ${ms} ms: $(echo "$out" | tail -1)"
    if command -v mdb_stat >/dev/null; then
        mdb_stat -a "$dir/index" >/dev/null || fail "kill $i: mdb_stat cannot read the index"
    fi
done

note "finish every blob and check it with sha256sum"
"$TOOL" finish "$dir" >"$T/finish.out" 2>"$T/finish.err" || fail "finish: $(cat "$T/finish.err")"
n=0
while read -r hex path; do
    got=$(sha256sum "$path" | cut -d' ' -f1)
    [ "$got" = "$hex" ] || fail "$path: sha256 $got, expected $hex"
    n=$((n + 1))
done <"$T/finish.out"
[ "$n" -gt 0 ] || fail "finish listed no blobs"
out=$("$TOOL" fsck "$dir" 2>&1) || fail "final fsck: $out"
echo "$out"
echo "PASS: $KILLS kills, $n blobs complete and matching sha256sum"
