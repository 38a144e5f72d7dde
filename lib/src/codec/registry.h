// The codec registry (internal; not installed): one Codec object per CodecId, asked by the
// container for part sizes, features and payload checks, and by the dispatcher (dispatch.cpp) for
// row kernels. Not part of the public API: its virtuals change when a codec needs a new hook.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "mqkv/codec.h"

namespace mqkv {

// A block re-laid in a form the kernels read directly (rANS codes decoded to packed codes).
struct ExpandedBlock {
  BlockHeader header{};
  std::vector<uint8_t> payload;
  BlockView view;
};

// This thread's ExpandedBlock, whose storage is kept between decodes: a restore of many rANS blocks
// then does not fault in fresh pages for every block (on a 16 Mi-value block the page faults and
// zeroing were ~15-20% of its decode time). Storage above 64 MiB is released when the use ends, so
// one huge block does not pin its size. One use at a time per thread (decodes do not nest).
class ScratchExpandedBlock {
 public:
  ScratchExpandedBlock();
  ~ScratchExpandedBlock();
  ScratchExpandedBlock(const ScratchExpandedBlock&) = delete;
  ScratchExpandedBlock& operator=(const ScratchExpandedBlock&) = delete;
  ExpandedBlock& block;
};

class Codec {
 public:
  virtual ~Codec() = default;
  virtual CodecId id() const = 0;
  virtual const char* name() const = 0;
  // Checks the codec fields of a header (from a file or an encoder) and gives the exact byte
  // size of every part. The container rejects a block whose parts differ from this.
  virtual Status PartSizes(const BlockHeader& h, std::array<uint64_t, kNumParts>* sizes) const = 0;
  // Encodes rows [0, shape.n_tokens) of src into `out`.
  virtual Status Encode(const CodecSpec& spec, const float* src, BlockShape shape,
                        EncodedBlock* out) const = 0;
  // Decodes rows [row_begin, row_end) of a verified block into dst, row-major
  // [row][head][dim], element type `out`: the ONE decode dispatcher (lib/src/codec/dispatch.cpp).
  // It checks the range and CheckDecodable, then picks the implementation:
  //   kScalar -> DecodeScalar;  kCuda -> the CUDA kernels (upload, decode, download);
  //   kSimd, kAuto -> DecodeSimd where the active ISA has a kernel for this layout and output
  //   type, else DecodeScalar.
  // `served` (optional) receives the implementation that actually decoded the rows: kScalar,
  // kSimd or kCuda (never kAuto). Every implementation is bit-identical to DecodeScalar.
  Status Decode(const BlockView& block, uint32_t row_begin, uint32_t row_end, DType out, void* dst,
                Backend backend, Backend* served = nullptr) const;

  // The row kernels the dispatcher chooses between; a codec provides them, it never dispatches.
  // Rows are already checked against the block (row_begin <= row_end <= n_tokens).
  virtual Status DecodeScalar(const BlockView& block, uint32_t row_begin, uint32_t row_end, DType out,
                              void* dst) const = 0;
  // The SIMD kernel: true when it decoded the rows, false when none covers this block's layout
  // and output type on the active ISA (the dispatcher then runs DecodeScalar and reports kScalar).
  virtual bool DecodeSimd(const BlockView&, uint32_t, uint32_t, DType, void*) const { return false; }
  // Cheap payload checks the dispatcher runs before every decode (e.g. fp8's 4-byte scale).
  virtual Status CheckDecodable(const BlockView&) const { return Status::OK(); }
  // Every payload check a reader makes once per block before decoding it (the reader caches the
  // result): CheckDecodable plus, for the low-bit codecs, finite fp16 metadata and codebook levels
  // (spec/CODECS.md, "Non-finite metadata").
  virtual Status CheckPayload(const BlockView& b) const { return CheckDecodable(b); }
  // The required-feature bits (spec/FORMAT.md §7) a block of this codec needs, compression aside:
  // the container ORs them into the file's required_features and checks them on read.
  virtual uint64_t Features(const BlockHeader&) const { return 0; }
  // Whether a tensor's codec string names this codec: the name itself or the name then ':'.
  bool NamedBy(std::string_view tensor_codec) const;
  // Blocks whose stored form needs a host stage before the kernels (rANS-coded codes): true and
  // *e filled (or *st an error); false for blocks the kernels read as stored. The CUDA path uses
  // it: an entropy-coded block is decoded to codes on the host, then uploaded.
  virtual bool Expand(const BlockView&, ExpandedBlock*, Status*) const { return false; }
  // Modeled bits and the byte breakdown of a block's payload.
  virtual Accounting Account(const BlockHeader& h) const = 0;
  // The spec a block header was encoded with (for mqinfo and transcoding defaults).
  virtual CodecSpec SpecOf(const BlockHeader& h, const uint8_t* payload) const = 0;
};

// The registry: nullptr for an id this build does not know.
const Codec* GetCodec(CodecId id);
const Codec* GetCodec(uint8_t raw_id);


}  // namespace mqkv
