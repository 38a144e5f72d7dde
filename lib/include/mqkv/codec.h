// Codec specs (what a user asks for), encoded blocks, and the encoder entry point. The codec
// objects themselves (how a block is laid out, encoded and decoded; one per CodecId) are internal:
// lib/src/codec/registry.h. Engines decode through Snapshot::Decode (mqkv/snapshot.h) or the CUDA
// API (mqkv/cuda.h).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mqkv/block.h"
#include "mqkv/status.h"

namespace mqkv {

// Element type of decoded output (and of raw codecs).
enum class DType : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2 };
const char* DTypeName(DType t);
inline size_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }

// Which decoder runs. kAuto = the fastest available that is bit-identical to kScalar.
enum class Backend : uint8_t { kAuto = 0, kScalar = 1, kSimd = 2, kCuda = 3 };
const char* BackendName(Backend b);
Result<Backend> ParseBackend(std::string_view name);
// Whether Codec::Decode with backend `b` works in this build on this machine (host pointers in
// and out). kAuto and kScalar: always. mqverify compares every available backend with kScalar.
bool BackendAvailable(Backend b);

// How a codebook encoder picks the per-group scale (decode does not depend on it).
enum class ScaleRule : uint8_t {
  kAbsMax = 0,  // s = max|x| / max|level|
  kRobust = 1,  // s = 0.6 * median|x| + 0.4 * mean|x|   (the seed's channelwise rule)
  kRms = 2,     // s = sqrt(mean x^2): for a whole rotated head vector ||x|| / sqrt(d) (TurboQuant)
};

// How an affine encoder picks each group's (scale, minimum) (decode does not depend on it; the
// tensor's codec string in the footer keeps it). spec/CODECS.md, "Encoder".
enum class AffineRule : uint8_t {
  kMinMax = 0,  // mn = min, s = (max - min) / (2^b - 1): the full range, asymmetric
  kQ4_0 = 1,    // llama.cpp/ggml q4_0's grid: d = m / -8 (m = the value of largest |x|), x' = (q - 8) d
  kQ8_0 = 2,    // llama.cpp/ggml q8_0's grid: d = max|x| / 127, x' = (q - 128) d (q = 1..255)
};

// How a low-bit spec stores its codes (spec/CODECS.md, "Entropy-coded codes").
enum class Entropy : uint8_t {
  kNone = 0,  // packed bits-bit codes (2^bits levels)
  kRans = 1,  // one byte per code, rANS-coded; any level count 3..256 (format 1.3)
};

// A user-level codec choice, parsed from a spec string (spec/CODECS.md, "Spec strings"):
//   f32 | f16 | bf16 | fp8          (fp8: E4M3 codes, one fp32 scale per block; format 1.1)
//   affine:bits=3,group=64,meta=4,axis=token,rotate=hadamard,seed=N,sinks=1,residual=128
//   affine:bits=4,group=32,rule=q4_0   (ggml's q4_0 / q8_0 grids inside the affine codec)
//   codebook:bits=2,levels=-1.85/-0.55/0.55/1.85,thresholds=-0.75/0/0.75,scale=robust,axis=channel
//   codebook:...,fit=lloyd              (levels fitted per block by Lloyd's algorithm)
//   affine:levels=6,entropy=rans,...     codebook:entropy=rans,levels=-1.2/0/1.2,... (format 1.3)
//   affine:...,prerope=1               (key tensors only: quantized before RoPE; format 1.4)
//   or a preset name (affine_seven_level_3bit_g64_meta4, ..., turbo2, turbo3, turbo4).
struct CodecSpec {
  CodecId codec = CodecId::kF16;
  uint8_t bits = 16;
  uint16_t group = 0;  // 0: the whole head vector (token axis) / all rows (channel axis)
  GroupAxis axis = GroupAxis::kToken;
  uint8_t meta_bits = 0;  // affine/codebook: 16 = fp16 metadata; 8 or 4 = meta-coded; raw, fp8: 0
  Rotation rotation = Rotation::kNone;
  uint64_t seed = 0x6D716B76u;  // "mqkv"; Hadamard sign seed
  uint32_t sinks = 0;
  uint32_t residual = 0;
  std::vector<float> levels;      // codebook only, ascending, 2^bits entries (rans: 3..256)
  Entropy entropy = Entropy::kNone;
  uint16_t n_levels = 0;          // affine with entropy=rans: the level count 3..256 (bits is 8)
  std::vector<float> thresholds;  // codebook encoder decision boundaries (empty = midpoints)
  ScaleRule scale_rule = ScaleRule::kAbsMax;
  // codebook only: `levels` are the starting point of Lloyd's algorithm, run per block on the
  // scale-normalized values; the block stores the fitted levels (spec/CODECS.md, "Codebook encoder").
  bool fit_lloyd = false;
  AffineRule affine_rule = AffineRule::kMinMax;  // affine only
  // Keys quantized before RoPE (KVQuant; format 1.4): the writer undoes RoPE on the rows with the
  // model's RoPE type and base and each row's position, the decoder redoes it (spec/CODECS.md,
  // "Keys before RoPE"). A tensor-level choice: the blocks themselves do not record it.
  bool prerope = false;

  static Result<CodecSpec> Parse(std::string_view text);
  // Canonical string: parses back to an equal spec. Presets print expanded.
  std::string ToString() const;
  bool operator==(const CodecSpec& o) const = default;
};

// Names of the built-in presets, for --help and tests.
std::vector<std::string> PresetNames();

// Shape of the rows given to an encoder: [n_tokens][n_heads][head_dim], fp32.
struct BlockShape {
  uint32_t n_tokens = 0;
  uint32_t n_heads = 0;
  uint32_t head_dim = 0;
  uint64_t values() const { return uint64_t(n_tokens) * n_heads * head_dim; }
};

// Where the bytes of a block go, for honest accounting (mqverify breakdown).
struct Accounting {
  double modeled_bits = 0;  // the seed's formula generalised (spec/CODECS.md, "Accounting")
  uint64_t codes = 0, group_meta = 0, shared_ranges = 0, fp16_rows = 0, codebook = 0;
  uint64_t padding = 0;  // part alignment and bit-stream tails inside the payload
};

// A verified block: header and (decoded) payload in memory.
struct BlockView {
  const BlockHeader* header = nullptr;
  const uint8_t* payload = nullptr;  // header->payload_bytes bytes
};

// Output of an encoder: header codec fields filled (codec, bits, meta_bits, group_axis,
// rotation, group_size, rot_block, rot_seed, n_sink, n_residual) and one byte vector per part.
struct EncodedBlock {
  BlockHeader header{};
  std::array<std::vector<uint8_t>, kNumParts> parts;
};

// Encode fp32 rows with a spec (dispatches through the registry).
Status EncodeBlock(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out);

}  // namespace mqkv
