// The per-ISA operations of the SIMD kernels, written once over xsimd::batch (xsimd 8.1), for
// every architecture mqkv builds kernels for: sse2, avx2, avx512bw (x86) and neon64 (AArch64).
// simd_kernels.h (decode) and simd_encode_kernels.h (encode) are the algorithms; this is the
// vocabulary they are written in. Include only from the ISA translation units (simd_sse2.cpp,
// simd_avx2.cpp, simd_avx512.cpp, simd_neon.cpp), inside an anonymous namespace (simd.h).
//
// Ops<A, R>: a kernel "vector" is R registers of xsimd::batch<float, A> (R = 2 for the 128-bit
// ISAs, so every ISA has vectors of 8 or 16 lanes: the 8-code unit of every bit width). An ISA's
// traits type derives from Ops<A, R> and overrides an operation only where xsimd 8.1 has none
// that is fast; each override names the missing operation in a comment and has a twin in each
// other ISA file. The generic forms here are exact too (they are what an ISA without an override
// runs), just slower.
//
// Arithmetic: only single binary32 operations (+, -, *, / and min/max on finite values), never
// fused (the project builds with -ffp-contract=off); conversions round to nearest even.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>

#include <xsimd/xsimd.hpp>

#include "simd_kernels.h"  // LoadLE / StoreLE

// Every operation is forced inline: the kernels are long templates, and GCC's inliner otherwise
// leaves some of these small functions (the R = 2 ones especially) as calls in the inner loops.
#define MQKV_OP static inline __attribute__((always_inline))

namespace mqkv::codec::simd {
namespace {  // internal linkage for every instantiation (simd.h: no COMDAT shared across ISA TUs)

template <class A, int R>
struct Ops {
  using Arch = A;
  using F = xsimd::batch<float, A>;
  using U = xsimd::batch<uint32_t, A>;
  using S = xsimd::batch<int32_t, A>;
  static constexpr uint32_t W = static_cast<uint32_t>(F::size);  // lanes per register
  static constexpr uint32_t N = W * R;                            // lanes per kernel vector
  static constexpr bool kHasF16 = true;
  static_assert(N == 8 || N == 16, "kernel vectors are 8 or 16 lanes");

  struct V {
    F r[R];
  };
  struct I {
    S r[R];
  };

  template <class Fn>
  MQKV_OP V Map(Fn fn) {
    V o;
    for (int i = 0; i < R; ++i) o.r[i] = fn(i);
    return o;
  }

  // ---- plain arithmetic -----------------------------------------------------------------------
  MQKV_OP V Load(const float* p) { return Map([&](int i) __attribute__((always_inline)) { return F::load_unaligned(p + i * W); }); }
  MQKV_OP void Store(float* d, V v) {
    for (int i = 0; i < R; ++i) v.r[i].store_unaligned(d + i * W);
  }
  MQKV_OP V Bcast(float f) { return Map([&](int) __attribute__((always_inline)) { return F(f); }); }
  MQKV_OP V Mul(V a, V b) { return Map([&](int i) __attribute__((always_inline)) { return a.r[i] * b.r[i]; }); }
  MQKV_OP V Add(V a, V b) { return Map([&](int i) __attribute__((always_inline)) { return a.r[i] + b.r[i]; }); }
  MQKV_OP V Sub(V a, V b) { return Map([&](int i) __attribute__((always_inline)) { return a.r[i] - b.r[i]; }); }
  MQKV_OP V Div(V a, V b) { return Map([&](int i) __attribute__((always_inline)) { return a.r[i] / b.r[i]; }); }
  // The encoder's min / max: a < b ? a : b and a > b ? a : b (else b), so that which zero a range
  // keeps follows the reference's std::min / std::max order. x86's minps / maxps are exactly that
  // (xsimd::min / max map to them); NEON's FMIN / FMAX return -0 for (+0, -0) either way round,
  // so there the select form.
  MQKV_OP F Min1(F a, F b) {
#if defined(__x86_64__) || defined(__i386__)
    return xsimd::min(a, b);
#else
    return xsimd::select(a < b, a, b);
#endif
  }
  MQKV_OP F Max1(F a, F b) {
#if defined(__x86_64__) || defined(__i386__)
    return xsimd::max(a, b);
#else
    return xsimd::select(a > b, a, b);
#endif
  }
  MQKV_OP V Min(V a, V b) { return Map([&](int i) __attribute__((always_inline)) { return Min1(a.r[i], b.r[i]); }); }
  MQKV_OP V Max(V a, V b) { return Map([&](int i) __attribute__((always_inline)) { return Max1(a.r[i], b.r[i]); }); }
  MQKV_OP V Or(V a, V b) { return Map([&](int i) __attribute__((always_inline)) { return a.r[i] | b.r[i]; }); }
  // v with the sign bits of the mask words m flipped (m[j] is 0 or 0x80000000).
  MQKV_OP V Xor(V v, const uint32_t* m) {
    return Map([&](int i) __attribute__((always_inline)) { return xsimd::bitwise_cast<F>(xsimd::bitwise_cast<U>(v.r[i]) ^ U::load_unaligned(m + i * W)); });
  }
  MQKV_OP bool AnyBits(V v) {
    U o = xsimd::bitwise_cast<U>(v.r[0]);
    for (int i = 1; i < R; ++i) o = o | xsimd::bitwise_cast<U>(v.r[i]);
    return xsimd::any(o != U(0u));
  }
  // Horizontal min / max of finite values (a zero's sign unspecified). xsimd 8.1 has no
  // reduce_min / reduce_max (xsimd 9 added them): halves folded with swizzles, lane 0 read back.
  template <bool Max, uint32_t H = W / 2>
  MQKV_OP F Fold(F m) {
    if constexpr (H == 0) {
      return m;
    } else {
      const F s = xsimd::swizzle(m, xsimd::make_batch_constant<U, XorLane<H>>());
      return Fold<Max, H / 2>(Max ? xsimd::max(m, s) : xsimd::min(m, s));
    }
  }
  MQKV_OP float Lane0(F m) {
    alignas(64) float t[W];
    m.store_aligned(t);
    return t[0];
  }
  MQKV_OP float HMin(V v) {
    F m = v.r[0];
    for (int i = 1; i < R; ++i) m = xsimd::min(m, v.r[i]);
    return Lane0(Fold<false>(m));
  }
  MQKV_OP float HMax(V v) {
    F m = v.r[0];
    for (int i = 1; i < R; ++i) m = xsimd::max(m, v.r[i]);
    return Lane0(Fold<true>(m));
  }

