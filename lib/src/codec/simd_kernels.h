// The SIMD decode kernels, written once over an ISA "traits" type K and instantiated in
// simd_sse2.cpp / simd_avx2.cpp / simd_avx512.cpp (each compiled with its ISA's flags). Include
// only from those files, inside an anonymous namespace (see simd.h on why nothing here may have
// external linkage).
//
// K provides a float vector V and int vector I of K::N lanes (8 or 16) and:
//   template <int B> I Unpack(const uint8_t* p)   N codes of B bits at byte p (reads N*B/8 bytes)
//   V ToFloat(I), Lookup(I, const float* levels16, int bits)
//   V Load(const float*), Bcast(float), Mul, Add, Sub, Xor(V, const uint32_t*)
//   void Store(float*, V), StoreF16(uint16_t*, V), StoreBF16(uint16_t*, V)
//   V LoadF16(const uint8_t*)                     N little-endian fp16 -> binary32, exact
//   void FwhtIntra(V&)                            butterflies h = 1 .. N/2 within the vector
//
// Arithmetic per element is exactly the reference's (detail/lowbit.h): affine float(q)*s then
// +mn; codebook L[q]*s; meta c*step then +lo; Hadamard a+b / a-b per stage in stage order,
// then *c_B, then the sign bit flipped. Conversions are round-to-nearest-even like numeric.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <array>
#include <cstring>
#include <type_traits>

#include "simd.h"

namespace mqkv::codec::simd {

// Little-endian load of exactly `n` bytes (n <= 8), assembled in registers from power-of-two
// loads: a byte-wise copy into a stack word would make the wide reload wait on a failed
// store-to-load forward (measured: 3-bit decode 5x slower).
template <int n>
static inline __attribute__((always_inline)) uint64_t LoadLE(const uint8_t* p) {
  if constexpr (n == 1) return p[0];
  else if constexpr (n == 2 || n == 4 || n == 8) {
    using T = std::conditional_t<n == 2, uint16_t, std::conditional_t<n == 4, uint32_t, uint64_t>>;
    T v;
    std::memcpy(&v, p, n);
    return v;
  } else if constexpr (n == 3) {
    return LoadLE<2>(p) | LoadLE<1>(p + 2) << 16;
  } else if constexpr (n == 6) {
    return LoadLE<4>(p) | LoadLE<2>(p + 4) << 32;
  } else {
    static_assert(n == 5 || n == 7, "LoadLE: 1..8 bytes");
    return LoadLE<4>(p) | LoadLE<n - 4>(p + 4) << 32;
  }
}

// Little-endian store of the low `n` bytes of v (n <= 8) as power-of-two stores from the
// register (a memcpy of 3, 5, 6 or 7 bytes may go through the stack and stall the next load).
template <int n>
static inline __attribute__((always_inline)) void StoreLE(uint8_t* p, uint64_t v) {
  if constexpr (n == 1) {
    p[0] = static_cast<uint8_t>(v);
  } else if constexpr (n == 2 || n == 4 || n == 8) {
    using T = std::conditional_t<n == 2, uint16_t, std::conditional_t<n == 4, uint32_t, uint64_t>>;
    const T t = static_cast<T>(v);
    std::memcpy(p, &t, n);
  } else if constexpr (n == 3) {
    StoreLE<2>(p, v);
    StoreLE<1>(p + 2, v >> 16);
  } else {
    static_assert(n >= 5 && n <= 7, "StoreLE: 1..8 bytes");
    StoreLE<4>(p, v);
    StoreLE<n - 4>(p + 4, v >> 32);
  }
}

// Tables of the wide unpack (K::UnpackWide<B>, optional): code j of B bits (B <= 4) starts at bit
// B*j, so its 32-bit lane takes bytes B*j/8 and B*j/8 + 1 of the 16 bytes loaded at the vector's
// first code byte (a byte shuffle within each 128-bit lane of the loaded bytes, broadcast; 0x80
// zeroes a byte) and shifts right by B*j % 8. lanes: the ISA's lanes per vector (8 or 16).
template <int B, uint32_t lanes>
static constexpr std::array<uint8_t, 4 * lanes> WideUnpackBytes() {
  std::array<uint8_t, 4 * lanes> t{};
  for (uint32_t j = 0; j < lanes; ++j) {
    t[4 * j] = static_cast<uint8_t>(B * j / 8);
    t[4 * j + 1] = static_cast<uint8_t>(B * j / 8 + 1);
    t[4 * j + 2] = t[4 * j + 3] = 0x80;
  }
  return t;
}
// (T: the lane type, uint32_t here and uint16_t for the 16-bit unpack below.)
template <int B, uint32_t lanes, class T = uint32_t>
static constexpr std::array<T, lanes> WideUnpackShifts() {
  std::array<T, lanes> t{};
  for (uint32_t j = 0; j < lanes; ++j) t[j] = static_cast<T>(B * j % 8);
  return t;
}

// Tables of the 16-bit unpack (K::Lookup16, optional): code j of B bits (B <= 4) starts at bit B*j
// of the 16 bytes loaded at the first code byte; its 16-bit lane takes byte B*j/8 and, when the code
// reaches into it, byte B*j/8 + 1 (0x80 zeroes a byte: the last code of a 16-byte window ends in
// byte 15), and shifts right by B*j % 8 (WideUnpackShifts<B, words, uint16_t>). The bits above the
// code are the next codes': the lookup ignores them (tables replicated, K::Table16).
template <int B, uint32_t words>
static constexpr std::array<uint8_t, 2 * words> Wide16UnpackBytes() {
  std::array<uint8_t, 2 * words> t{};
  for (uint32_t j = 0; j < words; ++j) {
    t[2 * j] = static_cast<uint8_t>(B * j / 8);
    t[2 * j + 1] = (B * j + B - 1) / 8 > B * j / 8 ? static_cast<uint8_t>(B * j / 8 + 1) : 0x80;
  }
  return t;
}

// Instantiated only with traits types from an anonymous namespace, so every instantiation has
// internal linkage (simd.h).
template <class K>
struct Impl {
  using V = typename K::V;
  using I = typename K::I;
  static constexpr uint32_t N = K::N;

