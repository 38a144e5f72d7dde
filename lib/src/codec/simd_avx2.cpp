// AVX2 + F16C kernels of the SIMD decoder and encoder (8 lanes, one 256-bit register per
// vector). Built with -mavx2 -mfma -mf16c; called only after the CPU reported AVX2 and F16C
// (simd.cpp). The operations are simd_xsimd.h's over xsimd::batch<float, xsimd::avx2>; the
// overrides below are where xsimd 8.1 lacks a fast operation, each with a NEON twin in
// simd_neon.cpp. See simd_kernels.h for the contract.
#include "simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "simd_xsimd.h"
#include "simd_encode_kernels.h"
#include "rope_kernels.h"

namespace mqkv::codec::simd {
namespace {

struct Avx2 : Ops<xsimd::avx2, 1> {
  MQKV_OP __m256i C(int v) { return _mm256_set1_epi32(v); }

  // 8-bit codes: xsimd 8.1 has no widening conversion (u8 -> u32).
  template <int B>
  MQKV_OP I Unpack(const uint8_t* p) {
    if constexpr (B == 8) {
      return {S(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))))};
    } else {
      return Ops::Unpack<B>(p);
    }
  }
  // 8 codes of B = 2, 3, 4 bits from a 16-byte load (simd_kernels.h WideUnpackBytes): one
  // broadcast load, a byte shuffle, a variable shift. xsimd 8.1 has no byte shuffle (pshufb).
  template <int B>
  MQKV_OP I UnpackWide(const uint8_t* p) {
    static constexpr auto kBytes = WideUnpackBytes<B, 8>();
    static constexpr auto kShifts = WideUnpackShifts<B, 8>();
    const __m256i src = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i x = _mm256_shuffle_epi8(src, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kBytes.data())));
    return {S(_mm256_and_si256(_mm256_srlv_epi32(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kShifts.data()))),
                               C((1 << B) - 1)))};
  }
  // Register table of up to 8 floats indexed by codes (simd_kernels.h RowLut): vpermps. 4-bit
  // codes would need two tables and a blend, no cheaper than converting: not offered.
  static constexpr int kLutBits = 3;
  template <int B>
  MQKV_OP V LookupReg(I q, V table) { return {F(_mm256_permutevar8x32_ps(table.r[0], q.r[0]))}; }
  // 16-bit results of a group's table (simd_kernels.h RowLut), codes of up to 4 bits (kLut16Bits):
  // for up to 3 bits the 8 table values converted once (vcvtps2ph, or StoreBF16's rounding) as 16
  // bytes in each lane, entry k at bytes 2k, 2k + 1, for pshufb; 4-bit codes below (Table16x2).
  // xsimd 8.1 has no fp16 conversion nor byte shuffle.
  static constexpr uint32_t kLut16Codes = 16;
  static constexpr int kLut16Bits = 4;
  template <bool BF>
  MQKV_OP __m128i Halves16(V table) {  // the 8 values' 16-bit results
    if constexpr (BF) {
      const __m256i b = BF16Bits(table.r[0]);
      return _mm_packus_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    } else {
      return _mm256_cvtps_ph(table.r[0], _MM_FROUND_TO_NEAREST_INT);
    }
  }
  template <int B, bool BF>
  MQKV_OP __m256i Table16(V table) {
    static_assert(B <= 3, "Table16: 8 entries of 16 bits fill pshufb's 16-byte table");
    return _mm256_broadcastsi128_si256(Halves16<BF>(table));
  }
  // 4-bit codes: 16 entries of 16 bits are 32 bytes, two pshufb tables: the results' low bytes
  // and their high bytes (each in both lanes), from the tables of entries 0..7 and 8..15.
  struct Table16x2 {
    __m256i lo, hi;
  };
  template <int B, bool BF>
  MQKV_OP Table16x2 Table16(V t0, V t1) {
    static_assert(B == 4, "Table16x2: 16 entries");
    const __m128i split = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    const __m128i a = _mm_shuffle_epi8(Halves16<BF>(t0), split), b = _mm_shuffle_epi8(Halves16<BF>(t1), split);
    return {_mm256_broadcastsi128_si256(_mm_unpacklo_epi64(a, b)), _mm256_broadcastsi128_si256(_mm_unpackhi_epi64(a, b))};
  }
  // 16 codes of B <= 4 bits (2B bytes, read as 16 at p) -> their values in 16-bit lanes. AVX2
  // has no 16-bit variable shift (vpsrlvw): each 16-bit lane takes a window of two code bytes in
  // which its code starts at bit t in 1..8 (a code at a byte's bit 0 sits in the window's high
  // byte, t = 8) and vpmulhuw by 2^(16 - t) shifts it down.
  template <int B>
  MQKV_OP __m256i Codes16(const uint8_t* p) {
    struct Windows {
      alignas(32) uint8_t bytes[32];
      alignas(32) uint16_t mul[16];
    };
    static constexpr Windows kW = [] {
      Windows w{};
      for (int j = 0; j < 16; ++j) {
        const int b = B * j / 8, s = B * j % 8;
        if (s == 0) {
          w.bytes[2 * j] = 0x80;
          w.bytes[2 * j + 1] = static_cast<uint8_t>(b);
          w.mul[j] = 1u << 8;
        } else {
          w.bytes[2 * j] = static_cast<uint8_t>(b);
          w.bytes[2 * j + 1] = (B * j + B - 1) / 8 > b ? static_cast<uint8_t>(b + 1) : 0x80;
          w.mul[j] = static_cast<uint16_t>(1u << (16 - s));
        }
      }
      return w;
    }();
    const __m256i src = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i x = _mm256_shuffle_epi8(src, _mm256_load_si256(reinterpret_cast<const __m256i*>(kW.bytes)));
    return _mm256_and_si256(_mm256_mulhi_epu16(x, _mm256_load_si256(reinterpret_cast<const __m256i*>(kW.mul))),
                            _mm256_set1_epi16((1 << B) - 1));
  }
  // 16 codes of B <= 3 bits -> 16 16-bit results: the byte pair (2k, 2k + 1) that pshufb reads
  // code k's result from is 0x0202 k + 0x0100.
  template <int B>
  MQKV_OP void Lookup16(const uint8_t* p, __m256i table, uint16_t* d) {
    const __m256i k = Codes16<B>(p);
    const __m256i idx = _mm256_add_epi16(_mm256_mullo_epi16(k, _mm256_set1_epi16(0x0202)), _mm256_set1_epi16(0x0100));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm256_shuffle_epi8(table, idx));
  }
  // 16 codes of 4 bits -> 16 16-bit results: k in both bytes of its lane (0x0101 k) looks up the
  // low-byte table and the high-byte table; a byte blend keeps one of each.
  template <int B>
  MQKV_OP void Lookup16(const uint8_t* p, Table16x2 t, uint16_t* d) {
    const __m256i idx = _mm256_mullo_epi16(Codes16<B>(p), _mm256_set1_epi16(0x0101));
    const __m256i r = _mm256_blendv_epi8(_mm256_shuffle_epi8(t.lo, idx), _mm256_shuffle_epi8(t.hi, idx),
                                         _mm256_set1_epi16(static_cast<int16_t>(0xFF00)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), r);
  }
  // xsimd 8.1 has no run-time-index permute: vpermps.
  MQKV_OP V Lookup(I q, const float* L, int bits) {
    const __m256i i = q.r[0];
    const __m256 lo = _mm256_permutevar8x32_ps(_mm256_load_ps(L), i);
    if (bits < 4) return {F(lo)};
    const __m256 hi = _mm256_permutevar8x32_ps(_mm256_load_ps(L + 8), i);
    return {F(_mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(i, 28))))};  // code bit 3
  }
  // xsimd 8.1 has no fp16 conversions: F16C.
  MQKV_OP void StoreF16(uint16_t* d, V v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm256_cvtps_ph(v.r[0], _MM_FROUND_TO_NEAREST_INT));
  }
  MQKV_OP V LoadF16(const uint8_t* p) { return {F(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))))}; }
  // xsimd 8.1 has no narrowing conversion (u32 -> u16): packusdw of the two halves.
  MQKV_OP void Narrow16(uint16_t* d, const U* v) {
    const __m256i o = v[0];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm_packus_epi32(_mm256_castsi256_si128(o), _mm256_extracti128_si256(o, 1)));
  }
  MQKV_OP void StoreBF16(uint16_t* d, V v) {
    const U b = BF16Bits(v.r[0]);
    Narrow16(d, &b);
  }

  // In-vector butterflies. xsimd 8.1's swizzle is always the lane-crossing vpermps (3 cycles);
  // stages j^1 and j^2 need only the in-lane vpermilps with an immediate (1 cycle), j^4 vperm2f128.
  // s + (+-v) as one fused multiply-add by +-1 (exact product, the sum's one rounding): see
  // simd_avx512.cpp FwhtIntraFinite and simd_xsimd.h StageInFinite.
  MQKV_OP void FwhtIntraFinite(V& x) {
    const __m256 m1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1);
    const __m256 m2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1);
    const __m256 m4 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
    __m256 v = x.r[0];
    v = _mm256_fmadd_ps(v, m1, _mm256_permute_ps(v, 0xB1));
    v = _mm256_fmadd_ps(v, m2, _mm256_permute_ps(v, 0x4E));
    v = _mm256_fmadd_ps(v, m4, _mm256_permute2f128_ps(v, v, 1));
    x.r[0] = v;
  }
  MQKV_OP void FwhtIntra(V& x) {  // see simd_xsimd.h StageIn
    __m256 v = x.r[0];
    __m256 s = _mm256_permute_ps(v, 0xB1);  // lanes j ^ 1
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xAA);
    s = _mm256_permute_ps(v, 0x4E);  // j ^ 2
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xCC);
    s = _mm256_permute2f128_ps(v, v, 1);  // j ^ 4
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xF0);
    x.r[0] = v;
  }

  // 8 codes -> B bytes: each code shifted to its bit offset, then or-ed together (xsimd 8.1 has
  // no horizontal or, nor a narrowing pack for the 8-bit case).
  template <int B>
  MQKV_OP void StoreCodes(uint8_t* d, I q) {
    const __m256i c = q.r[0];
    if constexpr (B == 8) {
      const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(d), _mm_packus_epi16(w, w));
    } else {
      const __m256i v = _mm256_sllv_epi32(c, _mm256_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B));
      __m128i a = _mm_or_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
      a = _mm_or_si128(a, _mm_shuffle_epi32(a, 0x4E));
      a = _mm_or_si128(a, _mm_shuffle_epi32(a, 0xB1));
      const uint32_t w = static_cast<uint32_t>(_mm_cvtsi128_si32(a));
      StoreLE<B>(d, w);
    }
  }

  // 32 codes (4 vectors) -> 4B bytes: bytes in code order, then pairs / quads merged by
  // multiply-adds (the codes' bits are disjoint, so sums are ors). xsimd 8.1 has no narrowing
  // pack nor pmaddubsw / pmaddwd.
  template <int B>
  MQKV_OP void Pack4(uint8_t* d, I i0, I i1, I i2, I i3) {
    const __m256i q0 = i0.r[0], q1 = i1.r[0], q2 = i2.r[0], q3 = i3.r[0];
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
};

using K = Impl<Avx2>;
using E = EncodeImpl<Avx2>;
const Kernels kAvx2 = {"avx2", Avx2::N, &K::Rows, &K::F16Rows, &E::Ranges, &E::MetaF16,
                       &E::ColumnRanges, &E::MetaCodes, &E::Rotate, &E::Codes,
                       &rope::RotateRowsAny};

}  // namespace

const Kernels* KernelsAvx2() { return &kAvx2; }

}  // namespace mqkv::codec::simd

#else
namespace mqkv::codec::simd {
const Kernels* KernelsAvx2() { return nullptr; }
}  // namespace mqkv::codec::simd
#endif
