#!/usr/bin/env bash
# The Python package's tests (a stage of scripts/test.sh):
#   1. pytest python/tests against the build tree's package (<build>/python, built by scripts/test.sh
#      with MQKV_BUILD_PYTHON=ON), the llama.cpp tests included (setup-engine.sh first);
#   2. `pip wheel .` (scikit-build-core, no build isolation: the venv's pinned build tools), the
#      wheel installed into a throwaway venv, and pytest again against the installed package (the
#      llama.cpp and transformers tests skip there: that venv has neither; step 1 ran them).
#   MQKV_SKIP_HF=1 skips the transformers tests and their set-up (torch, ~3 GB; scripts/setup-hf.sh).
#   BUILD_DIR   the build with the extension and the tools (default: build)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
. "$ROOT/scripts/lib/common.sh"
bash "$ROOT/scripts/setup-python.sh"
[ "${MQKV_SKIP_ENGINE:-0}" = 1 ] || bash "$ROOT/scripts/setup-engine.sh"
[ "${MQKV_SKIP_HF:-0}" = 1 ] || bash "$ROOT/scripts/setup-hf.sh"
[ -d "$BUILD_DIR/python/mqkv" ] || { echo "python/tests/run.sh: $BUILD_DIR/python/mqkv is missing (configure with -DMQKV_BUILD_PYTHON=ON)" >&2; exit 1; }
cd "$ROOT"
echo "-- pytest (build tree: $BUILD_DIR/python)"
MQKV_BUILD_DIR="$BUILD_DIR" PYTHONPATH="$BUILD_DIR/python" "$MQKV_PY" -m pytest -q -p no:cacheprovider python/tests

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK" "$ROOT/build-wheel"' EXIT
echo "-- pip wheel . (scikit-build-core)"
t0=$SECONDS
# A fixed build folder inside the checkout (made afresh) so that ccache, when scripts/test.sh
# turned it on, finds the same relative paths as in earlier runs; scikit-build-core's default is a
# new temporary folder each time.
rm -rf "$ROOT/build-wheel"
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
  "$MQKV_PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WORK/dist" \
  --config-settings=build-dir="$ROOT/build-wheel" "$ROOT" >&2
echo "   built $(cd "$WORK/dist" && ls) in $((SECONDS - t0)) s"
"$MQKV_PY" -m venv "$WORK/venv"   # a clean venv: the wheel and what it declares (numpy), plus pytest
"$WORK/venv/bin/python" -m pip install --quiet "$WORK/dist"/mqkv-*.whl "pytest==$MQKV_PYTEST_VERSION" >&2
echo "-- pytest (installed wheel)"
(cd "$WORK" && MQKV_BUILD_DIR="$BUILD_DIR" "$WORK/venv/bin/python" -c 'import mqkv, sys; assert "/venv/" in mqkv.__file__, mqkv.__file__' \
  && MQKV_BUILD_DIR="$BUILD_DIR" "$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/python/tests")