  // ---- output policies ----------------------------------------------------------------------
  struct OutF32 {
    float* d;
    static constexpr uint32_t kSize = 4;
    void Put(uint64_t e, V v) const { K::Store(d + e, v); }
    void Tail(uint64_t e, V v, uint32_t n) const {
      alignas(64) float t[16];
      K::Store(t, v);
      std::memcpy(d + e, t, n * 4);
    }
  };
  struct OutF16 {
    uint16_t* d;
    static constexpr uint32_t kSize = 2;
    static constexpr bool kBF16 = false;
    void Put(uint64_t e, V v) const { K::StoreF16(d + e, v); }
    void Tail(uint64_t e, V v, uint32_t n) const {
      alignas(64) uint16_t t[16];
      K::StoreF16(t, v);
      std::memcpy(d + e, t, n * 2);
    }
  };
  struct OutBF16 {
    uint16_t* d;
    static constexpr uint32_t kSize = 2;
    static constexpr bool kBF16 = true;
    void Put(uint64_t e, V v) const { K::StoreBF16(d + e, v); }
    void Tail(uint64_t e, V v, uint32_t n) const {
      alignas(64) uint16_t t[16];
      K::StoreBF16(t, v);
      std::memcpy(d + e, t, n * 2);
    }
  };

  // ---- metadata of one group row -> per-element S (and M) -------------------------------------

  static void MetaField(const DecodePlan& p, int field, uint32_t gr, float* g) {
    const uint8_t* part = field == 0 ? p.scales : p.mins;
    const uint64_t i0 = uint64_t(gr) * p.group_cols;
    uint32_t gc = 0;
    if (p.meta_bits == 16) {
      if constexpr (K::kHasF16)
        for (; gc + N <= p.group_cols; gc += N) K::Store(g + gc, K::LoadF16(part + 2 * (i0 + gc)));
      if (gc < p.group_cols) p.f16_to_f32(part + 2 * (i0 + gc), p.group_cols - gc, g + gc);
      return;
    }
    const float* lo = p.col_lo[field];
    const float* step = p.col_step[field];
    if ((i0 * p.meta_bits) % 8 == 0) {
      const uint8_t* base = part + i0 * p.meta_bits / 8;
      if (p.meta_bits == 8) {
        for (; gc + N <= p.group_cols; gc += N)
          K::Store(g + gc, K::Add(K::Mul(K::ToFloat(K::template Unpack<8>(base + gc)), K::Load(step + gc)), K::Load(lo + gc)));
      } else {
        for (; gc + N <= p.group_cols; gc += N)
          K::Store(g + gc, K::Add(K::Mul(K::ToFloat(K::template Unpack<4>(base + gc / 2)), K::Load(step + gc)), K::Load(lo + gc)));
      }
    }
    if (gc < p.group_cols) p.meta_values(p, field, i0 + gc, gc, p.group_cols - gc, g + gc);
  }

