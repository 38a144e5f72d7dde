// SSE2 kernels of the SIMD decoder and encoder: the x86-64 baseline, so the fallback on any x86
// CPU without AVX2/F16C. One kernel vector is two 4-lane registers (simd_xsimd.h Ops<sse2, 2>).
// SSE2 has no F16C: fp16 conversions are Ops' exact integer forms. The overrides below are
// where xsimd 8.1 lacks a fast SSE2 operation, each with a NEON twin in simd_neon.cpp. See
// simd_kernels.h for the contract.
#include "simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>

#include "simd_xsimd.h"
#include "simd_encode_kernels.h"
#include "rope_kernels.h"

namespace mqkv::codec::simd {
namespace {

struct Sse2 : Ops<xsimd::sse2, 2> {
  // 8 bytes (in code order, low 8 bytes of x) -> 2 x 4 int32.
  MQKV_OP I Widen8(__m128i x) {
    const __m128i z = _mm_setzero_si128();
    const __m128i w = _mm_unpacklo_epi8(x, z);
    return {S(_mm_unpacklo_epi16(w, z)), S(_mm_unpackhi_epi16(w, z))};
  }

  // SSE2 has no per-lane variable shift (xsimd 8.1 emulates one lane at a time) and xsimd no
  // widening conversion: codes are spread to bytes with constant shifts, then widened.
  template <int B>
  MQKV_OP I Unpack(const uint8_t* p) {
    if constexpr (B == 8) {
      return Widen8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    } else if constexpr (B == 4) {
      const uint32_t w = static_cast<uint32_t>(LoadLE<4>(p));
      const __m128i x = _mm_cvtsi32_si128(static_cast<int>(w));
      const __m128i m = _mm_set1_epi8(0x0F);
      return Widen8(_mm_unpacklo_epi8(_mm_and_si128(x, m), _mm_and_si128(_mm_srli_epi16(x, 4), m)));
    } else if constexpr (B == 2) {
      const uint32_t w = static_cast<uint32_t>(LoadLE<2>(p));
      const __m128i x = _mm_cvtsi32_si128(w);
      const __m128i m = _mm_set1_epi8(0x03);
      const __m128i c0 = _mm_and_si128(x, m), c1 = _mm_and_si128(_mm_srli_epi16(x, 2), m);
      const __m128i c2 = _mm_and_si128(_mm_srli_epi16(x, 4), m), c3 = _mm_and_si128(_mm_srli_epi16(x, 6), m);
      return Widen8(_mm_unpacklo_epi16(_mm_unpacklo_epi8(c0, c1), _mm_unpacklo_epi8(c2, c3)));
    } else {
      const uint32_t w = static_cast<uint32_t>(LoadLE<B>(p));
      constexpr uint32_t m = (1u << B) - 1u;
      auto c = [&](int i) { return static_cast<int>((w >> (B * i)) & m); };
      return {S(_mm_setr_epi32(c(0), c(1), c(2), c(3))), S(_mm_setr_epi32(c(4), c(5), c(6), c(7)))};
    }
  }

  // xsimd 8.1 has no narrowing conversion (u32 -> u16): sign-extend so the signed pack keeps them.
  MQKV_OP void Narrow16(uint16_t* d, const U* v) {
    const __m128i x = _mm_srai_epi32(_mm_slli_epi32(v[0], 16), 16);
    const __m128i y = _mm_srai_epi32(_mm_slli_epi32(v[1], 16), 16);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm_packs_epi32(x, y));
  }
  MQKV_OP void StoreF16(uint16_t* d, V v) {
    const U b[2] = {F16Bits(v.r[0]), F16Bits(v.r[1])};
    Narrow16(d, b);
  }
  MQKV_OP void StoreBF16(uint16_t* d, V v) {
    const U b[2] = {BF16Bits(v.r[0]), BF16Bits(v.r[1])};
    Narrow16(d, b);
  }
  // xsimd 8.1 has no widening conversion (u16 -> u32).
  MQKV_OP V LoadF16(const uint8_t* p) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i z = _mm_setzero_si128();
    return {{F16ToF32(U(_mm_unpacklo_epi16(x, z))), F16ToF32(U(_mm_unpackhi_epi16(x, z)))}};
  }

  // 8 codes -> one byte each in a 64-bit word -> pairs, quads, halves merged -> B bytes
  // (xsimd 8.1 has no narrowing pack).
  template <int B>
  MQKV_OP void StoreCodes(uint8_t* d, I q) {
    const __m128i w16 = _mm_packs_epi32(q.r[0], q.r[1]);
    uint64_t w;
    _mm_storel_epi64(reinterpret_cast<__m128i*>(&w), _mm_packus_epi16(w16, w16));
    if constexpr (B != 8) {
      w = (w & 0x00FF00FF00FF00FFull) | ((w & 0xFF00FF00FF00FF00ull) >> (8 - B));
      w = (w & 0x0000FFFF0000FFFFull) | ((w & 0xFFFF0000FFFF0000ull) >> (16 - 2 * B));
      w = (w & 0x00000000FFFFFFFFull) | ((w & 0xFFFFFFFF00000000ull) >> (32 - 4 * B));
    }
    StoreLE<B>(d, w);
  }
};

using K = Impl<Sse2>;
using E = EncodeImpl<Sse2>;
const Kernels kSse2 = {"sse2", Sse2::N, &K::Rows, &K::F16Rows, &E::Ranges, &E::MetaF16,
                       &E::ColumnRanges, &E::MetaCodes, &E::Rotate, &E::Codes,
                       &rope::RotateRowsAny};

}  // namespace

const Kernels* KernelsSse2() { return &kSse2; }

}  // namespace mqkv::codec::simd

#else
namespace mqkv::codec::simd {
const Kernels* KernelsSse2() { return nullptr; }
}  // namespace mqkv::codec::simd
#endif
