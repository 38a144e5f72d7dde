#!/usr/bin/env bash
# GPU check of the CUDA kernels: the GPU tests (real launches vs the scalar reference) and the
# decode benchmark (GB/s beside device-to-device memcpy), results to $OUT/RESULTS.md (or
# bench/cuda/RESULTS.md when $OUT is unset). One prepared script for a session lent a GPU.
#
#   scripts/gpu-check.sh --prepare   on the build machine: build only the needed targets for sm_90
#                                    (H100/H200) into build-gpu/ and stage the binaries and the
#                                    non-system shared libraries they need in build-gpu/stage/
#   scripts/gpu-check.sh             on the GPU machine: run what build-gpu/stage/ holds; without a
#                                    stage, build it first (needs the project's build deps there)
#
# The device machine's image has nvcc and CMake but not the project's C++ deps (FlatBuffers, zstd,
# xxHash, GoogleTest, CLI11, xsimd) and nothing can be installed there, so the normal route is:
#   here:   bash scripts/gpu-check.sh --prepare
#   device: run(command="bash scripts/gpu-check.sh", carry=["build-gpu/stage"], timeout_s=420)
# Env: MQKV_GPU_ARCH (default 90), MQKV_BENCH_ROWS (default 65536 rows x 8 heads x 128 dims),
#      MQKV_JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${MQKV_GPU_ARCH:-90}
jobs=${MQKV_JOBS:-$(nproc)}
stage=build-gpu/stage
targets=(test_cuda_gpu test_cuda_logic mqkv_cuda_bench mqverify)

prepare() {
  local t0=$SECONDS
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMQKV_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
    -DMQKV_BUILD_BENCH=OFF >/dev/null
  cmake --build build-gpu -j "$jobs" --target "${targets[@]}"
  rm -rf "$stage" && mkdir -p "$stage/lib"
  cp build-gpu/kernels/tests/test_cuda_gpu build-gpu/kernels/tests/test_cuda_logic build-gpu/kernels/bench/mqkv_cuda_bench \
     build-gpu/tools/mqverify "$stage/"
  # Shared libraries outside glibc / libstdc++ / the driver travel with the binaries.
  for bin in "$stage"/test_cuda_gpu "$stage"/mqkv_cuda_bench "$stage"/mqverify; do
    ldd "$bin" | awk '/=> \// {print $3}' | grep -Ev '/(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*|libcuda)\.so' \
      | xargs -r -I{} cp -Ln {} "$stage/lib/" || true
  done
  cp spec/vectors/codecs/affine_b2_g16.mqkv "$stage/" 2>/dev/null || true
  echo "staged in $stage ($(du -sh "$stage" | cut -f1)) in $((SECONDS - t0)) s for sm_$arch"
}

if [ "${1:-}" = "--prepare" ]; then
  prepare
  exit 0
fi

out=${OUT:-}
results=${out:+$out/RESULTS.md}
results=${results:-bench/cuda/RESULTS.md}
[ -x "$stage/test_cuda_gpu" ] || prepare
export LD_LIBRARY_PATH="$PWD/$stage/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log=${out:-/tmp}/gpu-check.log
{
  echo "# mqkv GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 || true
  echo '```'
} >"$results"
status=0
echo "== GPU tests" | tee -a "$log"
gtest_log=${out:-/tmp}/test_cuda_gpu.log
if "$stage/test_cuda_gpu" ${out:+--gtest_output=xml:$out/test_cuda_gpu.xml} >"$gtest_log" 2>&1; then t=passed; else t=FAILED; status=1; fi
cat "$gtest_log" >>"$log"
if grep -q 'no CUDA device' "$gtest_log"; then t="SKIPPED: $(grep -m1 -o 'no CUDA device[^)]*)' "$gtest_log")"; status=1; fi
"$stage/test_cuda_logic" >>"$log" 2>&1 || { t="$t; CPU logic test FAILED"; status=1; }
printf '\nGPU tests (tests/cuda/test_cuda_gpu.cu): **%s** (%s)\n\n' "$t" \
  "$(grep -E '^\[  (PASSED|SKIPPED|FAILED)  \] [0-9]+ test' "$gtest_log" | tr -s ' ' | tr '\n' ' ')" >>"$results"
if [ -f "$stage/affine_b2_g16.mqkv" ]; then
  echo "== mqverify --backend cuda --compare all" | tee -a "$log"
  if "$stage/mqverify" --backend cuda --compare all "$stage/affine_b2_g16.mqkv" >>"$log" 2>&1; then v=agrees; else v=FAILED; status=1; fi
  printf 'mqverify --backend cuda --compare all on spec/vectors/codecs/affine_b2_g16.mqkv: **%s**\n\n' "$v" >>"$results"
fi
echo "== benchmark" | tee -a "$log"
for o in f16 f32; do
  "$stage/mqkv_cuda_bench" --rows "${MQKV_BENCH_ROWS:-65536}" --heads 8 --dim 128 --reps 20 --out "$o" | tee -a "$results" || status=1
  echo >>"$results"
done
echo "results: $results (log: $log)"
exit $status
