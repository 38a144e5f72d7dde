#!/usr/bin/env bash
# Runs the mqkv CPU benchmarks and writes bench/RESULTS.md.
#   bench/run.sh                      build into build-bench (or $MQKV_BENCH_BUILD), run, report
#   MIN_TIME=0.5 bench/run.sh         longer runs per benchmark (default 0.3 s)
#   MQKV_GGML_LIB=/path/libggml.so    the ggml peer library (default: llama-cpp-python's in
#                                     ${MQKV_CACHE:-$HOME/.cache/mqkv}/venv; skipped when absent)
# Single-core benchmarks run pinned to one CPU (taskset); the thread-scaling ones use them all.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MQKV_BENCH_BUILD:-$root/build-bench}
jobs=${MQKV_JOBS:-2}
min_time=${MIN_TIME:-0.3}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMQKV_BUILD_BENCH=ON -DMQKV_CUDA=OFF >/dev/null
cmake --build "$build" -j"$jobs" --target bench_mqkv >/dev/null
bin=$build/bench/bench_mqkv

pin=()
if command -v taskset >/dev/null; then pin=(taskset -c "${MQKV_BENCH_CPU:-0}"); fi
tmp=$build/bench  # the raw JSON stays beside the binary
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
"${pin[@]}" "$bin" --benchmark_filter='^(memcpy|decode|encode|ggml|open|layer)' --benchmark_min_time="$min_time" \
  --benchmark_out="$tmp/single.json" --benchmark_out_format=json
"$bin" --benchmark_filter='^threads/' --benchmark_min_time="$min_time" \
  --benchmark_out="$tmp/threads.json" --benchmark_out_format=json
python3 "$root/bench/report.py" --single "$tmp/single.json" --threads "$tmp/threads.json" \
  --command "bench/run.sh (MIN_TIME=$min_time, build $build)" --load "$load_before" > "$root/bench/RESULTS.md"
echo "wrote $root/bench/RESULTS.md"
