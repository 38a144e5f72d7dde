// Reading and writing mqkv snapshot files (spec/FORMAT.md).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mqkv/block.h"
#include "mqkv/codec.h"
#include "mqkv/io.h"
#include "mqkv/status.h"

namespace mqkv {

// The newest format version this library reads and writes. A writer writes the lowest version
// that describes its file (FormatMinorFor), so a file without 1.1 or 1.2 features stays a 1.0 file.
inline constexpr uint16_t kFormatMajor = 1;
inline constexpr uint16_t kFormatMinor = 4;

std::string FeatureNames(uint64_t bits);  // "zstd|affine" / "bit 7" for unknown bits

// Lowest minor version (of major 1) that describes a file with `features`: 4 when some key tensor
// is stored before RoPE (1.4), else 3 when some block's
// codes are rANS-coded (1.3), else 2 when some block is
// zstd-compressed (1.2: zstd frames carry their content size and checksum), else 1 when the fp8 bit
// is set, else 0 (unknown bits do not raise it).
inline constexpr uint16_t FormatMinorFor(uint64_t features) {
  return (features & kFeatureRopeUndo) ? 4 : (features & kFeatureRans) ? 3 : (features & kFeatureZstd) ? 2 : (features & kFeatureFp8) ? 1 : 0;
}

enum class Kind : uint8_t { kK = 0, kV = 1, kQ = 2 };
const char* KindName(Kind k);  // "k", "v", "q"

enum class KRope : uint8_t { kUnknown = 0, kPreRope = 1, kPostRope = 2 };
const char* KRopeName(KRope k);  // "unknown", "pre", "post"

struct ModelInfo {
  std::string architecture;
  uint32_t n_layer = 0, n_head = 0, n_head_kv = 0, head_dim_k = 0, head_dim_v = 0;
  std::string rope_type = "unknown";
  float rope_base = 0.0f;
  KRope k_rope = KRope::kUnknown;
  std::string source_engine, source_engine_version, source_format;
  std::vector<int32_t> tokens;     // token ids of the cached prefix
  std::vector<int32_t> positions;  // one per token, or empty
  std::vector<int32_t> seq_ids;    // one per token, or empty (= all 0)
  std::vector<std::pair<std::string, std::string>> metadata;  // free-form; keys unique
  bool operator==(const ModelInfo&) const = default;
};

// A key tensor stored with RoPE undone (format 1.4; spec/CODECS.md, "Keys before RoPE"): decoding
// rotates each row back by its position. Written by a codec spec with `prerope=1`.
struct RopeUndo {
  enum Style : uint8_t { kNorm = 0, kNeox = 1 };  // pairs (2i, 2i+1) / (i, i + n/2), n = 2 * theta.size()
  uint8_t style = kNorm;
  std::vector<double> theta;  // radians per position of each pair; empty: the rows are as stored
  bool empty() const { return theta.empty(); }
  bool operator==(const RopeUndo&) const = default;
};

// What a writer needs to know about a tensor besides its rows.
struct TensorDesc {
  uint32_t layer = 0;
  Kind kind = Kind::kK;
  uint32_t n_heads = 0, head_dim = 0, n_tokens = 0;
  std::vector<int32_t> positions;  // Q tensors: token index of each query row
  std::string source_dtype;        // e.g. "f16", "q8_0"; empty = unknown
  // Set by the writer from a `prerope=1` spec (AddTensor / AddTensors ignore it on input);
  // AddEncodedTensor takes it as given (the blocks' rows are already before RoPE).
  RopeUndo rope;
};

struct TensorInfo : TensorDesc {
  std::string codec;  // canonical spec string
  uint32_t first_block = 0, n_blocks = 0;
};

// A block's index entry (footer). Its 128-byte header is not part of it: the header is read and
// checked on first access, through Snapshot::BlockHeaderAt / VerifyBlock / ReadBlock / Decode.
struct BlockInfo {
  uint64_t offset = 0, length = 0, checksum = 0;
  uint32_t tensor = 0, token_begin = 0, n_tokens = 0;
};

struct OpenOptions {
  // Check every block's header and checksum at open (reads the whole file). Off by default:
  // open reads only the file header, tail and footer, and each block is checked on first
  // access instead, so reading one layer touches only that layer's bytes.
  bool verify_all_blocks = false;
  // For s3:// and http(s):// paths: the block cache budget, timeouts and retries (mqkv/io.h).
  RemoteOptions remote = {};
};

// A block's verified payload: zero-copy into the mapping (or into a fetched range of a remote
// object, kept alive by `keep`), or an owned buffer after zstd.
// Move-only: view.payload may point into `owned`, which a move carries along and a copy would not.
struct BlockData {
  BlockView view;
  std::vector<uint8_t> owned;
  std::shared_ptr<const void> keep;
  BlockData() = default;
  BlockData(BlockData&&) noexcept = default;
  BlockData& operator=(BlockData&&) noexcept = default;
  BlockData(const BlockData&) = delete;
  BlockData& operator=(const BlockData&) = delete;
};

class Snapshot {
 public:
  // A local path, or an s3:// / http(s):// URL (spec/REMOTE.md): a remote open costs one or two
  // requests (the tail and footer); blocks are fetched on first access.
  static Result<std::unique_ptr<Snapshot>> Open(const std::string& path, const OpenOptions& opts = {});
  // Any ByteSource (mqkv/io.h), e.g. an engine's own storage.
  static Result<std::unique_ptr<Snapshot>> Open(std::shared_ptr<ByteSource> source, const OpenOptions& opts = {});
  // Reads a snapshot held in memory (e.g. received over a socket). The bytes are not copied and
  // must outlive the Snapshot; `name` is used in error messages in place of a path.
  static Result<std::unique_ptr<Snapshot>> OpenBytes(const uint8_t* data, size_t size, const std::string& name,
                                                     const OpenOptions& opts = {});
  ~Snapshot();
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  const std::string& path() const;
  uint64_t file_bytes() const;
  const ByteSource& source() const;
  IoStats io_stats() const;  // requests and bytes fetched so far (zero for local files)
  uint16_t version_major() const;
  uint16_t version_minor() const;
  uint64_t required_features() const;
  uint64_t footer_offset() const;
  uint64_t footer_bytes() const;
  const ModelInfo& model() const;
  const std::vector<TensorInfo>& tensors() const;
  const std::vector<BlockInfo>& blocks() const;
  std::optional<size_t> FindTensor(uint32_t layer, Kind kind) const;

