#!/usr/bin/env bash
# bench_p2p_ab.sh: the p2p scenario of bench_p2p.sh with two builds, alternated in one run
# (A B A B ...), so a change of the peer can be judged against the binary before it on the same
# noisy machine. Not a test.
#   tests/bench/bench_p2p_ab.sh --a BUILD_DIR_A --b BUILD_DIR_B [--rounds N] [bench_p2p options]
# BUILD_DIR: a build directory with bin/ (chunkfly-peer, chunkfly-scheduler, chunkfly) and
# tests/piece_bench, e.g. a `git worktree` of the old commit built in Release.
# Prints each run's summary line and, at the end, the medians and the B/A ratios of the last
# node's time and of the origin egress.
set -Eeuo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
A="" B="" ROUNDS=2 PASS=()
while [ $# -gt 0 ]; do
  case $1 in
    --a) A=$2; shift 2 ;;
    --b) B=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) PASS+=("$1"); shift ;;
  esac
done
[ -n "$A" ] && [ -n "$B" ] || { echo "usage: $0 --a BUILD_A --b BUILD_B [--rounds N] [bench_p2p options]" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--rounds: a positive number" >&2; exit 2; }
declare -A LAST ORIG SERVE
for r in $(seq "$ROUNDS"); do
  for side in a b; do
    dir=$A; [ $side = b ] && dir=$B
    echo "=== round $r, build $side ($dir)"
    out=$(mktemp)
    CHUNKFLY_BUILD=$dir CHUNKFLY_BIN=$dir/bin "$SRC/tests/bench/bench_p2p.sh" --scenarios p2p \
      "${PASS[@]}" >"$out" || { cat "$out"; rm -f "$out"; exit 1; }
    cat "$out"
    line=$(grep '^p2p bench:' "$out")
    rm -f "$out"
    echo "$side: $line"
    LAST[$side]+="$(sed 's/.* last=\([^ ]*\).*/\1/' <<<"$line") "
    ORIG[$side]+="$(sed 's/.* origin_x=\([^ ]*\).*/\1/' <<<"$line") "
    SERVE[$side]+="$(sed 's/.* serve_ratio=\([^ ]*\).*/\1/' <<<"$line") "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END{print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
la=$(median <<<"${LAST[a]}") lb=$(median <<<"${LAST[b]}")
oa=$(median <<<"${ORIG[a]}") ob=$(median <<<"${ORIG[b]}")
echo "last node (s): a ${LAST[a]}(median $la)  b ${LAST[b]}(median $lb)"
echo "origin x blob: a ${ORIG[a]}(median $oa)  b ${ORIG[b]}(median $ob)"
echo "loopback serving / sendfile: a ${SERVE[a]} b ${SERVE[b]}"
printf 'p2p a/b: rounds=%d last_a=%s last_b=%s b_over_a_time=%s origin_a=%s origin_b=%s\n' "$ROUNDS" \
  "$la" "$lb" "$(awk -v a="$la" -v b="$lb" 'BEGIN{printf "%.3f", b/a}')" "$oa" "$ob"
