// The SIMD affine encode kernels, written once over an ISA traits type K (the decoder's, see
// simd_kernels.h) and instantiated in simd_sse2.cpp / simd_avx2.cpp / simd_avx512.cpp. Include
// only from those files, after simd_kernels.h, inside the same rules (no external linkage).
//
// Beyond the decoder's operations, K provides:
//   V Min(V a, V b), Max(V a, V b)   minps / maxps: a < b ? a : b, a > b ? a : b (else b)
//   float HMin(V), HMax(V)           horizontal min / max (values; a zero's sign is not kept)
//   V Or(V, V), bool AnyBits(V)      bitwise or; whether any bit is set
//   I Quantize(V d, V levels)        round half to even, clamped to [0, levels], to int32
//   I MaskPositive(I q, V s)         q where s > 0, else 0
//   template <int B> void StoreCodes(uint8_t* dst, I q)   N codes of B bits, exactly N*B/8 bytes
//   void FwhtIntraFinite(V&)         the in-vector butterflies, exact for non-NaN values
//   optional template <int B> void Pack4(uint8_t* dst, I, I, I, I)   4N codes at once
//
// Arithmetic per value is the reference's (lowbit::EncodeAffineScalar): q = clamp(round_even(
// (x - mn) / s)) with a true division (no reciprocal, no FMA), 0 where !(s > 0). Ranges: min /
// max of the group's values (the caller re-derives groups whose min or max is zero, where the
// reference's first-smallest / last-largest rule decides the zero's sign). Forward Hadamard:
// sign, butterflies in the reference's stage order, times c_B.
#pragma once

#include <cstdint>
#include <cstring>

#include "simd.h"

namespace mqkv::codec::simd {

template <class K>
struct EncodeImpl {
  using V = typename K::V;
  using I = typename K::I;
  static constexpr uint32_t N = K::N;

  // ---- (a) group ranges -------------------------------------------------------------------

  // Token axis: groups of G = col_span consecutive values (G a multiple of N), rows*rv/G of them.
  static bool RangesToken(const EncodePlan& p, const float* x, uint32_t rows, float* lo, float* hi) {
    const uint32_t G = p.col_span;
    const uint64_t groups = uint64_t(rows) * p.group_cols;
    V bad = K::Sub(K::Bcast(0.0f), K::Bcast(0.0f));  // +0: no bits
    for (uint64_t i = 0; i < groups; ++i) {
      const float* v = x + i * G;
      V a = K::Load(v), b = a;
      bad = K::Or(bad, K::Sub(a, a));
      for (uint32_t k = N; k < G; k += N) {
        const V y = K::Load(v + k);
        bad = K::Or(bad, K::Sub(y, y));
        a = K::Min(a, y);
        b = K::Max(b, y);
      }
      lo[i] = K::HMin(a);
      hi[i] = K::HMax(b);
    }
    return !K::AnyBits(bad);
  }

  // Channel axis: per element e, the range down each group row's row_span rows (the last group
  // row may be short). Min(x, lo) keeps the first smallest, Max(hi, x) the last largest, as the
  // reference; lo/hi rows are rv long, one per group row.
  static bool RangesChannel(const EncodePlan& p, const float* x, uint32_t rows, float* lo, float* hi) {
    const uint32_t rv = p.row_values;
    V bad = K::Sub(K::Bcast(0.0f), K::Bcast(0.0f));
    for (uint32_t t0 = 0; t0 < rows; t0 += p.row_span) {
      const uint32_t t1 = rows - t0 < p.row_span ? rows : t0 + p.row_span;
      float* l = lo + uint64_t(t0 / p.row_span) * rv;
      float* h = hi + uint64_t(t0 / p.row_span) * rv;
      const float* r = x + uint64_t(t0) * rv;
      for (uint32_t e = 0; e < rv; e += N) {
        const V y = K::Load(r + e);
        bad = K::Or(bad, K::Sub(y, y));
        K::Store(l + e, y);
        K::Store(h + e, y);
      }
      for (uint32_t t = t0 + 1; t < t1; ++t) {
        r = x + uint64_t(t) * rv;
        for (uint32_t e = 0; e < rv; e += N) {
          const V y = K::Load(r + e);
          bad = K::Or(bad, K::Sub(y, y));
          K::Store(l + e, K::Min(y, K::Load(l + e)));
          K::Store(h + e, K::Max(K::Load(h + e), y));
        }
      }
    }
    return !K::AnyBits(bad);
  }