  // Raw stored bytes of a block (header + stored payload), inside the mapping; nullptr when the
  // block does not exist or the source is not in memory (a remote object; never throws).
  // Unchecked: use BlockHeaderAt / ReadBlock to trust them.
  const uint8_t* BlockBytes(size_t block) const;
  // Fetches blocks [block_begin, block_end) of a remote source now, adjacent blocks in one
  // request (within the cache budget); a no-op for local sources. Decode does this itself.
  Status Prefetch(size_t block_begin, size_t block_end) const;
  // A block's header, checked against the index on first use (spec/FORMAT.md section 8, steps
  // 17-19; cached after the first success). The pointer lives as long as the Snapshot. Does not
  // verify the block's checksum.
  Result<const BlockHeader*> BlockHeaderAt(size_t block) const;
  // Checks one block's header (as BlockHeaderAt) and then its checksum (cached after the first success).
  Status VerifyBlock(size_t block) const;
  // Verified, decompressed block.
  Result<BlockData> ReadBlock(size_t block) const;
  // Decodes tensor rows [row_begin, row_end) into dst ([row][head][dim], element type `out`),
  // reading only the blocks that hold them.
  Status Decode(size_t tensor, uint32_t row_begin, uint32_t row_end, DType out, void* dst,
                Backend backend = Backend::kAuto) const;
  // The same on up to `threads` threads (0: all cores), so that a restore can use the machine's
  // memory bandwidth: the rows are split into one contiguous range per thread (no range under
  // 64 rows), each decoded as above. The bytes written are the same for every thread count; on an
  // error, the error of the lowest failed range. A remote source decodes on one thread (its
  // requests are merged per window instead).
  Status Decode(size_t tensor, uint32_t row_begin, uint32_t row_end, DType out, void* dst, Backend backend,
                unsigned threads) const;
  Result<std::vector<float>> DecodeF32(size_t tensor, uint32_t row_begin, uint32_t row_end,
                                       Backend backend = Backend::kAuto) const;
  // The codec spec of a tensor as stored (from its first block).
  Result<CodecSpec> TensorSpec(size_t tensor) const;
  // A hint that blocks [block_begin, block_end) will not be read again soon (ByteSource::Release:
  // a mapped file drops their pages from the process; they stay in the page cache), so one pass
  // over a file larger than memory does not grow the resident set. The inverse of Prefetch.
  void ReleaseBlocks(size_t block_begin, size_t block_end) const;

