#!/usr/bin/env bash
# Quality/size frontier on real SmolLM2 KV caches (bench/frontier/frontier.py; issue 7).
# Sets up the engine (scripts/setup-engine.sh, idempotent), installs the pinned matplotlib into the
# engine's venv if it is missing, builds mqconvert/mqinfo/mqverify, and writes
# bench/results/{frontier.csv,frontier.md,frontier_bits_vs_kl.png,frontier_bits_vs_attn_cosine.png}.
#   BUILD_DIR   cmake build folder to use (default: build-frontier)
#   RESULTS_DIR output folder (default: bench/results)
# Extra arguments go to frontier.py (--prefix, --cont, --texts ...).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-frontier}"
MATPLOTLIB_VERSION=3.9.2
. "$ROOT/scripts/lib/common.sh"   # MQKV_PY: the fixed cache layout
"$ROOT/scripts/setup-engine.sh"
"$ROOT/scripts/setup-python.sh"   # mqdump and the engine helpers use the mqkv package
PY="$MQKV_PY"
if ! "$PY" -c "import matplotlib" 2>/dev/null; then
  "$PY" -m pip install -q >&2 "matplotlib==$MATPLOTLIB_VERSION"
fi
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -DMQKV_CUDA=OFF -DMQKV_BUILD_BENCH=OFF -DMQKV_BUILD_TESTS=OFF \
    -DMQKV_BUILD_PYTHON=ON "-DPython_EXECUTABLE=$PY" >/dev/null
fi
cmake --build "$BUILD_DIR" -j2 --target mqconvert mqinfo mqverify _mqkv >/dev/null
export MQKV_PYTHONPATH="$BUILD_DIR/python"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
"$PY" bench/frontier/frontier.py --tools "$BUILD_DIR/tools" --work "$WORK" \
  --results "${RESULTS_DIR:-$ROOT/bench/results}" "$@"