  static bool Ranges(const EncodePlan& p, const float* x, uint32_t rows, float* lo, float* hi) {
    return p.col_span == 1 ? RangesChannel(p, x, rows, lo, hi) : RangesToken(p, x, rows, lo, hi);
  }

  // ---- (b) fp16 metadata ----------------------------------------------------------------------

  // n values -> fp16 (round to nearest even, as numeric.h f32_to_f16) at part (little-endian),
  // their binary32 values to decoded; false if one is not finite (outside the fp16 range).
  static bool MetaF16(const float* v, uint64_t n, uint8_t* part, float* decoded) {
    V bad = K::Sub(K::Bcast(0.0f), K::Bcast(0.0f));
    uint64_t i = 0;
    for (; i + N <= n; i += N) {
      K::StoreF16(reinterpret_cast<uint16_t*>(part + 2 * i), K::Load(v + i));
      const V d = K::LoadF16(part + 2 * i);
      bad = K::Or(bad, K::Sub(d, d));
      K::Store(decoded + i, d);
    }
    if (i < n) {
      alignas(64) float t[16] = {};
      alignas(64) uint16_t h[16] = {};
      std::memcpy(t, v + i, (n - i) * 4);
      K::StoreF16(h, K::Load(t));
      const V d = K::LoadF16(reinterpret_cast<const uint8_t*>(h));
      bad = K::Or(bad, K::Sub(d, d));
      K::Store(t, d);
      std::memcpy(part + 2 * i, h, (n - i) * 2);
      std::memcpy(decoded + i, t, (n - i) * 4);
    }
    return !K::AnyBits(bad);
  }

  // Meta-coded fields (lowbit::StoreMetaField), on the grid values[rows][cols], cols a multiple
  // of N. Per column: lo = the first smallest (std::min), hi = the first largest (std::max).
  static void ColumnRanges(const float* v, uint32_t rows, uint32_t cols, float* lo, float* hi) {
    for (uint32_t e = 0; e < cols; e += N) {
      K::Store(lo + e, K::Load(v + e));
      K::Store(hi + e, K::Load(v + e));
    }
    for (uint32_t r = 1; r < rows; ++r) {
      const float* row = v + uint64_t(r) * cols;
      for (uint32_t e = 0; e < cols; e += N) {
        const V y = K::Load(row + e);
        K::Store(lo + e, K::Min(y, K::Load(lo + e)));  // y < lo ? y : lo
        K::Store(hi + e, K::Max(y, K::Load(hi + e)));  // y > hi ? y : hi
      }
    }
  }

  // M-bit codes c = clamp(round_even((v - lo) / step)) (0 where !(step > 0)) of every value,
  // packed in grid order, and the decoded values float(c) * step + lo.
  template <int M>
  static void MetaCodesM(const float* v, uint32_t rows, uint32_t cols, const float* lo, const float* step, uint8_t* part,
                         float* decoded) {
    const V cmax = K::Bcast(float((1u << M) - 1u));
    for (uint32_t r = 0; r < rows; ++r)
      for (uint32_t e = 0; e < cols; e += N) {
        const uint64_t i = uint64_t(r) * cols + e;
        const V l = K::Load(lo + e), st = K::Load(step + e);
        const I c = K::MaskPositive(K::Quantize(K::Div(K::Sub(K::Load(v + i), l), st), cmax), st);
        K::template StoreCodes<M>(part + i * M / 8, c);
        K::Store(decoded + i, K::Add(K::Mul(K::ToFloat(c), st), l));
      }
  }

