#!/usr/bin/env bash
# Configures and builds mqkv into ${MQKV_BUILD_DIR:-build} (Release). Extra args go to cmake;
# MQKV_TARGETS="a b" builds only those targets.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
build=${MQKV_BUILD_DIR:-build}
jobs=${MQKV_JOBS:-$(nproc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
targets=()
for t in ${MQKV_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$jobs" "${targets[@]}"
