#!/usr/bin/env bash
# The SIMD translation units simd_avx2.cpp and simd_avx512.cpp are built with ISA flags (-mavx2,
# -mavx512f, ...). An inline function they emit as a weak (COMDAT) symbol that another object of
# the library also emits could be the copy the linker keeps for the whole program, and fault on a
# CPU without that ISA (lib/src/codec/simd.h). This checks the objects of a build: every weak
# symbol an AVX object shares with another object must hold no VEX/EVEX-encoded instruction (in an
# optimized build none is shared at all; an unoptimized one emits trivial std:: helpers such as
# std::initializer_list<T>::size() out of line, which are plain integer code). SSE2 and NEON are
# their architectures' baselines, so their objects cannot hold such an instruction.
#   check_isa_symbols.sh BUILD_DIR
set -euo pipefail
dir="$1/lib/CMakeFiles/mqkv.dir/src"
[ -d "$dir" ] || { echo "check_isa_symbols: no objects under $dir" >&2; exit 1; }
mapfile -t isa < <(find "$dir" -name 'simd_*.cpp.o' | grep -E '_(avx2|avx512)\.cpp\.o$' | sort)
if [ ${#isa[@]} -eq 0 ]; then
  echo "check_isa_symbols: no x86 AVX objects in $dir (not an x86 build): nothing to check"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0 shared=0
for o in "${isa[@]}"; do
  nm --defined-only "$o" | awk '$2 ~ /^[WVu]$/ {print $3}' | grep -v '^DW\.ref\.__gxx_personality_v0$' | sort -u >"$tmp/isa" || true
  [ -s "$tmp/isa" ] || continue
  find "$dir" -name '*.o' ! -path "$o" -print0 | xargs -0 nm --defined-only 2>/dev/null \
    | awk 'NF == 3 {print $3}' | sort -u >"$tmp/others"
  while IFS= read -r sym; do
    shared=$((shared + 1))
    # AT&T mnemonics of VEX/EVEX instructions start with "v" (vmovss, vpaddd, ...); ymm/zmm/k registers.
    if objdump -d --no-show-raw-insn "--disassemble=$sym" "$o" \
        | awk -F'\t' 'NF >= 2 {print $2}' | grep -Eq '^v|%[yz]mm|%k[0-7]'; then
      echo "check_isa_symbols: $(basename "$o") shares $(echo "$sym" | c++filt), which holds AVX instructions" >&2
      bad=1
    fi
  done < <(comm -12 "$tmp/isa" "$tmp/others")
done
[ "$bad" = 0 ] && echo "check_isa_symbols: ${#isa[@]} AVX objects; $shared weak symbols shared with other objects, none with AVX instructions"
exit "$bad"
