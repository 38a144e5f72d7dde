// SSE2 kernels of the SIMD decoder: the x86-64 baseline, so the fallback on any x86 CPU without
// AVX2/F16C. One "vector" is a pair of 4-lane registers (8 lanes, the 8-code unit of every bit
// width). SSE2 has no F16C and no variable shifts: fp16 conversions are done with exact integer
// and float tricks (round-to-nearest-even like numeric.h), 1- and 3-bit codes and codebook
// lookups per lane. See simd_kernels.h for the contract.
#include "simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>

#include "simd_kernels.h"
#include "simd_encode_kernels.h"

namespace mqkv::codec::simd {
namespace {

struct Sse2 {
  struct V {
    __m128 a, b;
  };
  struct I {
    __m128i a, b;
  };
  static constexpr uint32_t N = 8;
  static constexpr bool kHasF16 = true;

  static __m128i C(int v) { return _mm_set1_epi32(v); }
  static __m128i Sel(__m128i m, __m128i x, __m128i y) { return _mm_or_si128(_mm_and_si128(m, x), _mm_andnot_si128(m, y)); }
  static __m128 SelF(__m128 m, __m128 x, __m128 y) { return _mm_or_ps(_mm_and_ps(m, x), _mm_andnot_ps(m, y)); }

  // 8 bytes (in code order, low 8 bytes of x) -> 2 x 4 int32.
  static I Widen8(__m128i x) {
    const __m128i z = _mm_setzero_si128();
    const __m128i w = _mm_unpacklo_epi8(x, z);
    return {_mm_unpacklo_epi16(w, z), _mm_unpackhi_epi16(w, z)};
  }

  template <int B>
  static I Unpack(const uint8_t* p) {
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
      return {_mm_setr_epi32(c(0), c(1), c(2), c(3)), _mm_setr_epi32(c(4), c(5), c(6), c(7))};
    }
  }
  static V ToFloat(I q) { return {_mm_cvtepi32_ps(q.a), _mm_cvtepi32_ps(q.b)}; }
  static V Lookup(I q, const float* L, int) {
    alignas(16) int32_t i[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(i), q.a);
    _mm_store_si128(reinterpret_cast<__m128i*>(i + 4), q.b);
    return {_mm_setr_ps(L[i[0]], L[i[1]], L[i[2]], L[i[3]]), _mm_setr_ps(L[i[4]], L[i[5]], L[i[6]], L[i[7]])};
  }
  static V Load(const float* p) { return {_mm_loadu_ps(p), _mm_loadu_ps(p + 4)}; }
  static V Bcast(float f) { return {_mm_set1_ps(f), _mm_set1_ps(f)}; }
  static V Mul(V x, V y) { return {_mm_mul_ps(x.a, y.a), _mm_mul_ps(x.b, y.b)}; }
  static V Add(V x, V y) { return {_mm_add_ps(x.a, y.a), _mm_add_ps(x.b, y.b)}; }
  static V Sub(V x, V y) { return {_mm_sub_ps(x.a, y.a), _mm_sub_ps(x.b, y.b)}; }
  static V Xor(V v, const uint32_t* m) {
    return {_mm_xor_ps(v.a, _mm_loadu_ps(reinterpret_cast<const float*>(m))),
            _mm_xor_ps(v.b, _mm_loadu_ps(reinterpret_cast<const float*>(m + 4)))};
  }
  static void Store(float* d, V v) {
    _mm_storeu_ps(d, v.a);
    _mm_storeu_ps(d + 4, v.b);
  }

