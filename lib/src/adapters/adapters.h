// Internal: one adapter per external format. Each only translates between bytes and KvSet.
#pragma once

#include "mqkv/kvset.h"
#include "mqkv/llama.h"

namespace mqkv::adapters {

struct Adapter {
  FileFormat format;
  // True when the first bytes identify this format (n may be short).
  bool (*sniff)(const uint8_t* head, size_t n);
  Result<KvSet> (*read)(const std::string& path, FileFormat format);
  Status (*write)(const KvSet& set, const std::string& path, FileFormat format, const WriteOptions& opts);
};

// Each defined in its own file.
const Adapter& MqkvAdapter();         // mqkv.cpp
const Adapter& SafetensorsAdapter();  // safetensors.cpp
const Adapter& NpyAdapter();          // npy.cpp
const Adapter& NpzAdapter();          // npy.cpp
// llama.cpp state: one adapter object per FileFormat variant (llama/state.cpp).
const Adapter& LlamaAdapter(FileFormat f);

// mqkv.cpp: rows [begin, end) of an mqkv file, decoding only the blocks that hold them
// (ReadKvSet's path for ReadOptions.tokens); the result is what SliceTokens would give.
// Every tensor of an mqkv file decoded to fp32 on up to `threads` threads (0: all cores).
Result<KvSet> ReadMqkv(const std::string& path, unsigned threads);
Result<KvSet> ReadMqkvRows(const std::string& path, uint32_t begin, uint32_t end);
// Streaming reads (ReadOptions::stream): K/V tensors lazy, decoded from the open snapshot or
// converted from the mapped safetensors file when loaded; Q tensors read at once.
Result<KvSet> ReadMqkvLazy(const std::string& path, const std::optional<std::pair<uint32_t, uint32_t>>& tokens);
Result<KvSet> ReadSafetensorsLazy(const std::string& path);
// npy.cpp: the same for .npy and .npz (stored members mapped and converted when loaded; deflated
// members are inflated when the file is read and held until the set is dropped).
Result<KvSet> ReadNpyLazy(const std::string& path);
Result<KvSet> ReadNpzLazy(const std::string& path);
// llama/state.cpp: a llama.cpp state file's layers converted (to_float, rotation undone) when loaded.
Result<KvSet> ReadLlamaLazy(const std::string& path, FileFormat format, const LlamaReadOptions& opts);

// kvset.cpp: InvalidArgument when begin > end, OutOfRange when end > n_tokens.
Status CheckTokenRange(uint32_t begin, uint32_t end, uint32_t n_tokens);
// kvset.cpp: the part of SliceTokens after the K/V rows are cut: Q rows whose position lies in
// [begin, end) (re-based to begin), and the token / position / sequence-id vectors.
Status SliceQueriesAndPrefix(KvSet* set, uint32_t begin, uint32_t end);
// llama/state.cpp: cuts the per-cell metadata of a set read from a llama.cpp state
// (llama.cell_positions, llama.cell_seq_sets) to cells [begin, end), and records the cut cells'
// positions when they were the implied 0..n-1 (spec/LLAMA.md); a no-op for other sets.
Status SliceLlamaCells(ModelInfo* model, uint32_t begin, uint32_t end);

// rate.cpp: mqkv output under WriteOptions::target_bits. Chooses each K/V tensor's level count,
// builds the file in memory with write_to (the set's tensors, tensor i with specs[i]) and writes
// it to `path` atomically once it measures at or below the target.
Status CheckRateCodecs(const WriteOptions& opts);  // the target and codecs rate control accepts
Status WriteMqkvAtRate(const KvSet& set, const std::string& path, const WriteOptions& opts,
                       Status (*write_to)(Writer&, const KvSet&, const WriteOptions&, const std::vector<CodecSpec>&));

}  // namespace mqkv::adapters
