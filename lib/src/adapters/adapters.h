// Internal: one adapter per external format. Each only translates between bytes and KvSet.
#pragma once

#include "mqkv/kvset.h"

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
// llama.cpp state: one adapter object per FileFormat variant (llama_state.cpp).
const Adapter& LlamaAdapter(FileFormat f);

}  // namespace mqkv::adapters