  // Expands per-group values to per-element (token axis: col_span consecutive elements share a
  // group, col_span a multiple of 8). Each store writes N lanes; a group shorter than N is
  // overwritten by the next one, and the buffers are padded for the last.
  static void Expand(const DecodePlan& p, const float* g, float* out) {
    const uint32_t G = p.col_span;
    for (uint32_t gc = 0; gc < p.group_cols; ++gc) {
      const V b = K::Bcast(g[gc]);
      float* o = out + uint64_t(gc) * G;
      for (uint32_t k = 0; k < G; k += N) K::Store(o + k, b);
    }
  }

  // Scale / min of element e (a multiple of N) of the current group row, two ways:
  // per-element arrays (channel axis, or token groups that are not a power of two >= N), or
  // one broadcast per vector from the per-group values (token groups of 2^k >= N dims).
  struct MetaArrays {
    const float* S;
    const float* M;
    V Scale(uint32_t e) const { return K::Load(S + e); }
    V Min(uint32_t e) const { return K::Load(M + e); }
  };
  struct MetaGroups {
    const float* gS;
    const float* gM;
    uint32_t shift;
    V Scale(uint32_t e) const { return K::Bcast(gS[e >> shift]); }
    V Min(uint32_t e) const { return K::Bcast(gM[e >> shift]); }
  };

  static bool UseGroups(const DecodePlan& p) {
    const uint32_t G = p.col_span;
    return G >= N && (G & (G - 1)) == 0;
  }
  static uint32_t Log2(uint32_t v) {
    uint32_t k = 0;
    while ((1u << k) < v) ++k;
    return k;
  }

  // Metadata of group row gr into gS/gM, expanded into S/M when the accessor is MetaArrays.
  template <class Meta>
  static Meta GroupRow(const DecodePlan& p, uint32_t gr) {
    MetaField(p, 0, gr, p.group_scale);
    if (!p.codebook) MetaField(p, 1, gr, p.group_min);
    if constexpr (std::is_same_v<Meta, MetaGroups>) {
      return MetaGroups{p.group_scale, p.group_min, Log2(p.col_span)};
    } else {
      if (p.col_span == 1) return MetaArrays{p.group_scale, p.group_min};  // channel axis: one group per element
      Expand(p, p.group_scale, p.elem_scale);
      if (!p.codebook) Expand(p, p.group_min, p.elem_min);
      return MetaArrays{p.elem_scale, p.elem_min};
    }
  }

  // ---- one row of codes -----------------------------------------------------------------------

