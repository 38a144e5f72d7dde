#include <cstring>

#include "codecs.h"
#include "mqkv/cuda.h"
#include "mqkv/numeric.h"
#include "mqkv/simd.h"

namespace mqkv {

namespace {
ExpandedBlock& ThreadScratch() {
  thread_local ExpandedBlock e;
  return e;
}
constexpr uint64_t kKeepScratch = uint64_t(64) << 20;
}  // namespace

ScratchExpandedBlock::ScratchExpandedBlock() : block(ThreadScratch()) {}
ScratchExpandedBlock::~ScratchExpandedBlock() {
  if (block.payload.capacity() > kKeepScratch) std::vector<uint8_t>().swap(block.payload);
}

const Codec* GetCodec(CodecId id) { return GetCodec(static_cast<uint8_t>(id)); }

const Codec* GetCodec(uint8_t raw_id) {
  static const Codec* const kTable[kNumCodecIds] = {
      codec::RawF32(), codec::RawF16(), codec::RawBF16(), codec::Affine(), codec::Codebook(), codec::Fp8(),
  };
  return raw_id < kNumCodecIds ? kTable[raw_id] : nullptr;
}

Status EncodeBlock(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out) {
  const Codec* c = GetCodec(spec.codec);
  if (!c) return Unsupported("codec " + spec.ToString() + " is not available in this build");
  *out = EncodedBlock{};
  out->header.n_tokens = shape.n_tokens;
  out->header.n_heads = static_cast<uint16_t>(shape.n_heads);
  out->header.head_dim = static_cast<uint16_t>(shape.head_dim);
  out->header.codec = static_cast<uint8_t>(spec.codec);
  return c->Encode(spec, src, shape, out);
}

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
  }
  return "?";
}

const char* BackendName(Backend b) {
  switch (b) {
    case Backend::kAuto: return "auto";
    case Backend::kScalar: return "scalar";
    case Backend::kSimd: return "simd";
    case Backend::kCuda: return "cuda";
  }
  return "?";
}

bool BackendAvailable(Backend b) {
  switch (b) {
    case Backend::kAuto:
    case Backend::kScalar: return true;
    case Backend::kSimd: return SimdArchs().size() > 1;  // an ISA beyond "scalar" (mqkv/simd.h)
    case Backend::kCuda: return CudaDeviceAvailable();  // CUDA build and a device (mqkv/cuda.h)
  }
  return false;
}

Result<Backend> ParseBackend(std::string_view name) {
  if (name == "auto") return Backend::kAuto;
  if (name == "scalar") return Backend::kScalar;
  if (name == "simd") return Backend::kSimd;
  if (name == "cuda") return Backend::kCuda;
  return InvalidArgument("unknown backend \"" + std::string(name) + "\" (auto, scalar, simd, cuda)");
}

namespace codec {
void StoreF32(const float* src, size_t n, DType out, void* dst) {
  switch (out) {
    case DType::kF32: std::memcpy(dst, src, n * 4); break;
    case DType::kF16: {
      auto* o = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) o[i] = f32_to_f16(src[i]);
      break;
    }
    case DType::kBF16: {
      auto* o = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) o[i] = f32_to_bf16(src[i]);
      break;
    }
  }
}
}  // namespace codec

}  // namespace mqkv
