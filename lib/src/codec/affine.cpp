// The affine codec (CodecId 3, spec/CODECS.md "affine"): groupwise asymmetric uniform codes,
// x' = q * s + mn, with fp16 or M-bit meta-coded (s, mn), optional Hadamard rotation, fp16
// sink and residual rows.
#include <vector>

#include "codecs.h"
#include "lowbit.h"
#include "simd.h"

namespace mqkv::codec {
namespace lowbit {

void DecodeAffineRowsScalar(const BlockHeader& h, const uint8_t* payload, uint32_t t0, uint32_t t1, float* out) {
  const elem::Geometry g = elem::geometry(h);
  const uint8_t* codes = payload + h.parts[kPartCodes].offset;
  std::vector<float> scale(g.group_cols), min(g.group_cols);
  std::vector<uint8_t> negative;  // sign rule, once per call
  if (h.rotation == static_cast<uint8_t>(Rotation::kHadamard))
    for (uint32_t i = 0; i < h.head_dim; ++i) negative.push_back(elem::hadamard_negative(h.rot_seed, i));
  uint32_t cur = UINT32_MAX;
  for (uint32_t t = t0; t < t1; ++t) {
    const uint32_t gr = t / g.row_span;
    if (gr != cur) {
      for (uint32_t gc = 0; gc < g.group_cols; ++gc) {
        scale[gc] = elem::meta_field(h, g, payload, elem::kFieldScale, gr, gc);
        min[gc] = elem::meta_field(h, g, payload, elem::kFieldMin, gr, gc);
      }
      cur = gr;
    }
    float* o = out + uint64_t(t - t0) * g.row_values;
    const uint64_t base = uint64_t(t) * g.row_values;
    for (uint32_t e = 0; e < g.row_values; ++e) {
      const uint32_t gc = e / g.col_span;
      o[e] = elem::affine_value(elem::read_code(codes, base + e, h.bits), scale[gc], min[gc]);
    }
    if (!negative.empty())
      for (uint32_t v = 0; v < g.row_values; v += h.head_dim) elem::inverse_rotate(o + v, h.head_dim, h.rot_block, negative.data());
  }
}

// The reference encoder (spec/CODECS.md, "Encoder"): every fast path must produce these bytes.
Status EncodeAffineScalar(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out) {
  std::vector<float> rotated;
  const float* x = nullptr;
  MQKV_RETURN_IF_ERROR(BeginEncode(spec, src, shape, out, &rotated, &x));
  const BlockHeader& h = out->header;
  const elem::Geometry g = elem::geometry(h);
  const uint32_t qmax = CodeMax(h);
  const float levels = static_cast<float>(qmax);
  // (a) Per group its range: the first smallest and the last largest value.
  const uint64_t groups = uint64_t(g.group_rows) * g.group_cols;
  std::vector<float> lo(groups), hi(groups);
  for (uint32_t gr = 0; gr < g.group_rows; ++gr)
    for (uint32_t gc = 0; gc < g.group_cols; ++gc) {
      const uint64_t i = uint64_t(gr) * g.group_cols + gc;
      GroupRange(g, x, gr, gc, &lo[i], &hi[i]);
    }
  // (b) Metadata: mn = min, s = (max - mn) / qmax (2^b - 1, or levels - 1 with rANS) in fp32, then stored as meta_bits say.
  std::vector<float> scales(groups), mins(groups);
  AffineGroupMeta(lo.data(), hi.data(), groups, qmax, scales.data(), mins.data(), spec.affine_rule);
  std::vector<float> s, mn;  // what the decoder will see
  MQKV_RETURN_IF_ERROR(StoreMetaField(g, elem::kFieldScale, scales, out, &s));
  MQKV_RETURN_IF_ERROR(StoreMetaField(g, elem::kFieldMin, mins, out, &mn));
  // (c) Codes against the dequantized metadata, so decode reproduces what encode measured.
  WriteCodes(g, h.bits, &out->parts[kPartCodes], [&](uint32_t t, uint32_t e, uint32_t gr, uint32_t gc) {
    const uint64_t i = uint64_t(gr) * g.group_cols + gc;
    if (!(s[i] > 0.0f)) return 0u;
    const float r = RoundEven((x[uint64_t(t) * g.row_values + e] - mn[i]) / s[i]);
    return r <= 0.0f ? 0u : r >= levels ? qmax : static_cast<uint32_t>(r);
  });
  return IsRans(h) ? EntropyCodeCodes(out) : Status::OK();
}

}  // namespace lowbit

namespace {

class AffineCodec final : public lowbit::LowBitCodec {
 public:
  AffineCodec() : LowBitCodec(CodecId::kAffine, "affine", &lowbit::DecodeAffineRowsScalar, kFeatureAffine) {}

  Status Encode(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out) const override {
    if (spec.codec != CodecId::kAffine) return InvalidArgument("affine encoder given spec " + spec.ToString());
    // Specs built in code skip CodecSpec::Parse: the ggml rules fix bits and metadata.
    if (spec.entropy == Entropy::kRans && spec.affine_rule != AffineRule::kMinMax)
      return InvalidArgument("affine spec " + spec.ToString() + ": entropy=rans takes rule=minmax only");
    if ((spec.affine_rule == AffineRule::kQ4_0 && (spec.bits != 4 || spec.meta_bits != 16)) ||
        (spec.affine_rule == AffineRule::kQ8_0 && (spec.bits != 8 || spec.meta_bits != 16)))
      return InvalidArgument("affine spec " + spec.ToString() + ": rule q4_0 needs bits=4, q8_0 bits=8, both meta=16");
    Status st;
    if (simd::EncodeAffine(spec, src, shape, out, &st)) return st;
    return lowbit::EncodeAffineScalar(spec, src, shape, out);
  }

  CodecSpec SpecOf(const BlockHeader& h, const uint8_t*) const override { return lowbit::SpecOfHeader(h); }
};

}  // namespace

const Codec* Affine() {
  static const AffineCodec c;
  return &c;
}

}  // namespace mqkv::codec