  // Decoded values of N codes q of B bits at element e (the reference's per-element arithmetic).
  template <int B, bool CB, class Meta>
  static inline __attribute__((always_inline)) V FromCodes(I q, const Meta& meta, uint32_t e, const float* L) {
    if constexpr (CB) {
      return K::Mul(K::Lookup(q, L, B), meta.Scale(e));
    } else {
      (void)L;
      return K::Add(K::Mul(K::ToFloat(q), meta.Scale(e)), meta.Min(e));
    }
  }
  template <int B, bool CB, class Meta>
  static inline __attribute__((always_inline)) V Value(const uint8_t* c, const Meta& meta, uint32_t e, const float* L) {
    return FromCodes<B, CB>(K::template Unpack<B>(c), meta, e, L);
  }
  // Whether the ISA's wide unpack serves B-bit codes: only 3-bit, the width that does not come
  // in a power-of-two load (in cache, bench decode_small, AVX-512: 3-bit +14%, while 2-bit went
  // -23% and 4-bit -7% against their exact loads). It loads 16 bytes at the vector's first code
  // byte, so the callers use it only where those stay inside the row.
  template <int B>
  static constexpr bool kWide = B == 3 && requires(const uint8_t* c) { K::template UnpackWide<B>(c); };
  // The N codes at element e of a row of codes c (row_bytes long): wide where it may.
  template <int B>
  static inline __attribute__((always_inline)) I CodesAt(const uint8_t* c, uint64_t row_bytes, uint32_t e) {
    const uint64_t at = uint64_t(e) * B / 8;
    if constexpr (kWide<B>) {
      if (at + 16 <= row_bytes) return K::template UnpackWide<B>(c + at);
    }
    return K::template Unpack<B>(c + at);
  }
  // The widest codes the ISA's register table lookup serves (RowLut), 0 without one.
  static constexpr int LutBits() {
    if constexpr (requires { K::kLutBits; }) {
      return K::kLutBits;
    } else {
      return 0;
    }
  }
  // Not for fp32 output: past the LLC that is bound by the output's writes, and there the table
  // form measured 4-10% slower than converting (bench/results/simd-xsimd.md); f16/bf16 gain.
  template <int B, bool CB, class Meta, class Out>
  static constexpr bool kLut = std::is_same_v<Meta, MetaGroups> && !std::is_same_v<Out, OutF32> && B <= LutBits();
  // RowLut's 16-bit tables (below) may serve wider codes than the register table: the widest
  // codes K::Table16 / K::Lookup16 take (K::kLut16Bits; AVX2 and NEON: 4, from two register
  // tables of N values each), else the register table's.
  static constexpr int Lut16Bits() {
    if constexpr (requires { K::kLut16Bits; }) {
      return K::kLut16Bits;
    } else {
      return LutBits();
    }
  }
  template <class Out>
  static constexpr bool kLut16 = requires { K::kLut16Codes; } && !std::is_same_v<Out, OutF32>;
  template <int B, bool CB, class Meta, class Out>
  static constexpr bool kLutRow = kLut<B, CB, Meta, Out> ||
                                  (std::is_same_v<Meta, MetaGroups> && kLut16<Out> && B <= Lut16Bits());
  alignas(64) static constexpr float kIota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  // The group's table for RowLut: float(k) * s + mn (affine) or L[k] * s (codebook; L holds 16
  // levels, zero-padded) for the N codes k = k0, k0 + 1, ...
  template <bool CB>
  static inline __attribute__((always_inline)) V GroupTable(const MetaGroups& meta, uint32_t e, const float* L,
                                                            uint32_t k0 = 0) {
    if constexpr (CB) return K::Mul(K::Load(L + k0), meta.Scale(e));
    else return K::Add(K::Mul(K::Load(kIota + k0), meta.Scale(e)), meta.Min(e));
  }
  // Value of the vector at element e of a row of codes c (row_bytes long): wide where it may.
  template <int B, bool CB, class Meta>
  static inline __attribute__((always_inline)) V ValueIn(const uint8_t* c, uint64_t row_bytes, const Meta& meta, uint32_t e,
                                                         const float* L) {
    return FromCodes<B, CB>(CodesAt<B>(c, row_bytes, e), meta, e, L);
  }

  // Decodes one quantized row (no rotation, or into p.row for the memory Hadamard path). Inlined
  // into the rows driver, where meta and out are locals: called, their fields would be reloaded
  // after every store (the stores may alias them), measured 8-12% slower.
  template <int B, bool CB, class Meta, class Out>
  static inline __attribute__((always_inline)) void Row(const DecodePlan& p, const uint8_t* c, const Meta& meta, const Out& out) {
    const uint32_t rv = p.row_values;
    uint32_t e = 0;
    if constexpr (kLutRow<B, CB, Meta, Out>) return RowLut<B, CB>(p, c, meta, out);
    // Every vector whose 16 loaded bytes stay inside this row. Not for fp32 output past the LLC:
    // measured 8% slower there on AVX-512 (bench/results/simd-xsimd.md), where writes bound it.
    if constexpr (kWide<B> && !std::is_same_v<Out, OutF32>) {
      const uint64_t row_bytes = uint64_t(rv) * B / 8;
      for (; e + N <= rv && uint64_t(e) * B / 8 + 16 <= row_bytes; e += N)
        out.Put(e, FromCodes<B, CB>(K::template UnpackWide<B>(c + uint64_t(e) * B / 8), meta, e, p.levels));
    }
    for (; e + N <= rv; e += N) out.Put(e, Value<B, CB>(c + uint64_t(e) * B / 8, meta, e, p.levels));
    if (e < rv) {  // N = 16 and rv % 16 == 8: the last 8 codes from a zero-padded copy
      alignas(64) uint8_t buf[16 * B / 8 + 8] = {};
      std::memcpy(buf, c + uint64_t(e) * B / 8, (rv - e) * B / 8);
      out.Tail(e, Value<B, CB>(buf, meta, e, p.levels), rv - e);
    }
  }

