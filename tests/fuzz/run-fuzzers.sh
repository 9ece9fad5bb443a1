#!/usr/bin/env bash
# Builds every libFuzzer target with clang (ASan+UBSan) in build-fuzz/ and runs each briefly.
# Usage: tests/fuzz/run-fuzzers.sh [--seconds N] [TARGET...]
# Seeds: tests/fuzz/<area>/corpus/<target>/ plus, per target, the fixture files listed in
# tests/fuzz/<area>/seeds.txt ("<target> <fixture path relative to fixtures/nydus>").
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=20
if [ "${1:-}" = "--seconds" ]; then secs=$2; shift 2; fi
fixtures=${CHUNKFLY_FIXTURES:-$PWD/../shared/fixtures}
command -v clang >/dev/null || { echo "SKIP: clang not installed"; exit 0; }
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCHUNKFLY_FUZZ=ON >/dev/null
# Only errors are shown: a fuzz target that does not build fails the run.
if ! cmake --build build-fuzz -j"$(nproc)" >build-fuzz.log 2>&1; then
  grep -E "error|Error" build-fuzz.log | head -20
  echo "FAIL: fuzz targets do not build with clang (full log: build-fuzz.log)"
  exit 1
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in build-fuzz/fuzz/*; do [ -x "$f" ] && targets+=("$(basename "$f")"); done
fi
[ ${#targets[@]} -gt 0 ] || { echo "no fuzz targets built"; exit 0; }
failed=0
for t in "${targets[@]}"; do
  work=$(mktemp -d)
  for c in tests/fuzz/*/corpus/"$t"; do [ -d "$c" ] && cp -r "$c"/. "$work"/; done
  for s in tests/fuzz/*/seeds.txt; do
    [ -f "$s" ] || continue
    while read -r name rel; do
      [ "$name" = "$t" ] && [ -f "$fixtures/nydus/$rel" ] && cp "$fixtures/nydus/$rel" "$work/"
    done <"$s"
  done
  echo "--- fuzzing $t for ${secs}s ($(ls "$work" | wc -l) seeds)"
  if ! build-fuzz/fuzz/"$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 "$work" >"$work.log" 2>&1; then
    echo "FAIL: $t"; tail -40 "$work.log"; failed=1
  else
    grep -E "stat::number_of_executed_units|Done" "$work.log" | tail -2
  fi
  rm -rf "$work" "$work.log"
done
exit $failed
