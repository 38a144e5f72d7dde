#!/usr/bin/env bash
# End-to-end round trip through a real llama.cpp (see tests/e2e/roundtrip.py).
# Sets up the engine (one-time build of llama-cpp-python, several minutes; later runs reuse it),
# builds the tools, and writes bench/e2e/RESULTS.md + results.csv.
#   BUILD_DIR   cmake build folder to use (default: build)
#   MQKV_CACHE  engine cache (default: ~/.cache/mqkv)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
. "$ROOT/scripts/lib/common.sh"   # MQKV_PY: the fixed cache layout
"$ROOT/scripts/setup-engine.sh"
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -DMQKV_CUDA=OFF -DMQKV_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$BUILD_DIR" -j2 --target mqconvert mqinfo >/dev/null
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
"$MQKV_PY" tests/e2e/roundtrip.py --tools "$BUILD_DIR/tools" --work "$WORK" \
  --results "${RESULTS_DIR:-$ROOT/bench/e2e}" "$@"