  // Rows with one scale (and min) per group of G >= N consecutive values (MetaGroups), on an ISA
  // with a register table lookup (K::kLutBits, K::LookupReg): the 2^B values a code can take in a
  // group, float(k) * s + mn (affine: the reference's two roundings, in its order) or L[k] * s
  // (codebook) for k < 2^B, are computed once per group into a register, and each vector of codes
  // looks them up with one permute instead of a conversion (or level lookup), a multiply and an
  // add: the same bits, fewer operations.
  //
  // For f16 / bf16 output, on an ISA with a 16-bit table lookup (K::kLut16Codes, Table16,
  // Lookup16), the table goes one step further: the 2^B 16-bit results (the group's values
  // converted once, rounding as the per-element conversion would) are looked up directly, so a
  // vector of codes costs a shuffle, a shift and a permute, with no per-element conversion.
  // Lookup16 reads 16 bytes at the codes of its K::kLut16Codes values: used wherever those stay
  // inside the code part (the next row's codes are there to read; only the block's last values
  // go the per-N way). Codes wider than the register table (B > LutBits(), AVX2 and NEON 4-bit)
  // have only the 16-bit tables, built from two register tables (entries 0..N-1, N..2N-1); their
  // per-N remainder takes Row's per-element conversion, the same bits again.
  template <int B, bool CB, class Out>
  static inline __attribute__((always_inline)) void RowLut(const DecodePlan& p, const uint8_t* c, const MetaGroups& meta,
                                                           const Out& out) {
    const uint32_t rv = p.row_values, G = 1u << meta.shift;
    const uint64_t row_bytes = uint64_t(rv) * B / 8;
    const uint64_t readable = p.code_bytes - uint64_t(c - p.codes);  // >= row_bytes
    // Lookup16 at e reads bytes e * B / 8 .. + 15: every e below lim16 stays inside the code part
    // (bounded once per row rather than tested per step).
    const uint32_t lim16 = readable < 16 ? 0u : static_cast<uint32_t>(std::min<uint64_t>(rv, (readable - 16) * 8 / B + 1));
    for (uint32_t g0 = 0; g0 < rv; g0 += G) {  // rv is a whole number of groups (token axis)
      uint32_t e = g0;
      const uint32_t end16 = std::min(g0 + G, lim16);
      V lut{};  // the register table, for codes of up to LutBits() bits (also the 16-bit table's source)
      if constexpr (B <= LutBits()) lut = GroupTable<CB>(meta, g0, p.levels);
      if constexpr (kLut16<Out>) {
        constexpr uint32_t W = K::kLut16Codes;
        if (G >= W) {  // G and W are powers of two: whole W-value steps
          const auto t16 = [&] {
            if constexpr (B <= LutBits()) {
              return K::template Table16<B, Out::kBF16>(lut);
            } else {
              static_assert((1u << B) == 2 * N, "two register tables hold the 2^B entries");
              return K::template Table16<B, Out::kBF16>(GroupTable<CB>(meta, g0, p.levels), GroupTable<CB>(meta, g0, p.levels, N));
            }
          }();
          for (; e < end16; e += W) K::template Lookup16<B>(c + uint64_t(e) * B / 8, t16, out.d + e);
        }
      }
      if constexpr (B <= LutBits()) {
        for (; e < g0 + G; e += N) out.Put(e, K::template LookupReg<B>(CodesAt<B>(c, row_bytes, e), lut));
      } else {
        for (; e < g0 + G; e += N) out.Put(e, Value<B, CB>(c + uint64_t(e) * B / 8, meta, e, p.levels));
      }
    }
  }

