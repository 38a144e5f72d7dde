// llama.cpp state files (spec/LLAMA.md): what the plain ReadKvSet/WriteKvSet calls cannot say.
//
// A llama.cpp state records each layer's K/V row (one token across all KV heads) but not how the
// row splits into heads. ReadKvSet therefore applies a documented rule (spec/LLAMA.md, "Head
// split"); a caller that knows the model passes the true head dims here instead.
#pragma once

#include <cstdint>
#include <string>

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

// Reads a llama.cpp state (format: kLlamaSession, kLlamaSeq, kLlamaState or kLlamaSeqState).
Result<KvSet> ReadLlamaKvSet(const std::string& path, FileFormat format, const LlamaReadOptions& opts);

// The state/session format versions this build reads and writes (the pinned llama.cpp).
inline constexpr uint32_t kLlamaSessionVersion = 10;
inline constexpr uint32_t kLlamaStateSeqVersion = 3;
inline constexpr const char* kLlamaPinned = "llama-cpp-python 0.3.36 (llama.cpp 0c1e570)";

}  // namespace mqkv
