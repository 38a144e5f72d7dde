// llama.cpp state adapter (spec/LLAMA.md): synthetic state files built byte by byte here, read,
// re-written byte-identically, converted between cache types, and malformed in many ways.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "mqkv/kvset.h"
#include "mqkv/llama.h"
#include "mqkv/numeric.h"
#include "support.h"

namespace mqkv {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& Put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& Raw(const std::vector<uint8_t>& r) {
    b.insert(b.end(), r.begin(), r.end());
    return *this;
  }
};

enum Ty : int32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, BF16 = 30 };

float Val(uint32_t layer, uint32_t kv, uint32_t cell, uint32_t j) {
  return std::sin(0.37f * float(layer * 7 + kv * 3 + 1) + 0.11f * float(cell) + 0.53f * float(j)) * 2.5f;
}

// Encodes `n` values of a float type (no quantized types here).
std::vector<uint8_t> EncodeFloat(int32_t ty, const std::vector<float>& v) {
  Bytes o;
  for (float x : v) {
    if (ty == F32) o.Put(x);
    else if (ty == F16) o.Put(f32_to_f16(x));
    else o.Put(f32_to_bf16(x));
  }
  return o.b;
}
float Decoded(int32_t ty, float x) {
  if (ty == F32) return x;
  if (ty == F16) return f16_to_f32(f32_to_f16(x));
  return bf16_to_f32(f32_to_bf16(x));
}
uint32_t ElSize(int32_t ty) { return ty == F32 ? 4 : 2; }

struct Spec {
  uint32_t cells = 5, layers = 2, width = 64;
  int32_t kty = F16, vty = F16;
  bool v_trans = false;
  std::vector<std::vector<int32_t>> seqs;  // per cell; empty = {0}
  uint32_t ext = 0;                        // bytes of cell extension (M-RoPE)
  uint32_t n_stream = 1;
};

// The memory state (llama_kv_cache::state_write) of float caches filled with Val().
std::vector<uint8_t> Memory(const Spec& s) {
  Bytes o;
  o.Put<uint32_t>(s.n_stream).Put<uint32_t>(s.cells);
  for (uint32_t i = 0; i < s.cells; ++i) {
    o.Put<int32_t>(int32_t(10 + i));
    const std::vector<int32_t> seq = s.seqs.empty() ? std::vector<int32_t>{0} : s.seqs[i];
    o.Put<uint32_t>(uint32_t(seq.size()));
    for (uint32_t e = 0; e < s.ext; ++e) o.Put<uint8_t>(0);
    for (int32_t q : seq) o.Put<int32_t>(q);
  }
  o.Put<uint32_t>(s.v_trans ? 1 : 0).Put<uint32_t>(s.layers);
  for (uint32_t l = 0; l < s.layers; ++l) {
    o.Put<int32_t>(s.kty).Put<uint64_t>(uint64_t(s.width) * ElSize(s.kty));
    std::vector<float> rows;
    for (uint32_t i = 0; i < s.cells; ++i)
      for (uint32_t j = 0; j < s.width; ++j) rows.push_back(Val(l, 0, i, j));
    o.Raw(EncodeFloat(s.kty, rows));
  }
  for (uint32_t l = 0; l < s.layers; ++l) {
    std::vector<float> vals;
    if (!s.v_trans) {
      o.Put<int32_t>(s.vty).Put<uint64_t>(uint64_t(s.width) * ElSize(s.vty));
      for (uint32_t i = 0; i < s.cells; ++i)
        for (uint32_t j = 0; j < s.width; ++j) vals.push_back(Val(l, 1, i, j));
    } else {
      o.Put<int32_t>(s.vty).Put<uint32_t>(ElSize(s.vty)).Put<uint32_t>(s.width);
      for (uint32_t j = 0; j < s.width; ++j)
        for (uint32_t i = 0; i < s.cells; ++i) vals.push_back(Val(l, 1, i, j));
    }
    o.Raw(EncodeFloat(s.vty, vals));
  }
  return o.b;
}

std::vector<uint8_t> SeqFile(const Spec& s, const std::vector<int32_t>& toks, uint32_t version = 3) {
  Bytes o;
  o.Put<uint32_t>(0x67677371u).Put<uint32_t>(version).Put<uint32_t>(uint32_t(toks.size()));
  for (int32_t t : toks) o.Put(t);
  return o.Raw(Memory(s)).b;
}
std::vector<uint8_t> StateBlob(const Spec& s, const std::string& arch = "llama") {
  Bytes o;
  o.Put<uint32_t>(uint32_t(arch.size()));
  for (char c : arch) o.Put<char>(c);
  return o.Raw(Memory(s)).b;
}
std::vector<uint8_t> SessionFile(const Spec& s, const std::vector<int32_t>& toks, uint32_t version = 10) {
  Bytes o;
  o.Put<uint32_t>(0x6767736eu).Put<uint32_t>(version).Put<uint32_t>(uint32_t(toks.size()));
  for (int32_t t : toks) o.Put(t);
  return o.Raw(StateBlob(s)).b;
}

std::string Meta(const KvSet& set, const std::string& k) {
  for (const auto& kv : set.model.metadata)
    if (kv.first == k) return kv.second;
  return "<unset>";
}

