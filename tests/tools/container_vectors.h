// Golden vectors of the container (spec/vectors/container/README.md): small snapshots with raw
// codecs, built from fixed integer-derived inputs so that a second implementation can regenerate
// and check them. Shared by tests/tools/make_container_vectors.cpp (writes the committed files)
// and tests/test_format_vectors.cpp (regenerates them and compares bytes).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "mqkv/mqkv.h"
#include "support.h"

namespace mqkv::vectors {

using SplitMix64 = mqkv::testing::SplitMix64;  // tests/support/support.h

// Value i of a tensor: k / 64 with k = (next() % 511) - 255, so |v| < 4 and v has at most 8
// significant bits: exactly representable in f32, f16 and bf16 (decoding is exact for all three).
inline std::vector<float> Values(uint64_t seed, uint64_t n) {
  SplitMix64 g{seed};
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(static_cast<int64_t>(g.Next() % 511) - 255) / 64.0f;
  return v;
}

// Compressible variant for the zstd vector: only 8 distinct values k / 8, k in -4..3.
inline std::vector<float> CompressibleValues(uint64_t seed, uint64_t n) {
  SplitMix64 g{seed};
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(static_cast<int64_t>(g.Next() % 8) - 4) / 8.0f;
  return v;
}

// Overwrites the first values with special values each raw codec must pass through unchanged.
inline void AddSpecials(CodecId codec, std::vector<float>* v) {
  std::vector<float> s = {0.0f, -0.0f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::ldexp(1.0f, -24) /* smallest f16 subnormal */};
  if (codec == CodecId::kF16) s.push_back(65504.0f);  // largest finite f16
  if (codec == CodecId::kBF16) s.push_back(std::ldexp(255.0f, 120));  // largest finite bf16
  if (codec == CodecId::kF32) {
    uint32_t nan_bits = 0x7FC12345u;  // quiet NaN with a payload: f32 keeps every bit
    float nan;
    std::memcpy(&nan, &nan_bits, 4);
    s.push_back(nan);
    s.push_back(std::numeric_limits<float>::denorm_min());
    s.push_back(std::numeric_limits<float>::max());
  }
  for (size_t i = 0; i < s.size() && i < v->size(); ++i) (*v)[i] = s[i];
}

inline ModelInfo VectorModel(uint32_t n_tokens, uint32_t n_layer) {
  ModelInfo m;
  m.architecture = "llama";
  m.n_layer = n_layer;
  m.n_head = 4;
  m.n_head_kv = 2;
  m.head_dim_k = 8;
  m.head_dim_v = 8;
  m.rope_type = "norm";
  m.rope_base = 10000.0f;
  m.k_rope = KRope::kPostRope;
  m.source_engine = "mqkv-vectors";
  m.source_engine_version = "1";
  m.source_format = "synthetic";
  for (uint32_t i = 0; i < n_tokens; ++i) {
    m.tokens.push_back(static_cast<int32_t>(1000 + 7 * i));
    m.positions.push_back(static_cast<int32_t>(i));
  }
  m.metadata = {{"origin", "tests/tools/make_container_vectors.cpp"}, {"note", "golden vector; do not edit"}};
  return m;
}

struct VectorTensor {
  uint32_t layer;
  Kind kind;
  uint32_t n_tokens, n_heads, head_dim;
  std::vector<int32_t> positions;  // Q only
  std::vector<float> values;       // [token][head][dim]
  // When set: the tensor is one raw f16 block holding exactly these bits (values unused), for bit
  // patterns no fp32 input can produce through the encoder (signalling NaNs).
  std::vector<uint16_t> f16_bits = {};
};

struct Vector {
  std::string name;  // file stem: <name>.mqkv, <name>.expected.f32
  std::string codec;
  WriterOptions options;
  bool with_model = true;
  uint32_t model_tokens = 0;
  uint32_t model_layers = 0;
  bool with_seq_ids = false;
  std::vector<VectorTensor> tensors;
};

inline void PrintTo(const Vector& v, std::ostream* os) { *os << v.name; }

inline std::vector<Vector> AllVectors() {
  std::vector<Vector> out;
  auto kv_pair = [](uint32_t layers, uint32_t tokens, uint32_t heads, uint32_t dim, uint64_t seed0, CodecId codec,
                    bool specials, bool compressible) {
    std::vector<VectorTensor> ts;
    uint64_t seed = seed0;
    for (uint32_t l = 0; l < layers; ++l)
      for (Kind k : {Kind::kK, Kind::kV}) {
        VectorTensor t{l, k, tokens, heads, dim, {}, {}};
        const uint64_t n = uint64_t(tokens) * heads * dim;
        t.values = compressible ? CompressibleValues(seed++, n) : Values(seed++, n);
        if (specials && l == 0 && k == Kind::kK) AddSpecials(codec, &t.values);
        ts.push_back(std::move(t));
      }
    return ts;
  };
  const WriterOptions plain{.zstd_level = 0, .max_block_tokens = 0, .fsync = false};
  // Two layers, K and V, 5 tokens x 2 heads x 8 dims, full model metadata; one per raw codec.
  out.push_back({"raw_f32", "f32", plain, true, 5, 2, false, kv_pair(2, 5, 2, 8, 1, CodecId::kF32, true, false)});
  out.push_back({"raw_f16", "f16", plain, true, 5, 2, true, kv_pair(2, 5, 2, 8, 11, CodecId::kF16, true, false)});
  out.push_back({"raw_bf16", "bf16", plain, true, 5, 2, false, kv_pair(2, 5, 2, 8, 21, CodecId::kBF16, true, false)});
  // zstd level 3: every block compressed (8 distinct values compress well).
  out.push_back({"zstd_f16", "f16", {.zstd_level = 3, .max_block_tokens = 0, .fsync = false}, true, 64, 1, false,
                 kv_pair(1, 64, 2, 8, 31, CodecId::kF16, false, true)});
  // max_block_tokens = 4: each 10-token tensor is stored as blocks of 4, 4 and 2 tokens.
  out.push_back({"multiblock_f16", "f16", {.zstd_level = 0, .max_block_tokens = 4, .fsync = false}, true, 10, 1, false,
                 kv_pair(1, 10, 2, 8, 41, CodecId::kF16, false, false)});
  // K and V of layer 0 plus a query tensor (3 query rows at token positions 1, 4, 5).
  {
    Vector v{"query_f32", "f32", plain, true, 6, 1, false, kv_pair(1, 6, 2, 8, 51, CodecId::kF32, false, false)};
    VectorTensor q{0, Kind::kQ, 3, 4, 8, {1, 4, 5}, Values(59, 3 * 4 * 8)};
    v.tensors.push_back(std::move(q));
    out.push_back(std::move(v));
  }
  // A raw f16 block of signalling and quiet NaNs of both signs, infinities and edge values: the
  // NaN conversion rules of spec/CODECS.md "Output types" (f16 -> f32 sets the quiet bit).
  {
    Vector v{"nan_f16", "f16", plain, true, 2, 1, false, {}};
    VectorTensor t{0, Kind::kK, 2, 1, 8, {}, {}};
    t.f16_bits = {0x7C01, 0xFC01, 0x7D55, 0x7E00, 0xFE00, 0x7FFF, 0x7C00, 0xFC00,
                  0x0001, 0x8000, 0x3C00, 0x7BFF, 0x7DFF, 0xFDFF, 0x0400, 0x0000};
    v.tensors.push_back(std::move(t));
    out.push_back(std::move(v));
  }
  // The smallest valid file: no model fields set, no tensors.
  out.push_back({"empty", "f32", plain, false, 0, 0, false, {}});
  return out;
}

// Writes `<dir>/<name>.mqkv`; fills `expected` with every tensor decoded to f32, in index order.
inline Status WriteVector(const Vector& v, const std::string& dir, std::vector<float>* expected) {
  MQKV_ASSIGN_OR_RETURN(CodecSpec spec, CodecSpec::Parse(v.codec));
  MQKV_ASSIGN_OR_RETURN(auto w, Writer::Create(dir + "/" + v.name + ".mqkv", v.options));
  if (v.with_model) {
    ModelInfo m = VectorModel(v.model_tokens, v.model_layers);
    if (v.with_seq_ids)
      for (uint32_t i = 0; i < v.model_tokens; ++i) m.seq_ids.push_back(i < 3 ? 0 : 1);
    w->SetModel(std::move(m));
  }
  expected->clear();
  for (const VectorTensor& t : v.tensors) {
    TensorDesc d;
    d.layer = t.layer;
    d.kind = t.kind;
    d.n_heads = t.n_heads;
    d.head_dim = t.head_dim;
    d.n_tokens = t.n_tokens;
    d.positions = t.positions;
    d.source_dtype = "f32";
    if (!t.f16_bits.empty()) {
      d.source_dtype = "f16";
      EncodedBlock eb;
      eb.header.n_tokens = t.n_tokens;
      eb.header.n_heads = static_cast<uint16_t>(t.n_heads);
      eb.header.head_dim = static_cast<uint16_t>(t.head_dim);
      eb.header.codec = static_cast<uint8_t>(CodecId::kF16);
      eb.header.bits = 16;
      for (uint16_t u : t.f16_bits) {
        eb.parts[kPartCodes].push_back(static_cast<uint8_t>(u & 0xFF));
        eb.parts[kPartCodes].push_back(static_cast<uint8_t>(u >> 8));
        expected->push_back(f16_to_f32(u));
      }
      MQKV_RETURN_IF_ERROR(w->AddEncodedTensor(d, spec.ToString(), {eb}));
      continue;
    }
    MQKV_RETURN_IF_ERROR(w->AddTensor(d, t.values.data(), spec));
    expected->insert(expected->end(), t.values.begin(), t.values.end());
  }
  return w->Finish();
}

}  // namespace mqkv::vectors
