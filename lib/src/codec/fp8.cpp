// The fp8 codec (CodecId 5, spec/CODECS.md "fp8"): one OCP FP8 E4M3 byte per value, [row][head][dim],
// times one fp32 scale per block (s = absmax / 448 at encode). Element logic: lib/src/detail/fp8.h.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "../format/container.h"
#include "codecs.h"
#include "detail/fp8.h"
#include "mqkv/numeric.h"

namespace mqkv::codec {
namespace {

std::string Field(const char* name, uint64_t v) { return std::string(name) + "=" + std::to_string(v); }

float LoadScale(const BlockView& b) { return mqkv::elem::load_f32(b.payload + b.header->parts[kPartScales].offset); }

Status CheckScale(float s) {
  if (fp8::scale_valid(s)) return Status::OK();
  char buf[96];
  std::snprintf(buf, sizeof buf, "fp8 block scale %g (bits 0x%08X) is not a positive finite number", static_cast<double>(s),
                static_cast<unsigned>(f32_bits(s)));
  return FormatError(buf);
}

class Fp8Codec final : public Codec {
 public:
  CodecId id() const override { return CodecId::kFp8; }
  const char* name() const override { return "fp8"; }

  Status PartSizes(const BlockHeader& h, std::array<uint64_t, kNumParts>* sizes) const override {
    if (h.bits != 8) return FormatError(Field("bits", h.bits) + ": fp8 codes are 8 bits");
    const struct {
      const char* name;
      uint64_t value;
    } zero[] = {{"meta_bits", h.meta_bits}, {"group_axis", h.group_axis}, {"rotation", h.rotation},
                {"group_size", h.group_size}, {"rot_block", h.rot_block},   {"rot_seed", h.rot_seed},
                {"n_sink", h.n_sink},         {"n_residual", h.n_residual}, {"code_coding", h.code_coding}};
    for (const auto& f : zero)
      if (f.value != 0) return FormatError(Field(f.name, f.value) + ": must be 0 in an fp8 block");
    sizes->fill(0);
    uint64_t n;
    if (!format::MulOk(uint64_t(h.n_tokens) * h.n_heads, h.head_dim, &n)) return FormatError("block dimensions overflow");
    (*sizes)[kPartCodes] = n;
    (*sizes)[kPartScales] = 4;
    return Status::OK();
  }

  Status Encode(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out) const override {
    if (spec.codec != CodecId::kFp8) return InvalidArgument("fp8 encoder given spec " + spec.ToString());
    if (spec.sinks || spec.residual) return InvalidArgument("fp8 blocks keep no fp16 sink or residual rows");
    if (shape.n_heads == 0 || shape.n_heads > 0xFFFF || shape.head_dim == 0 || shape.head_dim > 0xFFFF)
      return InvalidArgument("fp8: shape " + std::to_string(shape.n_heads) + " heads x " + std::to_string(shape.head_dim) +
                             " dims is not supported (1..65535 each)");
    BlockHeader& h = out->header;
    h.bits = 8;
    const uint64_t n = shape.values(), rv = uint64_t(shape.n_heads) * shape.head_dim;
    // s = absmax / 448 in binary32 (1 when every value is 0, or when the quotient underflows to 0).
    float absmax = 0.0f;
    for (uint64_t i = 0; i < n; ++i) {
      if (!std::isfinite(src[i]))
        return InvalidArgument("fp8 needs finite input: row " + std::to_string(i / rv) + " head " + std::to_string(i % rv / shape.head_dim) +
                               " dim " + std::to_string(i % shape.head_dim) + " is " + std::to_string(src[i]));
      absmax = std::fmax(absmax, std::fabs(src[i]));
    }
    float s = absmax / fp8::kE4M3Max;
    if (s == 0.0f) s = 1.0f;
    std::vector<uint8_t>& codes = out->parts[kPartCodes];
    codes.resize(n);
    for (uint64_t i = 0; i < n; ++i) codes[i] = fp8::f32_to_e4m3(src[i] / s);
    std::vector<uint8_t>& scale = out->parts[kPartScales];
    scale.resize(4);
    const uint32_t u = f32_bits(s);
    for (int k = 0; k < 4; ++k) scale[k] = static_cast<uint8_t>(u >> (8 * k));
    return Status::OK();
  }

  Status CheckDecodable(const BlockView& b) const override { return CheckScale(LoadScale(b)); }
  uint64_t Features(const BlockHeader&) const override { return kFeatureFp8; }

  // The CPU kernel (no SIMD one): a 256-entry table of the decoded values (fp8::decode of each
  // code, so bit-identical to decoding element by element), then one lookup per value.
  Status DecodeScalar(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst) const override {
    const BlockHeader& h = *b.header;
    const float s = LoadScale(b);
    const uint64_t rv = uint64_t(h.n_heads) * h.head_dim;
    const uint64_t n = uint64_t(r1 - r0) * rv;
    const uint8_t* codes = b.payload + h.parts[kPartCodes].offset + uint64_t(r0) * rv;
    float lut[256];
    for (uint32_t c = 0; c < 256; ++c) lut[c] = fp8::decode(c, s);
    if (out == DType::kF32) {
      float* o = static_cast<float*>(dst);
      for (uint64_t i = 0; i < n; ++i) o[i] = lut[codes[i]];
      return Status::OK();
    }
    uint16_t lut16[256];
    StoreF32(lut, 256, out, lut16);  // the same rounding StoreF32 applies to every other codec
    uint16_t* o = static_cast<uint16_t*>(dst);
    for (uint64_t i = 0; i < n; ++i) o[i] = lut16[codes[i]];
    return Status::OK();
  }

  Accounting Account(const BlockHeader& h) const override {
    Accounting a;
    a.codes = h.parts[kPartCodes].bytes;
    a.group_meta = h.parts[kPartScales].bytes;
    a.modeled_bits = 8.0 * double(a.codes) + 32.0;
    const uint64_t used = a.codes + a.group_meta;
    a.padding = h.payload_bytes > used ? h.payload_bytes - used : 0;
    return a;
  }

  CodecSpec SpecOf(const BlockHeader&, const uint8_t*) const override { return CodecSpec::Parse("fp8").value(); }
};

}  // namespace

const Codec* Fp8() {
  static const Fp8Codec c;
  return &c;
}

}  // namespace mqkv::codec