  // binary32 -> binary16 bits in the low half of each lane, exactly numeric.h's f32_to_f16.
  static __m128i F16Bits(__m128 v) {
    const __m128i x = _mm_castps_si128(v);
    const __m128i sign = _mm_and_si128(x, C(static_cast<int>(0x80000000u)));
    const __m128i a = _mm_xor_si128(x, sign);
    // Normal results: rebias, then round to nearest even at bit 13.
    const __m128i odd = _mm_and_si128(_mm_srli_epi32(a, 13), C(1));
    const __m128i norm = _mm_srli_epi32(_mm_add_epi32(_mm_add_epi32(a, C(-(112 << 23) + 0xFFF)), odd), 13);
    // Subnormal results (|x| < 2^-14): adding 0.5f puts the fp16 subnormal ulp (2^-24) at the
    // binary32 ulp, so the float add rounds to nearest even exactly there.
    const __m128i magic = C(126 << 23);
    const __m128i sub = _mm_sub_epi32(_mm_castps_si128(_mm_add_ps(_mm_castsi128_ps(a), _mm_castsi128_ps(magic))), magic);
    __m128i r = Sel(_mm_cmplt_epi32(a, C(113 << 23)), sub, norm);
    r = Sel(_mm_cmpgt_epi32(a, C(0x477FFFFF)), C(0x7C00), r);  // overflow and infinity
    const __m128i nan = _mm_or_si128(C(0x7E00), _mm_and_si128(_mm_srli_epi32(a, 13), C(0x3FF)));
    r = Sel(_mm_cmpgt_epi32(a, C(0x7F800000)), nan, r);
    return _mm_or_si128(r, _mm_srli_epi32(sign, 16));
  }
  static __m128i BF16Bits(__m128 v) {
    const __m128i x = _mm_castps_si128(v);
    const __m128i nan = _mm_cmpgt_epi32(_mm_and_si128(x, C(0x7FFFFFFF)), C(0x7F800000));
    const __m128i hi = _mm_srli_epi32(x, 16);
    const __m128i r = _mm_srli_epi32(_mm_add_epi32(_mm_add_epi32(x, C(0x7FFF)), _mm_and_si128(hi, C(1))), 16);
    return Sel(nan, _mm_or_si128(hi, C(0x40)), r);
  }
  // Two lanes-of-16-bit-values registers -> 8 uint16 (sign-extend so the signed pack keeps them).
  static void Store16(uint16_t* d, __m128i x, __m128i y) {
    x = _mm_srai_epi32(_mm_slli_epi32(x, 16), 16);
    y = _mm_srai_epi32(_mm_slli_epi32(y, 16), 16);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm_packs_epi32(x, y));
  }
  static void StoreF16(uint16_t* d, V v) { Store16(d, F16Bits(v.a), F16Bits(v.b)); }
  static void StoreBF16(uint16_t* d, V v) { Store16(d, BF16Bits(v.a), BF16Bits(v.b)); }

