// AVX-512 (F/BW/DQ/VL) kernels of the SIMD decoder and encoder (16 lanes, one 512-bit register
// per vector). Built with the AVX-512 flags; called only after the CPU reported them (simd.cpp).
// The operations are simd_xsimd.h's over xsimd::batch<float, xsimd::avx512bw>; the overrides
// below are where xsimd 8.1 lacks a fast operation. See simd_kernels.h for the contract.
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

#include "simd_xsimd.h"
#include "simd_encode_kernels.h"
#include "rope_kernels.h"

namespace mqkv::codec::simd {
namespace {

struct Avx512 : Ops<xsimd::avx512bw, 1> {
  MQKV_OP __m512i C(int v) { return _mm512_set1_epi32(v); }

  // 16 codes of B bits = 2B bytes (8-bit: 16 bytes). xsimd 8.1 has no widening conversion
  // (u8 -> u32) and no way to fill the two 8-lane halves from two words but memory.
  template <int B>
  MQKV_OP I Unpack(const uint8_t* p) {
    if constexpr (B == 8) {
      return {S(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))))};
    } else if constexpr (B <= 2) {
      const uint32_t w = static_cast<uint32_t>(LoadLE<2 * B>(p));
      const __m512i sh = _mm512_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B, 8 * B, 9 * B, 10 * B,
                                           11 * B, 12 * B, 13 * B, 14 * B, 15 * B);
      return {S(_mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(w)), sh), C((1 << B) - 1)))};
    } else {
      // Codes 0-7 in bits [0, 8B), codes 8-15 in bits [8B, 16B): one dword per half.
      const uint64_t w = LoadLE<2 * B>(p);
      const __m128i d = _mm_setr_epi32(static_cast<int>(static_cast<uint32_t>(w)),
                                       static_cast<int>(static_cast<uint32_t>(w >> (8 * B))), 0, 0);
      const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
      const __m512i sh = _mm512_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B, 0, B, 2 * B, 3 * B, 4 * B,
                                           5 * B, 6 * B, 7 * B);
      return {S(_mm512_and_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(idx, _mm512_castsi128_si512(d)), sh),
                                 C((1 << B) - 1)))};
    }
  }
  // 16 codes of B = 2, 3, 4 bits from a 16-byte load (simd_kernels.h WideUnpackBytes): one
  // broadcast load, a byte shuffle, a variable shift. xsimd 8.1 has no byte shuffle (pshufb).
  template <int B>
  MQKV_OP I UnpackWide(const uint8_t* p) {
    static constexpr auto kBytes = WideUnpackBytes<B, 16>();
    static constexpr auto kShifts = WideUnpackShifts<B, 16>();
    const __m512i src = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i x = _mm512_shuffle_epi8(src, _mm512_loadu_si512(kBytes.data()));
    return {S(_mm512_and_si512(_mm512_srlv_epi32(x, _mm512_loadu_si512(kShifts.data())), C((1 << B) - 1)))};
  }
  // Register table of up to 16 floats indexed by codes (simd_kernels.h RowLut): vpermps.
  static constexpr int kLutBits = 4;
  template <int B>
  MQKV_OP V LookupReg(I q, V table) { return {F(_mm512_permutexvar_ps(q.r[0], table.r[0]))}; }
  // 16-bit results of a group's table (simd_kernels.h RowLut): the 16 table values converted once
  // (vcvtps2ph, or the bf16 rounding of StoreBF16) and replicated over 32 words (word i = entry
  // i mod 2^B), so that vpermw, which reads 5 index bits, may see the next codes' bits above a
  // code. xsimd 8.1 has no fp16 conversion and no 16-bit permute (vpermw).
  static constexpr uint32_t kLut16Codes = 32;
  template <int B, bool BF>
  MQKV_OP __m512i Table16(V table) {
    __m256i h;
    if constexpr (BF) {
      h = _mm512_cvtepi32_epi16(BF16Lanes(table.r[0]));
    } else {
      h = _mm512_cvtps_ph(table.r[0], _MM_FROUND_TO_NEAREST_INT);
    }
    alignas(64) static constexpr auto kRep = [] {
      std::array<uint16_t, 32> t{};
      for (int i = 0; i < 32; ++i) t[i] = static_cast<uint16_t>(i & ((1 << B) - 1));
      return t;
    }();
    return _mm512_permutexvar_epi16(_mm512_load_si512(kRep.data()), _mm512_castsi256_si512(h));
  }
  // 32 codes of B <= 4 bits (4B bytes, read as 16 at p) -> 32 16-bit results: one broadcast load,
  // a byte shuffle into 16-bit lanes (absolute byte indices < 16: every 128-bit lane holds the same
  // 16 bytes), a variable 16-bit shift, vpermw, one store.
  template <int B>
  MQKV_OP void Lookup16(const uint8_t* p, __m512i table, uint16_t* d) {
    alignas(64) static constexpr auto kBytes = Wide16UnpackBytes<B, 32>();
    alignas(64) static constexpr auto kShifts = WideUnpackShifts<B, 32, uint16_t>();
    const __m512i src = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i x = _mm512_shuffle_epi8(src, _mm512_load_si512(kBytes.data()));
    const __m512i k = _mm512_srlv_epi16(x, _mm512_load_si512(kShifts.data()));
    _mm512_storeu_si512(d, _mm512_permutexvar_epi16(k, table));
  }
  // xsimd 8.1 has no run-time-index permute: vpermps.
  MQKV_OP V Lookup(I q, const float* L, int) { return {F(_mm512_permutexvar_ps(q.r[0], _mm512_load_ps(L)))}; }
  // xsimd 8.1 has no fp16 conversions.
  MQKV_OP void StoreF16(uint16_t* d, V v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm512_cvtps_ph(v.r[0], _MM_FROUND_TO_NEAREST_INT));
  }
  MQKV_OP V LoadF16(const uint8_t* p) { return {F(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))))}; }
  // xsimd 8.1 has no narrowing conversion (u32 -> u16): vpmovdw.
  MQKV_OP void Narrow16(uint16_t* d, const U* v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm512_cvtepi32_epi16(v[0]));
  }
  // xsimd 8.1's AVX-512 select on 32-bit integers runs as two AVX2 halves: a mask blend here.
  MQKV_OP __m512i BF16Lanes(__m512 v) {  // bf16 bits in the low half of each 32-bit lane
    const __m512i x = _mm512_castps_si512(v);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(x, C(0x7FFFFFFF)), C(0x7F800000));
    const __m512i hi = _mm512_srli_epi32(x, 16);
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, C(0x7FFF)), _mm512_and_si512(hi, C(1))), 16);
    return _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(hi, C(0x40)));
  }
  MQKV_OP void StoreBF16(uint16_t* d, V v) {
    const U o(BF16Lanes(v.r[0]));
    Narrow16(d, &o);
  }

  // In-vector butterflies. xsimd 8.1's swizzle is always vpermps with an index vector (and its
  // select on a constant mask builds the mask at run time); the stages need in-lane vpermilps /
  // vshuff32x4 with immediates and blends on constant masks.
  // Stage h's multipliers: +1 in the lanes with bit h clear, -1 in the others (rows h = 1, 2, 4, 8).
  alignas(64) static constexpr float kSigns[4][16] = {
      {1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1},
      {1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1},
      {1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1},
      {1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1}};
  MQKV_OP __m512 Signs(int stage) { return _mm512_load_ps(kSigns[stage]); }
  // s + (+-v) as one fused multiply-add by +-1: the product v * +-1 is exact, so the single rounding
  // is the sum's, bit for bit s + (+-v) (zeros' signs included). See simd_xsimd.h StageInFinite.
  MQKV_OP void FwhtIntraFinite(V& x) {
    __m512 v = x.r[0];
    v = _mm512_fmadd_ps(v, Signs(0), _mm512_permute_ps(v, 0xB1));
    v = _mm512_fmadd_ps(v, Signs(1), _mm512_permute_ps(v, 0x4E));
    v = _mm512_fmadd_ps(v, Signs(2), _mm512_shuffle_f32x4(v, v, 0xB1));
    v = _mm512_fmadd_ps(v, Signs(3), _mm512_shuffle_f32x4(v, v, 0x4E));
    x.r[0] = v;
  }
  MQKV_OP void FwhtIntra(V& x) {  // see simd_xsimd.h StageIn
    __m512 v = x.r[0];
    __m512 s = _mm512_permute_ps(v, 0xB1);  // lanes j ^ 1
    v = _mm512_mask_blend_ps(0xAAAA, _mm512_add_ps(v, s), _mm512_sub_ps(s, v));
    s = _mm512_permute_ps(v, 0x4E);  // j ^ 2
    v = _mm512_mask_blend_ps(0xCCCC, _mm512_add_ps(v, s), _mm512_sub_ps(s, v));
    s = _mm512_shuffle_f32x4(v, v, 0xB1);  // j ^ 4
    v = _mm512_mask_blend_ps(0xF0F0, _mm512_add_ps(v, s), _mm512_sub_ps(s, v));
    s = _mm512_shuffle_f32x4(v, v, 0x4E);  // j ^ 8
    v = _mm512_mask_blend_ps(0xFF00, _mm512_add_ps(v, s), _mm512_sub_ps(s, v));
    x.r[0] = v;
  }

  // 16 codes -> 2B bytes: one byte per code, then pairs, quads and the two 8-code halves merged
  // (xsimd 8.1 has no narrowing conversion nor pmaddubsw / pmaddwd).
  template <int B>
  MQKV_OP void StoreCodes(uint8_t* d, I q) {
    const __m128i b = _mm512_cvtepi32_epi8(q.r[0]);
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
};

using K = Impl<Avx512>;
using E = EncodeImpl<Avx512>;
const Kernels kAvx512 = {"avx512", Avx512::N, &K::Rows, &K::F16Rows, &E::Ranges, &E::MetaF16,
                         &E::ColumnRanges, &E::MetaCodes, &E::Rotate, &E::Codes,
                         &rope::RotateRowsAny};

}  // namespace

const Kernels* KernelsAvx512() { return &kAvx512; }

}  // namespace mqkv::codec::simd

#else
namespace mqkv::codec::simd {
const Kernels* KernelsAvx512() { return nullptr; }
}  // namespace mqkv::codec::simd
#endif
