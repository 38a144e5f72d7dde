#!/usr/bin/env bash
# aarch64 as a tested platform: cross-builds libmqkv and its unit tests with Debian's
# g++-aarch64-linux-gnu against the arm64 sysroot (scripts/setup-arm64.sh), then runs the tests
# under qemu-aarch64 through ctest's cross-compiling emulator (cmake/toolchains/aarch64-linux-gnu.cmake).
# The NEON kernels are compared bit for bit with the scalar reference there, as on x86 (test_simd,
# test_encode_simd, the golden vectors of test_codec_vectors / test_format_vectors).
#
# Timings under QEMU mean nothing: this stage checks correctness only.
#
#   bash tests/arm64/run.sh            the full unit suite (what runs under QEMU: see below)
#   MQKV_ARM64_QUICK=1 ...             only the SIMD and codec/format suites (NEON vs the scalar
#                                      reference, golden vectors): the stage scripts/test.sh runs
#
# Not run under QEMU: the tests that start the command-line tools (test_mqconvert, test_mqverify
# and the fp8 tools test: user-mode QEMU does not follow an exec of another arm64 binary without
# binfmt, which needs the host's root configuration; the tools are thin layers over the library
# tested here), the install test and the host-side script checks. The tools are not built.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup-arm64.sh
. scripts/lib/common.sh
mqkv_use_ccache "$PWD"
jobs=${MQKV_JOBS:-$(nproc)}
dir=${MQKV_ARM64_BUILD_DIR:-build-arm64}
t0=$SECONDS
mkdir -p "$dir"
cmake -S . -B "$dir" -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
  "-DMQKV_ARM64_SYSROOT=$MQKV_CACHE/arm64-root" -DCMAKE_BUILD_TYPE=Release -DMQKV_CUDA=OFF \
  -DMQKV_BUILD_BENCH=OFF -DMQKV_BUILD_TOOLS=OFF -DMQKV_BUILD_PYTHON=OFF >"$dir/configure.log" 2>&1 \
  || { cat "$dir/configure.log" >&2; echo "arm64: configure failed" >&2; exit 1; }
quick_tests=(test_simd test_encode_simd test_codec_vectors test_format_vectors test_codec_lowbit test_rope)
if [ "${MQKV_ARM64_QUICK:-0}" = 1 ]; then
  cmake --build "$dir" -j "$jobs" --target "${quick_tests[@]}"
  build_s=$((SECONDS - t0))
  t1=$SECONDS
  # The same binaries ctest would run, each under the emulator (one process per suite).
  for t in "${quick_tests[@]}"; do
    echo "-- $t (qemu-aarch64)" >&2
    (cd "$dir/tests" && qemu-aarch64 -L "$MQKV_CACHE/arm64-root" "./$t" --gtest_brief=1) \
      || { echo "arm64: $t failed under qemu-aarch64" >&2; exit 1; }
  done
else
  cmake --build "$dir" -j "$jobs"
  build_s=$((SECONDS - t0))
  t1=$SECONDS
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" \
    -E '^(Install\.|Scripts\.Setup|Mqconvert|Mqverify|Fp8File\.MqconvertAndMqverify)'
fi
echo "arm64: cross build ${build_s} s, tests under qemu-aarch64 $((SECONDS - t1)) s" >&2