void CheckValues(const KvSet& set, const Spec& s) {
  ASSERT_EQ(set.tensors.size(), 2u * s.layers);
  for (uint32_t l = 0; l < s.layers; ++l)
    for (uint32_t kv = 0; kv < 2; ++kv) {
      const KvTensor* t = set.Find(l, kv ? Kind::kV : Kind::kK);
      ASSERT_NE(t, nullptr);
      ASSERT_EQ(t->desc.n_tokens, s.cells);
      ASSERT_EQ(t->desc.n_heads * t->desc.head_dim, s.width);
      EXPECT_EQ(t->desc.source_dtype, kv ? (s.vty == F16 ? "f16" : s.vty == F32 ? "f32" : "bf16")
                                         : (s.kty == F16 ? "f16" : s.kty == F32 ? "f32" : "bf16"));
      for (uint32_t i = 0; i < s.cells; ++i)
        for (uint32_t j = 0; j < s.width; ++j)
          ASSERT_EQ(t->data[i * s.width + j], Decoded(kv ? s.vty : s.kty, Val(l, kv, i, j))) << l << " " << kv << " " << i << " " << j;
    }
}

Status ReadStatus(const std::vector<uint8_t>& bytes, FileFormat f) {
  TempDir d;
  WriteFile(d.Path("x.bin"), bytes);
  return ReadKvSet(d.Path("x.bin"), f).status();
}

// ---------------------------------------------------------------------------------------------

TEST(LlamaState, SeqFileF16RowsReadAndRewriteByteIdentical) {
  TempDir d;
  Spec s;
  const std::vector<int32_t> toks = {1, 2, 3, 4, 5};
  WriteFile(d.Path("slot.bin"), SeqFile(s, toks));
  ASSERT_EQ(DetectFileFormat(d.Path("slot.bin")).value(), FileFormat::kLlamaSeq);
  auto r = ReadKvSet(d.Path("slot.bin"), FileFormat::kLlamaSeq);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  CheckValues(*r, s);
  EXPECT_EQ(r->model.tokens, toks);
  EXPECT_EQ(r->model.positions, (std::vector<int32_t>{10, 11, 12, 13, 14}));
  EXPECT_EQ(r->model.seq_ids, (std::vector<int32_t>{0, 0, 0, 0, 0}));
  EXPECT_EQ(r->model.n_layer, 2u);
  EXPECT_EQ(r->model.head_dim_k, 64u);  // rule: 64 divides the row of 64, 128 does not
  EXPECT_EQ(r->model.n_head_kv, 1u);
  EXPECT_EQ(r->model.source_engine, "llama.cpp");
  EXPECT_EQ(r->model.source_format, "llama-seq");
  EXPECT_EQ(r->model.k_rope, KRope::kPostRope);
  EXPECT_EQ(Meta(*r, "llama.cache_type_k"), "f16");
  EXPECT_EQ(Meta(*r, "llama.v_trans"), "0");
  EXPECT_EQ(Meta(*r, "llama.state_version"), "3");
  EXPECT_EQ(Meta(*r, "llama.token_record"), "plain");
  ASSERT_TRUE(WriteKvSet(*r, d.Path("out.bin"), FileFormat::kLlamaSeq).ok());
  EXPECT_EQ(ReadFile(d.Path("out.bin")), ReadFile(d.Path("slot.bin")));
}

TEST(LlamaState, SessionTransposedVMultiSeqCellsByteIdentical) {
  TempDir d;
  Spec s;
  s.v_trans = true;
  s.width = 96;
  s.seqs = {{0}, {0, 1}, {1}, {}, {0, 2, 3}};
  WriteFile(d.Path("s.session"), SessionFile(s, {7, 8}));
  ASSERT_EQ(DetectFileFormat(d.Path("s.session")).value(), FileFormat::kLlamaSession);
  auto r = ReadKvSet(d.Path("s.session"), FileFormat::kLlamaSession);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  CheckValues(*r, s);
  EXPECT_EQ(r->model.architecture, "llama");
  EXPECT_EQ(r->model.tokens, (std::vector<int32_t>{7, 8}));
  EXPECT_EQ(Meta(*r, "llama.v_trans"), "1");
  EXPECT_EQ(Meta(*r, "llama.cell_seq_sets"), "0;0,1;1;;0,2,3");
  EXPECT_EQ(r->model.head_dim_k, 96u);  // neither 128 nor 64 divides 96... 64 does not, so one head
  ASSERT_TRUE(WriteKvSet(*r, d.Path("o.session"), FileFormat::kLlamaSession).ok());
  EXPECT_EQ(ReadFile(d.Path("o.session")), ReadFile(d.Path("s.session")));
}

TEST(LlamaState, EachFloatTypeBothLayouts) {
  for (int32_t ty : {F32, F16, BF16})
    for (bool vt : {false, true}) {
      TempDir d;
      Spec s;
      s.kty = ty;
      s.vty = ty == F32 ? BF16 : ty;
      s.v_trans = vt;
      s.width = 128;
      WriteFile(d.Path("st.bin"), StateBlob(s));
      auto r = ReadKvSet(d.Path("st.bin"), FileFormat::kLlamaState);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      CheckValues(*r, s);
      EXPECT_EQ(r->model.head_dim_k, 128u);
      ASSERT_TRUE(WriteKvSet(*r, d.Path("o.bin"), FileFormat::kLlamaState).ok());
      EXPECT_EQ(ReadFile(d.Path("o.bin")), ReadFile(d.Path("st.bin"))) << ty << " " << vt;
    }
}

