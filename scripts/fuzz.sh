#!/usr/bin/env bash
# Builds the libFuzzer targets with clang under ASan + UBSan and runs each for SECONDS (default 10),
# starting from the committed seed corpora in tests/fuzz/corpus/<target>/ (new inputs go to a
# scratch copy, not the repo). Exits non-zero on the first crash, leak or sanitizer report.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
bash scripts/setup-deps.sh
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; break; }
done
build=${MQKV_FUZZ_BUILD_DIR:-build-fuzz}
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQKV_FUZZ=ON -DMQKV_SANITIZE=ON \
  -DMQKV_CUDA=OFF -DMQKV_BUILD_TESTS=OFF -DMQKV_BUILD_BENCH=OFF -DMQKV_BUILD_TOOLS=OFF >/dev/null
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_snapshot fuzz_codec_spec fuzz_safetensors fuzz_npy fuzz_npz fuzz_llama_seq fuzz_llama_session fuzz_llama_state)
cmake --build "$build" -j "${MQKV_JOBS:-$(nproc)}" $(printf -- '--target %s ' "${targets[@]}")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  [ -d "tests/fuzz/corpus/$t" ] && cp -r "tests/fuzz/corpus/$t/." "$scratch/$t/"
  echo "fuzz: $t for ${secs}s"
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$build/tests/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$scratch/$t-" "$scratch/$t" 2>"$scratch/$t.log" || {
      tail -n 60 "$scratch/$t.log"; echo "fuzz: $t FAILED (artifacts above)"; exit 1; }
  grep -E "stat::number_of_executed_units|cov:" "$scratch/$t.log" | tail -n 2 | sed "s/^/  /"
done
