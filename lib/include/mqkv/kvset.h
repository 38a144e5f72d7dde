// A whole KV snapshot decoded to fp32 in memory, and the format adapters that read and write
// it (safetensors, npy/npz, llama.cpp state files, mqkv). Adapters only translate: they never
// know a codec; encoding happens when a KvSet is written as mqkv.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqkv/codec.h"
#include "mqkv/snapshot.h"
#include "mqkv/status.h"

namespace mqkv {

struct KvTensor {
  TensorDesc desc;
  std::vector<float> data;  // [n_tokens][n_heads][head_dim]
  // A streaming read (ReadOptions::stream) leaves `data` empty and sets `load`, which produces
  // the rows on demand (again on every call; safe from several threads), so that a writer holds
  // one tensor at a time instead of the snapshot. RowsOf gives either kind's rows.
  std::function<Result<std::vector<float>>()> load;
  // Optional beside `load`: the same rows written into dst (n_tokens x n_heads x head_dim
  // floats), for writers that keep one buffer per thread instead of a fresh vector per tensor.
  std::function<Status(float* dst)> load_into;
  // Optional beside `load`: rows [r0, r1) of the same rows written as f16 straight into dst
  // ((r1 - r0) x n_heads x head_dim values), for writers of f16 arrays, without the fp32 rows in
  // between; a writer may take the tensor in row ranges (the source's pages are released after
  // the range that ends at n_tokens). Returns false (dst then holds nothing useful) when some
  // value of the range does not come out finite in f16: the caller takes the fp32 path for the
  // tensor, which says why (a value beyond f16's range) or keeps the non-finite source values.
  // When it returns true, dst holds exactly those f32 rows rounded to f16.
  std::function<Result<bool>(uint32_t r0, uint32_t r1, uint16_t* dst)> load_f16;
  // load_f16 serves a row range at the cost of its rows (uncompressed blocks in memory); when
  // false a range costs its whole blocks (a zstd frame inflated, a remote range fetched again),
  // so writers take the tensor in one call.
  bool load_f16_ranges = false;
  // The rows are exactly representable in this type without a scan ("f16", "bf16"; "" unknown):
  // a streamed tensor read from storage of that type.
  std::string exact_in;
  bool lazy() const { return static_cast<bool>(load); }
};

// The rows of t: t.data, or for a lazy tensor its load() result kept in *hold.
Result<const std::vector<float>*> RowsOf(const KvTensor& t, std::vector<float>* hold);

struct KvSet {
  ModelInfo model;  // adapters keep engine-specific facts in model.metadata ("llama.*" keys)
  std::vector<KvTensor> tensors;
  // What lazy tensors read from (a file mapping, an open snapshot); null for a loaded set.
  std::shared_ptr<const void> backing;
  const KvTensor* Find(uint32_t layer, Kind kind) const;
  bool lazy() const;  // some tensor is lazy
};
// Loads every lazy tensor's rows into its data (what a consumer that needs them all calls).
Status Materialize(KvSet* set);

enum class FileFormat : uint8_t {
  kMqkv,
  kSafetensors,
  kNpy,
  kNpz,
  kLlamaSession,   // llama_state_save_file ('ggsn')
  kLlamaSeq,       // llama_state_seq_save_file ('ggsq'), llama-server slot save
  kLlamaState,     // llama_state_get_data blob (whole context)
  kLlamaSeqState,  // llama_state_seq_get_data blob (one sequence)
};
const char* FileFormatName(FileFormat f);  // "mqkv", "safetensors", "npy", "npz", "llama-session", ...
Result<FileFormat> ParseFileFormat(std::string_view name);
// .mqkv, .safetensors, .npy, .npz (the formats an extension names); nullopt for any other.
std::optional<FileFormat> FileFormatFromExtension(const std::string& path);
// By magic bytes first, then by extension (a URL: by extension first, which costs no request).
Result<FileFormat> DetectFileFormat(const std::string& path);

struct ReadOptions {
  std::optional<std::pair<uint32_t, uint32_t>> tokens;  // keep rows [first, second) only
  unsigned threads = 1;  // mqkv input: tensors decoded on this many threads (0: all cores)
  // mqkv, safetensors, npy, npz and llama.cpp state input: K/V tensors are lazy (KvTensor::load;
  // Q rows are read at once), so that WriteKvSet holds one tensor per thread, not the snapshot
  // (an npz's deflated members are the exception: inflated at read and held). Other formats are
  // read whole (stream is ignored).
  bool stream = false;
};

struct WriteOptions {
  CodecSpec k_codec;  // mqkv only
  CodecSpec v_codec;
  WriterOptions writer;
  unsigned threads = 1;  // mqkv output: tensors encoded on this many threads (0: all cores); same bytes
  // llama.cpp targets: cache element type names ("f32", "f16", "bf16", "q8_0", "q4_0");
  // empty = the type recorded from the source (llama.cache_type_k / _v metadata), else f16.
  std::string llama_type_k, llama_type_v;
  // safetensors / npy / npz: element type of K/V/Q arrays, "f16", "bf16" (safetensors) or "f32";
  // empty = each tensor's source dtype when it is f16 or bf16, else f32 (spec/INTEROP.md 1.1).
  std::string dtype;
  bool llama_v_trans_set = false;  // override the V layout recorded from the source
  // llama.cpp targets: how the target model pairs K's head dims under RoPE, "norm" (adjacent) or
  // "neox" (halves); when the snapshot's rope_type is the other one, K's head dims are permuted
  // on the way (spec/INTEROP.md "Cross-engine K layout"). Empty, or a snapshot whose rope_type
  // is neither: written as stored.
  std::string llama_rope_type;
  bool llama_v_trans = false;
  // mqkv only: rate control (mqconvert --target-bits; README "Rate control"). When > 0, each K/V
  // tensor's level count is chosen from rate_levels so that the file's K/V bits/dim, measured as
  // mqverify does (file bytes less the Q tensors, over the K/V values), is at most target_bits;
  // k_codec / v_codec must be affine with entropy=rans and give everything but the level count.
  // The file records the choice: each tensor's codec string, and metadata "mqkv.rate_control".
  double target_bits = 0;
  std::vector<uint16_t> rate_levels;  // empty: DefaultRateLevels()
  // What the allocation minimizes, summed over tensors: "attention" (default; per layer, 1 - the
  // attention-output cosine over proxy queries, the reference keys at 16 positions, with the
  // layer's other tensor exact) or "nmse" (the tensor's squared error over its energy).
  std::string rate_distortion;
  // attention: "auto" (default; the snapshot's Q tensors where it has them, else proxy keys) or
  // "proxy" (always the reference keys, e.g. to plan a reference dump as its Q-less engine state is planned).
  std::string rate_queries;
};
// The level counts rate control tries when WriteOptions::rate_levels is empty: 3..16, 20, 24,
// 32, 48, 64.
const std::vector<uint16_t>& DefaultRateLevels();

Result<KvSet> ReadKvSet(const std::string& path, FileFormat format, const ReadOptions& opts = {});
// Every tensor of an open snapshot decoded to fp32, with its model (what ReadKvSet does for mqkv
// files, without opening the file again).
Result<KvSet> DecodeSnapshot(const Snapshot& snapshot, unsigned threads = 1);
Status WriteKvSet(const KvSet& set, const std::string& path, FileFormat format, const WriteOptions& opts = {});

// The smallest raw codec that reproduces every `kind` tensor of `set` bit for bit: the source's
// f16/bf16 when every such tensor records it and every value fits, else f32.
CodecSpec LosslessCodec(const KvSet& set, Kind kind);

// One conversion, as mqconvert runs it (its options, same names without the dashes).
struct ConvertOptions {
  std::string from, to;                 // format names (ParseFileFormat); empty: detect / the output's extension
  std::string codec, k_codec, v_codec;  // mqkv output: spec strings; empty: LosslessCodec
  std::optional<std::pair<uint32_t, uint32_t>> tokens;  // keep rows [first, second)
  int zstd = 0;                         // mqkv output: 0 or 1..22
  uint32_t max_block_tokens = 0;        // mqkv output
  std::string llama_type_k, llama_type_v;  // llama.cpp output (WriteOptions)
  uint32_t head_dim_k = 0, head_dim_v = 0;  // llama.cpp input (LlamaReadOptions; v defaults to k)
  std::string dtype;                    // safetensors / npy / npz output (WriteOptions.dtype)
  unsigned threads = 0;                 // 0: all cores; the output is the same for every count
  bool fsync = true;
  double target_bits = 0;               // mqkv output: rate control (WriteOptions::target_bits)
  std::vector<uint16_t> rate_levels;    // its candidate level counts; empty: DefaultRateLevels()
  std::string rate_distortion;          // WriteOptions::rate_distortion
  std::string rate_queries;             // WriteOptions::rate_queries
  // The model's RoPE type ("norm" / "neox") and base for an input that does not record them
  // (llama.cpp state files); kept in the output's model info (mqkv), needed by `prerope=1`. An
  // input that records other values is an error. Empty / 0: as the input records.
  std::string rope_type;
  float rope_base = 0;
};
struct ConvertSummary {
  FileFormat from = FileFormat::kMqkv, to = FileFormat::kMqkv;
  size_t tensors = 0;
  uint32_t layers = 0, tokens = 0;
  std::string k_codec, v_codec;  // mqkv output: the canonical specs written
};
// Reads `in` (a path or URL) and writes `out` atomically. An option that does not apply to the
// formats is an InvalidArgument error, as in mqconvert.
Result<ConvertSummary> Convert(const std::string& in, const std::string& out, const ConvertOptions& opts = {});

// Keep rows [begin, end) of every K/V tensor (tokens, positions and seq ids too). Q rows are
// kept when their position lies in the range.
Status SliceTokens(KvSet* set, uint32_t begin, uint32_t end);

}  // namespace mqkv