TEST(LlamaState, SeqBlobWithAndWithoutMagic) {
  TempDir d;
  Spec s;
  Bytes with;
  with.Put<uint32_t>(0xaf143cd8u).Put<int32_t>(3).Raw(Memory(s));
  WriteFile(d.Path("a.bin"), with.b);
  ASSERT_EQ(DetectFileFormat(d.Path("a.bin")).value(), FileFormat::kLlamaSeqState);
  auto a = ReadKvSet(d.Path("a.bin"), FileFormat::kLlamaSeqState);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(Meta(*a, "llama.seq_id"), "3");
  ASSERT_TRUE(WriteKvSet(*a, d.Path("a2.bin"), FileFormat::kLlamaSeqState).ok());
  EXPECT_EQ(ReadFile(d.Path("a2.bin")), with.b);

  WriteFile(d.Path("b.bin"), Memory(s));
  auto b = ReadKvSet(d.Path("b.bin"), FileFormat::kLlamaSeqState);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  CheckValues(*b, s);
  ASSERT_TRUE(WriteKvSet(*b, d.Path("b2.bin"), FileFormat::kLlamaSeqState).ok());
  EXPECT_EQ(ReadFile(d.Path("b2.bin")), Memory(s));
}

// A state whose token list does not number its cells (a blob has none; an application may save
// none): the container holds positions and seq ids only per token, so they travel in metadata
// (llama.cell_positions, llama.cell_seq_sets) and come back byte-identical through an mqkv file.
TEST(LlamaState, CellsWithoutTokensRoundTripThroughMqkv) {
  TempDir d;
  Spec multi;
  multi.seqs = {{0}, {0}, {2}, {0, 1}, {0}};
  struct Case {
    std::string name;
    std::vector<uint8_t> bytes;
    FileFormat fmt;
    std::string positions, seqs;  // expected metadata ("<unset>": not recorded)
  };
  std::vector<Case> cases = {
      {"seq file, no tokens", SeqFile(Spec{}, {}), FileFormat::kLlamaSeq, "10+5", "<unset>"},
      {"seq file, other tokens", SeqFile(Spec{}, {7, 8}), FileFormat::kLlamaSeq, "10+5", "<unset>"},
      {"seq blob", Memory(Spec{}), FileFormat::kLlamaSeqState, "10+5", "<unset>"},
      {"state blob", StateBlob(multi), FileFormat::kLlamaState, "10+5", "0;0;2;0,1;0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    WriteFile(d.Path("in.bin"), c.bytes);
    auto r = ReadKvSet(d.Path("in.bin"), c.fmt);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->model.positions.empty());
    EXPECT_TRUE(r->model.seq_ids.empty());
    EXPECT_EQ(Meta(*r, "llama.cell_positions"), c.positions);
    EXPECT_EQ(Meta(*r, "llama.cell_seq_sets"), c.seqs);
    ASSERT_TRUE(WriteKvSet(*r, d.Path("m.mqkv"), FileFormat::kMqkv).ok());
    auto m = ReadKvSet(d.Path("m.mqkv"), FileFormat::kMqkv);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    ASSERT_TRUE(WriteKvSet(*m, d.Path("out.bin"), c.fmt).ok());
    EXPECT_EQ(ReadFile(d.Path("out.bin")), c.bytes);
  }
  // Positions 0..n-1 and seq id 0 everywhere are what a writer assumes: nothing is recorded.
  Bytes plain;
  plain.Put<uint32_t>(1).Put<uint32_t>(2);
  for (int32_t i = 0; i < 2; ++i) plain.Put<int32_t>(i).Put<uint32_t>(1).Put<int32_t>(0);
  Spec two;
  two.cells = 2;
  const std::vector<uint8_t> mem = Memory(two);
  plain.b.insert(plain.b.end(), mem.begin() + 8 + 2 * 12, mem.end());
  WriteFile(d.Path("p.bin"), plain.b);
  auto p = ReadKvSet(d.Path("p.bin"), FileFormat::kLlamaSeqState);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(Meta(*p, "llama.cell_positions"), "<unset>");
  EXPECT_EQ(Meta(*p, "llama.cell_seq_sets"), "<unset>");
  ASSERT_TRUE(WriteKvSet(*p, d.Path("p2.bin"), FileFormat::kLlamaSeqState).ok());
  EXPECT_EQ(ReadFile(d.Path("p2.bin")), plain.b);
  // Slicing cells [1, 4) keeps their positions and seq ids, recorded or implied 0..n-1.
  {
    WriteFile(d.Path("in.bin"), StateBlob(multi));
    auto r = ReadKvSet(d.Path("in.bin"), FileFormat::kLlamaState);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(SliceTokens(&*r, 1, 4).ok());
    EXPECT_EQ(Meta(*r, "llama.cell_positions"), "11+3");
    EXPECT_EQ(Meta(*r, "llama.cell_seq_sets"), "0;2;0,1");
    auto q = ReadKvSet(d.Path("p.bin"), FileFormat::kLlamaSeqState);
    ASSERT_TRUE(q.ok());
    ASSERT_TRUE(SliceTokens(&*q, 1, 2).ok());
    EXPECT_EQ(Meta(*q, "llama.cell_positions"), "1+1");
    ASSERT_TRUE(WriteKvSet(*q, d.Path("q1.bin"), FileFormat::kLlamaSeqState).ok());
    auto back = ReadKvSet(d.Path("q1.bin"), FileFormat::kLlamaSeqState);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(Meta(*back, "llama.cell_positions"), "1+1");
  }
  // A bad run list is an error naming the key, not a crash; so is an absurd one.
  KvSet bad = *p;
  for (auto& kv : bad.model.metadata)
    if (kv.first == "llama.state_version") kv.second = kv.second;
  bad.model.metadata.emplace_back("llama.cell_positions", "0+3");
  std::sort(bad.model.metadata.begin(), bad.model.metadata.end());
  Status st = WriteKvSet(bad, d.Path("bad.bin"), FileFormat::kLlamaSeqState);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("llama.cell_positions"), std::string::npos) << st.ToString();
  for (const char* runs : {"9000000000000000000+9000000000000000000", "0+2147483647,0+2147483647", "", "x", "1+", "0+1,", "0+1;1+1"}) {
    KvSet odd = bad;
    for (auto& kv : odd.model.metadata)
      if (kv.first == "llama.cell_positions") kv.second = runs;
    st = WriteKvSet(odd, d.Path("bad.bin"), FileFormat::kLlamaSeqState);
    EXPECT_FALSE(st.ok()) << runs;
    EXPECT_NE(st.message().find("llama.cell_positions"), std::string::npos) << st.ToString();
  }
}

