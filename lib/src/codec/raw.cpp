// Raw passthrough codecs f32, f16, bf16 (spec/CODECS.md, "Raw codecs"): rows stored as-is,
// little-endian, [token][head][dim]. Lossless for data already in the stored type.
#include <cstring>

#include "../format/container.h"
#include "codecs.h"
#include "simd.h"
#include "mqkv/numeric.h"

namespace mqkv::codec {
namespace {

class RawCodec final : public Codec {
 public:
  RawCodec(CodecId id, const char* name, DType stored) : id_(id), name_(name), stored_(stored) {}
  CodecId id() const override { return id_; }
  const char* name() const override { return name_; }

  Status PartSizes(const BlockHeader& h, std::array<uint64_t, kNumParts>* sizes) const override {
    const uint8_t bits = static_cast<uint8_t>(DTypeSize(stored_) * 8);
    if (h.bits != bits) return FormatError(std::string(name_) + " block must have bits=" + std::to_string(bits));
    if (h.meta_bits || h.group_axis || h.rotation || h.group_size || h.rot_block || h.rot_seed || h.n_sink || h.n_residual ||
        h.code_coding)
      return FormatError(std::string(name_) + " block has non-zero quantization fields");
    sizes->fill(0);
    uint64_t n;
    if (!format::MulOk(uint64_t(h.n_tokens) * h.n_heads, uint64_t(h.head_dim) * DTypeSize(stored_), &n))
      return FormatError("block dimensions overflow");
    (*sizes)[kPartCodes] = n;
    return Status::OK();
  }

  Status Encode(const CodecSpec&, const float* src, BlockShape shape, EncodedBlock* out) const override {
    const uint64_t n = shape.values();
    out->header.bits = static_cast<uint8_t>(DTypeSize(stored_) * 8);
    std::vector<uint8_t>& codes = out->parts[kPartCodes];
    codes.resize(n * DTypeSize(stored_));
    // f16: the SIMD conversion when every value comes out finite (bit-identical), else the reference.
    if (stored_ == DType::kF16 && simd::F32ToF16(src, n, codes.data())) return Status::OK();
    StoreF32(src, n, stored_, codes.data());
    return Status::OK();
  }

  // SIMD: f16 rows widened to f32 or bf16 (the decoder's sink-row kernel). No SIMD kernel for the
  // rest: a copy when the output is the stored type, else a scalar conversion loop.
  bool DecodeSimd(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst) const override {
    if (stored_ != DType::kF16) return false;
    const BlockHeader& h = *b.header;
    const uint64_t row = uint64_t(h.n_heads) * h.head_dim;
    return simd::F16Rows(b.payload + h.parts[kPartCodes].offset + uint64_t(r0) * row * 2, uint64_t(r1 - r0) * row, out, dst);
  }
  Status DecodeScalar(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst) const override {
    const BlockHeader& h = *b.header;
    const uint64_t row = uint64_t(h.n_heads) * h.head_dim;
    const uint64_t n = (r1 - r0) * row;
    const uint8_t* src = b.payload + h.parts[kPartCodes].offset + r0 * row * DTypeSize(stored_);
    if (out == stored_) {
      std::memcpy(dst, src, n * DTypeSize(out));
      return Status::OK();
    }
    // Convert through fp32 in chunks: exact for widening, round-to-nearest-even for narrowing.
    float tmp[1024];
    for (uint64_t i = 0; i < n; i += 1024) {
      const uint64_t k = std::min<uint64_t>(1024, n - i);
      for (uint64_t j = 0; j < k; ++j) {
        const uint8_t* p = src + (i + j) * DTypeSize(stored_);
        if (stored_ == DType::kF32) {
          std::memcpy(&tmp[j], p, 4);
        } else {
          uint16_t v;
          std::memcpy(&v, p, 2);
          tmp[j] = stored_ == DType::kF16 ? f16_to_f32(v) : bf16_to_f32(v);
        }
      }
      StoreF32(tmp, k, out, static_cast<uint8_t*>(dst) + i * DTypeSize(out));
    }
    return Status::OK();
  }

  Accounting Account(const BlockHeader& h) const override {
    Accounting a;
    a.codes = h.parts[kPartCodes].bytes;
    a.modeled_bits = double(a.codes) * 8;
    a.padding = h.payload_bytes - a.codes;
    return a;
  }

  CodecSpec SpecOf(const BlockHeader&, const uint8_t*) const override {
    return CodecSpec::Parse(name_).value();
  }

 private:
  CodecId id_;
  const char* name_;
  DType stored_;
};

}  // namespace

const Codec* RawF32() {
  static const RawCodec c(CodecId::kF32, "f32", DType::kF32);
  return &c;
}
const Codec* RawF16() {
  static const RawCodec c(CodecId::kF16, "f16", DType::kF16);
  return &c;
}
const Codec* RawBF16() {
  static const RawCodec c(CodecId::kBF16, "bf16", DType::kBF16);
  return &c;
}

}  // namespace mqkv::codec
