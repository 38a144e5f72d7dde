// AVX-512 (F/BW/DQ/VL) kernels of the SIMD decoder (16 lanes). Built with the AVX-512 flags;
// called only after the CPU reported them (simd.cpp). See simd_kernels.h for the contract.
#include "simd.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12 warns inside avx512fintrin.h about the deliberately undefined source of its
// _mm512_undefined_* helpers (a false positive, GCC PR 105593); the encoder's conversions and
// extracts trigger its -Wuninitialized form.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include "simd_kernels.h"
#include "simd_encode_kernels.h"

namespace mqkv::codec::simd {
namespace {

struct Avx512 {
  using V = __m512;
  using I = __m512i;
  static constexpr uint32_t N = 16;
  static constexpr bool kHasF16 = true;

  static __m512i C(int v) { return _mm512_set1_epi32(v); }

  // 16 codes of B bits = 2B bytes (8-bit: 16 bytes).
  template <int B>
  static I Unpack(const uint8_t* p) {
    if constexpr (B == 8) {
      return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    } else if constexpr (B <= 2) {
      const uint32_t w = static_cast<uint32_t>(LoadLE<2 * B>(p));
      const __m512i sh = _mm512_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B, 8 * B, 9 * B, 10 * B,
                                           11 * B, 12 * B, 13 * B, 14 * B, 15 * B);
      return _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(w)), sh), C((1 << B) - 1));
    } else {
      // Codes 0-7 in bits [0, 8B), codes 8-15 in bits [8B, 16B): one dword per half.
      const uint64_t w = LoadLE<2 * B>(p);
      const __m128i d = _mm_setr_epi32(static_cast<int>(static_cast<uint32_t>(w)),
                                       static_cast<int>(static_cast<uint32_t>(w >> (8 * B))), 0, 0);
      const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
      const __m512i sh = _mm512_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B, 0, B, 2 * B, 3 * B, 4 * B,
                                           5 * B, 6 * B, 7 * B);
      return _mm512_and_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(idx, _mm512_castsi128_si512(d)), sh),
                              C((1 << B) - 1));
    }
  }
  static V ToFloat(I q) { return _mm512_cvtepi32_ps(q); }
  static V Lookup(I q, const float* L, int) { return _mm512_permutexvar_ps(q, _mm512_load_ps(L)); }
  static V Load(const float* p) { return _mm512_loadu_ps(p); }
  static V Bcast(float f) { return _mm512_set1_ps(f); }
  static V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V Xor(V v, const uint32_t* m) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_loadu_si512(m)));
  }
  static void Store(float* d, V v) { _mm512_storeu_ps(d, v); }
  static void StoreF16(uint16_t* d, V v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  static void StoreBF16(uint16_t* d, V v) {
    const __m512i x = _mm512_castps_si512(v);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(x, C(0x7FFFFFFF)), C(0x7F800000));
    const __m512i hi = _mm512_srli_epi32(x, 16);
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, C(0x7FFF)), _mm512_and_si512(hi, C(1))), 16);
    const __m512i o = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(hi, C(0x40)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm512_cvtepi32_epi16(o));
  }
  static V LoadF16(const uint8_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  // ---- encoder ----
  static V Div(V a, V b) { return _mm512_div_ps(a, b); }
  static V Min(V a, V b) { return _mm512_min_ps(a, b); }
  static V Max(V a, V b) { return _mm512_max_ps(a, b); }
  static float HMin(V v) {
    __m256 h = _mm256_min_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    m = _mm_min_ps(m, _mm_shuffle_ps(m, m, 0x4E));
    return _mm_cvtss_f32(_mm_min_ps(m, _mm_shuffle_ps(m, m, 0xB1)));
  }
  static float HMax(V v) {
    __m256 h = _mm256_max_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, 0x4E));
    return _mm_cvtss_f32(_mm_max_ps(m, _mm_shuffle_ps(m, m, 0xB1)));
  }
  static V Or(V a, V b) { return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b))); }
  static bool AnyBits(V v) { return _mm512_test_epi32_mask(_mm512_castps_si512(v), _mm512_castps_si512(v)) != 0; }
  static I Quantize(V d, V levels) {
    const __m512 r = _mm512_roundscale_ps(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(r, _mm512_setzero_ps()), levels));
  }
  static I MaskPositive(I q, V s) {
    return _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_GT_OQ), q);
  }
  // 16 codes -> 2B bytes: one byte per code, then pairs, quads and the two 8-code halves merged.
  template <int B>
  static void StoreCodes(uint8_t* d, I q) {
    const __m128i b = _mm512_cvtepi32_epi8(q);
    if constexpr (B == 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d), b);
    } else {
      const __m128i p2 = _mm_maddubs_epi16(b, _mm_set1_epi16(static_cast<short>(((1 << B) << 8) | 1)));  // c0 + c1 << B
      const __m128i p4 = _mm_madd_epi16(p2, _mm_set1_epi32((1 << (2 * B)) << 16 | 1));  // 4 codes in 4B bits
      if constexpr (B == 2) {
        const __m128i w = _mm_packus_epi16(_mm_packus_epi32(p4, p4), _mm_setzero_si128());
        const uint32_t v = static_cast<uint32_t>(_mm_cvtsi128_si32(w));
        StoreLE<4>(d, v);
      } else if constexpr (B == 4) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(d), _mm_packus_epi32(p4, p4));
      } else {  // B == 3: dwords of 12 bits -> 24 bits per qword -> 48 bits
        const __m128i p8 = _mm_or_si128(_mm_and_si128(p4, _mm_set1_epi64x(0xFFF)),
                                        _mm_and_si128(_mm_srli_epi64(p4, 20), _mm_set1_epi64x(0xFFF000)));
        alignas(16) uint64_t q2[2];
        _mm_store_si128(reinterpret_cast<__m128i*>(q2), p8);
        const uint64_t v = q2[0] | q2[1] << 24;
        StoreLE<6>(d, v);
      }
    }
  }

  // The encoder's in-vector butterflies: s + (+-v) (see simd_avx2.cpp; finite inputs only).
  static V NegLanes(V v, __mmask16 m) {
    return _mm512_castsi512_ps(_mm512_mask_xor_epi32(_mm512_castps_si512(v), m, _mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN)));
  }
  static void FwhtIntraFinite(V& v) {
    v = _mm512_add_ps(_mm512_permute_ps(v, 0xB1), NegLanes(v, 0xAAAA));
    v = _mm512_add_ps(_mm512_permute_ps(v, 0x4E), NegLanes(v, 0xCCCC));
    v = _mm512_add_ps(_mm512_shuffle_f32x4(v, v, 0xB1), NegLanes(v, 0xF0F0));
    v = _mm512_add_ps(_mm512_shuffle_f32x4(v, v, 0x4E), NegLanes(v, 0xFF00));
  }

  static void FwhtIntra(V& v) {
    __m512 s = _mm512_permute_ps(v, 0xB1);  // lanes j ^ 1
    v = _mm512_mask_blend_ps(0xAAAA, _mm512_add_ps(v, s), _mm512_sub_ps(s, v));
    s = _mm512_permute_ps(v, 0x4E);  // j ^ 2
    v = _mm512_mask_blend_ps(0xCCCC, _mm512_add_ps(v, s), _mm512_sub_ps(s, v));
    s = _mm512_shuffle_f32x4(v, v, 0xB1);  // j ^ 4
    v = _mm512_mask_blend_ps(0xF0F0, _mm512_add_ps(v, s), _mm512_sub_ps(s, v));
    s = _mm512_shuffle_f32x4(v, v, 0x4E);  // j ^ 8
    v = _mm512_mask_blend_ps(0xFF00, _mm512_add_ps(v, s), _mm512_sub_ps(s, v));
  }
};

using K = Impl<Avx512>;
using E = EncodeImpl<Avx512>;
const Kernels kAvx512 = {"avx512", Avx512::N, &K::Rows, &K::F16Rows, &E::Ranges, &E::MetaF16,
                         &E::ColumnRanges, &E::MetaCodes, &E::Rotate, &E::Codes};

}  // namespace

const Kernels* KernelsAvx512() { return &kAvx512; }

}  // namespace mqkv::codec::simd

#else
namespace mqkv::codec::simd {
const Kernels* KernelsAvx512() { return nullptr; }
}  // namespace mqkv::codec::simd
#endif
