// NEON (AArch64 Advanced SIMD) kernels of the SIMD decoder and encoder: 8 lanes, two 128-bit
// registers per vector (simd_xsimd.h Ops<neon64, 2>). Advanced SIMD, including the fp16
// conversions FCVTL / FCVTN, is part of the AArch64 baseline, so this file needs no flags and
// the kernels are always available there. The overrides below are the NEON twins of the x86
// files' (where xsimd 8.1 lacks a fast operation). See simd_kernels.h for the contract.
//
// Bit identity with the scalar reference on AArch64: FPCR's defaults under Linux (round to
// nearest even, no flush-to-zero, no default NaN) make every vector operation round and
// propagate NaNs as the scalar code compiled for the same CPU does; FCVTN/FCVTL round and quiet
// NaNs as numeric.h's f32_to_f16 / f16_to_f32 specify (tests/test_simd.cpp runs it under QEMU).
#include "simd.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include "simd_xsimd.h"
#include "simd_encode_kernels.h"
#include "rope_kernels.h"

namespace mqkv::codec::simd {
namespace {

struct Neon : Ops<xsimd::neon64, 2> {
  // xsimd 8.1's float division on neon64 is 32-bit NEON's: a reciprocal estimate refined by two
  // Newton steps, which is not the correctly rounded quotient the reference computes (found by
  // test_encode_simd: codes off by one). AArch64's FDIV is.
  MQKV_OP V Div(V a, V b) { return {{F(vdivq_f32(a.r[0], b.r[0])), F(vdivq_f32(a.r[1], b.r[1]))}}; }