TEST(LlamaState, ServerPackedTokenRecord) {
  TempDir d;
  Spec s;
  // i32 -1, u32 version 1, u32 n, tokens, u32 n_media = 0  (n + 4 words)
  std::vector<int32_t> packed = {-1, 1, 3, 101, 102, 103, 0};
  WriteFile(d.Path("slot.bin"), SeqFile(s, packed));
  auto r = ReadKvSet(d.Path("slot.bin"), FileFormat::kLlamaSeq);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->model.tokens, (std::vector<int32_t>{101, 102, 103}));
  EXPECT_EQ(Meta(*r, "llama.token_record"), "server-v1");
  ASSERT_TRUE(WriteKvSet(*r, d.Path("o.bin"), FileFormat::kLlamaSeq).ok());
  EXPECT_EQ(ReadFile(d.Path("o.bin")), ReadFile(d.Path("slot.bin")));

  packed = {-1, 1, 1, 101, 1, 0};  // one media chunk
  Status st = ReadStatus(SeqFile(s, packed), FileFormat::kLlamaSeq);
  EXPECT_EQ(st.code(), StatusCode::kUnsupported);
  EXPECT_NE(st.message().find("media"), std::string::npos) << st.ToString();
  packed = {-1, 2, 0, 0};
  st = ReadStatus(SeqFile(s, packed), FileFormat::kLlamaSeq);
  EXPECT_NE(st.message().find("token record version 2"), std::string::npos) << st.ToString();
  packed = {-1, 1, 1000, 0};
  st = ReadStatus(SeqFile(s, packed), FileFormat::kLlamaSeq);
  EXPECT_EQ(st.code(), StatusCode::kFormatError) << st.ToString();
}

// Quantized blocks written by hand: canonical blocks (as ggml's reference quantizer makes them)
// dequantize exactly and re-quantize to the same bytes.
TEST(LlamaState, Q8_0AndQ4_0DequantizeExactlyAndRewriteIdentically) {
  TempDir d;
  const uint32_t cells = 3;  // one head of 32 dims: no Hadamard rotation (needs a multiple of 64)
  Bytes o;
  o.Put<uint32_t>(1).Put<uint32_t>(cells);
  for (uint32_t i = 0; i < cells; ++i) o.Put<int32_t>(int32_t(i)).Put<uint32_t>(1).Put<int32_t>(0);
  o.Put<uint32_t>(0).Put<uint32_t>(1);
  std::vector<float> want_k, want_v;
  o.Put<int32_t>(Q8_0).Put<uint64_t>(34);
  for (uint32_t i = 0; i < cells; ++i) {
    const uint16_t dh = f32_to_f16(0.0125f * float(i + 1));
    o.Put(dh);
    for (int j = 0; j < 32; ++j) {
      const int8_t q = j == 5 ? (i % 2 ? -127 : 127) : int8_t((j * 37 + int(i) * 11) % 255 - 127);
      o.Put(q);
      want_k.push_back(float(q) * f16_to_f32(dh));
    }
  }
  o.Put<int32_t>(Q4_0).Put<uint64_t>(18);
  for (uint32_t i = 0; i < cells; ++i) {
    const uint16_t dh = f32_to_f16(-0.25f * float(i + 1));
    o.Put(dh);
    uint8_t q[32];
    for (int j = 0; j < 32; ++j) q[j] = uint8_t((j * 5 + i) % 15 + 1);  // 1..15
    q[9] = 0;                                                             // the max-magnitude value
    for (int j = 0; j < 16; ++j) o.Put<uint8_t>(uint8_t(q[j] | (q[j + 16] << 4)));
    std::vector<float> row(32);
    for (int j = 0; j < 32; ++j) row[j] = float(int(q[j]) - 8) * f16_to_f32(dh);
    want_v.insert(want_v.end(), row.begin(), row.end());
  }
  WriteFile(d.Path("q.bin"), o.b);
  auto r = ReadKvSet(d.Path("q.bin"), FileFormat::kLlamaSeqState);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->Find(0, Kind::kK)->data, want_k);
  EXPECT_EQ(r->Find(0, Kind::kV)->data, want_v);
  EXPECT_EQ(Meta(*r, "llama.cache_type_k"), "q8_0");
  EXPECT_EQ(Meta(*r, "llama.cache_type_v"), "q4_0");
  EXPECT_EQ(Meta(*r, "llama.attn_rot_k"), "0");
  ASSERT_TRUE(WriteKvSet(*r, d.Path("q2.bin"), FileFormat::kLlamaSeqState).ok());
  EXPECT_EQ(ReadFile(d.Path("q2.bin")), o.b);
}

