// The arithmetic of "Keys before RoPE" (spec/CODECS.md) as loops a compiler vectorizes: the
// (cos, sin) table of a row computed for all pairs at once without branches, and the rotation of
// a row's heads with the style and direction fixed at compile time. rope.cpp compiles this with
// the baseline flags (the scalar reference); each SIMD translation unit (simd_sse2.cpp,
// simd_avx2.cpp, ...) compiles the same source with its ISA's flags, and the results are
// bit-identical because every step is one IEEE binary64 operation (+, -, *, fabs, copysign) or an
// integer operation on the bit patterns, never fused (the project builds with -ffp-contract=off), and float <->
// double conversions are exact / round to nearest. Tests compare every ISA with the reference.
//
// Include only inside an anonymous namespace's reach: everything here has internal linkage, so
// the copies compiled with different flags never merge at link time (as simd.h's kernels).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace mqkv::rope {
namespace {

// pi/2 = kPio2a + kPio2b + kPio2c: two 21-bit leading parts (k * part is exact for |k| < 2^32)
// and the binary64 nearest to the rest.
constexpr double kTwoOverPi = 0x1.45f306dc9c883p-1;
constexpr double kPio2a = 0x1.921fb00000000p+0;
constexpr double kPio2b = 0x1.5110b00000000p-22;
constexpr double kPio2c = 0x1.18469898cc517p-44;
// (-1)^k / (2k+1)! and (-1)^k / (2k)!, k = 1..8 / 1..9, each the binary64 nearest.
constexpr double kS[8] = {-0x1.5555555555555p-3, 0x1.1111111111111p-7,  -0x1.a01a01a01a01ap-13, 0x1.71de3a556c734p-19,
                          -0x1.ae64567f544e4p-26, 0x1.6124613a86d09p-33, -0x1.ae7f3e733b81fp-41, 0x1.952c77030ad4ap-49};
constexpr double kC[9] = {-0x1.0000000000000p-1, 0x1.5555555555555p-5,  -0x1.6c16c16c16c17p-10,
                          0x1.a01a01a01a01ap-16,  -0x1.27e4fb7789f5cp-22, 0x1.1eed8eff8d898p-29,
                          -0x1.93974a8c07c9dp-37, 0x1.ae7f3e733b81fp-45, -0x1.6827863b97d97p-53};

// __builtin_bit_cast, not std::bit_cast: the latter is a template with a weak (COMDAT) symbol in
// unoptimized builds, which would merge ISA-specific copies across translation units
// (tests/check_isa_symbols, Scripts.IsaObjectsShareNoWeakSymbols).
static inline __attribute__((always_inline)) uint64_t Bits(double x) { return __builtin_bit_cast(uint64_t, x); }
static inline __attribute__((always_inline)) double Double(uint64_t b) { return __builtin_bit_cast(double, b); }

// cos and sin of a = p * theta[i] for i < n, into co[i] / si[i]: the spec's procedure, for
// |a| <= 2^31 (a reader admits no more: positions are int32, theta in [0, 1]). Written with plain
// arithmetic and bit operations so compilers vectorize it without libm:
//  - k = nearbyint(a * 2/pi) (ties to even): t = |x| + 2^52 rounds |x| < 2^52 to an integer in the
//    default rounding mode, t - 2^52 is that integer exactly, and x's sign goes back on
//    (nearbyint(-0.3) is -0.0);
//  - the quadrant q = k mod 4 (0..3, also for negative k): |k| mod 4 is t's two lowest mantissa
//    bits (t's ulp is 1), negated modulo 4 when x < 0;
//  - the quadrant's selection and negations act on the bit patterns (IEEE negation flips the sign
//    bit), so the values are the reference's to the bit.
static inline __attribute__((always_inline)) void CosSinRow(double p, const double* __restrict theta, size_t n,
                                                            double* __restrict co, double* __restrict si) {
  for (size_t i = 0; i < n; ++i) {
    const double a = p * theta[i];
    const double x = a * kTwoOverPi;
    const double t = std::fabs(x) + 0x1p52;
    const double k = std::copysign(t - 0x1p52, x);
    const double r = ((a - k * kPio2a) - k * kPio2b) - k * kPio2c;
    const double z = r * r;
    double ps = kS[7];
    for (int j = 6; j >= 0; --j) ps = kS[j] + z * ps;
    const double sr = r + r * (z * ps);
    double pc = kC[8];
    for (int j = 7; j >= 0; --j) pc = kC[j] + z * pc;
    const double cr = 1.0 + z * pc;
    const uint64_t neg = Bits(x) >> 63, u = Bits(t) & 3;
    const uint64_t q = ((u ^ (0 - neg)) + neg) & 3;  // u, or -u when x < 0, modulo 4
    const uint64_t b0 = q & 1, b1 = q >> 1, odd = 0 - b0;
    // q = 0: (cr, sr); 1: (-sr, cr); 2: (-cr, -sr); 3: (sr, -cr)
    const uint64_t c = ((Bits(sr) & odd) | (Bits(cr) & ~odd)) ^ ((b0 ^ b1) << 63);
    const uint64_t s = ((Bits(cr) & odd) | (Bits(sr) & ~odd)) ^ (b1 << 63);
    co[i] = Double(c);
    si[i] = Double(s);
  }
}

// One row's heads rotated with the row's cos / sin tables; kNorm: pair i is (2i, 2i + 1), else
// (neox) (i, i + pairs). kForward: the decoder's rotation, else the writer's undo.
template <bool kNorm, bool kForward>
static inline __attribute__((always_inline)) void RotateRow(const double* __restrict co, const double* __restrict si,
                                                            size_t pairs, float* __restrict row, uint32_t n_heads,
                                                            uint32_t head_dim) {
  for (uint32_t h = 0; h < n_heads; ++h) {
    float* __restrict v = row + uint64_t(h) * head_dim;
    for (size_t i = 0; i < pairs; ++i) {
      const size_t i0 = kNorm ? 2 * i : i, i1 = kNorm ? 2 * i + 1 : i + pairs;
      const double x0 = v[i0], x1 = v[i1], c = co[i], s = si[i];
      if constexpr (kForward) {
        v[i0] = static_cast<float>(x0 * c - x1 * s);
        v[i1] = static_cast<float>(x0 * s + x1 * c);
      } else {
        v[i0] = static_cast<float>(x0 * c + x1 * s);
        v[i1] = static_cast<float>(x1 * c - x0 * s);
      }
    }
  }
}

// Rows [0, n_rows) of rows ([row][head][dim], fp32) rotated in place; row j has position
// positions[j]; cs is scratch of 2 * pairs doubles.
template <bool kNorm, bool kForward>
static void RotateRowsT(const double* theta, size_t pairs, float* rows, uint32_t n_rows, uint32_t n_heads,
                        uint32_t head_dim, const int32_t* positions, double* cs) {
  for (uint32_t j = 0; j < n_rows; ++j) {
    CosSinRow(double(positions[j]), theta, pairs, cs, cs + pairs);
    RotateRow<kNorm, kForward>(cs, cs + pairs, pairs, rows + uint64_t(j) * n_heads * head_dim, n_heads, head_dim);
  }
}

[[maybe_unused]] static void RotateRowsAny(const double* theta, size_t pairs, bool norm, int sign, float* rows,
                                           uint32_t n_rows, uint32_t n_heads, uint32_t head_dim, const int32_t* positions,
                                           double* cs) {
  if (norm && sign > 0) RotateRowsT<true, true>(theta, pairs, rows, n_rows, n_heads, head_dim, positions, cs);
  else if (norm) RotateRowsT<true, false>(theta, pairs, rows, n_rows, n_heads, head_dim, positions, cs);
  else if (sign > 0) RotateRowsT<false, true>(theta, pairs, rows, n_rows, n_heads, head_dim, positions, cs);
  else RotateRowsT<false, false>(theta, pairs, rows, n_rows, n_heads, head_dim, positions, cs);
}

}  // namespace
}  // namespace mqkv::rope
