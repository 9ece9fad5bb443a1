#!/usr/bin/env bash
# Builds Chunkfly and runs the whole test suite (unit, integration against real servers, kernel
# mounts, lint). Usage: tests/run-all.sh [--sanitize] [ctest args...]
#   --sanitize  build in build-sanitize/ with ASan+UBSan (what CI runs second)
# Installs missing Debian packages first (.ci/install-deps), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
type=Release dir=build
if [ "${1:-}" = "--sanitize" ]; then type=Sanitize dir=build-sanitize; shift; fi
.ci/install-deps
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" >/dev/null
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" --output-on-failure -j2 "$@"