  // ---- codes ----------------------------------------------------------------------------------
  MQKV_OP V ToFloat(I q) { return Map([&](int i) __attribute__((always_inline)) { return xsimd::batch_cast<float>(q.r[i]); }); }

  // Lane j's shift: bit offset of code j within its register's word.
  template <int B, int Reg>
  struct CodeShift {
    static constexpr uint32_t get(size_t j, size_t) {
      return static_cast<uint32_t>(B == 8 ? 8 * j : B * (Reg * W + j));
    }
  };
  template <int B, int Reg>
  MQKV_OP U Shifts() {
    return xsimd::make_batch_constant<U, CodeShift<B, Reg>>();
  }

  // N codes of B bits (N * B / 8 bytes at p). Generic for 8-lane vectors (the 128-bit ISAs):
  // one little-endian word per kernel vector (B < 8) or per register (B = 8), moved right by
  // each lane's bit offset. 16-lane ISAs override it.
  template <int B>
  MQKV_OP I Unpack(const uint8_t* p) {
    static_assert(N == 8, "Ops::Unpack is the 8-lane form");
    I q;
    const U mask(static_cast<uint32_t>((1u << B) - 1u));
    if constexpr (B == 8) {
      q.r[0] = xsimd::bitwise_cast<S>((U(static_cast<uint32_t>(LoadLE<4>(p))) >> Shifts<8, 0>()) & mask);
      if constexpr (R == 2) q.r[1] = xsimd::bitwise_cast<S>((U(static_cast<uint32_t>(LoadLE<4>(p + 4))) >> Shifts<8, 0>()) & mask);
    } else {
      const U w(static_cast<uint32_t>(LoadLE<B>(p)));
      q.r[0] = xsimd::bitwise_cast<S>((w >> Shifts<B, 0>()) & mask);
      if constexpr (R == 2) q.r[1] = xsimd::bitwise_cast<S>((w >> Shifts<B, 1>()) & mask);
    }
    return q;
  }

  // Codebook levels L[q] (L holds 16 floats). xsimd 8.1 has no register permute with run-time
  // indices (swizzle takes compile-time ones): the generic form reads memory per lane.
  MQKV_OP V Lookup(I q, const float* L, int) {
    return Map([&](int i) __attribute__((always_inline)) {
      alignas(64) int32_t t[W];
      alignas(64) float o[W];
      q.r[i].store_aligned(t);
      for (uint32_t j = 0; j < W; ++j) o[j] = L[t[j]];
      return F::load_aligned(o);
    });
  }