  static void MetaCodes(const float* v, uint32_t rows, uint32_t cols, uint32_t meta_bits, const float* lo, const float* step,
                        uint8_t* part, float* decoded) {
    if (meta_bits == 4) return MetaCodesM<4>(v, rows, cols, lo, step, part, decoded);
    MetaCodesM<8>(v, rows, cols, lo, step, part, decoded);
  }

  // ---- forward Hadamard rotation ------------------------------------------------------------

  // One rotation block of BV vectors in registers: sign, in-vector stages, cross-vector stages
  // (the reference's stage order), times c_B.
  template <int BV>
  static void BlockHadamard(const float* src, const uint32_t* sign, V c, float* dst) {
    V v[BV];
#pragma GCC unroll 16
    for (int i = 0; i < BV; ++i) {
      v[i] = K::Xor(K::Load(src + i * N), sign + i * N);
      K::FwhtIntraFinite(v[i]);
    }
    Impl<K>::template CrossStages<BV>(v);
#pragma GCC unroll 16
    for (int i = 0; i < BV; ++i) K::Store(dst + i * N, K::Mul(v[i], c));
  }

  template <int BV>
  static void RotateRows(const EncodePlan& p, const float* src, uint64_t n, float* dst) {
    const V c = K::Bcast(p.rot_c);
    const uint32_t rv = p.row_values;
    for (uint64_t r = 0; r < n; r += rv)
      for (uint32_t e = 0; e < rv; e += BV * N) BlockHadamard<BV>(src + r + e, p.sign + e, c, dst + r + e);
  }

  static void Rotate(const EncodePlan& p, const float* src, uint32_t rows, float* dst) {
    const uint64_t n = uint64_t(rows) * p.row_values;
    const uint32_t bv = p.rot_block >= N ? p.rot_block / N : 0;
    switch (bv) {
      case 1: return RotateRows<1>(p, src, n, dst);
      case 2: return RotateRows<2>(p, src, n, dst);
      case 4: return RotateRows<4>(p, src, n, dst);
      case 8: return RotateRows<8>(p, src, n, dst);
      case 16: return RotateRows<16>(p, src, n, dst);
      default: break;
    }
    // Blocks shorter than a vector or longer than 16: sign, the scalar butterflies, times c_B.
    const uint32_t rv = p.row_values;
    const V c = K::Bcast(p.rot_c);
    for (uint64_t r = 0; r < n; r += rv) {
      for (uint32_t e = 0; e < rv; e += N) K::Store(dst + r + e, K::Xor(K::Load(src + r + e), p.sign + e));
      for (uint32_t b0 = 0; b0 < rv; b0 += p.rot_block) p.butterflies(dst + r + b0, p.rot_block);
      for (uint32_t e = 0; e < rv; e += N) K::Store(dst + r + e, K::Mul(K::Load(dst + r + e), c));
    }
  }

  // ---- (c) codes ----------------------------------------------------------------------------

  static I Code(V x, V s, V mn, V levels) {
    return K::MaskPositive(K::Quantize(K::Div(K::Sub(x, mn), s), levels), s);
  }

  // 4N codes -> 4N*B/8 bytes: the ISA's four-vector packer where it has one.
  template <int B>
  static void Store4(uint8_t* d, I q0, I q1, I q2, I q3) {
    if constexpr (requires { K::template Pack4<B>(d, q0, q1, q2, q3); }) {
      K::template Pack4<B>(d, q0, q1, q2, q3);
    } else {
      K::template StoreCodes<B>(d, q0);
      K::template StoreCodes<B>(d + N * B / 8, q1);
      K::template StoreCodes<B>(d + 2 * N * B / 8, q2);
      K::template StoreCodes<B>(d + 3 * N * B / 8, q3);
    }
  }

