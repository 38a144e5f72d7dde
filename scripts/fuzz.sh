#!/usr/bin/env bash
# Builds the libFuzzer targets with clang under ASan + UBSan and runs each for SECONDS (default 10),
# starting from the committed seed corpora in tests/fuzz/corpus/<target>/ (new inputs go to a
# scratch copy, not the repo). The targets are the ones tests/fuzz/CMakeLists.txt registers (read
# from the build's targets.txt), or those named. Exits non-zero on the first crash, leak or
# sanitizer report and KEEPS the crash input: its path, and base64 of inputs up to 4 KiB, are printed,
# and it stays under ${MQKV_FUZZ_ARTIFACTS:-build-fuzz/artifacts}/ (reproduce: build-fuzz/tests/fuzz/<target> <file>).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh
secs=${1:-10}
shift || true
bash scripts/setup-deps.sh
mqkv_apt_install clang libclang-rt-14-dev
mqkv_use_ccache "$PWD"
build=${MQKV_FUZZ_BUILD_DIR:-build-fuzz}
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQKV_FUZZ=ON -DMQKV_SANITIZE=ON \
  -DMQKV_CUDA=OFF -DMQKV_BUILD_TESTS=OFF -DMQKV_BUILD_BENCH=OFF -DMQKV_BUILD_TOOLS=OFF >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(grep -v '^$' "$build/tests/fuzz/targets.txt")
  [ ${#targets[@]} -gt 0 ] || { echo "fuzz: $build/tests/fuzz/targets.txt lists no target" >&2; exit 1; }
fi
cmake --build "$build" -j "${MQKV_JOBS:-$(nproc)}" $(printf -- '--target %s ' "${targets[@]}")
artifacts=${MQKV_FUZZ_ARTIFACTS:-$build/artifacts}
mkdir -p "$artifacts"
artifacts=$(cd "$artifacts" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT   # only the grown corpora; crash inputs go to $artifacts
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  [ -d "tests/fuzz/corpus/$t" ] && cp -r "tests/fuzz/corpus/$t/." "$scratch/$t/"
  echo "fuzz: $t for ${secs}s"
  log="$artifacts/$t.log"
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$build/tests/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$t-" "$scratch/$t" 2>"$log" || {
      tail -n 60 "$log"
      echo "fuzz: $t FAILED; log $log"
      for a in "$artifacts/$t"-*; do
        [ -f "$a" ] && [ "$a" != "$log" ] || continue
        echo "fuzz: crash input $a ($(stat -c %s "$a") bytes); reproduce: $build/tests/fuzz/$t $a"
        if [ "$(stat -c %s "$a")" -le 4096 ]; then echo "fuzz: base64 of $(basename "$a"):"; base64 -w 76 "$a"; fi
      done
      exit 1; }
  grep -E "stat::number_of_executed_units|cov:" "$log" | tail -n 2 | sed "s/^/  /"
done
