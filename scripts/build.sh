#!/usr/bin/env bash
# Configures and builds mqkv into ${MQKV_BUILD_DIR:-build} (Release). Extra args go to cmake;
# MQKV_TARGETS="a b" builds only those targets. The Debian packages are checked (and installed when
# missing) only when the build folder is configured for the first time; CMake's configure output is
# shown (it says, for one, whether the CUDA kernels are built). Compiles go through ccache
# (scripts/lib/common.sh mqkv_use_ccache; MQKV_CCACHE=0 turns it off).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MQKV_BUILD_DIR:-build}
jobs=${MQKV_JOBS:-$(nproc)}
if [ ! -f "$build/CMakeCache.txt" ] || [ "${MQKV_SETUP:-0}" = 1 ]; then
  bash scripts/setup-deps.sh
fi
. scripts/lib/common.sh
mqkv_use_ccache "$PWD"   # compiles through the cache's ccache (MQKV_CCACHE=0: plain)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "$@"
targets=()
for t in ${MQKV_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$jobs" "${targets[@]}"