  // Affine code of d = (x - min) / scale: the nearest integer (ties to even) in [0, levels].
  // Clamping first gives the same codes as rounding first (0 and levels are integers) and keeps
  // the conversion in range.
  MQKV_OP I Quantize(V d, V levels) {
    I q;
    for (int i = 0; i < R; ++i) q.r[i] = xsimd::nearbyint_as_int(Min1(Max1(d.r[i], F(0.f)), levels.r[i]));
    return q;
  }
  // q where s > 0, else 0 (a zero or NaN scale codes every value 0).
  MQKV_OP I MaskPositive(I q, V s) {
    I o;
    for (int i = 0; i < R; ++i)
      o.r[i] = xsimd::bitwise_cast<S>(xsimd::select(s.r[i] > F(0.f), xsimd::bitwise_cast<F>(q.r[i]), F(0.f)));
    return o;
  }
  // N codes -> N * B / 8 bytes at d. xsimd 8.1 has no narrowing pack or horizontal or: the
  // generic form goes through memory.
  template <int B>
  MQKV_OP void StoreCodes(uint8_t* d, I q) {
    alignas(64) int32_t t[N];
    for (int i = 0; i < R; ++i) q.r[i].store_aligned(t + i * W);
    for (uint32_t j0 = 0; j0 < N; j0 += 8) {
      uint64_t w = 0;
      for (uint32_t j = 0; j < 8; ++j) w |= static_cast<uint64_t>(static_cast<uint32_t>(t[j0 + j])) << (B * j);
      StoreLE<B>(d + j0 * B / 8, w);
    }
  }

  // ---- conversions ----------------------------------------------------------------------------
  // binary32 -> binary16 bits in the low half of each lane, exactly numeric.h's f32_to_f16
  // (round to nearest even; NaN: quiet, payload's top bits kept).
  MQKV_OP U F16Bits(F v) {
    const U x = xsimd::bitwise_cast<U>(v);
    const U sign = x & U(0x80000000u);
    const U a = x ^ sign;
    // Normal results: rebias, then round to nearest even at bit 13.
    const U odd = (a >> 13) & U(1u);
    const U norm = (a + U(0xFFFu - (112u << 23)) + odd) >> 13;
    // Subnormal results (|x| < 2^-14): adding 0.5f puts the fp16 subnormal ulp (2^-24) at the
    // binary32 ulp, so the float add rounds to nearest even exactly there.
    const U magic(126u << 23);
    const U sub = xsimd::bitwise_cast<U>(xsimd::bitwise_cast<F>(a) + xsimd::bitwise_cast<F>(magic)) - magic;
    const S as = xsimd::bitwise_cast<S>(a);  // |x|'s bits, compared as signed (they are below 2^31)
    auto sel = [](auto cond, U t, U f) {
      return xsimd::bitwise_cast<U>(xsimd::select(cond, xsimd::bitwise_cast<S>(t), xsimd::bitwise_cast<S>(f)));
    };
    U r = sel(as < S(113 << 23), sub, norm);
    r = sel(as > S(0x477FFFFF), U(0x7C00u), r);  // overflow and infinity
    const U nan = U(0x7E00u) | ((a >> 13) & U(0x3FFu));
    r = sel(as > S(0x7F800000), nan, r);
    return r | (sign >> 16);
  }
  // binary32 -> bfloat16 bits (low half of each lane): round to nearest even, NaN quieted.
  MQKV_OP U BF16Bits(F v) {
    const U x = xsimd::bitwise_cast<U>(v);
    const S m = xsimd::bitwise_cast<S>(x & U(0x7FFFFFFFu));
    const U hi = x >> 16;
    const U r = (x + U(0x7FFFu) + (hi & U(1u))) >> 16;
    return xsimd::bitwise_cast<U>(xsimd::select(m > S(0x7F800000), xsimd::bitwise_cast<S>(hi | U(0x40u)), xsimd::bitwise_cast<S>(r)));
  }
  // binary16 bits (low half of each lane) -> binary32, exactly numeric.h's f16_to_f32.
  MQKV_OP F F16ToF32(U h) {
    const U sign = (h & U(0x8000u)) << 16;
    U o = (h & U(0x7FFFu)) << 13;
    const U exp = o & U(0x0F800000u);
    o = o + U((127u - 15u) << 23);
    const U quiet = xsimd::select((h & U(0x3FFu)) != U(0u), U(0x00400000u), U(0u));
    o = xsimd::select(exp == U(0x0F800000u), (o + U((128u - 16u) << 23)) | quiet, o);  // inf / NaN
    // Zero and subnormal: exponent 1, then subtract 2^-14 (exact).
    const F sub = xsimd::bitwise_cast<F>(o + U(1u << 23)) - xsimd::bitwise_cast<F>(U(113u << 23));
    o = xsimd::select(exp == U(0u), xsimd::bitwise_cast<U>(sub), o);
    return xsimd::bitwise_cast<F>(o | sign);
  }

