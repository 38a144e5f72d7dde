// Shared internals of the low-bit codecs (spec/CODECS.md): header validation and part sizes,
// encoder front half (sinks, residual, rotation), metadata storage, decode driver, accounting.
#include "lowbit.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "../format/container.h"
#include "codecs.h"
#include "rans.h"
#include "simd.h"

namespace mqkv::codec::lowbit {

using format::AddOk;
using format::MulOk;

namespace {

std::string Field(const char* name, uint64_t v) { return std::string(name) + "=" + std::to_string(v); }

void StoreF16Rows(const float* src, uint64_t n, uint8_t* dst) {
  for (uint64_t i = 0; i < n; ++i) {
    const uint16_t u = f32_to_f16(src[i]);
    dst[2 * i] = static_cast<uint8_t>(u & 0xFF);
    dst[2 * i + 1] = static_cast<uint8_t>(u >> 8);
  }
}

// fp16 rows of a part (sinks or residual) -> `out`.
void LoadF16Rows(const uint8_t* src, uint64_t n, DType out, void* dst) {
  if (out == DType::kF16) {
    std::memcpy(dst, src, n * 2);
    return;
  }
  float tmp[1024];
  auto* o = static_cast<uint8_t*>(dst);
  for (uint64_t i = 0; i < n; i += 1024) {
    const uint64_t k = std::min<uint64_t>(1024, n - i);
    for (uint64_t j = 0; j < k; ++j) tmp[j] = elem::load_f16(src + 2 * (i + j));
    StoreF32(tmp, k, out, o + i * DTypeSize(out));
  }
}

}  // namespace

Status PartSizes(CodecId id, const BlockHeader& h, std::array<uint64_t, kNumParts>* sizes) {
  const bool cb = id == CodecId::kCodebook;
  const std::string name = cb ? "codebook" : "affine";
  const bool rans = IsRans(h);
  if (rans) {
    if (h.bits != 8) return FormatError(Field("bits", h.bits) + ": rANS-coded " + name + " codes are bytes (bits=8)");
    if (h.levels < 3 || h.levels > 256) return FormatError(Field("levels", h.levels) + ": rANS-coded codes have 3..256 levels");
  } else if (cb ? (h.bits < 1 || h.bits > 4) : (h.bits != 2 && h.bits != 3 && h.bits != 4 && h.bits != 8))
    return FormatError(Field("bits", h.bits) + ": " + name + " codes are " + (cb ? "1..4" : "2, 3, 4 or 8") + " bits");
  if (cb ? h.meta_bits != 16 : (h.meta_bits != 4 && h.meta_bits != 8 && h.meta_bits != 16))
    return FormatError(Field("meta_bits", h.meta_bits) + ": " + name + (cb ? " scales are fp16 (16)" : " metadata is 4, 8 or 16 (fp16) bits"));
  if (h.group_axis > static_cast<uint8_t>(GroupAxis::kChannel))
    return FormatError(Field("group_axis", h.group_axis) + ": expected 0 (token) or 1 (channel)");
  if (h.rotation > static_cast<uint8_t>(Rotation::kHadamard))
    return FormatError(Field("rotation", h.rotation) + ": expected 0 (none) or 1 (hadamard)");
  if (h.n_heads == 0) return FormatError("n_heads=0: a block needs at least one head");
  if (h.head_dim == 0 || h.head_dim % 8 != 0)
    return FormatError(Field("head_dim", h.head_dim) + ": " + name + " blocks need a head_dim that is a positive multiple of 8");
  if (h.group_axis == static_cast<uint8_t>(GroupAxis::kToken) &&
      (h.group_size == 0 || h.group_size % 8 != 0 || h.head_dim % h.group_size != 0))
    return FormatError(Field("group_size", h.group_size) + ": token-axis groups must be a multiple of 8 that divides head_dim=" + std::to_string(h.head_dim));
  if (h.rotation == static_cast<uint8_t>(Rotation::kNone)) {
    if (h.rot_block != 0) return FormatError(Field("rot_block", h.rot_block) + ": must be 0 without rotation");
    if (h.rot_seed != 0) return FormatError(Field("rot_seed", h.rot_seed) + ": must be 0 without rotation");
  } else if (h.rot_block != elem::largest_pow2_divisor(h.head_dim)) {
    return FormatError(Field("rot_block", h.rot_block) + ": a Hadamard block of head_dim=" + std::to_string(h.head_dim) +
                       " must be " + std::to_string(elem::largest_pow2_divisor(h.head_dim)) + " (largest power of two dividing it)");
  }
  uint64_t kept;
  if (!AddOk(h.n_sink, h.n_residual, &kept) || kept > h.n_tokens)
    return FormatError("n_sink=" + std::to_string(h.n_sink) + " + n_residual=" + std::to_string(h.n_residual) +
                       " exceed n_tokens=" + std::to_string(h.n_tokens));

  const elem::Geometry g = elem::geometry(h);
  const uint64_t rv = g.row_values;
  sizes->fill(0);
  uint64_t v, groups;
  if (!MulOk(uint64_t(g.q_rows), rv, &v) || !MulOk(v, h.bits, &v)) return FormatError("block dimensions overflow");
  (*sizes)[kPartCodes] = (v + 7) / 8;
  if (rans) {  // the stream's own size; its rules are checked with the payload (rans::CheckStream)
    if (v / 8 > rans::kMaxCodes) return FormatError("rANS-coded block of " + std::to_string(v / 8) + " codes (at most " + std::to_string(rans::kMaxCodes) + ")");
    (*sizes)[kPartCodes] = h.parts[kPartCodes].bytes;
  }
  if (!MulOk(uint64_t(g.group_rows), g.group_cols, &groups) || !MulOk(groups, 2, &v)) return FormatError("group count overflows");
  const uint64_t meta = h.meta_bits == 16 ? groups * 2 : (groups * h.meta_bits + 7) / 8;
  (*sizes)[kPartScales] = meta;
  if (!cb) {
    (*sizes)[kPartMins] = meta;
    if (h.meta_bits != 16 && groups > 0) (*sizes)[kPartRanges] = uint64_t(g.group_cols) * 8;
  }
  if (!MulOk(uint64_t(h.n_sink) * 2, rv, &(*sizes)[kPartSinkRows]) ||
      !MulOk(uint64_t(h.n_residual) * 2, rv, &(*sizes)[kPartResidualRows]))
    return FormatError("fp16 row parts overflow");
  if (cb) (*sizes)[kPartCodebook] = (rans ? uint64_t(h.levels) : uint64_t(1) << h.bits) * 4;
  return Status::OK();
}

uint16_t F16Down(float v) {
  const uint16_t u = f32_to_f16(v);
  if (!(f16_to_f32(u) > v)) return u;
  if (u == 0x0000) return 0x8001;
  return (u & 0x8000) ? static_cast<uint16_t>(u + 1) : static_cast<uint16_t>(u - 1);
}

uint16_t F16Up(float v) {
  const uint16_t u = f32_to_f16(v);
  if (!(f16_to_f32(u) < v)) return u;
  if (u == 0x8000) return 0x0001;
  return (u & 0x8000) ? static_cast<uint16_t>(u - 1) : static_cast<uint16_t>(u + 1);
}

// Round half to even. For 0 <= v < 2^23 (every code and meta value) adding and subtracting 2^23
// rounds exactly like nearbyint in the default mode, without a libm call per value (the encoder's
// hot loop); anything else takes nearbyint.
float RoundEven(float v) {
  constexpr float kMagic = 8388608.0f;  // 2^23
  if (v >= 0.0f && v < kMagic) return (v + kMagic) - kMagic;
  return std::nearbyint(v);
}

Status BeginEncodeHeader(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out) {
  const char* name = spec.codec == CodecId::kCodebook ? "codebook" : "affine";
  if (shape.n_heads == 0 || shape.n_heads > 0xFFFF || shape.head_dim == 0 || shape.head_dim > 0xFFFF)
    return InvalidArgument(std::string(name) + ": shape " + std::to_string(shape.n_heads) + " heads x " +
                           std::to_string(shape.head_dim) + " dims is not supported (1..65535 each)");
  if (shape.head_dim % 8 != 0)
    return InvalidArgument(std::string(name) + " needs head_dim to be a multiple of 8 (got " + std::to_string(shape.head_dim) + ")");
  if (uint64_t(spec.sinks) + spec.residual > shape.n_tokens)
    return InvalidArgument("sinks=" + std::to_string(spec.sinks) + " + residual=" + std::to_string(spec.residual) +
                           " exceed the block's " + std::to_string(shape.n_tokens) + " rows");
  BlockHeader& h = out->header;
  h.codec = static_cast<uint8_t>(spec.codec);
  h.n_tokens = shape.n_tokens;
  h.n_heads = static_cast<uint16_t>(shape.n_heads);
  h.head_dim = static_cast<uint16_t>(shape.head_dim);
  h.bits = spec.bits;
  h.meta_bits = spec.meta_bits;
  h.group_axis = static_cast<uint8_t>(spec.axis);
  h.group_size = spec.axis == GroupAxis::kToken && spec.group == 0 ? static_cast<uint16_t>(shape.head_dim) : spec.group;
  h.rotation = static_cast<uint8_t>(spec.rotation);
  const bool rotate = spec.rotation == Rotation::kHadamard;
  h.rot_block = rotate ? static_cast<uint16_t>(elem::largest_pow2_divisor(shape.head_dim)) : 0;
  h.rot_seed = rotate ? spec.seed : 0;
  h.n_sink = spec.sinks;
  h.n_residual = spec.residual;
  if (spec.entropy == Entropy::kRans) {
    const size_t n = spec.codec == CodecId::kCodebook ? spec.levels.size() : spec.n_levels;
    if (spec.bits != 8 || n < 3 || n > 256)
      return InvalidArgument(std::string(name) + " spec " + spec.ToString() + ": entropy=rans needs bits=8 and 3..256 levels");
    h.code_coding = static_cast<uint8_t>(CodeCoding::kRans);
    h.levels = static_cast<uint16_t>(n);
  }
  std::array<uint64_t, kNumParts> sizes{};
  if (Status s = PartSizes(spec.codec, h, &sizes); !s.ok())
    return InvalidArgument(std::string(name) + " spec " + spec.ToString() + " does not fit a block of " +
                           std::to_string(shape.n_heads) + " heads x " + std::to_string(shape.head_dim) + " dims: " + s.message());
  for (int p = 0; p < kNumParts; ++p) out->parts[p].assign(sizes[p], 0);
  if (IsRans(h)) out->parts[kPartCodes].assign(uint64_t(h.n_tokens - h.n_sink - h.n_residual) * h.n_heads * h.head_dim, 0);

  const uint64_t rv = uint64_t(h.n_heads) * h.head_dim;
  StoreF16Rows(src, uint64_t(h.n_sink) * rv, out->parts[kPartSinkRows].data());
  StoreF16Rows(src + uint64_t(h.n_tokens - h.n_residual) * rv, uint64_t(h.n_residual) * rv,
               out->parts[kPartResidualRows].data());
  return Status::OK();
}

Status CheckFinite(const char* name, const BlockHeader& h, const float* q) {
  const uint64_t rv = uint64_t(h.n_heads) * h.head_dim;
  const uint64_t n = uint64_t(h.n_tokens - h.n_sink - h.n_residual) * rv;
  for (uint64_t i = 0; i < n; ++i)
    if (!std::isfinite(q[i]))
      return InvalidArgument(std::string(name) + " needs finite input: row " + std::to_string(h.n_sink + i / rv) + " head " +
                             std::to_string(i % rv / h.head_dim) + " dim " + std::to_string(i % h.head_dim) + " is " +
                             std::to_string(q[i]));
  return Status::OK();
}

Status BeginEncode(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out,
                   std::vector<float>* storage, const float** q) {
  MQKV_RETURN_IF_ERROR(BeginEncodeHeader(spec, src, shape, out));
  const BlockHeader& h = out->header;
  const uint64_t rv = uint64_t(h.n_heads) * h.head_dim;
  const float* x = src + uint64_t(h.n_sink) * rv;
  MQKV_RETURN_IF_ERROR(CheckFinite(spec.codec == CodecId::kCodebook ? "codebook" : "affine", h, x));
  *q = x;
  if (h.rotation == static_cast<uint8_t>(Rotation::kHadamard)) {
    const uint64_t n = uint64_t(h.n_tokens - h.n_sink - h.n_residual) * rv;
    storage->assign(x, x + n);
    for (uint64_t v = 0; v < n; v += h.head_dim) elem::forward_rotate(storage->data() + v, h.head_dim, h.rot_block, h.rot_seed);
    *q = storage->data();
  }
  return Status::OK();
}

Status BeginEncode(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out,
                   std::vector<float>* quantized) {
  const float* q = nullptr;
  MQKV_RETURN_IF_ERROR(BeginEncode(spec, src, shape, out, quantized, &q));
  if (q != quantized->data()) {
    const BlockHeader& h = out->header;
    quantized->assign(q, q + uint64_t(h.n_tokens - h.n_sink - h.n_residual) * h.n_heads * h.head_dim);
  }
  return Status::OK();
}

void AffineGroupMeta(const float* lo, const float* hi, uint64_t n, uint32_t qmax, float* scale, float* min,
                     AffineRule rule) {
  if (rule == AffineRule::kQ4_0) {
    for (uint64_t i = 0; i < n; ++i) {
      const float m = std::fabs(lo[i]) >= std::fabs(hi[i]) ? lo[i] : hi[i];
      const float a = std::fabs(m) / 8.0f;  // |d|, d = m / -8
      scale[i] = a;
      min[i] = (m > 0.0f ? -7.0f * a : -8.0f * a) + 0.0f;  // + 0: no -0.0 for an all-zero group
    }
    return;
  }
  if (rule == AffineRule::kQ8_0) {
    for (uint64_t i = 0; i < n; ++i) {
      const float d = std::max(std::fabs(lo[i]), std::fabs(hi[i])) / 127.0f;
      scale[i] = d;
      min[i] = -128.0f * d + 0.0f;
    }
    return;
  }
  const float levels = static_cast<float>(qmax);
  for (uint64_t i = 0; i < n; ++i) {
    min[i] = lo[i];
    scale[i] = (hi[i] - lo[i]) / levels;
  }
}

namespace {

Status MetaTooBig(const Geometry& g, elem::MetaField field, uint64_t i, float v) {
  return InvalidArgument(std::string("group ") + (field == elem::kFieldScale ? "scale" : "minimum") + " " + std::to_string(v) +
                         " (group row " + std::to_string(i / g.group_cols) + ", column " + std::to_string(i % g.group_cols) +
                         ") is outside the fp16 metadata range (|v| <= 65504)");
}

}  // namespace

Status StoreMetaF16(const Geometry& g, elem::MetaField field, const float* values, uint64_t i0, uint64_t i1, EncodedBlock* out,
                    float* decoded) {
  uint8_t* part = out->parts[field == elem::kFieldScale ? kPartScales : kPartMins].data();
  for (uint64_t i = i0; i < i1; ++i) {
    const float v = values[i - i0];
    const uint16_t u = f32_to_f16(v);
    const float f = f16_to_f32(u);
    if (!std::isfinite(f)) return MetaTooBig(g, field, i, v);
    part[2 * i] = static_cast<uint8_t>(u & 0xFF);
    part[2 * i + 1] = static_cast<uint8_t>(u >> 8);
    decoded[i - i0] = f;
  }
  return Status::OK();
}

void PutColumnRange(const Geometry& g, elem::MetaField field, uint32_t gc, uint16_t lo16, uint16_t hi16, uint32_t m,
                    EncodedBlock* out, float* lo, float* step) {
  uint8_t* r = out->parts[kPartRanges].data() + (uint64_t(field) * g.group_cols + gc) * 4;
  r[0] = static_cast<uint8_t>(lo16 & 0xFF);
  r[1] = static_cast<uint8_t>(lo16 >> 8);
  r[2] = static_cast<uint8_t>(hi16 & 0xFF);
  r[3] = static_cast<uint8_t>(hi16 >> 8);
  *lo = f16_to_f32(lo16);
  *step = elem::meta_step(*lo, f16_to_f32(hi16), m);
}

Status StoreMetaField(const Geometry& g, elem::MetaField field, const std::vector<float>& values, EncodedBlock* out,
                      std::vector<float>* decoded) {
  const BlockHeader& h = out->header;
  uint8_t* part = out->parts[field == elem::kFieldScale ? kPartScales : kPartMins].data();
  decoded->resize(values.size());
  if (values.empty()) return Status::OK();  // Q = 0: no groups, no metadata parts
  auto too_big = [&](uint64_t i, float v) { return MetaTooBig(g, field, i, v); };
  if (h.meta_bits == 16) return StoreMetaF16(g, field, values.data(), 0, values.size(), out, decoded->data());
  // Meta-coded: per column the fp16 range [lo, hi] of the field over all group rows, rounded
  // outwards so every value lies inside; then M-bit codes against it.
  const uint32_t m = h.meta_bits, cmax = (1u << m) - 1u;
  std::vector<float> lo(g.group_cols), step(g.group_cols);
  for (uint32_t gc = 0; gc < g.group_cols; ++gc) {
    float a = values[gc], b = values[gc];
    for (uint32_t gr = 1; gr < g.group_rows; ++gr) {
      const float v = values[uint64_t(gr) * g.group_cols + gc];
      a = std::min(a, v);
      b = std::max(b, v);
    }
    const uint16_t a16 = F16Down(a), b16 = F16Up(b);
    if (!std::isfinite(f16_to_f32(a16))) return too_big(gc, a);
    if (!std::isfinite(f16_to_f32(b16))) return too_big(gc, b);
    PutColumnRange(g, field, gc, a16, b16, m, out, &lo[gc], &step[gc]);
  }
  BitWriter w(part, m);
  for (uint64_t i = 0; i < values.size(); ++i) {
    const uint32_t gc = static_cast<uint32_t>(i % g.group_cols);
    uint32_t c = 0;
    if (step[gc] > 0.0f) {
      const float r = RoundEven((values[i] - lo[gc]) / step[gc]);
      c = r <= 0.0f ? 0u : r >= float(cmax) ? cmax : static_cast<uint32_t>(r);
    }
    w.Put(c);
    (*decoded)[i] = elem::meta_value(c, lo[gc], step[gc]);
  }
  return Status::OK();
}

Status Decode(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst, RowsFn rows) {
  const BlockHeader& h = *b.header;
  const uint64_t rv = uint64_t(h.n_heads) * h.head_dim;
  const size_t es = DTypeSize(out);
  auto* o = static_cast<uint8_t*>(dst);
  const elem::RowSplit sp = elem::split_rows(h, r0, r1);
  // Sink rows.
  if (sp.sink_begin < sp.sink_end) {
    const uint32_t r = sp.sink_begin, e = sp.sink_end;
    LoadF16Rows(b.payload + h.parts[kPartSinkRows].offset + uint64_t(r) * rv * 2, uint64_t(e - r) * rv, out, o);
    o += uint64_t(e - r) * rv * es;
  }
  // Quantized rows, through an fp32 buffer unless the output is fp32.
  if (sp.quant_begin < sp.quant_end) {
    const uint32_t r = sp.quant_begin, e = sp.quant_end;
    if (out == DType::kF32) {
      rows(h, b.payload, r - h.n_sink, e - h.n_sink, reinterpret_cast<float*>(o));
      o += uint64_t(e - r) * rv * es;
    } else {
      const uint32_t chunk = static_cast<uint32_t>(std::max<uint64_t>(1, 16384 / rv));
      std::vector<float> tmp(std::min<uint64_t>(chunk, e - r) * rv);
      for (uint32_t t = r; t < e; t += chunk) {
        const uint32_t k = std::min(chunk, e - t);
        rows(h, b.payload, t - h.n_sink, t - h.n_sink + k, tmp.data());
        StoreF32(tmp.data(), uint64_t(k) * rv, out, o);
        o += uint64_t(k) * rv * es;
      }
    }
  }
  // Residual rows.
  if (sp.resid_begin < sp.resid_end)
    LoadF16Rows(b.payload + h.parts[kPartResidualRows].offset + uint64_t(sp.resid_begin - sp.resid_first) * rv * 2,
                uint64_t(sp.resid_end - sp.resid_begin) * rv, out, o);
  return Status::OK();
}

Status CheckFiniteMetadata(const BlockView& b) {
  const BlockHeader& h = *b.header;
  const char* codec = h.codec == static_cast<uint8_t>(CodecId::kCodebook) ? "codebook" : "affine";
  auto f16_part = [&](int part, const char* what, uint64_t per_entry) -> Status {
    const uint8_t* p = b.payload + h.parts[part].offset;
    for (uint64_t i = 0; i < h.parts[part].bytes / 2; ++i) {
      const uint16_t u = static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
      if ((u & 0x7C00u) == 0x7C00u) {
        char bits[8];
        std::snprintf(bits, sizeof bits, "%04X", u);
        return FormatError(std::string(codec) + " block: " + what + " " + std::to_string(i / per_entry) +
                           " is not finite (fp16 0x" + bits + "); metadata must be finite");
      }
    }
    return Status::OK();
  };
  if (h.meta_bits == 16) {
    MQKV_RETURN_IF_ERROR(f16_part(kPartScales, "scale of group", 1));
    MQKV_RETURN_IF_ERROR(f16_part(kPartMins, "minimum of group", 1));
  } else {
    MQKV_RETURN_IF_ERROR(f16_part(kPartRanges, "shared range of field/column pair", 2));
  }
  if (h.parts[kPartCodebook].bytes) {
    const uint8_t* p = b.payload + h.parts[kPartCodebook].offset;
    for (uint64_t i = 0; i < h.parts[kPartCodebook].bytes / 4; ++i)
      if (!std::isfinite(elem::load_f32(p + 4 * i)))
        return FormatError(std::string(codec) + " block: codebook level " + std::to_string(i) + " is not finite; levels must be finite");
  }
  return Status::OK();
}

Status LowBitCodec::PartSizes(const BlockHeader& h, std::array<uint64_t, kNumParts>* sizes) const {
  return lowbit::PartSizes(id_, h, sizes);
}
Status LowBitCodec::DecodeScalar(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst) const {
  if (IsRans(*b.header)) {  // the spec's reference rANS decoder, then the packed-code reference
    ScratchExpandedBlock e;
    MQKV_RETURN_IF_ERROR(ExpandRans(b, true, &e.block));
    return lowbit::Decode(e.block.view, r0, r1, out, dst, rows_);
  }
  return lowbit::Decode(b, r0, r1, out, dst, rows_);
}
bool LowBitCodec::DecodeSimd(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst) const {
  if (!IsRans(*b.header)) return simd::Decode(b, r0, r1, out, dst);
  if (!simd::HasKernels()) return false;
  // htscodecs' SIMD rANS decoder, then the SIMD code kernels (or, for a view they do not cover,
  // the reference row kernel: bit-identical either way). An error is reported by rerunning the
  // reference, which refuses the same parts (rans.h).
  ScratchExpandedBlock e;
  if (!ExpandRans(b, false, &e.block).ok()) return false;
  if (simd::Decode(e.block.view, r0, r1, out, dst)) return true;
  return lowbit::Decode(e.block.view, r0, r1, out, dst, rows_).ok();
}
uint64_t LowBitCodec::Features(const BlockHeader& h) const {
  return feature_ | (h.rotation == static_cast<uint8_t>(Rotation::kHadamard) ? uint64_t(kFeatureHadamard) : uint64_t(0)) |
         (IsRans(h) ? uint64_t(kFeatureRans) : uint64_t(0));
}
Accounting LowBitCodec::Account(const BlockHeader& h) const { return lowbit::Account(id_, h); }

Accounting Account(CodecId id, const BlockHeader& h) {
  const elem::Geometry g = elem::geometry(h);
  const double rv = g.row_values;
  const double groups = double(g.group_rows) * g.group_cols;
  const double field_bits = id == CodecId::kCodebook ? 16.0 : 2.0 * h.meta_bits;
  Accounting a;
  // rANS: the modeled figure of a fixed-rate code of the same levels, log2(levels) bits (the
  // measured bytes are what the stream takes).
  const double code_bits = IsRans(h) ? std::log2(double(h.levels)) : double(h.bits);
  a.modeled_bits = double(g.q_rows) * rv * code_bits + field_bits * groups +
                   (h.meta_bits < 16 && groups > 0 ? double(g.group_cols) * 2 * 32 : 0.0) +
                   (double(h.n_sink) + h.n_residual) * rv * 16;
  a.codes = h.parts[kPartCodes].bytes;
  a.group_meta = uint64_t(h.parts[kPartScales].bytes) + h.parts[kPartMins].bytes;
  a.shared_ranges = h.parts[kPartRanges].bytes;
  a.fp16_rows = uint64_t(h.parts[kPartSinkRows].bytes) + h.parts[kPartResidualRows].bytes;
  a.codebook = h.parts[kPartCodebook].bytes;
  const uint64_t used = a.codes + a.group_meta + a.shared_ranges + a.fp16_rows + a.codebook;
  a.padding = h.payload_bytes > used ? h.payload_bytes - used : 0;
  return a;
}

CodecSpec SpecOfHeader(const BlockHeader& h) {
  CodecSpec s;
  s.codec = static_cast<CodecId>(h.codec);
  s.bits = h.bits;
  s.group = h.group_size;
  s.axis = static_cast<GroupAxis>(h.group_axis);
  s.meta_bits = h.meta_bits;
  s.rotation = static_cast<Rotation>(h.rotation);
  if (s.rotation == Rotation::kHadamard) s.seed = h.rot_seed;
  s.sinks = h.n_sink;
  s.residual = h.n_residual;
  if (IsRans(h)) {
    s.entropy = Entropy::kRans;
    if (s.codec == CodecId::kAffine) s.n_levels = h.levels;
  }
  return s;
}

}  // namespace mqkv::codec::lowbit