// f16 -> q8_0 / q4_0 conversion with head_dim 64: the writer applies llama.cpp's Hadamard
// rotation before quantizing and the reader undoes it, so values come back within the
// quantization error of the original (not of the rotated) values.
TEST(LlamaState, ConvertToQuantizedCacheTypesRoundTrips) {
  TempDir d;
  Spec s;
  s.width = 192;  // 3 heads x 64
  s.cells = 4;
  WriteFile(d.Path("f16.bin"), SeqFile(s, {1, 2, 3, 4}));
  auto src = ReadKvSet(d.Path("f16.bin"), FileFormat::kLlamaSeq);
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(src->model.n_head_kv, 3u);
  for (const char* ty : {"q8_0", "q4_0"}) {
    WriteOptions w;
    w.llama_type_k = ty;
    w.llama_type_v = ty;
    ASSERT_TRUE(WriteKvSet(*src, d.Path("q.bin"), FileFormat::kLlamaSeq, w).ok());
    const auto bytes = ReadFile(d.Path("q.bin"));
    auto back = ReadKvSet(d.Path("q.bin"), FileFormat::kLlamaSeq);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(Meta(*back, "llama.cache_type_k"), ty);
    EXPECT_EQ(Meta(*back, "llama.attn_rot_k"), "64");
    EXPECT_EQ(Meta(*back, "llama.attn_rot_v"), "64");
    const double tol = std::string(ty) == "q8_0" ? 0.02 : 0.2;  // relative to the value range 2.5
    for (uint32_t l = 0; l < s.layers; ++l)
      for (Kind k : {Kind::kK, Kind::kV}) {
        const auto& a = src->Find(l, k)->data;
        const auto& b = back->Find(l, k)->data;
        ASSERT_EQ(a.size(), b.size());
        double max_err = 0, sum_err = 0;
        for (size_t i = 0; i < a.size(); ++i) {
          max_err = std::max(max_err, double(std::fabs(a[i] - b[i])));
          sum_err += std::fabs(a[i] - b[i]);
        }
        EXPECT_LT(max_err, tol * 2.5 * 2) << ty;
        EXPECT_GT(sum_err, 0.0) << ty;
      }
    // Re-writing the quantized state in its own type is stable (same file size, same types).
    ASSERT_TRUE(WriteKvSet(*back, d.Path("q2.bin"), FileFormat::kLlamaSeq).ok());
    EXPECT_EQ(ReadFile(d.Path("q2.bin")).size(), bytes.size());
  }
  // Rows of q8_0: 192/32 blocks of 34 bytes.
  WriteOptions w;
  w.llama_type_k = "q8_0";
  ASSERT_TRUE(WriteKvSet(*src, d.Path("k8.bin"), FileFormat::kLlamaSeq, w).ok());
  auto k8 = ReadKvSet(d.Path("k8.bin"), FileFormat::kLlamaSeq);
  ASSERT_TRUE(k8.ok());
  EXPECT_EQ(Meta(*k8, "llama.cache_type_v"), "f16");
  // A quantized V cannot be transposed.
  w.llama_type_v = "q8_0";
  w.llama_v_trans_set = true;
  w.llama_v_trans = true;
  Status st = WriteKvSet(*src, d.Path("bad.bin"), FileFormat::kLlamaSeq, w);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  w.llama_type_v = "q5_1";
  st = WriteKvSet(*src, d.Path("bad.bin"), FileFormat::kLlamaSeq, w);
  EXPECT_NE(st.message().find("q5_1"), std::string::npos);
}

TEST(LlamaState, VTransOverrideAndHeadDimOverride) {
  TempDir d;
  Spec s;
  s.width = 128;
  WriteFile(d.Path("a.bin"), SeqFile(s, {1}));
  auto a = ReadKvSet(d.Path("a.bin"), FileFormat::kLlamaSeq);
  ASSERT_TRUE(a.ok());
  WriteOptions w;
  w.llama_v_trans_set = true;
  w.llama_v_trans = true;
  ASSERT_TRUE(WriteKvSet(*a, d.Path("t.bin"), FileFormat::kLlamaSeq, w).ok());
  Spec st = s;
  st.v_trans = true;
  EXPECT_EQ(ReadFile(d.Path("t.bin")), SeqFile(st, {1}));

  LlamaReadOptions ro;
  ro.head_dim_k = 32;
  ro.head_dim_v = 64;
  auto h = ReadLlamaKvSet(d.Path("a.bin"), FileFormat::kLlamaSeq, ro);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->Find(1, Kind::kK)->desc.n_heads, 4u);
  EXPECT_EQ(h->Find(1, Kind::kV)->desc.n_heads, 2u);
  EXPECT_EQ(h->model.n_head_kv, 4u);
  EXPECT_EQ(Meta(*h, "llama.head_split"), "given");
  ro.head_dim_k = 48;
  auto bad = ReadLlamaKvSet(d.Path("a.bin"), FileFormat::kLlamaSeq, ro);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(LlamaState, WrongMagicAndVersion) {
  Spec s;
  auto f = SeqFile(s, {1});
  f[0] ^= 0xFF;
  Status st = ReadStatus(f, FileFormat::kLlamaSeq);
  EXPECT_EQ(st.code(), StatusCode::kFormatError);
  EXPECT_NE(st.message().find("magic"), std::string::npos) << st.ToString();
  st = ReadStatus(SeqFile(s, {1}, 2), FileFormat::kLlamaSeq);
  EXPECT_EQ(st.code(), StatusCode::kUnsupported);
  EXPECT_NE(st.message().find("version 2"), std::string::npos) << st.ToString();
  st = ReadStatus(SessionFile(s, {1}, 9), FileFormat::kLlamaSession);
  EXPECT_NE(st.message().find("version 9"), std::string::npos) << st.ToString();
  st = ReadStatus(SeqFile(s, {1}), FileFormat::kLlamaSession);  // a seq file read as a session
  EXPECT_EQ(st.code(), StatusCode::kFormatError);
}

