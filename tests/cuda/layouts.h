// Blocks of every codec layout of spec/CODECS.md for the CUDA tests: raw f32/f16/bf16; affine 2, 3,
// 4, 8 bits with fp16, meta8 and meta4 metadata on both axes, sinks and residual rows, Hadamard
// rotation with small and large blocks; codebook 1..4 bits; fp8 (any head_dim: code runs that do not
// fill octets); odd shapes; a block with no quantized rows.
#pragma once

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "format/container.h"
#include "mqkv/mqkv.h"
#include "support.h"

namespace mqkv::cudatest {

struct Layout {
  std::string spec;
  BlockShape shape;
};

struct TestBlock {
  Layout layout;
  BlockHeader h{};
  std::vector<uint8_t> payload;
  BlockView view() const { return BlockView{&h, payload.data()}; }
  uint64_t row_values() const { return uint64_t(h.n_heads) * h.head_dim; }
};

// Encodes random rows (with a few outliers) and lays the parts out as the writer does.
inline Status BuildBlock(const Layout& l, uint32_t seed, TestBlock* out) {
  MQKV_ASSIGN_OR_RETURN(CodecSpec spec, CodecSpec::Parse(l.spec));
  std::vector<float> x = mqkv::testing::RandomRows(l.shape.values(), seed);
  for (uint64_t i = 7; i < x.size(); i += 97) x[i] *= 9.0f;
  EncodedBlock eb;
  MQKV_RETURN_IF_ERROR(EncodeBlock(spec, x.data(), l.shape, &eb));
  std::array<uint64_t, kNumParts> sizes{};
  for (int p = 0; p < kNumParts; ++p) sizes[p] = eb.parts[p].size();
  MQKV_RETURN_IF_ERROR(format::LayoutParts(sizes, &eb.header));
  out->layout = l;
  out->h = eb.header;
  out->payload.assign(eb.header.payload_bytes, 0);
  for (int p = 0; p < kNumParts; ++p)
    if (!eb.parts[p].empty()) std::memcpy(out->payload.data() + eb.header.parts[p].offset, eb.parts[p].data(), eb.parts[p].size());
  return Status::OK();
}

inline std::vector<Layout> AllLayouts() {
  std::vector<Layout> v;
  for (const char* raw : {"f32", "f16", "bf16"}) v.push_back({raw, {13, 3, 20}});
  v.push_back({"fp8", {13, 3, 20}});
  v.push_back({"fp8", {9, 1, 9}});     // 9 values a row: unaligned code runs, partial octets
  v.push_back({"fp8", {300, 4, 64}});  // many CTAs
  for (int bits : {2, 3, 4, 8})
    for (int meta : {16, 8, 4}) {
      const std::string b = "affine:bits=" + std::to_string(bits) + ",meta=" + std::to_string(meta);
      v.push_back({b + ",group=16", {37, 3, 64}});
      v.push_back({b + ",group=5,axis=channel,sinks=2,residual=3", {41, 2, 24}});
      v.push_back({b + ",group=32,rotate=hadamard,seed=12345,sinks=1,residual=2", {19, 2, 64}});
    }
  v.push_back({"affine:bits=4,group=0,axis=channel", {29, 3, 40}});
  v.push_back({"affine:bits=2,group=8,axis=channel,rotate=hadamard,sinks=3,residual=4,meta=4", {35, 3, 48}});
  v.push_back({"affine:bits=3,group=8,rotate=hadamard", {7, 5, 40}});    // B = 8: no shared stages
  v.push_back({"affine:bits=3,group=8,rotate=hadamard", {9, 1, 136}});   // B = 8, 17 octets a row
  v.push_back({"affine:bits=4,group=32,rotate=hadamard", {5, 1, 2048}}); // B = 2048: 256 lanes
  v.push_back({"affine:bits=2,group=8,meta=8", {3, 1, 8}});               // one octet a row
  v.push_back({"affine:bits=8,group=64,sinks=4,residual=3", {7, 2, 64}});  // no quantized rows
  v.push_back({"affine:bits=4,group=16,meta=8", {600, 4, 128}});          // many CTAs
  const char* levels[5] = {"", "-1/1", "-1.85/-0.55/0.55/1.85", "-2/-1.4/-0.9/-0.4/0.3/0.8/1.3/2.1",
                           "-2.7/-2.1/-1.6/-1.2/-0.9/-0.6/-0.3/-0.1/0.1/0.3/0.6/0.9/1.2/1.6/2.1/2.7"};
  for (int bits = 1; bits <= 4; ++bits) {
    const std::string b = "codebook:bits=" + std::to_string(bits) + ",levels=" + levels[bits];
    v.push_back({b + ",group=32", {23, 2, 64}});
    v.push_back({b + ",group=7,axis=channel,sinks=1,residual=2,scale=robust", {31, 3, 32}});
    v.push_back({b + ",group=16,rotate=hadamard,residual=5", {17, 2, 128}});
  }
  return v;
}

}  // namespace mqkv::cudatest
