// Per-element logic of the low-bit codecs (affine, codebook; spec/CODECS.md), shared by the
// scalar reference decoder, the SIMD decoder's tails and the CUDA kernels (__host__ __device__).
// Namespace mqkv::elem ("element logic"); the codec internals built on it are mqkv::codec::lowbit.
// Internal: lib/src/detail is not installed.
//
// Everything here assumes a header already accepted by the codec's PartSizes (the reader checks
// every block before it reaches a decoder): no bounds or overflow checks on the hot path.
// Arithmetic is binary32 with every operation rounded (no fused multiply-add): on the device
// the explicit __fmul_rn / __fadd_rn intrinsics keep nvcc from contracting; on the host the
// build passes -ffp-contract=off.
#pragma once

#include <cstdint>

#include "mqkv/block.h"
#include "mqkv/numeric.h"

namespace mqkv::elem {

// ---- binary32 operations, each rounded to nearest even (never contracted) -------------------

MQKV_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
MQKV_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
MQKV_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
MQKV_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// ---- code streams ---------------------------------------------------------------------------

// Code `index` of an LSB-first stream of `bits`-bit codes (1 <= bits <= 8): code i occupies
// stream bits bits*i .. bits*i+bits-1, stream bit k is bit k%8 of byte k/8. Reads only the one
// or two bytes the code touches, so it never reads past the stream's last byte.
MQKV_HD uint32_t read_code(const uint8_t* stream, uint64_t index, uint32_t bits) {
  const uint64_t bit = index * bits;
  const uint64_t byte = bit >> 3;
  const uint32_t shift = static_cast<uint32_t>(bit & 7u);
  uint32_t v = stream[byte];
  if (shift + bits > 8u) v |= static_cast<uint32_t>(stream[byte + 1]) << 8;
  return (v >> shift) & ((1u << bits) - 1u);
}

MQKV_HD uint16_t load_u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (static_cast<uint16_t>(p[1]) << 8));
}
MQKV_HD float load_f16(const uint8_t* p) { return f16_to_f32(load_u16(p)); }
MQKV_HD float load_f32(const uint8_t* p) {
  return bits_f32(static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                  (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24));
}

// ---- metadata -------------------------------------------------------------------------------

// Step of an M-bit metadata field with shared range [lo, hi]: d = (hi - lo) / (2^M - 1).
MQKV_HD float meta_step(float lo, float hi, uint32_t meta_bits) {
  return div_rn(sub_rn(hi, lo), static_cast<float>((1u << meta_bits) - 1u));
}
// Value of metadata code c: float(c) * d + lo.
MQKV_HD float meta_value(uint32_t c, float lo, float step) {
  return add_rn(mul_rn(static_cast<float>(c), step), lo);
}

// ---- dequantization -------------------------------------------------------------------------

// affine: x = float(q) * s + mn (multiply, round, add, round).
MQKV_HD float affine_value(uint32_t q, float scale, float min) {
  return add_rn(mul_rn(static_cast<float>(q), scale), min);
}
// codebook: x = L[q] * s (one rounding).
MQKV_HD float codebook_value(float level, float scale) { return mul_rn(level, scale); }

// ---- block geometry -------------------------------------------------------------------------

// Shape of the quantized part of a (validated) affine / codebook block.
// The row split of a low-bit block (spec/CODECS.md, "Rows"): block rows [r0, r1) fall into three
// consecutive, possibly empty runs of fp16 sink rows, quantized rows and fp16 residual rows. The
// one home of this rule: the scalar decoder, the SIMD decoder and the CUDA kernels all use it.
struct RowSplit {
  uint32_t sink_begin, sink_end;    // block rows = rows of kPartSinkRows
  uint32_t quant_begin, quant_end;  // block rows; quantized row index = block row - n_sink
  uint32_t resid_begin, resid_end;  // block rows; kPartResidualRows row = block row - resid_first
  uint32_t resid_first;             // n_tokens - n_residual: the block's first residual row
};

MQKV_HD RowSplit split_rows(const BlockHeader& h, uint32_t r0, uint32_t r1) {
  RowSplit s;
  s.resid_first = h.n_tokens - h.n_residual;
  const uint32_t sink_stop = r1 < h.n_sink ? r1 : h.n_sink;
  const uint32_t quant_stop = r1 < s.resid_first ? r1 : s.resid_first;
  s.sink_begin = r0;
  s.sink_end = sink_stop > r0 ? sink_stop : r0;
  s.quant_begin = s.sink_end;
  s.quant_end = quant_stop > s.quant_begin ? quant_stop : s.quant_begin;
  s.resid_begin = s.quant_end;
  s.resid_end = r1 > s.resid_begin ? r1 : s.resid_begin;
  return s;
}

struct Geometry {
  uint32_t q_rows;       // Q = n_tokens - n_sink - n_residual
  uint32_t row_values;   // n_heads * head_dim
  uint32_t col_span;     // row elements per group column: G (token axis) or 1 (channel axis)
  uint32_t row_span;     // quantized rows per group row: 1 (token axis), G or Q (channel axis)
  uint32_t group_rows;   // metadata grid rows
  uint32_t group_cols;   // metadata grid columns
};