TEST(LlamaState, EveryTruncationIsAnErrorNeverACrash) {
  Spec s;
  s.cells = 2;
  s.width = 32;
  s.layers = 1;
  s.seqs = {{0}, {0, 1}};
  for (const auto& [bytes, fmt] : {std::pair{SessionFile(s, {1, 2}), FileFormat::kLlamaSession},
                                   std::pair{StateBlob(s), FileFormat::kLlamaState}}) {
    TempDir d;
    for (size_t n = 0; n < bytes.size(); ++n) {
      WriteFile(d.Path("t.bin"), std::vector<uint8_t>(bytes.begin(), bytes.begin() + n));
      auto r = ReadKvSet(d.Path("t.bin"), fmt);
      ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes was accepted";
      EXPECT_EQ(r.status().file(), d.Path("t.bin"));
    }
    // One byte too many: trailing data is an error too.
    auto longer = bytes;
    longer.push_back(0);
    WriteFile(d.Path("t.bin"), longer);
    EXPECT_FALSE(ReadKvSet(d.Path("t.bin"), fmt).ok());
  }
  Spec one;
  const auto seq = SeqFile(one, {1});
  Status st = ReadStatus(std::vector<uint8_t>(seq.begin(), seq.end() - 7), FileFormat::kLlamaSeq);
  EXPECT_NE(st.message().find("truncated"), std::string::npos) << st.ToString();
  EXPECT_TRUE(st.offset().has_value());
}

TEST(LlamaState, HugeCountsAreBoundedByTheFileSize) {
  Spec s;
  s.cells = 1;
  s.width = 32;
  const auto base = Memory(s);
  auto patch32 = [&](size_t off, uint32_t v) {
    auto b = base;
    std::memcpy(b.data() + off, &v, 4);
    return b;
  };
  // n_stream(0) cell_count(4) pos(8) n_seq(12) seq(16) v_trans(20) n_layer(24) k_type(28) k_row(32)
  for (uint32_t big : {0xFFFFFFFFu, 0x40000000u, 1000u}) {
    Status st = ReadStatus(patch32(4, big), FileFormat::kLlamaSeqState);
    EXPECT_EQ(st.code(), StatusCode::kFormatError) << st.ToString();
    st = ReadStatus(patch32(12, big), FileFormat::kLlamaSeqState);
    EXPECT_EQ(st.code(), StatusCode::kFormatError) << st.ToString();
    st = ReadStatus(patch32(24, big), FileFormat::kLlamaSeqState);
    EXPECT_EQ(st.code(), StatusCode::kFormatError) << st.ToString();
  }
  auto b = base;
  const uint64_t huge = 0x8000000000000000ull;
  std::memcpy(b.data() + 32, &huge, 8);
  Status st = ReadStatus(b, FileFormat::kLlamaSeqState);
  EXPECT_EQ(st.code(), StatusCode::kFormatError) << st.ToString();
  const uint64_t odd = 63;  // not whole f16 elements... (f16 blocks are 2 bytes)
  b = base;
  std::memcpy(b.data() + 32, &odd, 8);
  st = ReadStatus(b, FileFormat::kLlamaSeqState);
  EXPECT_NE(st.message().find("row size 63"), std::string::npos) << st.ToString();
  st = ReadStatus(patch32(20, 7), FileFormat::kLlamaSeqState);
  EXPECT_NE(st.message().find("v_trans is 7"), std::string::npos) << st.ToString();
  // A session's architecture name length.
  Bytes sess;
  sess.Put<uint32_t>(0x6767736eu).Put<uint32_t>(10).Put<uint32_t>(0).Put<uint32_t>(0xFFFFFFF0u);
  st = ReadStatus(sess.b, FileFormat::kLlamaSession);
  EXPECT_NE(st.message().find("architecture name length"), std::string::npos) << st.ToString();
  // Token count larger than the file.
  Bytes toks;
  toks.Put<uint32_t>(0x67677371u).Put<uint32_t>(3).Put<uint32_t>(0x7FFFFFFFu);
  st = ReadStatus(toks.b, FileFormat::kLlamaSeq);
  EXPECT_NE(st.message().find("truncated"), std::string::npos) << st.ToString();
}

