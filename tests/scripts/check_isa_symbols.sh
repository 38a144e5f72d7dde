#!/usr/bin/env bash
# The SIMD translation units are built with ISA flags (-mavx2, -mavx512f, ...). An inline function
# they emit as a weak (COMDAT) symbol that another object of the library also emits could be the
# copy the linker keeps for the whole program, and fault on a CPU without that ISA (simd.h). This
# checks the objects of a build: no weak symbol of an ISA object is defined by any other object.
#   check_isa_symbols.sh BUILD_DIR
set -euo pipefail
dir="$1/lib/CMakeFiles/mqkv.dir/src"
[ -d "$dir" ] || { echo "check_isa_symbols: no objects under $dir" >&2; exit 1; }
mapfile -t isa < <(find "$dir" -name 'simd_*.cpp.o' | grep -E '_(sse2|avx2|avx512|neon)\.cpp\.o$' | sort)
[ ${#isa[@]} -gt 0 ] || { echo "check_isa_symbols: no ISA objects in $dir" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
for o in "${isa[@]}"; do
  # weak symbols of this ISA object (the personality routine's reference is not code)
  nm --defined-only "$o" | awk '$2 ~ /^[WVu]$/ {print $3}' | grep -v '^DW\.ref\.__gxx_personality_v0$' | sort -u >"$tmp/isa" || true
  [ -s "$tmp/isa" ] || continue
  find "$dir" -name '*.o' ! -path "$o" -print0 | xargs -0 nm --defined-only 2>/dev/null \
    | awk 'NF == 3 {print $3}' | sort -u >"$tmp/others"
  if comm -12 "$tmp/isa" "$tmp/others" | grep -q .; then
    echo "check_isa_symbols: $(basename "$o") shares weak symbols with other objects:" >&2
    comm -12 "$tmp/isa" "$tmp/others" | head -20 | c++filt >&2
    bad=1
  fi
done
[ "$bad" = 0 ] && echo "check_isa_symbols: ${#isa[@]} ISA objects, no shared weak symbols"
exit "$bad"
