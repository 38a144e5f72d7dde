// Per-element logic of the fp8 codec (CodecId 5, spec/CODECS.md "fp8"): OCP FP8 E4M3 ("e4m3fn",
// as NVIDIA's and PyTorch's float8_e4m3fn) codes times one fp32 block scale. Shared by the scalar
// reference decoder, the encoder and the CUDA kernels (__host__ __device__).
//
// E4M3: bit 7 sign, bits 6..3 exponent (bias 7), bits 2..0 mantissa. Exponent 0 is subnormal
// (m * 2^-9), exponents 1..15 are (1 + m/8) * 2^(e-7); S.1111.111 is NaN; there are no
// infinities. Largest finite value 448 (S.1111.110), smallest subnormal 2^-9.
#pragma once

#include <cstdint>

#include "detail/lowbit.h"
#include "mqkv/numeric.h"

namespace mqkv::fp8 {

inline constexpr float kE4M3Max = 448.0f;
inline constexpr uint8_t kE4M3MaxCode = 0x7E;  // +448; 0xFE is -448

// True for the two NaN codes 0x7F and 0xFF.
MQKV_HD bool e4m3_is_nan(uint32_t code) { return (code & 0x7Fu) == 0x7Fu; }

// The exact binary32 value of an E4M3 code (every code is exactly representable). NaN codes give
// the quiet NaN 0x7FC00000 with the code's sign.
MQKV_HD float e4m3_to_f32(uint32_t code) {
  const uint32_t sign = (code & 0x80u) << 24;
  const uint32_t e = (code >> 3) & 0xFu, m = code & 7u;
  if (e == 0xFu && m == 7u) return bits_f32(sign | 0x7FC00000u);
  if (e == 0) {
    // Subnormal m * 2^-9 (m = 0: a signed zero); the product is exact in binary32.
    const float v = mqkv::elem::mul_rn(static_cast<float>(m), 0.001953125f);
    return sign ? -v : v;
  }
  return bits_f32(sign | ((e + 120u) << 23) | (m << 20));
}

// binary32 -> E4M3, rounding to nearest even, saturating: |x| >= 448 (after rounding, so
// everything above 448) gives +-448; never produces a NaN code. `x` must not be NaN (the encoder
// rejects non-finite input before); infinity saturates. The sign of zero is kept.
MQKV_HD uint8_t f32_to_e4m3(float x) {
  const uint32_t u = f32_bits(x);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a >= 0x43E00000u) return static_cast<uint8_t>(sign | kE4M3MaxCode);  // |x| >= 448
  const uint32_t exp = a >> 23;                                          // biased binary32 exponent
  uint32_t code;
  if (exp < 121u) {
    // |x| < 2^-6: subnormal range, code = round(|x| * 2^9) in 0..8 (8 = 2^-6, the smallest
    // normal, whose code is 0x08: the carry lands in the exponent field). Rounding on the bits:
    // |x| = 1.mant * 2^(exp-127), so |x| * 2^9 = (2^23 + mant) >> (23 - (exp - 118)).
    if (exp < 117u) return sign;  // |x| < 2^-10: rounds to zero (below half the smallest step)
    const uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 141u - exp;  // 21..24
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    code = r;
  } else {
    // Normal: keep 3 of the 23 mantissa bits, round to nearest even (a carry bumps the exponent).
    const uint32_t mant = a & 0x7FFFFFu;
    uint32_t r = ((exp - 120u) << 3) | (mant >> 20);
    const uint32_t rem = mant & 0xFFFFFu;
    if (rem > 0x80000u || (rem == 0x80000u && (r & 1u))) ++r;
    code = r;
  }
  if (code > kE4M3MaxCode) code = kE4M3MaxCode;  // cannot happen below 448; kept as a guard
  return static_cast<uint8_t>(sign | code);
}

// A block scale a decoder accepts: positive and finite (an fp32 subnormal is allowed).
MQKV_HD bool scale_valid(float s) { return s > 0.0f && s <= 3.4028234663852886e38f; }

// Decoded value of one code with block scale s (normative): NaN codes give the quiet NaN with the
// code's sign (not through the multiply, so every backend gives the same bits); every other code
// e4m3_to_f32(code) * s, one binary32 multiply rounded to nearest even.
MQKV_HD float decode(uint32_t code, float s) {
  const float v = e4m3_to_f32(code);
  if (e4m3_is_nan(code)) return v;
  return mqkv::elem::mul_rn(v, s);
}

}  // namespace mqkv::fp8