TEST(LlamaState, UnknownTypesStreamsAndCellExtensions) {
  Spec s;
  s.kty = 3;  // q4_1: a real ggml type this adapter does not read
  Status st = ReadStatus(Memory(s), FileFormat::kLlamaSeqState);
  EXPECT_EQ(st.code(), StatusCode::kUnsupported);
  EXPECT_NE(st.message().find("q4_1"), std::string::npos) << st.ToString();
  s.kty = 99;
  st = ReadStatus(Memory(s), FileFormat::kLlamaSeqState);
  EXPECT_NE(st.message().find("ggml type id 99"), std::string::npos) << st.ToString();

  Spec m;
  m.n_stream = 2;
  st = ReadStatus(Memory(m), FileFormat::kLlamaSeqState);
  EXPECT_EQ(st.code(), StatusCode::kUnsupported);
  EXPECT_NE(st.message().find("n_stream is 2"), std::string::npos) << st.ToString();

  Spec e;
  e.ext = 12;  // M-RoPE models write {x, y, tok} after each cell's n_seq_id
  st = ReadStatus(StateBlob(e), FileFormat::kLlamaState);
  EXPECT_EQ(st.code(), StatusCode::kUnsupported);
  EXPECT_NE(st.message().find("M-RoPE"), std::string::npos) << st.ToString();

  Spec q;  // transposed quantized V
  q.v_trans = true;
  auto blob = Memory(q);
  // V type of layer 0 sits after the K layers; patch it to q8_0.
  const size_t v0 = 8 + q.cells * 12 + 8 + q.layers * (12 + q.cells * q.width * 2);
  int32_t q8 = Q8_0;
  std::memcpy(blob.data() + v0, &q8, 4);
  st = ReadStatus(blob, FileFormat::kLlamaSeqState);
  EXPECT_EQ(st.code(), StatusCode::kUnsupported);
  EXPECT_NE(st.message().find("transposed q8_0"), std::string::npos) << st.ToString();

  // A sequence state whose cell lists two seq ids.
  Spec two;
  two.seqs = {{0}, {0, 1}, {0}, {0}, {0}};
  st = ReadStatus(SeqFile(two, {1}), FileFormat::kLlamaSeq);
  EXPECT_NE(st.message().find("exactly 1"), std::string::npos) << st.ToString();
}

TEST(LlamaState, WritingNeedsWhatTheFormatNeeds) {
  TempDir d;
  Spec s;
  WriteFile(d.Path("a.bin"), SeqFile(s, {1}));
  auto a = ReadKvSet(d.Path("a.bin"), FileFormat::kLlamaSeq);
  ASSERT_TRUE(a.ok());
  // A seq file does not name the architecture; a session must.
  Status st = WriteKvSet(*a, d.Path("s.session"), FileFormat::kLlamaSession);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("architecture"), std::string::npos);
  a->model.architecture = "llama";
  ASSERT_TRUE(WriteKvSet(*a, d.Path("s.session"), FileFormat::kLlamaSession).ok());
  auto s2 = ReadKvSet(d.Path("s.session"), FileFormat::kLlamaSession);
  ASSERT_TRUE(s2.ok());
  CheckValues(*s2, s);
  // Missing layer.
  KvSet gap = *a;
  gap.tensors.erase(gap.tensors.begin());
  EXPECT_EQ(WriteKvSet(gap, d.Path("g.bin"), FileFormat::kLlamaSeq).code(), StatusCode::kInvalidArgument);
}

}  // namespace

