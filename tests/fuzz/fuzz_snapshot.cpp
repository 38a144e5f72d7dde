// Fuzz target: open + verify + decode every block of an mqkv file held in memory.
// Any input must give a clean Status, never a crash, leak, UB or unbounded allocation.
#include <cstdint>
#include <vector>

#include "mqkv/mqkv.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto s = mqkv::Snapshot::OpenBytes(data, size, "fuzz-input");
  if (!s.ok()) return 0;
  const mqkv::Snapshot& snap = **s;
  for (size_t b = 0; b < snap.blocks().size(); ++b) (void)snap.VerifyBlock(b);
  std::vector<uint8_t> out;
  for (size_t i = 0; i < snap.tensors().size(); ++i) {
    const mqkv::TensorInfo& t = snap.tensors()[i];
    (void)snap.TensorSpec(i);
    // Decode block by block to keep the output buffer proportional to one block.
    for (uint32_t b = t.first_block; b < t.first_block + t.n_blocks; ++b) {
      const mqkv::BlockInfo& bi = snap.blocks()[b];
      const uint64_t row = uint64_t(t.n_heads) * t.head_dim;
      for (mqkv::DType dt : {mqkv::DType::kF32, mqkv::DType::kF16}) {
        out.resize(bi.n_tokens * row * mqkv::DTypeSize(dt));
        (void)snap.Decode(i, bi.token_begin, bi.token_begin + bi.n_tokens, dt, out.data(), mqkv::Backend::kScalar);
        (void)snap.Decode(i, bi.token_begin, bi.token_begin + bi.n_tokens, dt, out.data(), mqkv::Backend::kAuto);
      }
    }
  }
  return 0;
}
