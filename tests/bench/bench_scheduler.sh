#!/usr/bin/env bash
# Scheduler benchmark (not in ctest): the load generator against chunkfly-scheduler and against
# an echo baseline built on the same proto/ code, in the same run. Figures: docs/benchmarks.md.
# Usage: tests/bench/bench_scheduler.sh BUILD_DIR [bench args...]
#   e.g. tests/bench/bench_scheduler.sh build-sched-rel --hosts 10000 --tasks 100 --per-host 10
set -euo pipefail
BUILD=${1:?build dir}; shift
SCHED=$BUILD/bin/chunkfly-scheduler
BENCH=$BUILD/bench/bench_scheduler
ulimit -n "$(ulimit -Hn)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P1=$(port); P2=$(port); P3=$(port)
"$SCHED" --listen 127.0.0.1:$P1 --http 127.0.0.1:$P2 --log-level warn --set timing.idle_timeout=300s &
SP=$!
"$BENCH" --echo-server 127.0.0.1:$P3 2>/dev/null &
EP=$!
trap 'kill $SP $EP 2>/dev/null || true' EXIT
sleep 0.5
echo "== scheduler"
"$BENCH" --target 127.0.0.1:$P1 --pid $SP "$@" | tee /tmp/bench-sched.out
curl -fsS "http://127.0.0.1:$P2/metrics" | grep -E '^chunkfly_scheduler_(decision_seconds|peers|hosts|tasks) ' || true
curl -fsS "http://127.0.0.1:$P2/metrics" | grep -E 'decision_seconds_(bucket|count)' || true
echo "== echo baseline"
"$BENCH" --target 127.0.0.1:$P3 --pid $EP "$@" | tee /tmp/bench-echo.out
v() { sed -n "s/^$1=//p" "$2"; }
python3 - "$(v decisions_per_s /tmp/bench-sched.out)" "$(v decisions_per_s /tmp/bench-echo.out)" \
    "$(v lat_p99_ms /tmp/bench-sched.out)" "$(v lat_p99_ms /tmp/bench-echo.out)" <<'PY'
import sys
ds, de, ps, pe = map(float, sys.argv[1:5])
print(f"ratio decisions/s scheduler/echo = {ds/de:.2f}; p99 scheduler/echo = {ps/pe:.2f}")
PY
