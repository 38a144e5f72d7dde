// Internals shared by the low-bit codecs (affine.cpp, codebook.cpp): header validation and part
// sizes, the bit-stream writer, the encoder's group walk and the scalar decode driver.
// Normative description: spec/CODECS.md.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "mqkv/codec.h"
#include "detail/lowbit.h"
#include "registry.h"

namespace mqkv::codec::lowbit {

using mqkv::elem::Geometry;

// Checks every codec field of an affine / codebook header and computes the exact part sizes
// (overflow-checked). Errors are FormatError naming the header field.
Status PartSizes(CodecId id, const BlockHeader& h, std::array<uint64_t, kNumParts>* sizes);

// Appends `bits`-bit codes (1..8) to an LSB-first stream of a known final size.
class BitWriter {
 public:
  BitWriter(uint8_t* out, uint32_t bits) : out_(out), bits_(bits) {}
  void Put(uint32_t code) {
    const uint32_t shift = static_cast<uint32_t>(bit_ & 7u);
    uint8_t* p = out_ + (bit_ >> 3);
    const uint32_t v = code << shift;
    p[0] = static_cast<uint8_t>(p[0] | (v & 0xFFu));
    if (shift + bits_ > 8u) p[1] = static_cast<uint8_t>(p[1] | (v >> 8));
    bit_ += bits_;
  }