 private:
  struct Impl;
  explicit Snapshot(std::unique_ptr<Impl> impl);
  static Result<std::unique_ptr<Snapshot>> Finish(std::unique_ptr<Impl> impl, const OpenOptions& opts);
  std::unique_ptr<Impl> impl_;
};

struct WriterOptions {
  int zstd_level = 0;            // 0: store payloads uncompressed; 1..22: zstd when it saves bytes
  // 0: one block per tensor (split only if a payload would pass 4 GiB). Only the quantized middle
  // is split: sink rows stay whole in the first block and residual rows in the last.
  uint32_t max_block_tokens = 0;
  bool fsync = true;             // fsync file and directory before/after the rename
};

// Streams blocks to a temporary file beside `path`; Finish() writes the footer and tail,
// fsyncs and renames over `path`. Destroying an unfinished writer removes the temporary file,
// so `path` holds either its previous contents or a complete new file.
class Writer {
 public:
  static Result<std::unique_ptr<Writer>> Create(const std::string& path, const WriterOptions& opts = {});
  // The same file built in memory: Finish() moves its bytes into *out (Snapshot::OpenBytes reads
  // them); an unfinished writer leaves *out as it was. `name` stands for a path in errors.
  static Result<std::unique_ptr<Writer>> CreateInMemory(std::vector<uint8_t>* out, const std::string& name = "<memory>",
                                                        const WriterOptions& opts = {});
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void SetModel(ModelInfo model);
  // Encodes rows ([n_tokens][n_heads][head_dim] fp32) with `spec` and streams the blocks.
  Status AddTensor(const TensorDesc& desc, const float* rows, const CodecSpec& spec);
  // Encodes several tensors on up to `threads` threads (0: all cores) and writes them in the
  // given order: the file's bytes are the same for every thread count.
  struct TensorInput {
    const TensorDesc* desc;
    const float* rows;  // or nullptr and `load`:
    CodecSpec spec;
    // Produces the rows when `rows` is null: called by the encoding thread, the rows dropped once
    // encoded, so at most `threads` loaded tensors (and 2 x threads encoded ones) exist at a time.
    std::function<Result<std::vector<float>>()> load = nullptr;
    // Optional beside `load`, preferred when set: the same rows written into dst
    // (n_tokens x n_heads x head_dim floats), a buffer each encoding thread keeps for the call
    // (no allocation and zero-fill per tensor).
    std::function<Status(float* dst)> load_into = nullptr;
  };
  Status AddTensors(const std::vector<TensorInput>& tensors, unsigned threads);
  // Appends already-encoded blocks as one tensor (transcoding without decoding).
  // Each block's header token_begin is rewritten to its place in the new tensor.
  Status AddEncodedTensor(const TensorDesc& desc, const std::string& codec,
                          const std::vector<EncodedBlock>& blocks);
  Status Finish();
  const std::string& path() const;

 private:
  struct Impl;
  static Result<std::unique_ptr<Writer>> Start(std::unique_ptr<Impl> impl);
  friend struct WriterTestHooks;  // lib/src/format/test_hooks.h: tests only, not API
  explicit Writer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mqkv
