// The fixed 128-byte little-endian block header (spec/FORMAT.md, "Blocks").
// Plain data, no methods that touch memory beyond the struct: the CUDA kernels include this
// header and decode a block from its header alone.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mqkv {

enum class CodecId : uint8_t {
  kF32 = 0,       // raw binary32 rows
  kF16 = 1,       // raw binary16 rows
  kBF16 = 2,      // raw bfloat16 rows
  kAffine = 3,    // groupwise asymmetric uniform codes (spec/CODECS.md)
  kCodebook = 4,  // codebook levels x group scale (spec/CODECS.md)
  kFp8 = 5,       // FP8 E4M3 codes x one fp32 block scale (spec/CODECS.md; format 1.1)
};
constexpr int kNumCodecIds = 6;

enum class GroupAxis : uint8_t {
  kToken = 0,    // groups of G consecutive dims of one token's head vector
  kChannel = 1,  // groups of G consecutive tokens of one channel (head, dim)
};

enum class Rotation : uint8_t { kNone = 0, kHadamard = 1 };

enum class Compression : uint8_t { kNone = 0, kZstd = 1 };

// How the code part (kPartCodes) of a low-bit block stores its codes (format 1.3).
enum class CodeCoding : uint8_t {
  kPacked = 0,  // one `bits`-bit code per value, LSB-first bit stream
  kRans = 1,    // one byte per value, entropy-coded: XXH3-64 of the bytes + an rANS-Nx16 stream
};

// Part slots of a block payload, in payload order.
enum Part : int {
  kPartCodes = 0,     // raw rows, or packed code stream
  kPartScales = 1,    // per-group scale (fp16 or meta-bit codes)
  kPartMins = 2,      // per-group minimum (fp16 or meta-bit codes)
  kPartRanges = 3,    // shared fp16 (lo, hi) pairs for meta-coded fields
  kPartSinkRows = 4,  // first n_sink rows as fp16
  kPartResidualRows = 5,  // last n_residual rows as fp16
  kPartCodebook = 6,  // fp32 codebook levels
  kNumParts = 7,
};

inline constexpr char kBlockMagic[4] = {'M', 'Q', 'K', 'B'};
inline constexpr uint32_t kBlockHeaderBytes = 128;
inline constexpr uint32_t kBlockAlign = 64;  // block start, footer start
inline constexpr uint32_t kPartAlign = 8;    // part offsets within the payload

struct PartRef {
  uint32_t offset;  // from the first payload byte (the byte after the header)
  uint32_t bytes;
};

struct BlockHeader {
  char magic[4];           // 0   "MQKB"
  uint16_t header_bytes;   // 4   128
  uint8_t codec;           // 6   CodecId
  uint8_t kind;            // 7   0 = K, 1 = V, 2 = Q
  uint32_t layer;          // 8
  uint32_t token_begin;    // 12  first tensor row held by this block
  uint32_t n_tokens;       // 16  rows in this block
  uint16_t n_heads;        // 20
  uint16_t head_dim;       // 22
  uint8_t bits;            // 24  code bits (32/16/16 for raw codecs)
  uint8_t meta_bits;       // 25  16 = fp16 metadata, 8 or 4 = meta-coded, 0 = none
  uint8_t group_axis;      // 26  GroupAxis
  uint8_t rotation;        // 27  Rotation
  uint16_t group_size;     // 28  G (dims for token axis, tokens for channel axis)
  uint16_t rot_block;      // 30  Hadamard block length (power of two), 0 if none
  uint64_t rot_seed;       // 32  sign-rule seed
  uint32_t n_sink;         // 40  first rows stored as fp16
  uint32_t n_residual;     // 44  last rows stored as fp16
  uint8_t compression;     // 48  Compression of the payload
  uint8_t code_coding;     // 49  CodeCoding (format 1.3, feature rans); 0 before
  uint16_t levels;         // 50  rans: code levels (3..256; codes are 0..levels-1); packed: 0
  uint8_t reserved0[4];    // 52  zero
  uint64_t payload_bytes;  // 56  decoded payload size
  uint64_t stored_bytes;   // 64  payload size as stored (== payload_bytes when uncompressed)
  PartRef parts[kNumParts];  // 72
};

static_assert(sizeof(PartRef) == 8, "PartRef must be 8 bytes");
static_assert(sizeof(BlockHeader) == kBlockHeaderBytes, "BlockHeader must be 128 bytes");
static_assert(offsetof(BlockHeader, layer) == 8);
static_assert(offsetof(BlockHeader, bits) == 24);
static_assert(offsetof(BlockHeader, rot_seed) == 32);
static_assert(offsetof(BlockHeader, compression) == 48);
static_assert(offsetof(BlockHeader, code_coding) == 49);
static_assert(offsetof(BlockHeader, levels) == 50);
static_assert(offsetof(BlockHeader, payload_bytes) == 56);
static_assert(offsetof(BlockHeader, parts) == 72);

// Rows of a block that are stored as codes (between the sink and residual rows).
inline uint32_t QuantizedRows(const BlockHeader& h) { return h.n_tokens - h.n_sink - h.n_residual; }

// Required-feature bits (spec/FORMAT.md, "Versioning"). A reader refuses any bit it does not know.
enum Feature : uint64_t {
  kFeatureZstd = 1ull << 0,      // some block payload is zstd-compressed
  kFeatureAffine = 1ull << 1,    // some block uses the affine codec
  kFeatureCodebook = 1ull << 2,  // some block uses the codebook codec
  kFeatureHadamard = 1ull << 3,  // some block is Hadamard-rotated
  kFeatureFp8 = 1ull << 4,       // some block uses the fp8 codec (format 1.1)
  kFeatureRans = 1ull << 5,      // some block's codes are rANS entropy-coded (format 1.3)
  kFeatureRopeUndo = 1ull << 6,  // some key tensor is stored before RoPE (Tensor.rope_undo; format 1.4)
};
inline constexpr uint64_t kKnownFeatures = 0x7F;

}  // namespace mqkv