 private:
  uint8_t* out_;
  uint32_t bits_;
  uint64_t bit_ = 0;
};

// Largest code of a validated header: levels - 1 for rANS-coded codes, else 2^bits - 1.
inline uint32_t CodeMax(const BlockHeader& h) {
  return h.code_coding == static_cast<uint8_t>(CodeCoding::kRans) ? uint32_t(h.levels) - 1u : (1u << h.bits) - 1u;
}
inline bool IsRans(const BlockHeader& h) { return h.code_coding == static_cast<uint8_t>(CodeCoding::kRans); }

// Bytes of `count` codes of `bits` bits: ceil(count * bits / 8) (inputs already validated).
inline uint64_t StreamBytes(uint64_t count, uint32_t bits) { return (count * bits + 7) / 8; }

// fp16 nearest at or below / at or above v (directed rounding for shared metadata ranges).
uint16_t F16Down(float v);
uint16_t F16Up(float v);

// Round half to even, as nearbyint in the default rounding mode.
float RoundEven(float v);

// Encoder front half shared by both codecs, in three steps:
// BeginEncodeHeader checks spec and shape, fills the header's codec fields (codec, bits,
// meta_bits, group_axis, group_size, rotation, rot_block, rot_seed, n_sink, n_residual), sizes
// (and zeroes) every part and writes sink and residual rows as fp16.
Status BeginEncodeHeader(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out);
// CheckFinite rejects a non-finite value among the quantized rows `q` ([Q][n_heads][head_dim]),
// naming the first one.
Status CheckFinite(const char* codec_name, const BlockHeader& h, const float* q);
// BeginEncode runs both and points *q at the quantized rows: the caller's input itself, or,
// when the spec rotates, a rotated copy in *storage.
Status BeginEncode(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out,
                   std::vector<float>* storage, const float** q);
// The same, always returning a copy of the quantized rows in *quantized (rotated when asked).
Status BeginEncode(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out,
                   std::vector<float>* quantized);

// Calls fn(gr, gc, values) for every group of the metadata grid, values gathered in stream order.
template <typename Fn>
void ForEachGroup(const Geometry& g, const float* q, Fn&& fn) {
  std::vector<float> vals;
  for (uint32_t gr = 0; gr < g.group_rows; ++gr) {
    const uint32_t t0 = gr * g.row_span;
    const uint32_t t1 = t0 + g.row_span < g.q_rows ? t0 + g.row_span : g.q_rows;
    for (uint32_t gc = 0; gc < g.group_cols; ++gc) {
      vals.clear();
      for (uint32_t t = t0; t < t1; ++t)
        for (uint32_t e = gc * g.col_span; e < (gc + 1) * g.col_span; ++e)
          vals.push_back(q[static_cast<uint64_t>(t) * g.row_values + e]);
      fn(gr, gc, vals);
    }
  }
}

// Range of group (gr, gc) of the quantized rows q, as std::minmax_element over the group's
// values in stream order: *lo the first smallest, *hi the last largest (this fixes which zero a
// group holding both -0.0 and +0.0 reports; spec/CODECS.md, "Encoder").
inline void GroupRange(const Geometry& g, const float* q, uint32_t gr, uint32_t gc, float* lo, float* hi) {
  const uint32_t t0 = gr * g.row_span;
  const uint32_t t1 = t0 + g.row_span < g.q_rows ? t0 + g.row_span : g.q_rows;
  const uint32_t e0 = gc * g.col_span, e1 = e0 + g.col_span;
  float a = q[static_cast<uint64_t>(t0) * g.row_values + e0], b = a;
  for (uint32_t t = t0; t < t1; ++t) {
    const float* row = q + static_cast<uint64_t>(t) * g.row_values;
    for (uint32_t e = e0; e < e1; ++e) {
      const float v = row[e];
      if (v < a) a = v;
      if (!(v < b)) b = v;
    }
  }
  *lo = a;
  *hi = b;
}

// Writes one code per quantized value, in [row][head][dim] order: code(t, e, gr, gc).
template <typename CodeFn>
void WriteCodes(const Geometry& g, uint32_t bits, std::vector<uint8_t>* part, CodeFn&& code) {
  BitWriter w(part->data(), bits);
  uint32_t gr = 0, left = g.row_span;  // group row of row t, rows left in it
  for (uint32_t t = 0; t < g.q_rows; ++t) {
    uint32_t e = 0;
    for (uint32_t gc = 0; gc < g.group_cols; ++gc)
      for (uint32_t k = 0; k < g.col_span; ++k, ++e) w.Put(code(t, e, gr, gc));
    if (--left == 0) {
      ++gr;
      left = g.row_span;
    }
  }
}

// The affine metadata rules (spec/CODECS.md, "Encoder"), one stage of their own: per group i, from
// the group's range [lo[i], hi[i]] (fp32 arithmetic),
//   minmax: min[i] = lo[i], scale[i] = (hi[i] - lo[i]) / float(qmax);
//   q4_0:   m = lo[i] if |lo[i]| >= |hi[i]| else hi[i], a = |m| / 8 (= |d| for ggml's d = m / -8);
//           scale = a, min = -7 a if m > 0 else -8 a                  (ggml's grid (q - 8) d);
//   q8_0:   d = max(|lo[i]|, |hi[i]|) / 127, scale = d, min = -128 d  (ggml's grid q d);
//   a zero minimum is +0.0.
// (qmax: the largest code, 2^bits - 1 or levels - 1.)
void AffineGroupMeta(const float* lo, const float* hi, uint64_t n, uint32_t qmax, float* scale, float* min,
                     AffineRule rule = AffineRule::kMinMax);

// Stores the per-group metadata field `field` (values [group_rows][group_cols], fp32) as the
// header's meta_bits say, and sets *decoded to the values a decoder will see. Fails when a
// value (or a shared range) does not fit fp16.
// Stores one column's shared fp16 range (lo16, hi16, already rounded outwards) of a meta-coded
// field in kPartRanges and gives the decoder's lo and step for M-bit codes.
void PutColumnRange(const Geometry& g, mqkv::elem::MetaField field, uint32_t gc, uint16_t lo16, uint16_t hi16, uint32_t m,
                    EncodedBlock* out, float* lo, float* step);

Status StoreMetaField(const Geometry& g, mqkv::elem::MetaField field, const std::vector<float>& values,
                      EncodedBlock* out, std::vector<float>* decoded);
// The fp16 (meta_bits == 16) case for groups [i0, i1) of the grid only: values and decoded are
// indexed from i0 (values[k] is group i0 + k). Same errors as StoreMetaField.
Status StoreMetaF16(const Geometry& g, mqkv::elem::MetaField field, const float* values, uint64_t i0, uint64_t i1,
                    EncodedBlock* out, float* decoded);

// The scalar reference encoder of the affine codec (the fast paths must match it byte for byte).
Status EncodeAffineScalar(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out);

// Scalar decode of quantized rows [t0, t1) to fp32 (inverse rotation included), one function per
// codec so a SIMD path can replace each.
void DecodeAffineRowsScalar(const BlockHeader& h, const uint8_t* payload, uint32_t t0, uint32_t t1, float* out);
void DecodeCodebookRowsScalar(const BlockHeader& h, const uint8_t* payload, uint32_t t0, uint32_t t1, float* out);

using RowsFn = void (*)(const BlockHeader&, const uint8_t*, uint32_t, uint32_t, float*);

// Replaces the code part of an encoded block (one byte per code, written with bits = 8) by its rANS
// form (rans.h); the header's code_coding and levels are already set.
Status EntropyCodeCodes(EncodedBlock* out);

// Refuses a block whose fp16 metadata (meta=16 scales and mins, the shared ranges of meta-coded
// fields) or codebook levels are infinite or NaN (spec/CODECS.md, "Non-finite metadata").
Status CheckFiniteMetadata(const BlockView& b);

// Decode driver: block rows [r0, r1) (sink, quantized or residual) into dst as `out`.
Status Decode(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst, RowsFn rows);

// A rANS block's codes expanded into the packed form the row kernels read (8-bit codes, or 4-bit for
// a codebook of <= 16 levels): `view` points into this struct.
Status ExpandRans(const BlockView& b, bool reference, ExpandedBlock* e);

// What the affine and codebook codecs share: header rules, the decode driver over their scalar
// row kernel, the SIMD decoder, the payload checks, features, accounting (lowbit.cpp).
class LowBitCodec : public Codec {
 public:
  LowBitCodec(CodecId id, const char* name, RowsFn rows, uint64_t feature) : id_(id), name_(name), rows_(rows), feature_(feature) {}
  CodecId id() const override { return id_; }
  const char* name() const override { return name_; }
  Status PartSizes(const BlockHeader& h, std::array<uint64_t, kNumParts>* sizes) const override;
  Status DecodeScalar(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst) const override;
  bool DecodeSimd(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst) const override;
  Status CheckPayload(const BlockView& b) const override;
  bool Expand(const BlockView& b, ExpandedBlock* e, Status* st) const override;
  uint64_t Features(const BlockHeader& h) const override;
  Accounting Account(const BlockHeader& h) const override;

 private:
  CodecId id_;
  const char* name_;
  RowsFn rows_;
  uint64_t feature_;
};

// Accounting (spec/CODECS.md, "Accounting") from a validated header.
Accounting Account(CodecId id, const BlockHeader& h);

// The spec fields every low-bit header carries (levels / thresholds / scale rule excluded).
CodecSpec SpecOfHeader(const BlockHeader& h);

}  // namespace mqkv::codec::lowbit
