// llama.cpp state files (spec/LLAMA.md): what the plain ReadKvSet/WriteKvSet calls cannot say.
//
// A llama.cpp state records each layer's K/V row (one token across all KV heads) but not how the
// row splits into heads. ReadKvSet therefore applies a documented rule (spec/LLAMA.md, "Head
// split"); a caller that knows the model passes the true head dims here instead.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mqkv/kvset.h"
#include "mqkv/status.h"

namespace mqkv {

struct LlamaReadOptions {
  // Elements per KV head; 0 = the rule (128 if it divides the row, else 64, else the whole row).
  // Each must divide the row width of every layer. It also fixes the size of the Hadamard
  // rotation llama.cpp applies to quantized caches, so it matters for q8_0/q4_0 states.
  uint32_t head_dim_k = 0;
  uint32_t head_dim_v = 0;
};

// True for the four llama.cpp state framings (kLlamaSession, kLlamaSeq, kLlamaState, kLlamaSeqState).
bool IsLlamaFormat(FileFormat f);

// Reads a llama.cpp state (format: kLlamaSession, kLlamaSeq, kLlamaState or kLlamaSeqState).
Result<KvSet> ReadLlamaKvSet(const std::string& path, FileFormat format, const LlamaReadOptions& opts);

// The same for a state held in memory: what llama_state_seq_get_data (kLlamaSeqState) or
// llama_state_get_data (kLlamaState) filled, or a file's bytes. `name` stands for a path in errors.
Result<KvSet> ParseLlamaState(const uint8_t* data, size_t size, FileFormat format, const LlamaReadOptions& opts,
                              const std::string& name);
// The bytes WriteKvSet would write for a llama.cpp format, in memory: what
// llama_state_seq_set_data / llama_state_set_data take (the element types from opts.llama_type_k/_v).
Result<std::vector<uint8_t>> SerializeLlamaState(const KvSet& set, FileFormat format, const WriteOptions& opts = {});
// The same bytes straight from a snapshot, without an fp32 copy of it: layers written as f16 (no
// rotation; row-major) are decoded to f16 directly into the state, others through fp32 as above.
// This is the restore path (mqkv.llama.load): it reads only the K/V blocks.
// Layers are filled on opts.threads threads (0: all cores); the bytes do not depend on the count.
Result<std::vector<uint8_t>> SerializeLlamaState(const Snapshot& snapshot, FileFormat format, const WriteOptions& opts = {});
// The same into a caller's buffer (e.g. one kept across restores, so no fresh pages are touched):
// `size` must be LlamaStateSize's answer for the same arguments. Every byte of dst is written.
Result<uint64_t> LlamaStateSize(const Snapshot& snapshot, FileFormat format, const WriteOptions& opts = {});
Status SerializeLlamaState(const Snapshot& snapshot, FileFormat format, const WriteOptions& opts, uint8_t* dst,
                           uint64_t size);

// The state/session format versions this build reads and writes (the pinned llama.cpp).
inline constexpr uint32_t kLlamaSessionVersion = 10;
inline constexpr uint32_t kLlamaStateSeqVersion = 3;
inline constexpr const char* kLlamaPinned = "llama-cpp-python 0.3.36 (llama.cpp 0c1e570)";

}  // namespace mqkv