  // N 16-bit values (the low halves of the lanes) -> d. xsimd 8.1 has no narrowing conversion:
  // the generic form goes through memory.
  MQKV_OP void Narrow16(uint16_t* d, const U* v) {
    alignas(64) uint32_t t[W];
    for (int i = 0; i < R; ++i) {
      v[i].store_aligned(t);
      for (uint32_t j = 0; j < W; ++j) d[i * W + j] = static_cast<uint16_t>(t[j]);
    }
  }
  // xsimd 8.1 has no fp16 type or conversion: the generic forms are the exact integer ones.
  MQKV_OP void StoreF16(uint16_t* d, V v) {
    U b[R];
    for (int i = 0; i < R; ++i) b[i] = F16Bits(v.r[i]);
    Narrow16(d, b);
  }
  MQKV_OP void StoreBF16(uint16_t* d, V v) {
    U b[R];
    for (int i = 0; i < R; ++i) b[i] = BF16Bits(v.r[i]);
    Narrow16(d, b);
  }
  MQKV_OP V LoadF16(const uint8_t* p) {
    alignas(64) uint32_t t[N];
    for (uint32_t j = 0; j < N; ++j) t[j] = static_cast<uint32_t>(p[2 * j]) | static_cast<uint32_t>(p[2 * j + 1]) << 8;
    return Map([&](int i) __attribute__((always_inline)) { return F16ToF32(U::load_aligned(t + i * W)); });
  }

  // ---- Walsh-Hadamard butterflies within a vector ---------------------------------------------
  template <uint32_t H>
  struct XorLane {
    static constexpr uint32_t get(size_t j, size_t) { return static_cast<uint32_t>(j ^ H); }
  };
  template <uint32_t H>
  struct UpperLane {
    static constexpr bool get(size_t j, size_t) { return (j & H) != 0; }
  };
  template <uint32_t H>
  struct UpperSign {
    static constexpr uint32_t get(size_t j, size_t) { return (j & H) != 0 ? 0x80000000u : 0u; }
  };

  // Stage h within a register: lanes with bit h clear get a + b (a = v[j], b = v[j ^ h]), the
  // others a - b with a = v[j ^ h], b = v[j]: the reference's operand order, NaN payloads included.
  template <uint32_t H>
  MQKV_OP F StageIn(F v) {
    const F s = xsimd::swizzle(v, xsimd::make_batch_constant<U, XorLane<H>>());
    return xsimd::select(xsimd::make_batch_bool_constant<F, UpperLane<H>>(), s - v, v + s);
  }
  template <uint32_t H>
  static constexpr auto kUpperMinusOne = [] {  // +1 in the lanes with bit h clear, -1 in the others
    std::array<float, W> a{};
    for (uint32_t j = 0; j < W; ++j) a[j] = (j & H) != 0 ? -1.0f : 1.0f;
    return a;
  }();
  // The encoder's form: s + (+-v), equal to the above for every non-NaN value (x - y is
  // x + (-y); + commutes), one operation fewer per stage than a select. Where xsimd's fma is one
  // fused instruction (neon: vfmaq_f32) the sign and the sum are one operation: v * (+-1) is exact,
  // so the single rounding is the sum's, bit for bit s + (+-v), zeros' signs included (the x86
  // files' FwhtIntraFinite do the same with vfmadd). Elsewhere (sse2: fma is a multiply and an
  // add) the sign is an xor.
  static constexpr bool kFusedMulAdd = std::is_base_of_v<xsimd::neon, A>;
  template <uint32_t H>
  MQKV_OP F StageInFinite(F v) {
    const F s = xsimd::swizzle(v, xsimd::make_batch_constant<U, XorLane<H>>());
    if constexpr (kFusedMulAdd) {
      return xsimd::fma(v, F::load_unaligned(kUpperMinusOne<H>.data()), s);
    } else {
      return s + xsimd::bitwise_cast<F>(xsimd::bitwise_cast<U>(v) ^ U(xsimd::make_batch_constant<U, UpperSign<H>>()));
    }
  }
  template <bool Finite, uint32_t H = 1>
  MQKV_OP void StagesIn(F& v) {
    if constexpr (H < W) {
      v = Finite ? StageInFinite<H>(v) : StageIn<H>(v);
      StagesIn<Finite, 2 * H>(v);
    }
  }
  // Butterflies h = 1 .. N/2 within the kernel vector, in stage order (the last across the
  // registers when R = 2: a + b / a - b with a the first register, as the reference).
  template <bool Finite>
  MQKV_OP void Stages(V& v) {
    for (int i = 0; i < R; ++i) StagesIn<Finite>(v.r[i]);
    if constexpr (R == 2) {
      const F a = v.r[0];
      v.r[0] = a + v.r[1];
      v.r[1] = a - v.r[1];
    }
  }
  MQKV_OP void FwhtIntra(V& v) { Stages<false>(v); }
  MQKV_OP void FwhtIntraFinite(V& v) { Stages<true>(v); }
};

}  // namespace
}  // namespace mqkv::codec::simd