  // Butterfly stages h = H, 2H, ..., BV/2 across the BV vectors of one rotation block (after the
  // in-vector stages), in the reference's stage order. Compile-time stages: a loop over h let
  // GCC peel iterations that index past v[] (-Warray-bounds false positives).
  template <int BV, int H = 1>
  static inline __attribute__((always_inline)) void CrossStages(V* v) {
    if constexpr (H < BV) {
#pragma GCC unroll 16
      for (int j = 0; j < BV; j += 2 * H)
#pragma GCC unroll 16
        for (int k = j; k < j + H; ++k) {
          const V a = v[k], b = v[k + H];
          v[k] = K::Add(a, b);
          v[k + H] = K::Sub(a, b);
        }
      CrossStages<BV, 2 * H>(v);
    }
  }

  // Decode + inverse Hadamard with one rotation block (BV vectors) held in registers: decode,
  // in-vector stages, cross-vector stages (stage order of the reference), *c_B, sign, store.
  template <int B, bool CB, int BV, class Meta, class Out>
  static void RowHadamard(const DecodePlan& p, const uint8_t* c, const Meta& meta, const Out& out) {
    const uint32_t rv = p.row_values;
    const uint64_t row_bytes = uint64_t(rv) * B / 8;
    const V cb = K::Bcast(p.rot_c);
    V lut{};  // kLut: the current group's table (RowLut), set at each group's first vector
    for (uint32_t b0 = 0; b0 < rv; b0 += BV * N) {
      V v[BV];
#pragma GCC unroll 16
      for (int i = 0; i < BV; ++i) {
        const uint32_t e = b0 + i * N;
        if constexpr (kLut<B, CB, Meta, Out>) {
          if ((e & ((1u << meta.shift) - 1)) == 0) lut = GroupTable<CB>(meta, e, p.levels);
          v[i] = K::template LookupReg<B>(CodesAt<B>(c, row_bytes, e), lut);
        } else {
          v[i] = ValueIn<B, CB>(c, row_bytes, meta, e, p.levels);
        }
        // Affine values are finite and bounded (|q * s + mn| <= 255 * 65504 + 65504 with finite
        // fp16 metadata, spec/CODECS.md "Non-finite metadata"), and so is every butterfly sum of
        // them: no NaN can arise, and the encoder's cheaper s + (+-v) stages are exactly the
        // reference's a + b / a - b. Codebook levels are any finite fp32, whose products may
        // overflow to an infinity and then a NaN, whose sign the +-v form would flip: exact form.
        if constexpr (CB) {
          K::FwhtIntra(v[i]);
        } else {
          K::FwhtIntraFinite(v[i]);
        }
      }
      CrossStages<BV>(v);
#pragma GCC unroll 16
      for (int i = 0; i < BV; ++i) {
        const uint32_t e = b0 + i * N;
        out.Put(e, K::Xor(K::Mul(v[i], cb), p.sign + e));
      }
    }
  }

  // ---- inverse Hadamard on a decoded fp32 row (blocks longer than 16 vectors or shorter than
  // one), then the output ------------------------------------------------------------------------

  template <class Out>
  static void Finish(const DecodePlan& p, const Out& out) {
    const uint32_t rv = p.row_values;
    const V c = K::Bcast(p.rot_c);
    uint32_t e = 0;
    for (; e + N <= rv; e += N) out.Put(e, K::Xor(K::Mul(K::Load(p.row + e), c), p.sign + e));
    if (e < rv) out.Tail(e, K::Xor(K::Mul(K::Load(p.row + e), c), p.sign + e), rv - e);
  }

  // ---- rows driver ----------------------------------------------------------------------------