// The in-memory entry points (what mqkv.llama uses with llama_state_seq_get/set_data) read and
// write the same bytes as the file adapters; a file format that is not a llama.cpp state is refused.
TEST(LlamaState, InMemoryParseAndSerializeMatchTheFileAdapters) {
  TempDir d;
  Spec s;
  const std::vector<int32_t> toks = {1, 2, 3, 4, 5};
  const std::vector<uint8_t> bytes = SeqFile(s, toks);
  WriteFile(d.Path("slot.bin"), bytes);
  auto fromfile = ReadKvSet(d.Path("slot.bin"), FileFormat::kLlamaSeq);
  ASSERT_TRUE(fromfile.ok()) << fromfile.status().ToString();
  auto mem = ParseLlamaState(bytes.data(), bytes.size(), FileFormat::kLlamaSeq, {}, "<memory>");
  ASSERT_TRUE(mem.ok()) << mem.status().ToString();
  ASSERT_EQ(mem->tensors.size(), fromfile->tensors.size());
  EXPECT_EQ(mem->model, fromfile->model);
  for (size_t i = 0; i < mem->tensors.size(); ++i) EXPECT_EQ(mem->tensors[i].data, fromfile->tensors[i].data);
  auto out = SerializeLlamaState(*mem, FileFormat::kLlamaSeq);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, bytes);

  std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + bytes.size() / 2);
  auto bad = ParseLlamaState(cut.data(), cut.size(), FileFormat::kLlamaSeq, {}, "<llama sequence 0>");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().file(), "<llama sequence 0>");
  EXPECT_EQ(ParseLlamaState(bytes.data(), bytes.size(), FileFormat::kMqkv, {}, "x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SerializeLlamaState(*mem, FileFormat::kSafetensors).status().code(), StatusCode::kInvalidArgument);
}


namespace {

// The set written as an mqkv file with one codec for K and V, opened (the restore tests' input).
std::unique_ptr<Snapshot> AsSnapshot(const KvSet& set, const std::string& path, const char* codec) {
  WriteOptions wo;
  wo.k_codec = wo.v_codec = CodecSpec::Parse(codec).value();
  wo.writer.fsync = false;
  if (Status st = WriteKvSet(set, path, FileFormat::kMqkv, wo); !st.ok()) {
    ADD_FAILURE() << codec << ": " << st.ToString();
    return nullptr;
  }
  auto snap = Snapshot::Open(path);
  if (!snap.ok()) {
    ADD_FAILURE() << snap.status().ToString();
    return nullptr;
  }
  return std::move(*snap);
}

}  // namespace

// Restoring straight from a snapshot (f16 decoded into the state) gives the bytes of decoding the
// snapshot to fp32 first, for a lossy and a raw codec, both V layouts.
TEST(LlamaState, FromSnapshotEqualsFromItsDecodedKvSet) {
  TempDir d;
  Spec s;
  const std::vector<int32_t> toks = {1, 2, 3, 4, 5};
  WriteFile(d.Path("slot.bin"), SeqFile(s, toks));
  auto set = ReadKvSet(d.Path("slot.bin"), FileFormat::kLlamaSeq);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  for (const char* codec : {"f16", "affine:bits=3,group=32", "f32"}) {
    auto snap = AsSnapshot(*set, d.Path("s.mqkv"), codec);
    ASSERT_TRUE(snap);
    auto decoded = DecodeSnapshot(*snap);
    ASSERT_TRUE(decoded.ok());
    for (bool v_trans : {false, true}) {
      WriteOptions o;
      o.llama_v_trans_set = true;
      o.llama_v_trans = v_trans;
      auto direct = SerializeLlamaState(*snap, FileFormat::kLlamaSeq, o);
      auto viaf32 = SerializeLlamaState(*decoded, FileFormat::kLlamaSeq, o);
      ASSERT_TRUE(direct.ok() && viaf32.ok()) << codec << ": " << direct.status().ToString() << viaf32.status().ToString();
      EXPECT_EQ(*direct, *viaf32) << codec << " v_trans " << v_trans;
    }
  }
}

// A snapshot whose K is paired for the other RoPE convention (one saved from transformers: halves,
// "neox") is re-paired on the way into a "norm" model: K's head dims permuted exactly as
// spec/INTEROP.md says, V untouched; an unknown rope_type, or the same one, is written as stored.
TEST(LlamaState, KIsRepairedForTheTargetsRopePairing) {
  TempDir d;
  Spec s;
  const std::vector<int32_t> toks = {1, 2, 3, 4, 5};
  WriteFile(d.Path("slot.bin"), SeqFile(s, toks));
  auto set = ReadKvSet(d.Path("slot.bin"), FileFormat::kLlamaSeq);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  for (const char* stored : {"neox", "norm", "unknown"}) {
    set->model.rope_type = stored;
    auto snap = AsSnapshot(*set, d.Path("s.mqkv"), "f32");
    ASSERT_TRUE(snap);
    WriteOptions o;
    o.llama_type_k = o.llama_type_v = "f32";
    o.llama_rope_type = "norm";
    auto bytes = SerializeLlamaState(*snap, FileFormat::kLlamaSeqState, o);
    ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
    auto back = ParseLlamaState(bytes->data(), bytes->size(), FileFormat::kLlamaSeqState, {}, "<memory>");
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ASSERT_EQ(back->tensors.size(), set->tensors.size());
    for (size_t i = 0; i < set->tensors.size(); ++i) {
      const KvTensor& a = set->tensors[i];
      const KvTensor& b = back->tensors[i];
      ASSERT_EQ(a.data.size(), b.data.size());
      const uint32_t hd = a.desc.head_dim, h = hd / 2;
      const bool repaired = a.desc.kind == Kind::kK && std::string(stored) == "neox";
      for (size_t at = 0; at < a.data.size(); at += hd)
        for (uint32_t j = 0; j < h; ++j)
          for (uint32_t k = 0; k < 2; ++k) {
            const float want = repaired ? a.data[at + k * h + j] : a.data[at + 2 * j + k];
            ASSERT_EQ(b.data[at + 2 * j + k], want) << stored << " tensor " << i;
          }
    }
  }
}

// The restore path's layers are written on several threads into a buffer of the exact size: the
// bytes do not depend on the thread count or on what the buffer held before, for f16 and for a
// quantized (rotated) target; a buffer of another size is refused, naming the snapshot.
TEST(LlamaState, FromSnapshotIntoABufferIsTheSameOnEveryThreadCount) {
  TempDir d;
  Spec s;
  s.cells = 7;
  const std::vector<int32_t> toks = {1, 2, 3, 4, 5, 6, 7};
  WriteFile(d.Path("slot.bin"), SeqFile(s, toks));
  auto set = ReadKvSet(d.Path("slot.bin"), FileFormat::kLlamaSeq);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  auto snap = AsSnapshot(*set, d.Path("s.mqkv"), "affine:bits=3,group=32");
  ASSERT_TRUE(snap);
  for (const char* type_k : {"", "q8_0"}) {
    WriteOptions o;
    o.llama_type_k = type_k;
    o.threads = 1;
    auto one = SerializeLlamaState(*snap, FileFormat::kLlamaSeqState, o);
    ASSERT_TRUE(one.ok()) << one.status().ToString();
    auto size = LlamaStateSize(*snap, FileFormat::kLlamaSeqState, o);
    ASSERT_TRUE(size.ok());
    EXPECT_EQ(*size, one->size());
    for (unsigned threads : {0u, 2u, 3u, 64u}) {
      o.threads = threads;
      for (uint8_t junk : {uint8_t(0x00), uint8_t(0xa5)}) {
        std::vector<uint8_t> buf(*size, junk);
        ASSERT_TRUE(SerializeLlamaState(*snap, FileFormat::kLlamaSeqState, o, buf.data(), buf.size()).ok());
        EXPECT_EQ(buf, *one) << "type_k '" << type_k << "', " << threads << " threads";
      }
    }
    std::vector<uint8_t> small(*size - 1);
    Status bad = SerializeLlamaState(*snap, FileFormat::kLlamaSeqState, o, small.data(), small.size());
    EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(bad.file(), d.Path("s.mqkv"));
  }
  std::vector<uint8_t> any(16);
  EXPECT_EQ(SerializeLlamaState(*snap, FileFormat::kNpz, {}, any.data(), any.size()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(LlamaStateSize(*snap, FileFormat::kNpz).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace mqkv