namespace mqkv::codec::lowbit {

Status EntropyCodeCodes(EncodedBlock* out) {
  std::vector<uint8_t> part;
  std::vector<uint8_t>& codes = out->parts[kPartCodes];
  MQKV_RETURN_IF_ERROR(rans::Encode(codes.data(), codes.size(), &part));
  codes.swap(part);
  return Status::OK();
}

Status ExpandRans(const BlockView& b, bool reference, ExpandedBlock* e) {
  const BlockHeader& h = *b.header;
  const elem::Geometry g = elem::geometry(h);
  const uint64_t n = uint64_t(g.q_rows) * g.row_values;
  const bool cb = h.codec == static_cast<uint8_t>(CodecId::kCodebook);
  // The view: packed 8-bit codes (the same bytes), or 4-bit codes for a codebook of <= 16 levels
  // (the codebook kernels hold 16 levels).
  const uint32_t vb = cb && h.levels <= 16 ? 4 : 8;
  e->header = h;
  BlockHeader& v = e->header;
  v.code_coding = 0;
  v.levels = 0;
  v.bits = static_cast<uint8_t>(vb);
  v.compression = 0;
  std::array<uint64_t, kNumParts> sizes{};
  for (int p = 0; p < kNumParts; ++p) sizes[p] = h.parts[p].bytes;
  sizes[kPartCodes] = StreamBytes(n, vb);
  if (cb) sizes[kPartCodebook] = (uint64_t(1) << vb) * 4;
  if (Status s = format::LayoutParts(sizes, &v); !s.ok()) return s;
  // Every part is written below; only bytes past the old size are zeroed (a reused scratch block's
  // padding between parts keeps stale bytes, which no kernel reads).
  e->payload.resize(v.payload_bytes);
  uint8_t* dst = e->payload.data();
  for (int p = 1; p < kNumParts; ++p)
    if (h.parts[p].bytes) std::memcpy(dst + v.parts[p].offset, b.payload + h.parts[p].offset, h.parts[p].bytes);
  uint8_t* codes = dst + v.parts[kPartCodes].offset;
  if (vb == 8) {
    MQKV_RETURN_IF_ERROR(rans::Decode(b.payload + h.parts[kPartCodes].offset, h.parts[kPartCodes].bytes, n, h.levels, reference, codes));
  } else {
    std::vector<uint8_t> bytes(n);
    MQKV_RETURN_IF_ERROR(rans::Decode(b.payload + h.parts[kPartCodes].offset, h.parts[kPartCodes].bytes, n, h.levels, reference, bytes.data()));
    for (uint64_t i = 0; i + 1 < n; i += 2) codes[i / 2] = static_cast<uint8_t>(bytes[i] | (bytes[i + 1] << 4));
    if (n & 1) codes[n / 2] = bytes[n - 1];
  }
  e->view = BlockView{&e->header, e->payload.data()};
  return Status::OK();
}

Status LowBitCodec::CheckPayload(const BlockView& b) const {
  MQKV_RETURN_IF_ERROR(CheckFiniteMetadata(b));
  if (!IsRans(*b.header)) return Status::OK();
  const BlockHeader& h = *b.header;
  const elem::Geometry g = elem::geometry(h);
  rans::StreamInfo info;
  return rans::CheckStream(b.payload + h.parts[kPartCodes].offset, h.parts[kPartCodes].bytes, uint64_t(g.q_rows) * g.row_values,
                           h.levels, &info);
}

bool LowBitCodec::Expand(const BlockView& b, ExpandedBlock* e, Status* st) const {
  if (!IsRans(*b.header)) return false;
  *st = ExpandRans(b, false, e);
  return true;
}

}  // namespace mqkv::codec::lowbit