  template <int B, bool CB, class Meta, class Out>
  static void RowsM(const DecodePlan& p, uint32_t t0, uint32_t t1, Out out) {
    const uint64_t rv = p.row_values;
    const uint32_t bv = p.rotate && p.rot_block >= N ? p.rot_block / N : 0;
    Meta meta{};
    uint32_t cur = UINT32_MAX;
    for (uint32_t t = t0; t < t1; ++t) {
      const uint32_t gr = t / p.row_span;
      if (gr != cur) {
        meta = GroupRow<Meta>(p, gr);
        cur = gr;
      }
      const uint8_t* c = p.codes + uint64_t(t) * rv * B / 8;
      Out o = out;
      o.d += uint64_t(t - t0) * rv;
      if (!p.rotate) {
        Row<B, CB>(p, c, meta, o);
        continue;
      }
      switch (bv) {
        case 1: RowHadamard<B, CB, 1>(p, c, meta, o); continue;
        case 2: RowHadamard<B, CB, 2>(p, c, meta, o); continue;
        case 4: RowHadamard<B, CB, 4>(p, c, meta, o); continue;
        case 8: RowHadamard<B, CB, 8>(p, c, meta, o); continue;
        case 16: RowHadamard<B, CB, 16>(p, c, meta, o); continue;
        default: break;
      }
      Row<B, CB>(p, c, meta, OutF32{p.row});
      for (uint32_t h0 = 0; h0 < rv; h0 += p.head_dim)
        for (uint32_t b0 = 0; b0 < p.head_dim; b0 += p.rot_block) p.butterflies(p.row + h0 + b0, p.rot_block);
      Finish(p, o);
    }
  }

  template <int B, bool CB, class Out>
  static void RowsT(const DecodePlan& p, uint32_t t0, uint32_t t1, Out out) {
    if (UseGroups(p)) return RowsM<B, CB, MetaGroups>(p, t0, t1, out);
    RowsM<B, CB, MetaArrays>(p, t0, t1, out);
  }

  template <int B, bool CB>
  static void RowsB(const DecodePlan& p, uint32_t t0, uint32_t t1, DType out, void* dst) {
    switch (out) {
      case DType::kF32: return RowsT<B, CB>(p, t0, t1, OutF32{static_cast<float*>(dst)});
      case DType::kF16: return RowsT<B, CB>(p, t0, t1, OutF16{static_cast<uint16_t*>(dst)});
      case DType::kBF16: return RowsT<B, CB>(p, t0, t1, OutBF16{static_cast<uint16_t*>(dst)});
    }
  }

  static void Rows(const DecodePlan& p, uint32_t t0, uint32_t t1, DType out, void* dst) {
    if (p.codebook) {
      switch (p.bits) {
        case 1: return RowsB<1, true>(p, t0, t1, out, dst);
        case 2: return RowsB<2, true>(p, t0, t1, out, dst);
        case 3: return RowsB<3, true>(p, t0, t1, out, dst);
        case 4: return RowsB<4, true>(p, t0, t1, out, dst);
      }
      return;
    }
    switch (p.bits) {
      case 2: return RowsB<2, false>(p, t0, t1, out, dst);
      case 3: return RowsB<3, false>(p, t0, t1, out, dst);
      case 4: return RowsB<4, false>(p, t0, t1, out, dst);
      case 8: return RowsB<8, false>(p, t0, t1, out, dst);
    }
  }

  // ---- fp16 rows (sinks, residual) --------------------------------------------------------------

  template <class Out>
  static void F16RowsT(const uint8_t* src, uint64_t n, Out out) {
    uint64_t i = 0;
    for (; i + N <= n; i += N) out.Put(i, K::LoadF16(src + 2 * i));
    if (i < n) {
      alignas(64) uint8_t buf[32] = {};
      std::memcpy(buf, src + 2 * i, (n - i) * 2);
      out.Tail(i, K::LoadF16(buf), static_cast<uint32_t>(n - i));
    }
  }

  static void F16Rows(const uint8_t* src, uint64_t n, DType out, void* dst) {
    switch (out) {
      case DType::kF16: std::memcpy(dst, src, n * 2); return;
      case DType::kF32: return F16RowsT(src, n, OutF32{static_cast<float*>(dst)});
      case DType::kBF16: return F16RowsT(src, n, OutBF16{static_cast<uint16_t*>(dst)});
    }
  }
};

}  // namespace mqkv::codec::simd