MQKV_HD Geometry geometry(const BlockHeader& h) {
  Geometry g;
  g.q_rows = h.n_tokens - h.n_sink - h.n_residual;
  g.row_values = static_cast<uint32_t>(h.n_heads) * h.head_dim;
  if (h.group_axis == static_cast<uint8_t>(GroupAxis::kToken)) {
    g.col_span = h.group_size;
    g.row_span = 1;
    g.group_rows = g.q_rows;
    g.group_cols = g.row_values / h.group_size;
  } else {
    g.col_span = 1;
    g.row_span = h.group_size ? h.group_size : (g.q_rows ? g.q_rows : 1u);
    g.group_rows = g.q_rows ? (g.q_rows - 1u) / g.row_span + 1u : 0u;
    g.group_cols = g.row_values;
  }
  return g;
}

// Metadata field selector (also the field index in kPartRanges).
enum MetaField : uint32_t { kFieldScale = 0, kFieldMin = 1 };

// Value of metadata field `field` of group (gr, gc): fp16 arrays when meta_bits == 16, else
// M-bit codes against the column's shared fp16 (lo, hi) pair.
MQKV_HD float meta_field(const BlockHeader& h, const Geometry& g, const uint8_t* payload,
                         MetaField field, uint32_t gr, uint32_t gc) {
  const uint8_t* part = payload + h.parts[field == kFieldScale ? kPartScales : kPartMins].offset;
  const uint64_t index = static_cast<uint64_t>(gr) * g.group_cols + gc;
  if (h.meta_bits == 16) return load_f16(part + 2 * index);
  const uint8_t* range = payload + h.parts[kPartRanges].offset + (static_cast<uint64_t>(field) * g.group_cols + gc) * 4;
  const float lo = load_f16(range), hi = load_f16(range + 2);
  return meta_value(read_code(part, index, h.meta_bits), lo, meta_step(lo, hi, h.meta_bits));
}

// ---- Hadamard rotation ----------------------------------------------------------------------

// The standard splitmix64 output function for state x (one step: x += golden gamma, then mix).
MQKV_HD uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Sign of head dimension i: negative when the top bit of splitmix64(seed + i) is set.
MQKV_HD bool hadamard_negative(uint64_t seed, uint32_t i) { return (splitmix64(seed + i) >> 63) != 0; }

// Largest power of two dividing n (n > 0): the Hadamard block length B for head_dim n.
MQKV_HD uint32_t largest_pow2_divisor(uint32_t n) { return n & (~n + 1u); }

// c_B = the binary32 value nearest to 1/sqrt(B), B = 2^k, k = 0..15 (bit patterns; see
// spec/CODECS.md). Even k: exactly 2^(-k/2); odd k: 0x3F3504F3 (nearest to 1/sqrt 2) scaled.
MQKV_HD float hadamard_scale(uint32_t block) {
  uint32_t k = 0;
  while ((1u << k) < block) ++k;
  const uint32_t exp_step = (k / 2u) << 23;
  return bits_f32(((k & 1u) ? 0x3F3504F3u : 0x3F800000u) - exp_step);
}

// Unnormalized Walsh-Hadamard butterflies on v[0, B): stages h = 1, 2, 4, ..., B/2; for each j
// with (j & h) == 0: (v[j], v[j+h]) <- (v[j] + v[j+h], v[j] - v[j+h]).
MQKV_HD void fwht_butterflies(float* v, uint32_t block) {
  for (uint32_t h = 1; h < block; h <<= 1) {
    for (uint32_t j = 0; j < block; ++j) {
      if (j & h) continue;
      const float a = v[j], b = v[j + h];
      v[j] = add_rn(a, b);
      v[j + h] = sub_rn(a, b);
    }
  }
}

// Decode-side inverse rotation of one head vector v[0, head_dim) (normative order): per block of
// B dims the butterflies, then every element times c_B, then the sign of each dim.
MQKV_HD void inverse_rotate(float* v, uint32_t head_dim, uint32_t block, uint64_t seed) {
  const float c = hadamard_scale(block);
  for (uint32_t b0 = 0; b0 < head_dim; b0 += block) fwht_butterflies(v + b0, block);
  for (uint32_t i = 0; i < head_dim; ++i) {
    const float x = mul_rn(v[i], c);
    v[i] = hadamard_negative(seed, i) ? -x : x;
  }
}

// The same with the sign rule precomputed: negative[i] = hadamard_negative(seed, i), i < head_dim
// (bit-identical; negation, not a multiply by -1, so NaN signs match too).
MQKV_HD void inverse_rotate(float* v, uint32_t head_dim, uint32_t block, const uint8_t* negative) {
  const float c = hadamard_scale(block);
  for (uint32_t b0 = 0; b0 < head_dim; b0 += block) fwht_butterflies(v + b0, block);
  for (uint32_t i = 0; i < head_dim; ++i) {
    const float x = mul_rn(v[i], c);
    v[i] = negative[i] ? -x : x;
  }
}

// Encode-side forward rotation: sign of each dim, then per block the butterflies, then times c_B.
MQKV_HD void forward_rotate(float* v, uint32_t head_dim, uint32_t block, uint64_t seed) {
  for (uint32_t i = 0; i < head_dim; ++i)
    if (hadamard_negative(seed, i)) v[i] = -v[i];
  const float c = hadamard_scale(block);
  for (uint32_t b0 = 0; b0 < head_dim; b0 += block) fwht_butterflies(v + b0, block);
  for (uint32_t i = 0; i < head_dim; ++i) v[i] = mul_rn(v[i], c);
}

}  // namespace mqkv::elem
