// Per-octet and per-vector decode logic of the CUDA kernels, as __host__ __device__ functions so
// the CPU tests (tests/cuda/test_cuda_logic.cu) run exactly this code against the scalar
// reference. Arithmetic comes from lib/src/detail/lowbit.h (explicit round-to-nearest operations);
// this file only adds how one GPU thread walks a block.
//
// Work unit: an "octet", 8 consecutive elements of one quantized row. A row has RV = n_heads *
// head_dim elements and RV is a multiple of 8 for every low-bit block (head_dim % 8 == 0), so
// octet k of row t is codes t*RV + 8k .. +7: exactly `bits` bytes of the code stream starting at
// byte (t*RV/8 + k) * bits, aligned to `bits` when bits is 1, 2, 4 or 8. Every octet lies in one
// token-axis group (G % 8 == 0) and in one Hadamard block (B >= 8).
//
// A thread owns one octet column for all the rows it decodes, so what depends only on the column
// (shared meta ranges, the Hadamard sign mask) is computed once per thread, and what depends on
// the group row (scale, min) only when the group row changes.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#include "mqkv/block.h"
#include "detail/fp8.h"
#include "detail/lowbit.h"
#include "mqkv/numeric.h"

namespace mqkv::cuda_detail {


// Output element types (kernel template tags, mirror DType).
enum class Out : uint32_t { kF32 = 0, kF16 = 1, kBF16 = 2 };

// ---- conversions ------------------------------------------------------------------------------
// Bit-identical to numeric.h. On the device the hardware conversions are used for everything but
// NaN (cvt.rn is IEEE round-to-nearest-even with overflow to infinity, exact widening), and
// numeric.h's software conversion for NaN, whose payload handling numeric.h defines.

MQKV_HD uint16_t out_f16(float x) {
#if defined(__CUDA_ARCH__)
  if (x != x) return f32_to_f16(x);
  return __half_as_ushort(__float2half_rn(x));
#else
  return f32_to_f16(x);
#endif
}

MQKV_HD float in_f16(uint16_t u) {
#if defined(__CUDA_ARCH__)
  if ((u & 0x7C00u) == 0x7C00u && (u & 0x3FFu)) return f16_to_f32(u);
  return __half2float(__ushort_as_half(u));
#else
  return f16_to_f32(u);
#endif
}

MQKV_HD uint16_t out_bf16(float x) { return f32_to_bf16(x); }

// Little-endian load of N bytes (N <= 8) at p. N = 1, 2, 4, 8 are single aligned loads on the
// device (the caller guarantees the alignment); other N are byte loads.
template <uint32_t N>
MQKV_HD uint64_t load_le(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  if constexpr (N == 1) return *p;
  if constexpr (N == 2) return *reinterpret_cast<const uint16_t*>(p);
  if constexpr (N == 4) return *reinterpret_cast<const uint32_t*>(p);
  if constexpr (N == 8) return *reinterpret_cast<const unsigned long long*>(p);
#endif
  uint64_t v = 0;
  for (uint32_t i = 0; i < N; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// The 8 codes of an octet: `Bits` bytes at p, code k = stream bits Bits*k .. Bits*k + Bits - 1
// (same values as elem::read_code on the 8 indices).
template <uint32_t Bits>
MQKV_HD void unpack8(const uint8_t* p, uint32_t q[8]) {
  const uint64_t w = load_le<Bits>(p);
#pragma unroll
  for (uint32_t k = 0; k < 8; ++k) q[k] = static_cast<uint32_t>(w >> (Bits * k)) & ((1u << Bits) - 1u);
}

// ---- one quantized segment of a block ---------------------------------------------------------

// What a kernel launch (or the CPU emulation) needs about the quantized rows it decodes.
struct LowbitArgs {
  BlockHeader h;            // by value: validated by the codec's PartSizes
  elem::Geometry g;           // elem::geometry(h)
  const uint8_t* payload;   // decoded payload (device memory in kernels, host in CPU tests)
  uint32_t t0, t1;          // quantized rows [t0, t1), relative to the first quantized row
  void* dst;                // output of quantized row t0, [row][head][dim]
  uint32_t octets;          // RV / 8
  uint32_t vec_store;       // 1: dst is 16-byte aligned (vector stores)
  float rot_scale;          // c_B (elem::hadamard_scale(rot_block)), unused without rotation
};

inline LowbitArgs make_args(const BlockHeader& h, const uint8_t* payload, uint32_t t0, uint32_t t1, void* dst) {
  LowbitArgs a;
  a.h = h;
  a.g = elem::geometry(h);
  a.payload = payload;
  a.t0 = t0;
  a.t1 = t1;
  a.dst = dst;
  a.octets = a.g.row_values / 8;
  a.vec_store = (reinterpret_cast<uintptr_t>(dst) % 16) == 0;
  a.rot_scale = h.rotation == static_cast<uint8_t>(Rotation::kHadamard) ? elem::hadamard_scale(h.rot_block) : 1.0f;
  return a;
}

// Per-thread state of one octet column. Token axis: one group column (index 0 of s, m); channel
// axis: 8 group columns e0 .. e0+7. Kept small: register pressure decides the kernels' speed.
struct Column {
  uint32_t e0;          // first element of the octet within the row
  uint32_t cur_gr;      // group row whose metadata is loaded (UINT32_MAX: none)
  uint32_t neg;         // bit k: element e0+k is negated by the inverse rotation
  float lo[2], step[2]; // token axis, meta-coded: the group column's shared range per field
  float s[8], m[8];     // current group row's scale and min per column
};

MQKV_HD bool channel_axis(const BlockHeader& h) { return h.group_axis == static_cast<uint8_t>(GroupAxis::kChannel); }
MQKV_HD bool is_affine(const BlockHeader& h) { return h.codec == static_cast<uint8_t>(CodecId::kAffine); }

// Column-constant state: the token-axis meta-coded ranges (elem::meta_field's arithmetic, hoisted
// out of the row loop: a token-axis group row is one row) and the Hadamard sign mask.
MQKV_HD void column_init(const LowbitArgs& a, uint32_t octet, Column& c) {
  const BlockHeader& h = a.h;
  c.e0 = octet * 8;
  c.cur_gr = 0xFFFFFFFFu;
  c.neg = 0;
  if (h.meta_bits != 16 && !channel_axis(h) && a.g.group_rows > 0) {
#pragma unroll
    for (uint32_t f = 0; f < 2; ++f) {
      if (f == 1 && !is_affine(h)) break;
      const uint8_t* r = a.payload + h.parts[kPartRanges].offset + (static_cast<uint64_t>(f) * a.g.group_cols + c.e0 / h.group_size) * 4;
      c.lo[f] = elem::load_f16(r);
      c.step[f] = elem::meta_step(c.lo[f], elem::load_f16(r + 2), h.meta_bits);
    }
  }
  if (h.rotation == static_cast<uint8_t>(Rotation::kHadamard)) {
    const uint32_t d0 = c.e0 % h.head_dim;
    for (uint32_t k = 0; k < 8; ++k)
      if (elem::hadamard_negative(h.rot_seed, d0 + k)) c.neg |= 1u << k;
  }
}

// Loads scale (and min) of group row gr for the column. Channel axis: elem::meta_field itself (once
// per G rows); token axis: the same arithmetic with the column's range hoisted.
MQKV_HD void column_meta(const LowbitArgs& a, Column& c, uint32_t gr) {
  const BlockHeader& h = a.h;
  const bool affine = is_affine(h);
  if (channel_axis(h)) {
#pragma unroll
    for (uint32_t k = 0; k < 8; ++k) {
      c.s[k] = elem::meta_field(h, a.g, a.payload, elem::kFieldScale, gr, c.e0 + k);
      if (affine) c.m[k] = elem::meta_field(h, a.g, a.payload, elem::kFieldMin, gr, c.e0 + k);
    }
  } else {
    const uint64_t index = static_cast<uint64_t>(gr) * a.g.group_cols + c.e0 / h.group_size;
    const uint8_t* sp = a.payload + h.parts[kPartScales].offset;
    const uint8_t* mp = a.payload + h.parts[kPartMins].offset;
    if (h.meta_bits == 16) {
      c.s[0] = elem::load_f16(sp + 2 * index);
      if (affine) c.m[0] = elem::load_f16(mp + 2 * index);
    } else {
      c.s[0] = elem::meta_value(elem::read_code(sp, index, h.meta_bits), c.lo[0], c.step[0]);
      if (affine) c.m[0] = elem::meta_value(elem::read_code(mp, index, h.meta_bits), c.lo[1], c.step[1]);
    }
  }
  c.cur_gr = gr;
}

// Dequantized (not yet rotated) values of the column's octet in quantized row t.
// `levels` = the codebook's 2^bits levels (codebook only).
template <uint32_t Bits>
MQKV_HD void dequant8(const LowbitArgs& a, Column& c, const float* levels, uint32_t t, float v[8]) {
  const uint32_t gr = t / a.g.row_span;
  if (gr != c.cur_gr) column_meta(a, c, gr);
  uint32_t q[8];
  const uint8_t* codes = a.payload + a.h.parts[kPartCodes].offset;
  unpack8<Bits>(codes + (static_cast<uint64_t>(t) * a.octets + c.e0 / 8) * Bits, q);
  const bool ch = channel_axis(a.h);
  if (is_affine(a.h)) {
#pragma unroll
    for (uint32_t k = 0; k < 8; ++k) v[k] = elem::affine_value(q[k], ch ? c.s[k] : c.s[0], ch ? c.m[k] : c.m[0]);
  } else {
#pragma unroll
    for (uint32_t k = 0; k < 8; ++k) v[k] = elem::codebook_value(levels[q[k]], ch ? c.s[k] : c.s[0]);
  }
}

// ---- inverse Hadamard -------------------------------------------------------------------------
// The butterflies of elem::fwht_butterflies, split by who can do them: stages h = 1, 2, 4 pair
// elements inside an octet (registers); stages h >= 8 pair elements of different octets and run
// on a shared row buffer, one stage at a time with a barrier between stages. The pairs of a stage
// are disjoint, so the order inside a stage cannot change a result.

MQKV_HD void fwht_inner8(float v[8]) {
#pragma unroll
  for (uint32_t h = 1; h < 8; h <<= 1)
#pragma unroll
    for (uint32_t j = 0; j < 8; ++j) {
      if (j & h) continue;
      const float x = v[j], y = v[j + h];
      v[j] = elem::add_rn(x, y);
      v[j + h] = elem::sub_rn(x, y);
    }
}

// Stage h (>= 8, < rot_block) on a row buffer of X*8 elements whose start is a multiple of
// rot_block: lane x does pairs p = 4x .. 4x+3 of the buffer's X*4 pairs, j = (p / h) * 2h + p % h.
// A buffer made of whole rotation blocks pairs exactly as the per-block stage does (h < B).
MQKV_HD void fwht_stage(float* row, uint32_t lane, uint32_t h) {
#pragma unroll
  for (uint32_t i = 0; i < 4; ++i) {
    const uint32_t p = lane * 4 + i;
    const uint32_t j = ((p & ~(h - 1u)) << 1) | (p & (h - 1u));
    const float x = row[j], y = row[j + h];
    row[j] = elem::add_rn(x, y);
    row[j + h] = elem::sub_rn(x, y);
  }
}

// After the butterflies: times c_B, then the dim's sign (elem::inverse_rotate's last loop).
MQKV_HD void rotate_finish8(float v[8], float scale, uint32_t neg) {
#pragma unroll
  for (uint32_t k = 0; k < 8; ++k) {
    const float x = elem::mul_rn(v[k], scale);
    v[k] = (neg >> k) & 1u ? -x : x;
  }
}

// ---- stores -----------------------------------------------------------------------------------

// Stores 8 fp32 values as `O` at p (element index, not bytes); 16-byte vector stores when `vec`.
template <Out O>
MQKV_HD void store8(void* base, uint64_t index, const float v[8], bool vec) {
  if constexpr (O == Out::kF32) {
    float* p = static_cast<float*>(base) + index;
#if defined(__CUDA_ARCH__)
    if (vec) {
      reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
      reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
      return;
    }
#endif
    (void)vec;
    for (uint32_t k = 0; k < 8; ++k) p[k] = v[k];
  } else {
    uint16_t u[8];
#pragma unroll
    for (uint32_t k = 0; k < 8; ++k) u[k] = O == Out::kF16 ? out_f16(v[k]) : out_bf16(v[k]);
    uint16_t* p = static_cast<uint16_t*>(base) + index;
#if defined(__CUDA_ARCH__)
    if (vec) {
      uint4 w;
      w.x = u[0] | (static_cast<uint32_t>(u[1]) << 16);
      w.y = u[2] | (static_cast<uint32_t>(u[3]) << 16);
      w.z = u[4] | (static_cast<uint32_t>(u[5]) << 16);
      w.w = u[6] | (static_cast<uint32_t>(u[7]) << 16);
      *reinterpret_cast<uint4*>(p) = w;
      return;
    }
#endif
    (void)vec;
    for (uint32_t k = 0; k < 8; ++k) p[k] = u[k];
  }
}

// ---- raw rows (raw codecs, sink and residual rows) --------------------------------------------

// Stored element type of raw rows: 0 f32, 1 f16, 2 bf16 (as DType).
template <uint32_t Src>
MQKV_HD float load_raw(const uint8_t* p, uint64_t i) {
  if constexpr (Src == 0) return elem::load_f32(p + 4 * i);
  if constexpr (Src == 1) return in_f16(elem::load_u16(p + 2 * i));
  return bf16_to_f32(elem::load_u16(p + 2 * i));
}

template <Out O>
MQKV_HD void store1(void* base, uint64_t i, float x) {
  if constexpr (O == Out::kF32) static_cast<float*>(base)[i] = x;
  if constexpr (O == Out::kF16) static_cast<uint16_t*>(base)[i] = out_f16(x);
  if constexpr (O == Out::kBF16) static_cast<uint16_t*>(base)[i] = out_bf16(x);
}

// ---- fp8 codes (codec 5) --------------------------------------------------------------------------
// A thread decodes an octet of 8 consecutive codes (one 8-byte load when the codes are 8-aligned)
// with fp8::decode, so every value is the scalar decoder's. The scale is checked on the host by
// every entry point that holds the payload in host memory (the CPU decoder refuses a bad scale);
// a payload already on the device gets NaN 0x7FC00000 for every value instead.

inline constexpr uint32_t kStoredFp8 = 3;  // Segment::stored of fp8 codes (0..2 are raw types)

MQKV_HD float fp8_value(uint32_t code, float scale, bool scale_ok) {
  return scale_ok ? fp8::decode(code, scale) : bits_f32(0x7FC00000u);
}

// Octet k of n fp8 codes at `codes` to dst elements 8k .. min(8k + 8, n). `aligned`: codes is
// 8-byte aligned (one load); `vec`: dst is 16-byte aligned (vector stores).
template <Out O>
MQKV_HD void fp8_octet(const uint8_t* codes, uint64_t n, float scale, bool scale_ok, void* dst, uint64_t k, bool aligned,
                       bool vec) {
  const uint64_t i0 = k * 8;
  if (i0 + 8 <= n) {
    const uint64_t w = aligned ? load_le<8>(codes + i0) : load_le<7>(codes + i0) | static_cast<uint64_t>(codes[i0 + 7]) << 56;
    float v[8];
#pragma unroll
    for (uint32_t j = 0; j < 8; ++j) v[j] = fp8_value(static_cast<uint32_t>(w >> (8 * j)) & 0xFFu, scale, scale_ok);
    store8<O>(dst, i0, v, vec);
  } else {
    for (uint64_t i = i0; i < n; ++i) store1<O>(dst, i, fp8_value(codes[i], scale, scale_ok));
  }
}

// ---- row segments of a block --------------------------------------------------------------------
// Block rows [r0, r1) split into what one launch each decodes: raw rows of a raw codec, fp8 codes, fp16 sink
// rows, quantized rows, fp16 residual rows (at most 3 segments, in output order).
struct Segment {
  bool lowbit;          // quantized rows (LowbitKernel) or raw rows / fp8 codes
  uint32_t stored;      // raw rows: stored type (0 f32, 1 f16, 2 bf16) or kStoredFp8
  uint64_t src_offset;  // raw rows, fp8: payload byte offset of the first element
  uint64_t n;           // raw rows, fp8: elements
  uint32_t t0, t1;      // quantized rows [t0, t1), quantized-row numbering
  uint64_t dst_index;   // output element index of the segment's first element
};

inline int split_rows(const BlockHeader& h, uint32_t r0, uint32_t r1, Segment seg[3]) {
  const uint64_t rv = static_cast<uint64_t>(h.n_heads) * h.head_dim;
  int n = 0;
  if (r0 >= r1) return 0;
  if (h.codec <= static_cast<uint8_t>(CodecId::kBF16)) {
    const uint32_t es = h.codec == static_cast<uint8_t>(CodecId::kF32) ? 4 : 2;
    seg[n++] = Segment{false, h.codec, h.parts[kPartCodes].offset + r0 * rv * es, (r1 - r0) * rv, 0, 0, 0};
    return n;
  }
  if (h.codec == static_cast<uint8_t>(CodecId::kFp8)) {
    seg[n++] = Segment{false, kStoredFp8, h.parts[kPartCodes].offset + r0 * rv, (r1 - r0) * rv, 0, 0, 0};
    return n;
  }
  const elem::RowSplit sp = elem::split_rows(h, r0, r1);  // the one home of the sink / quantized / residual rule
  if (sp.sink_begin < sp.sink_end)
    seg[n++] = Segment{false, 1, h.parts[kPartSinkRows].offset + sp.sink_begin * rv * 2, (sp.sink_end - sp.sink_begin) * rv, 0, 0,
                       (sp.sink_begin - r0) * rv};
  if (sp.quant_begin < sp.quant_end)
    seg[n++] = Segment{true, 0, 0, 0, sp.quant_begin - h.n_sink, sp.quant_end - h.n_sink, (sp.quant_begin - r0) * rv};
  if (sp.resid_begin < sp.resid_end)
    seg[n++] = Segment{false, 1, h.parts[kPartResidualRows].offset + (sp.resid_begin - sp.resid_first) * rv * 2,
                       (sp.resid_end - sp.resid_begin) * rv, 0, 0, (sp.resid_begin - r0) * rv};
  return n;
}

// ---- launch geometry --------------------------------------------------------------------------
// A CTA is X lanes (octet columns) by Y row slots; it covers octet columns [cx*X, cx*X + X) and
// rows r*Y*iters + y + i*Y for i < iters. X is a power of two, at least B/8 when stages >= 8 are
// needed (so the CTA's row buffer holds whole rotation blocks) and at most 1024.
struct LaunchShape {
  uint32_t x, y, iters, col_chunks, row_tiles;
  uint32_t smem_bytes;  // Y * X * 8 floats when a shared stage is needed, else 0
};

inline uint32_t pow2_ceil(uint32_t v) {
  uint32_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

inline bool shared_stages(const BlockHeader& h) {
  return h.rotation == static_cast<uint8_t>(Rotation::kHadamard) && h.rot_block > 8;
}

// Largest Hadamard block the kernels take (X <= 1024 lanes of 8 elements).
inline constexpr uint32_t kMaxRotBlock = 8192;

inline LaunchShape launch_shape(const LowbitArgs& a) {
  LaunchShape s;
  const uint32_t octets = a.octets;
  s.x = pow2_ceil(octets < 128 ? octets : 128);
  if (shared_stages(a.h) && s.x < a.h.rot_block / 8u) s.x = a.h.rot_block / 8u;
  s.y = s.x >= 256 ? 1 : 256 / s.x;
  const uint32_t rows = a.t1 - a.t0;
  s.col_chunks = (octets + s.x - 1) / s.x;
  // Several rows per thread amortise the column state; keep at least a few hundred CTAs.
  auto tiles = [&](uint32_t iters) {
    const uint64_t per = static_cast<uint64_t>(s.y) * iters;
    return static_cast<uint32_t>((rows + per - 1) / per);
  };
  s.iters = 8;
  while (s.iters > 1 && static_cast<uint64_t>(s.col_chunks) * tiles(s.iters) < 512) s.iters /= 2;
  s.row_tiles = tiles(s.iters);
  // A 1-D grid holds at most 2^31 - 1 CTAs: give each CTA more rows for enormous blocks.
  while (static_cast<uint64_t>(s.col_chunks) * s.row_tiles > 0x7FFFFFFFull) {
    s.iters *= 2;
    s.row_tiles = tiles(s.iters);
  }
  s.smem_bytes = shared_stages(a.h) ? s.y * s.x * 8 * 4 : 0;
  return s;
}

}  // namespace mqkv::cuda_detail