  // 8 codes of B = 2, 3, 4 bits from a 16-byte load (simd_kernels.h WideUnpackBytes): TBL
  // byte shuffles (an index of 0x80 reads as zero) and a variable shift (USHL by minus the
  // count). The twin of the x86 files' pshufb form; xsimd 8.1 has no byte shuffle.
  template <int B>
  MQKV_OP I UnpackWide(const uint8_t* p) {
    static constexpr auto kBytes = WideUnpackBytes<B, 8>();
    static constexpr auto kShifts = WideUnpackShifts<B, 8>();
    const uint8x16_t src = vld1q_u8(p);
    const uint32x4_t m = vdupq_n_u32((1u << B) - 1u);
    I q;
    for (int i = 0; i < 2; ++i) {
      const uint32x4_t x = vreinterpretq_u32_u8(vqtbl1q_u8(src, vld1q_u8(kBytes.data() + 16 * i)));
      const int32x4_t sh = vnegq_s32(vreinterpretq_s32_u32(vld1q_u32(kShifts.data() + 4 * i)));
      q.r[i] = S(vreinterpretq_s32_u32(vandq_u32(vshlq_u32(x, sh), m)));
    }
    return q;
  }
  // xsimd 8.1 has no run-time-index permute: TBL over the levels' bytes (16 floats = 4 tables;
  // 8 floats for codes of 3 bits or fewer). Byte k of lane j is byte 4 q_j + k of L.
  MQKV_OP V Lookup(I q, const float* L, int bits) {
    const uint8_t* b = reinterpret_cast<const uint8_t*>(L);
    const uint32x4_t off = vdupq_n_u32(0x03020100u);
    const uint32x4_t mul = vdupq_n_u32(0x04040404u);
    V o;
    if (bits < 4) {
      const uint8x16x2_t t = {{vld1q_u8(b), vld1q_u8(b + 16)}};
      for (int i = 0; i < 2; ++i) {
        const uint8x16_t idx = vreinterpretq_u8_u32(vmlaq_u32(off, vreinterpretq_u32_s32(q.r[i]), mul));
        o.r[i] = F(vreinterpretq_f32_u8(vqtbl2q_u8(t, idx)));
      }
    } else {
      const uint8x16x4_t t = {{vld1q_u8(b), vld1q_u8(b + 16), vld1q_u8(b + 32), vld1q_u8(b + 48)}};
      for (int i = 0; i < 2; ++i) {
        const uint8x16_t idx = vreinterpretq_u8_u32(vmlaq_u32(off, vreinterpretq_u32_s32(q.r[i]), mul));
        o.r[i] = F(vreinterpretq_f32_u8(vqtbl4q_u8(t, idx)));
      }
    }
    return o;
  }
  // Register table of up to 8 floats indexed by codes (simd_kernels.h RowLut): TBL over the
  // table's 32 bytes, as Lookup does from memory. The twin of the x86 files' vpermps.
  static constexpr int kLutBits = 3;
  template <int B>
  MQKV_OP V LookupReg(I q, V table) {
    const uint8x16x2_t t = {{vreinterpretq_u8_f32(table.r[0]), vreinterpretq_u8_f32(table.r[1])}};
    const uint32x4_t off = vdupq_n_u32(0x03020100u), mul = vdupq_n_u32(0x04040404u);
    V o;
    for (int i = 0; i < 2; ++i)
      o.r[i] = F(vreinterpretq_f32_u8(vqtbl2q_u8(t, vreinterpretq_u8_u32(vmlaq_u32(off, vreinterpretq_u32_s32(q.r[i]), mul)))));
    return o;
  }
  // 16-bit results of a group's table (simd_kernels.h RowLut), codes of up to 4 bits (kLut16Bits):
  // the 8 table values (two tables of 8 for 4-bit codes) converted once (FCVTN, or StoreBF16's
  // rounding) as 16 bytes, entry k at bytes 2k, 2k + 1, for TBL. The twin of the x86 files' Table16
  // (vcvtps2ph + pshufb / vpermw).
  static constexpr uint32_t kLut16Codes = 16;
  static constexpr int kLut16Bits = 4;
  template <bool BF>
  MQKV_OP uint8x16_t Halves16(V table) {  // the 8 values' 16-bit results
    if constexpr (BF) {
      return vreinterpretq_u8_u16(vmovn_high_u32(vmovn_u32(BF16Bits(table.r[0])), BF16Bits(table.r[1])));
    } else {
      return vreinterpretq_u8_f16(vcvt_high_f16_f32(vcvt_f16_f32(table.r[0]), table.r[1]));
    }
  }
  template <int B, bool BF>
  MQKV_OP uint8x16_t Table16(V table) {
    static_assert(B <= 3, "Table16: 8 entries of 16 bits fill TBL's 16-byte table");
    return Halves16<BF>(table);
  }
  // 4-bit codes: 16 entries of 16 bits, 32 bytes for a two-register TBL (entries 0..7, 8..15).
  // The twin of AVX2's Table16x2 (two pshufb tables, low and high bytes).
  template <int B, bool BF>
  MQKV_OP uint8x16x2_t Table16(V t0, V t1) {
    static_assert(B == 4, "Table16 of two tables: 16 entries");
    return {{Halves16<BF>(t0), Halves16<BF>(t1)}};
  }
  // 16 codes of B <= 4 bits (2B bytes, read as 16 at p) -> 16 16-bit results: per 8 codes a
  // TBL into 16-bit lanes (simd_kernels.h Wide16UnpackBytes), USHL by minus the bit offset, the
  // mask, the byte pair (2k, 2k + 1) as 0x0202 k + 0x0100, and a TBL of the table (one register
  // for B <= 3, two for B = 4).
  template <int B, class T>
  MQKV_OP void Lookup16(const uint8_t* p, T table, uint16_t* d) {
    static constexpr auto kBytes = Wide16UnpackBytes<B, 16>();
    static constexpr auto kShifts = [] {
      const auto s = WideUnpackShifts<B, 16, uint16_t>();
      std::array<int16_t, 16> t{};
      for (int i = 0; i < 16; ++i) t[i] = static_cast<int16_t>(-s[i]);
      return t;
    }();
    const uint8x16_t src = vld1q_u8(p);
    const uint16x8_t m = vdupq_n_u16((1u << B) - 1u), mul = vdupq_n_u16(0x0202), off = vdupq_n_u16(0x0100);
    for (int i = 0; i < 2; ++i) {
      const uint16x8_t x = vreinterpretq_u16_u8(vqtbl1q_u8(src, vld1q_u8(kBytes.data() + 16 * i)));
      const uint16x8_t k = vandq_u16(vshlq_u16(x, vld1q_s16(kShifts.data() + 8 * i)), m);
      const uint8x16_t idx = vreinterpretq_u8_u16(vmlaq_u16(off, k, mul));
      if constexpr (B <= 3) {
        vst1q_u8(reinterpret_cast<uint8_t*>(d + 8 * i), vqtbl1q_u8(table, idx));
      } else {
        vst1q_u8(reinterpret_cast<uint8_t*>(d + 8 * i), vqtbl2q_u8(table, idx));
      }
    }
  }
  // xsimd 8.1 has no fp16 conversions: FCVTN / FCVTL.
  MQKV_OP void StoreF16(uint16_t* d, V v) {
    const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(v.r[0]), v.r[1]);
    vst1q_u16(d, vreinterpretq_u16_f16(h));
  }
  MQKV_OP V LoadF16(const uint8_t* p) {
    const float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(p));
    return {{F(vcvt_f32_f16(vget_low_f16(h))), F(vcvt_high_f32_f16(h))}};
  }
  // xsimd 8.1 has no narrowing conversion (u32 -> u16): XTN / XTN2.
  MQKV_OP void Narrow16(uint16_t* d, const U* v) { vst1q_u16(d, vmovn_high_u32(vmovn_u32(v[0]), v[1])); }
  MQKV_OP void StoreBF16(uint16_t* d, V v) {
    const U b[2] = {BF16Bits(v.r[0]), BF16Bits(v.r[1])};
    Narrow16(d, b);
  }
  // 8 codes -> B bytes: each code shifted to its bit offset, then summed across the lanes (the
  // bits are disjoint, so the sum is the or). xsimd 8.1 has no horizontal or / add-across.
  template <int B>
  MQKV_OP void StoreCodes(uint8_t* d, I q) {
    const uint32x4_t a = vreinterpretq_u32_s32(q.r[0]), b = vreinterpretq_u32_s32(q.r[1]);
    if constexpr (B == 8) {
      const uint16x8_t h = vmovn_high_u32(vmovn_u32(a), b);
      vst1_u8(d, vmovn_u16(h));
    } else {
      static constexpr int32_t lo[4] = {0, B, 2 * B, 3 * B};
      static constexpr int32_t hi[4] = {4 * B, 5 * B, 6 * B, 7 * B};
      const uint32x4_t s = vorrq_u32(vshlq_u32(a, vld1q_s32(lo)), vshlq_u32(b, vld1q_s32(hi)));
      StoreLE<B>(d, vaddvq_u32(s));
    }
  }
};

using K = Impl<Neon>;
using E = EncodeImpl<Neon>;
const Kernels kNeon = {"neon", Neon::N, &K::Rows, &K::F16Rows, &E::Ranges, &E::MetaF16,
                       &E::ColumnRanges, &E::MetaCodes, &E::Rotate, &E::Codes,
                       &rope::RotateRowsAny};

}  // namespace

const Kernels* KernelsNeon() { return &kNeon; }

}  // namespace mqkv::codec::simd

#else
namespace mqkv::codec::simd {
const Kernels* KernelsNeon() { return nullptr; }
}  // namespace mqkv::codec::simd
#endif
