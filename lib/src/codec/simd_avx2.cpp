// AVX2 + F16C kernels of the SIMD decoder (8 lanes). Built with -mavx2 -mfma -mf16c; called only
// after the CPU reported AVX2 and F16C (simd.cpp). See simd_kernels.h for the contract.
#include "simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "simd_kernels.h"
#include "simd_encode_kernels.h"

namespace mqkv::codec::simd {
namespace {

struct Avx2 {
  using V = __m256;
  using I = __m256i;
  static constexpr uint32_t N = 8;
  static constexpr bool kHasF16 = true;

  static __m256i C(int v) { return _mm256_set1_epi32(v); }

  // 8 codes of B bits = B bytes (8-bit: 8 bytes).
  template <int B>
  static I Unpack(const uint8_t* p) {
    if constexpr (B == 8) {
      return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    } else {
      const uint32_t w = static_cast<uint32_t>(LoadLE<B>(p));
      const __m256i sh = _mm256_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B);
      return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(w)), sh), C((1 << B) - 1));
    }
  }
  static V ToFloat(I q) { return _mm256_cvtepi32_ps(q); }
  static V Lookup(I q, const float* L, int bits) {
    const __m256 lo = _mm256_permutevar8x32_ps(_mm256_load_ps(L), q);
    if (bits < 4) return lo;
    const __m256 hi = _mm256_permutevar8x32_ps(_mm256_load_ps(L + 8), q);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(q, 28)));  // code bit 3
  }
  static V Load(const float* p) { return _mm256_loadu_ps(p); }
  static V Bcast(float f) { return _mm256_set1_ps(f); }
  static V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V Xor(V v, const uint32_t* m) {
    return _mm256_castsi256_ps(
        _mm256_xor_si256(_mm256_castps_si256(v), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m))));
  }
  static void Store(float* d, V v) { _mm256_storeu_ps(d, v); }
  static void StoreF16(uint16_t* d, V v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  static void StoreBF16(uint16_t* d, V v) {
    const __m256i x = _mm256_castps_si256(v);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, C(0x7FFFFFFF)), C(0x7F800000));
    const __m256i hi = _mm256_srli_epi32(x, 16);
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, C(0x7FFF)), _mm256_and_si256(hi, C(1))), 16);
    const __m256i o = _mm256_blendv_epi8(r, _mm256_or_si256(hi, C(0x40)), nan);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d),
                     _mm_packus_epi32(_mm256_castsi256_si128(o), _mm256_extracti128_si256(o, 1)));
  }
  static V LoadF16(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  // ---- encoder ----
  static V Div(V a, V b) { return _mm256_div_ps(a, b); }
  static V Min(V a, V b) { return _mm256_min_ps(a, b); }
  static V Max(V a, V b) { return _mm256_max_ps(a, b); }
  static float HMin(V v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_shuffle_ps(m, m, 0x4E));
    return _mm_cvtss_f32(_mm_min_ps(m, _mm_shuffle_ps(m, m, 0xB1)));
  }
  static float HMax(V v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, 0x4E));
    return _mm_cvtss_f32(_mm_max_ps(m, _mm_shuffle_ps(m, m, 0xB1)));
  }
  static V Or(V a, V b) { return _mm256_or_ps(a, b); }
  static bool AnyBits(V v) { return !_mm256_testz_si256(_mm256_castps_si256(v), _mm256_castps_si256(v)); }
  static I Quantize(V d, V levels) {
    const __m256 r = _mm256_round_ps(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, _mm256_setzero_ps()), levels));
  }
  static I MaskPositive(I q, V s) {
    return _mm256_and_si256(q, _mm256_castps_si256(_mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_GT_OQ)));
  }
  // 8 codes -> B bytes: each code shifted to its bit offset, then or-ed together.
  template <int B>
  static void StoreCodes(uint8_t* d, I q) {
    if constexpr (B == 8) {
      const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(d), _mm_packus_epi16(w, w));
    } else {
      const __m256i v = _mm256_sllv_epi32(q, _mm256_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B));
      __m128i a = _mm_or_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
      a = _mm_or_si128(a, _mm_shuffle_epi32(a, 0x4E));
      a = _mm_or_si128(a, _mm_shuffle_epi32(a, 0xB1));
      const uint32_t w = static_cast<uint32_t>(_mm_cvtsi128_si32(a));
      StoreLE<B>(d, w);
    }
  }

  // 32 codes (4 vectors) -> 4B bytes: bytes in code order, then pairs / quads merged by
  // multiply-adds (the codes' bits are disjoint, so sums are ors).
  template <int B>
  static void Pack4(uint8_t* d, I q0, I q1, I q2, I q3) {
    // packus interleaves 128-bit lanes: dwords [q0 0-3, q1 0-3, q2 0-3, q3 0-3 | q0 4-7, ...].
    const __m256i c = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(_mm256_packus_epi32(q0, q1), _mm256_packus_epi32(q2, q3)),
                                                  _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    if constexpr (B == 8) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), c);
      return;
    }
    const __m256i p2 = _mm256_maddubs_epi16(c, _mm256_set1_epi16(static_cast<short>(((1 << B) << 8) | 1)));  // c0 + c1 << B
    if constexpr (B == 4) {
      const __m256i w = _mm256_permute4x64_epi64(_mm256_packus_epi16(p2, p2), 0x08);  // qwords 0, 2
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm256_castsi256_si128(w));
      return;
    }
    const __m256i p4 = _mm256_madd_epi16(p2, _mm256_set1_epi32((1 << (2 * B)) << 16 | 1));  // 4 codes in 4B bits per dword
    if constexpr (B == 2) {
      const __m256i w = _mm256_packus_epi16(_mm256_packus_epi32(p4, p4), p4);  // per lane: 4 bytes = 16 codes
      StoreLE<4>(d, static_cast<uint32_t>(_mm256_cvtsi256_si32(w)));
      StoreLE<4>(d + 4, static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(w, 1))));
    } else {  // B == 3: dwords of 12 bits -> qwords of 24 -> 48 bits per lane
      const __m256i p8 = _mm256_or_si256(_mm256_and_si256(p4, _mm256_set1_epi64x(0xFFF)),
                                         _mm256_and_si256(_mm256_srli_epi64(p4, 20), _mm256_set1_epi64x(0xFFF000)));
      const __m256i w = _mm256_or_si256(p8, _mm256_slli_epi64(_mm256_srli_si256(p8, 8), 24));
      alignas(32) uint64_t t[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(t), w);
      StoreLE<6>(d, t[0]);
      StoreLE<6>(d + 6, t[2]);
    }
  }

  // The encoder's in-vector butterflies: s + (+-v), equal to the reference's a + b / a - b for
  // every non-NaN value (x - y is x + (-y); + commutes), one op fewer per stage than a blend.
  // Not for the decoder, where a NaN's payload must follow the reference's operand order.
  static void FwhtIntraFinite(V& v) {
    const __m256 m1 = _mm256_castsi256_ps(_mm256_setr_epi32(0, INT32_MIN, 0, INT32_MIN, 0, INT32_MIN, 0, INT32_MIN));
    const __m256 m2 = _mm256_castsi256_ps(_mm256_setr_epi32(0, 0, INT32_MIN, INT32_MIN, 0, 0, INT32_MIN, INT32_MIN));
    const __m256 m4 = _mm256_castsi256_ps(_mm256_setr_epi32(0, 0, 0, 0, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN));
    v = _mm256_add_ps(_mm256_permute_ps(v, 0xB1), _mm256_xor_ps(v, m1));
    v = _mm256_add_ps(_mm256_permute_ps(v, 0x4E), _mm256_xor_ps(v, m2));
    v = _mm256_add_ps(_mm256_permute2f128_ps(v, v, 1), _mm256_xor_ps(v, m4));
  }

  static void FwhtIntra(V& v) {
    __m256 s = _mm256_permute_ps(v, 0xB1);  // lanes j ^ 1
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xAA);
    s = _mm256_permute_ps(v, 0x4E);  // j ^ 2
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xCC);
    s = _mm256_permute2f128_ps(v, v, 1);  // j ^ 4
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xF0);
  }
};

using K = Impl<Avx2>;
using E = EncodeImpl<Avx2>;
const Kernels kAvx2 = {"avx2", Avx2::N, &K::Rows, &K::F16Rows, &E::Ranges, &E::MetaF16,
                         &E::ColumnRanges, &E::MetaCodes, &E::Rotate, &E::Codes};

}  // namespace

const Kernels* KernelsAvx2() { return &kAvx2; }

}  // namespace mqkv::codec::simd

#else
namespace mqkv::codec::simd {
const Kernels* KernelsAvx2() { return nullptr; }
}  // namespace mqkv::codec::simd
#endif
