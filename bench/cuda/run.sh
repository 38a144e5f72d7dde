#!/usr/bin/env bash
# Runs the CUDA decode benchmark from a CUDA build (default build-cuda, or $1) for fp16 and fp32
# output and writes bench/cuda/RESULTS.md. Without a GPU the benchmark prints why and exits 0.
# On the device machine use scripts/gpu-check.sh, which also runs the GPU tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-build-cuda}/kernels/bench/mqkv_cuda_bench
[ -x "$bin" ] || { echo "no $bin: build the mqkv_cuda_bench target of a CUDA build first" >&2; exit 2; }
out=bench/cuda/RESULTS.md
: >"$out"
for o in f16 f32; do
  "$bin" --rows "${MQKV_BENCH_ROWS:-65536}" --out "$o" | tee -a "$out"
  echo >>"$out"
done
