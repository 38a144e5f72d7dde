// Fixed-size structures of the container (spec/FORMAT.md) and the one place that converts
// between the FlatBuffers footer and the C++ model (metadata.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mqkv/snapshot.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "libmqkv reads and writes its little-endian structs in place; a big-endian host is not supported"
#endif

namespace mqkv::format {

inline constexpr uint8_t kFileMagic[8] = {0x89, 'M', 'Q', 'K', 'V', 0x0D, 0x0A, 0x1A};
inline constexpr uint32_t kFileHeaderBytes = 64;
inline constexpr uint32_t kTailBytes = 48;
// Decoded payload may be at most this many times its stored size (+ slack), so a small
// compressed file cannot make the reader allocate without bound (spec: "Resource bounds").
inline constexpr uint64_t kMaxCompressionRatio = 1024;
inline constexpr uint64_t kMaxPayloadBytes = 0xFFFFFFFFull;

struct FileHeader {
  uint8_t magic[8];
  uint16_t version_major;
  uint16_t version_minor;
  uint32_t header_bytes;  // 64
  uint8_t reserved[48];   // zero
};
static_assert(sizeof(FileHeader) == kFileHeaderBytes);

struct Tail {
  uint64_t footer_offset;
  uint64_t footer_bytes;
  uint64_t footer_checksum;  // XXH3-64, seed 0, over the footer bytes
  uint64_t required_features;
  uint16_t version_major;
  uint16_t version_minor;
  uint32_t tail_bytes;  // 48
  uint8_t magic[8];
};
static_assert(sizeof(Tail) == kTailBytes);

uint64_t Checksum(const void* data, uint64_t n);

inline uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Overflow-checked arithmetic: false when the result does not fit.
inline bool MulOk(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
inline bool AddOk(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

struct Footer {
  uint16_t version_major = 0, version_minor = 0;
  uint64_t required_features = 0;
  ModelInfo model;
  std::vector<TensorInfo> tensors;
  std::vector<BlockInfo> blocks;
};

std::vector<uint8_t> BuildFooter(const Footer& f);
// Verifies the FlatBuffer (bounded by `size`) and converts it. Offsets in errors are relative
// to the footer start; the caller adds the footer offset.
Status ParseFooter(const uint8_t* data, uint64_t size, Footer* out);

// Codec features a block needs (zstd, affine, codebook, hadamard, fp8).
uint64_t BlockFeatures(const BlockHeader& h);
// FORMAT.md §8 step 18: the codec's part sizes, alignment, bounds, overlap and canonical layout.
Status CheckBlockParts(const BlockHeader& h, uint64_t block_offset);

// Computes the canonical part layout for `sizes` and fills h->parts and h->payload_bytes.
Status LayoutParts(const std::array<uint64_t, kNumParts>& sizes, BlockHeader* h);

}  // namespace mqkv::format
