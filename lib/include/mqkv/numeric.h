// Bit-exact scalar conversions between fp32, fp16 (IEEE binary16) and bf16, shared by the
// reference decoder, the SIMD decoder's tails and the CUDA kernels (__host__ __device__).
// Rounding is round-to-nearest-even everywhere; NaN stays NaN (quiet), infinities are kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MQKV_HD __host__ __device__ __forceinline__
#else
#define MQKV_HD inline
#endif

namespace mqkv {

MQKV_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

MQKV_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// binary16 -> binary32, exact.
MQKV_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return bits_f32(sign | 0x7F800000u | (mant << 13) | (mant ? 0x00400000u : 0u));
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    // subnormal: normalise
    exp = 113;  // 127 - 15 + 1
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    mant &= 0x3FFu;
    return bits_f32(sign | (exp << 23) | (mant << 13));
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

// binary32 -> binary16, round to nearest even; overflow gives infinity.
MQKV_HD uint16_t f32_to_f16(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t exp = (x >> 23) & 0xFFu;
  uint32_t mant = x & 0x7FFFFFu;
  if (exp == 0xFF) return static_cast<uint16_t>(sign | 0x7C00u | (mant ? 0x200u | (mant >> 13) : 0u));
  const int e = static_cast<int>(exp) - 127 + 15;
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7C00u);
  if (e <= 0) {
    if (e < -10) return sign;  // rounds to zero (|x| < 2^-25)
    mant |= 0x800000u;
    const uint32_t shift = static_cast<uint32_t>(14 - e);  // 14..24
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;  // may carry into exponent: correct
  return static_cast<uint16_t>(sign | r);
}

MQKV_HD float bf16_to_f32(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

MQKV_HD uint16_t f32_to_bf16(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  const uint32_t lsb = (x >> 16) & 1u;
  return static_cast<uint16_t>((x + 0x7FFFu + lsb) >> 16);
}

// Round a float to the nearest fp16-representable float (used by encoders that store fp16).
MQKV_HD float round_to_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

// Whether every value is exactly an fp16 / a bf16 (all 32 bits survive the round trip; NaNs with
// payload bits the narrower type cannot hold do not). The one home of the lossless-f16 test used
// by the adapters and mqconvert to choose a lossless storage type.
inline bool exact_in_f16(const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (f32_bits(f16_to_f32(f32_to_f16(v[i]))) != f32_bits(v[i])) return false;
  return true;
}
inline bool exact_in_bf16(const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (f32_bits(bf16_to_f32(f32_to_bf16(v[i]))) != f32_bits(v[i])) return false;
  return true;
}

}  // namespace mqkv
