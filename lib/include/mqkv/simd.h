// The SIMD decoder of the low-bit codecs: which instruction sets it has, which one runs, and a
// way to force one (tests, benchmarks, bisecting a bad machine).
//
// Decoding with Backend::kSimd or kAuto uses the active ISA; every ISA gives results bit-identical
// to Backend::kScalar (spec/CODECS.md, "Arithmetic"). The active ISA is chosen at run time from
// what the CPU reports, best first: on x86-64 avx512 (F, BW, DQ, VL), avx2 (with FMA and F16C),
// sse2; on AArch64 neon (Advanced SIMD, always present). The environment variable
// MQKV_SIMD=scalar|sse2|avx2|avx512|neon|auto, read once at first use,
// forces one; an unavailable choice falls back to auto, and SimdEnvWarning() says so (the library
// never prints; the tools print it as a warning, the Python package raises a RuntimeWarning).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mqkv/status.h"

namespace mqkv {

// The ISAs this build can run on this machine, best first; always ends with "scalar".
std::vector<std::string> SimdArchs();

// The ISA that Backend::kSimd / kAuto decodes with now ("scalar" when none).
std::string ActiveSimdArch();

// Why MQKV_SIMD is not being followed, e.g. "MQKV_SIMD=avx1024 is not available on this machine
// (available: avx2, sse2, scalar); using avx2"; "" when it is, or is unset or "auto".
std::string SimdEnvWarning();

// Forces the ISA for later decodes in this process: a name from SimdArchs(), or "auto" for the
// best available. Error (and no change) for a name that is unknown or not available here.
// Not meant to be switched while other threads decode (they may see either ISA).
Status ForceSimdArch(std::string_view name);

}  // namespace mqkv