  // Token axis: group i of the chunk covers values [i*G, (i+1)*G) and codes bytes from i*G*B/8.
  // Prefetch of the 4N values at ahead[off] (64-byte lines), within the ahead_n values.
  static inline __attribute__((always_inline)) void Ahead(const float* ahead, uint64_t ahead_n, uint64_t off) {
    if (off < ahead_n)
      for (uint32_t l = 0; l < 4 * N; l += 16) __builtin_prefetch(ahead + off + l, 0, 3);
  }

  template <int B>
  static void CodesToken(const EncodePlan& p, const float* x, uint32_t rows, const float* s, const float* mn, uint8_t* dst,
                         const float* ahead, uint64_t ahead_n) {
    const uint32_t G = p.col_span;
    const uint64_t groups = uint64_t(rows) * p.group_cols;
    const V levels = K::Bcast(p.levels);
    const uint32_t G4 = G - G % (4 * N);  // values of each group in 4-vector steps
    for (uint64_t i = 0; i < groups; ++i) {
      const V vs = K::Bcast(s[i]), vm = K::Bcast(mn[i]);
      const float* v = x + i * G;
      uint8_t* d = dst + i * G * B / 8;
      uint32_t k = 0;
      for (; k < G4; k += 4 * N) {
        Ahead(ahead, ahead_n, i * G + k);
        Store4<B>(d + k * B / 8, Code(K::Load(v + k), vs, vm, levels), Code(K::Load(v + k + N), vs, vm, levels),
                  Code(K::Load(v + k + 2 * N), vs, vm, levels), Code(K::Load(v + k + 3 * N), vs, vm, levels));
      }
      for (; k < G; k += N) K::template StoreCodes<B>(d + k * B / 8, Code(K::Load(v + k), vs, vm, levels));
    }
  }

  // Channel axis: row t of group row gr uses s/mn[gr*rv + e].
  template <int B>
  static void CodesChannel(const EncodePlan& p, const float* x, uint32_t rows, const float* s, const float* mn, uint8_t* dst,
                           const float* ahead, uint64_t ahead_n) {
    const uint32_t rv = p.row_values;
    const uint32_t rv4 = rv - rv % (4 * N);
    const V levels = K::Bcast(p.levels);
    for (uint32_t t = 0; t < rows; ++t) {
      const float* S = s + uint64_t(t / p.row_span) * rv;
      const float* M = mn + uint64_t(t / p.row_span) * rv;
      const float* r = x + uint64_t(t) * rv;
      uint8_t* d = dst + uint64_t(t) * rv * B / 8;
      auto code = [&](uint32_t e) { return Code(K::Load(r + e), K::Load(S + e), K::Load(M + e), levels); };
      uint32_t e = 0;
      for (; e < rv4; e += 4 * N) {
        Ahead(ahead, ahead_n, uint64_t(t) * rv + e);
        Store4<B>(d + e * B / 8, code(e), code(e + N), code(e + 2 * N), code(e + 3 * N));
      }
      for (; e < rv; e += N) K::template StoreCodes<B>(d + e * B / 8, code(e));
    }
  }

  template <int B>
  static void CodesB(const EncodePlan& p, const float* x, uint32_t rows, const float* s, const float* mn, uint8_t* dst,
                     const float* ahead, uint64_t ahead_n) {
    if (p.col_span == 1) return CodesChannel<B>(p, x, rows, s, mn, dst, ahead, ahead_n);
    CodesToken<B>(p, x, rows, s, mn, dst, ahead, ahead_n);
  }

  static void Codes(const EncodePlan& p, const float* x, uint32_t rows, const float* s, const float* mn, uint8_t* dst,
                    const float* ahead, uint64_t ahead_n) {
    switch (p.bits) {
      case 2: return CodesB<2>(p, x, rows, s, mn, dst, ahead, ahead_n);
      case 3: return CodesB<3>(p, x, rows, s, mn, dst, ahead, ahead_n);
      case 4: return CodesB<4>(p, x, rows, s, mn, dst, ahead, ahead_n);
      case 8: return CodesB<8>(p, x, rows, s, mn, dst, ahead, ahead_n);
    }
  }
};

}  // namespace mqkv::codec::simd