  // 4 binary16 (zero-extended in 32-bit lanes) -> binary32, exactly numeric.h's f16_to_f32.
  static __m128 F16ToF32(__m128i h) {
    const __m128i sign = _mm_slli_epi32(_mm_and_si128(h, C(0x8000)), 16);
    __m128i o = _mm_slli_epi32(_mm_and_si128(h, C(0x7FFF)), 13);
    const __m128i exp = _mm_and_si128(o, C(0x0F800000));
    o = _mm_add_epi32(o, C((127 - 15) << 23));
    const __m128i infnan = _mm_cmpeq_epi32(exp, C(0x0F800000));
    const __m128i quiet = _mm_andnot_si128(_mm_cmpeq_epi32(_mm_and_si128(h, C(0x3FF)), _mm_setzero_si128()), C(0x00400000));
    const __m128i special = _mm_or_si128(_mm_add_epi32(o, C((128 - 16) << 23)), quiet);
    o = Sel(infnan, special, o);
    // Zero and subnormal: exponent 1 then subtract 2^-14 (exact).
    const __m128 sub = _mm_sub_ps(_mm_castsi128_ps(_mm_add_epi32(o, C(1 << 23))), _mm_castsi128_ps(C(113 << 23)));
    const __m128i zero_exp = _mm_cmpeq_epi32(exp, _mm_setzero_si128());
    o = Sel(zero_exp, _mm_castps_si128(sub), o);
    return _mm_castsi128_ps(_mm_or_si128(o, sign));
  }
  static V LoadF16(const uint8_t* p) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i z = _mm_setzero_si128();
    return {F16ToF32(_mm_unpacklo_epi16(x, z)), F16ToF32(_mm_unpackhi_epi16(x, z))};
  }

  // ---- encoder ----
  static V Div(V x, V y) { return {_mm_div_ps(x.a, y.a), _mm_div_ps(x.b, y.b)}; }
  static V Min(V x, V y) { return {_mm_min_ps(x.a, y.a), _mm_min_ps(x.b, y.b)}; }
  static V Max(V x, V y) { return {_mm_max_ps(x.a, y.a), _mm_max_ps(x.b, y.b)}; }
  static float HMin(V v) {
    __m128 m = _mm_min_ps(v.a, v.b);
    m = _mm_min_ps(m, _mm_shuffle_ps(m, m, 0x4E));
    return _mm_cvtss_f32(_mm_min_ps(m, _mm_shuffle_ps(m, m, 0xB1)));
  }
  static float HMax(V v) {
    __m128 m = _mm_max_ps(v.a, v.b);
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, 0x4E));
    return _mm_cvtss_f32(_mm_max_ps(m, _mm_shuffle_ps(m, m, 0xB1)));
  }
  static V Or(V x, V y) { return {_mm_or_ps(x.a, y.a), _mm_or_ps(x.b, y.b)}; }
  static bool AnyBits(V v) {
    const __m128i o = _mm_castps_si128(_mm_or_ps(v.a, v.b));
    return _mm_movemask_epi8(_mm_cmpeq_epi8(o, _mm_setzero_si128())) != 0xFFFF;
  }
  // No roundps in SSE2: clamp to [0, levels] first (the same codes as rounding first), then
  // round half to even by adding and subtracting 2^23 (exact for 0 <= v < 2^23).
  static __m128i Quantize4(__m128 d, __m128 levels) {
    const __m128 m = _mm_set1_ps(8388608.0f);
    const __m128 v = _mm_min_ps(_mm_max_ps(d, _mm_setzero_ps()), levels);
    return _mm_cvttps_epi32(_mm_sub_ps(_mm_add_ps(v, m), m));
  }
  static I Quantize(V d, V levels) { return {Quantize4(d.a, levels.a), Quantize4(d.b, levels.b)}; }
  static I MaskPositive(I q, V s) {
    const __m128 z = _mm_setzero_ps();
    return {_mm_and_si128(q.a, _mm_castps_si128(_mm_cmpgt_ps(s.a, z))), _mm_and_si128(q.b, _mm_castps_si128(_mm_cmpgt_ps(s.b, z)))};
  }
  // 8 codes -> one byte each in a 64-bit word -> pairs, quads, halves merged -> B bytes.
  template <int B>
  static void StoreCodes(uint8_t* d, I q) {
    const __m128i w16 = _mm_packs_epi32(q.a, q.b);
    uint64_t w;
    _mm_storel_epi64(reinterpret_cast<__m128i*>(&w), _mm_packus_epi16(w16, w16));
    if constexpr (B != 8) {
      w = (w & 0x00FF00FF00FF00FFull) | ((w & 0xFF00FF00FF00FF00ull) >> (8 - B));
      w = (w & 0x0000FFFF0000FFFFull) | ((w & 0xFFFF0000FFFF0000ull) >> (16 - 2 * B));
      w = (w & 0x00000000FFFFFFFFull) | ((w & 0xFFFFFFFF00000000ull) >> (32 - 4 * B));
    }
    StoreLE<B>(d, w);
  }

  // The encoder's in-vector butterflies: s + (+-v) (see simd_avx2.cpp; finite inputs only).
  static void FwhtIntraFinite(V& v) {
    const __m128 m1 = _mm_castsi128_ps(_mm_setr_epi32(0, INT32_MIN, 0, INT32_MIN));
    const __m128 m2 = _mm_castsi128_ps(_mm_setr_epi32(0, 0, INT32_MIN, INT32_MIN));
    v.a = _mm_add_ps(_mm_shuffle_ps(v.a, v.a, 0xB1), _mm_xor_ps(v.a, m1));
    v.b = _mm_add_ps(_mm_shuffle_ps(v.b, v.b, 0xB1), _mm_xor_ps(v.b, m1));
    v.a = _mm_add_ps(_mm_shuffle_ps(v.a, v.a, 0x4E), _mm_xor_ps(v.a, m2));
    v.b = _mm_add_ps(_mm_shuffle_ps(v.b, v.b, 0x4E), _mm_xor_ps(v.b, m2));
    const __m128 a = v.a;
    v.a = _mm_add_ps(a, v.b);
    v.b = _mm_sub_ps(a, v.b);
  }

  static __m128 Bfly4(__m128 v, __m128 s, __m128 upper) { return SelF(upper, _mm_sub_ps(s, v), _mm_add_ps(v, s)); }
  static void FwhtIntra(V& v) {
    const __m128 u1 = _mm_castsi128_ps(_mm_setr_epi32(0, -1, 0, -1));
    const __m128 u2 = _mm_castsi128_ps(_mm_setr_epi32(0, 0, -1, -1));
    v.a = Bfly4(v.a, _mm_shuffle_ps(v.a, v.a, 0xB1), u1);
    v.b = Bfly4(v.b, _mm_shuffle_ps(v.b, v.b, 0xB1), u1);
    v.a = Bfly4(v.a, _mm_shuffle_ps(v.a, v.a, 0x4E), u2);
    v.b = Bfly4(v.b, _mm_shuffle_ps(v.b, v.b, 0x4E), u2);
    const __m128 a = v.a;
    v.a = _mm_add_ps(a, v.b);
    v.b = _mm_sub_ps(a, v.b);
  }
};

using K = Impl<Sse2>;
using E = EncodeImpl<Sse2>;
const Kernels kSse2 = {"sse2", Sse2::N, &K::Rows, &K::F16Rows, &E::Ranges, &E::MetaF16,
                         &E::ColumnRanges, &E::MetaCodes, &E::Rotate, &E::Codes};

}  // namespace

const Kernels* KernelsSse2() { return &kSse2; }

}  // namespace mqkv::codec::simd

#else
namespace mqkv::codec::simd {
const Kernels* KernelsSse2() { return nullptr; }
}  // namespace mqkv::codec::simd
#endif
