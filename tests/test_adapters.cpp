// safetensors / npy / npz adapters (spec/INTEROP.md): lossless round trips, Hugging Face
// naming, token ranges, and crafted bad files that must give a clear error and no crash.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>

#include "adapters/json.h"
#include "mqkv/mqkv.h"
#include "support.h"

using namespace mqkv;
using mqkv::testing::ReadFile;
using mqkv::testing::TempDir;
using mqkv::testing::WriteFile;

namespace {

constexpr uint32_t kLayers = 2, kHeads = 2, kDim = 8, kTokens = 6;

float RoundTo(const std::string& dtype, float x) {
  if (dtype == "f16") return round_to_f16(x);
  if (dtype == "bf16") return bf16_to_f32(f32_to_bf16(x));
  return x;
}

// A set whose values are exact in `dtype`, including zeros of both signs, infinities, a NaN
// and (for f16/f32) a subnormal; with queries when `with_q`.
KvSet MakeSet(const std::string& dtype, bool with_q, uint32_t tokens = kTokens) {
  KvSet s;
  s.model.architecture = "llama";
  s.model.n_layer = kLayers;
  s.model.n_head = 4;
  s.model.n_head_kv = kHeads;
  s.model.head_dim_k = s.model.head_dim_v = kDim;
  s.model.rope_type = "norm";
  s.model.rope_base = 500000.0f;
  s.model.k_rope = KRope::kPostRope;
  s.model.source_engine = "test";
  s.model.source_engine_version = "1.2.3";
  s.model.source_format = "unit-test";
  for (uint32_t i = 0; i < tokens; ++i) {
    s.model.tokens.push_back(int32_t(100 + i));
    s.model.positions.push_back(int32_t(i));
    s.model.seq_ids.push_back(0);
  }
  s.model.metadata = {{"a", "1"}, {"unicode", "h\xc3\xa9llo \xe2\x82\xac"}, {"z.key", "with \"quotes\" and \\ and \n"}};
  uint32_t seed = 1;
  for (uint32_t l = 0; l < kLayers; ++l)
    for (Kind k : {Kind::kK, Kind::kV}) {
      KvTensor t;
      t.desc.layer = l;
      t.desc.kind = k;
      t.desc.n_heads = kHeads;
      t.desc.head_dim = kDim;
      t.desc.n_tokens = tokens;
      t.desc.source_dtype = dtype;
      t.data = mqkv::testing::RandomRows(uint64_t(tokens) * kHeads * kDim, seed++);
      for (float& x : t.data) x = RoundTo(dtype, x);
      if (t.data.size() >= 8) {
        t.data[0] = 0.0f;
        t.data[1] = -0.0f;
        t.data[2] = std::numeric_limits<float>::infinity();
        t.data[3] = -std::numeric_limits<float>::infinity();
        t.data[4] = std::numeric_limits<float>::quiet_NaN();
        t.data[5] = dtype == "bf16" ? bf16_to_f32(1) : f16_to_f32(1);  // smallest subnormal
      }
      s.tensors.push_back(std::move(t));
    }
  if (with_q) {
    KvTensor q;
    q.desc.layer = 1;
    q.desc.kind = Kind::kQ;
    q.desc.n_heads = 4;
    q.desc.head_dim = kDim;
    q.desc.n_tokens = 3;
    q.desc.positions = {1, 3, 5};
    q.desc.source_dtype = "f32";
    q.data = mqkv::testing::RandomRows(3 * 4 * kDim, 99);
    // Keep the canonical (layer, kind) order the readers produce.
    s.tensors.push_back(std::move(q));
  }
  return s;
}

bool BitsEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

void ExpectSameTensors(const KvSet& want, const KvSet& got, bool check_desc) {
  ASSERT_EQ(want.tensors.size(), got.tensors.size());
  for (size_t i = 0; i < want.tensors.size(); ++i) {
    const KvTensor& w = want.tensors[i];
    const KvTensor& g = got.tensors[i];
    EXPECT_EQ(w.desc.layer, g.desc.layer);
    EXPECT_EQ(w.desc.kind, g.desc.kind);
    EXPECT_EQ(w.desc.n_tokens, g.desc.n_tokens);
    EXPECT_EQ(w.desc.n_heads, g.desc.n_heads);
    EXPECT_EQ(w.desc.head_dim, g.desc.head_dim);
    EXPECT_TRUE(BitsEqual(w.data, g.data)) << "tensor " << i << " values differ";
    if (check_desc) {
      EXPECT_EQ(w.desc.positions, g.desc.positions);
      EXPECT_EQ(w.desc.source_dtype, g.desc.source_dtype);
    }
  }
}

ModelInfo Sorted(ModelInfo m) {
  std::sort(m.metadata.begin(), m.metadata.end());
  return m;
}

std::vector<uint8_t> Bytes(std::string_view s) { return std::vector<uint8_t>(s.begin(), s.end()); }

// A safetensors file from a header JSON and a data section.
std::vector<uint8_t> Safetensors(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(uint64_t(header.size()) >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

Status ReadStatus(const std::string& path, FileFormat f) {
  auto r = ReadKvSet(path, f);
  return r.ok() ? Status::OK() : r.status();
}

// Expects a failure with `code` whose message contains `needle` and names the file.
void ExpectBad(const std::string& path, FileFormat f, StatusCode code, const std::string& needle) {
  Status s = ReadStatus(path, f);
  ASSERT_FALSE(s.ok()) << path << " was accepted";
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos) << "message: " << s.ToString();
  EXPECT_NE(s.ToString().find(path), std::string::npos) << "error does not name the file: " << s.ToString();
}

const char* PythonWithNumpy() {
  static std::string py = [] {
    const char* env = std::getenv("MQKV_PYTHON");
    std::string cand = env && *env ? env : "python3";
    std::string cmd = cand + " -c \"import numpy\" > /dev/null 2>&1";
    return std::system(cmd.c_str()) == 0 ? cand : std::string();
  }();
  return py.empty() ? nullptr : py.c_str();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(Adapters, RoundTripEveryRawDtypeThroughEveryFormat) {
  TempDir dir;
  for (const std::string dtype : {"f32", "f16", "bf16"}) {
    for (FileFormat f : {FileFormat::kMqkv, FileFormat::kSafetensors, FileFormat::kNpy, FileFormat::kNpz}) {
      SCOPED_TRACE(dtype + " via " + FileFormatName(f));
      const bool npy = f == FileFormat::kNpy;
      const KvSet set = MakeSet(dtype, /*with_q=*/!npy);
      const std::string path = dir.Path("rt_" + dtype + "." + FileFormatName(f));
      WriteOptions wo;
      wo.k_codec = wo.v_codec = CodecSpec::Parse(dtype).value();
      ASSERT_TRUE(WriteKvSet(set, path, f, wo).ok()) << WriteKvSet(set, path, f, wo).ToString();
      auto fmt = DetectFileFormat(path);
      ASSERT_TRUE(fmt.ok());
      EXPECT_EQ(*fmt, f) << "sniffing";
      auto got = ReadKvSet(path, f);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      if (npy) {
        // One array: values and shape only; bf16 is not an npy type (written as f4).
        ExpectSameTensors(set, *got, /*check_desc=*/false);
        for (const KvTensor& t : got->tensors) EXPECT_EQ(t.desc.source_dtype, dtype == "f16" ? "f16" : "f32");
        EXPECT_EQ(got->model.n_layer, kLayers);
        EXPECT_EQ(got->model.head_dim_k, kDim);
      } else {
        ExpectSameTensors(set, *got, /*check_desc=*/true);
        EXPECT_EQ(Sorted(got->model), Sorted(set.model));
      }
    }
  }
}

TEST(Adapters, WritersStoreTheSourceDtypeOrTheAskedOne) {
  TempDir dir;
  // f16 source: stored as F16 (half the bytes of f32).
  KvSet f16 = MakeSet("f16", false);
  ASSERT_TRUE(WriteKvSet(f16, dir.Path("a.safetensors"), FileFormat::kSafetensors).ok());
  std::vector<uint8_t> bytes = ReadFile(dir.Path("a.safetensors"));
  std::string text(bytes.begin(), bytes.end());
  EXPECT_NE(text.find("\"layers.0.k\":{\"dtype\":\"F16\""), std::string::npos);
  // A value that is not an f16 (a lossy decode) is rounded to the source dtype, to nearest even...
  f16.tensors[0].data[7] = 1.0f + 1.0f / 4096;
  ASSERT_TRUE(WriteKvSet(f16, dir.Path("r.safetensors"), FileFormat::kSafetensors).ok());
  auto rounded = ReadKvSet(dir.Path("r.safetensors"), FileFormat::kSafetensors);
  ASSERT_TRUE(rounded.ok());
  EXPECT_EQ(rounded->tensors[0].data[7], 1.0f);
  EXPECT_EQ(rounded->tensors[0].desc.source_dtype, "f16");
  // ...unless f32 is asked for: then every bit is kept and the source dtype goes to the metadata.
  WriteOptions as_f32;
  as_f32.dtype = "f32";
  ASSERT_TRUE(WriteKvSet(f16, dir.Path("b.safetensors"), FileFormat::kSafetensors, as_f32).ok());
  bytes = ReadFile(dir.Path("b.safetensors"));
  text.assign(bytes.begin(), bytes.end());
  EXPECT_NE(text.find("\"layers.0.k\":{\"dtype\":\"F32\""), std::string::npos);
  auto got = ReadKvSet(dir.Path("b.safetensors"), FileFormat::kSafetensors);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(BitsEqual(got->tensors[0].data, f16.tensors[0].data));
  EXPECT_EQ(got->tensors[0].desc.source_dtype, "f16");
  // Asked-for types: f16 of an f32 source, bf16 only where the format has it, never an overflow.
  KvSet f32 = MakeSet("f32", false);
  WriteOptions o;
  o.dtype = "f16";
  ASSERT_TRUE(WriteKvSet(f32, dir.Path("c.npy"), FileFormat::kNpy, o).ok());
  auto c = ReadKvSet(dir.Path("c.npy"), FileFormat::kNpy);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->tensors[0].desc.source_dtype, "f16");
  EXPECT_EQ(c->tensors[0].data[3], f16_to_f32(f32_to_f16(f32.tensors[0].data[3])));
  o.dtype = "bf16";
  EXPECT_EQ(WriteKvSet(f32, dir.Path("d.npz"), FileFormat::kNpz, o).code(), StatusCode::kUnsupported);
  ASSERT_TRUE(WriteKvSet(f32, dir.Path("d.safetensors"), FileFormat::kSafetensors, o).ok());
  o.dtype = "f8";
  EXPECT_EQ(WriteKvSet(f32, dir.Path("e.safetensors"), FileFormat::kSafetensors, o).code(), StatusCode::kInvalidArgument);
  f32.tensors[1].data[0] = 70000.0f;
  o.dtype = "f16";
  Status big = WriteKvSet(f32, dir.Path("f.safetensors"), FileFormat::kSafetensors, o);
  EXPECT_EQ(big.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(big.message().find("beyond f16's range"), std::string::npos) << big.ToString();
  // A quantized source dtype survives the round trip too.
  KvSet q = MakeSet("f32", false);
  q.tensors[1].desc.source_dtype = "q8_0";
  q.tensors[2].desc.source_dtype = "";
  for (FileFormat f : {FileFormat::kSafetensors, FileFormat::kNpz}) {
    const std::string p = dir.Path(std::string("q.") + FileFormatName(f));
    ASSERT_TRUE(WriteKvSet(q, p, f).ok());
    auto r = ReadKvSet(p, f);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ExpectSameTensors(q, *r, true);
  }
}

// mqkv -> f16 safetensors, streamed: tensors are decoded as f16 (KvTensor::load_f16), which must
// give the bytes of the fp32 path (the rows rounded to f16); a raw f16 NaN or infinity and a value
// beyond f16's range go the fp32 way, so the file and the error are the same as without it.
TEST(Adapters, StreamedF16OutputEqualsTheFp32Path) {
  TempDir dir;
  KvSet s = MakeSet("f16", false, 64);
  uint32_t r = 7;
  for (KvTensor& t : s.tensors)
    for (float& x : t.data) {
      r = r * 1664525u + 1013904223u;
      x = float(int(r >> 9) % 20001 - 10000) / 997.0f;
    }
  WriteOptions w;
  w.k_codec = CodecSpec::Parse("affine:bits=3,group=8").value();
  w.v_codec = CodecSpec::Parse("codebook:bits=2,group=8,levels=-1.5/-0.45/0.45/1.5").value();
  ASSERT_TRUE(WriteKvSet(s, dir.Path("q.mqkv"), FileFormat::kMqkv, w).ok());
  ASSERT_TRUE(WriteKvSet(MakeSet("f16", false), dir.Path("l.mqkv"), FileFormat::kMqkv).ok());  // NaN, infinities
  // Tensors of several 256 KiB row ranges (the writer's f16 chunks): all finite, except one NaN
  // and one infinity in the last rows of two tensors, found after earlier ranges were written.
  KvSet chunked = MakeSet("f16", false, 20000);
  for (KvTensor& t : chunked.tensors)
    for (int j = 0; j < 6; ++j) t.data[j] = 0.25f * float(j);
  chunked.tensors[1].data.back() = std::numeric_limits<float>::quiet_NaN();
  chunked.tensors[2].data[chunked.tensors[2].data.size() - 20] = -std::numeric_limits<float>::infinity();
  ASSERT_TRUE(WriteKvSet(chunked, dir.Path("c.mqkv"), FileFormat::kMqkv).ok());
  ReadOptions stream;
  stream.stream = true;
  for (const char* name : {"q", "l", "c"}) {
    const std::string src = dir.Path(std::string(name) + ".mqkv");
    auto lazy = ReadKvSet(src, FileFormat::kMqkv, stream);
    auto whole = ReadKvSet(src, FileFormat::kMqkv);
    ASSERT_TRUE(lazy.ok() && whole.ok()) << name;
    ASSERT_TRUE(lazy->tensors[0].load_f16) << name;
    ASSERT_FALSE(whole->tensors[0].lazy()) << name;
    ASSERT_TRUE(WriteKvSet(*lazy, dir.Path("a.safetensors"), FileFormat::kSafetensors).ok()) << name;
    ASSERT_TRUE(WriteKvSet(*whole, dir.Path("b.safetensors"), FileFormat::kSafetensors).ok()) << name;
    const std::vector<uint8_t> a = ReadFile(dir.Path("a.safetensors")), b = ReadFile(dir.Path("b.safetensors"));
    EXPECT_NE(std::string(a.begin(), a.end()).find("\"dtype\":\"F16\""), std::string::npos) << name;
    EXPECT_EQ(a, b) << name;
  }
  KvSet f32 = MakeSet("f32", false);
  f32.tensors[1].data[0] = 70000.0f;
  WriteOptions raw32;
  raw32.k_codec = raw32.v_codec = CodecSpec::Parse("f32").value();
  ASSERT_TRUE(WriteKvSet(f32, dir.Path("big.mqkv"), FileFormat::kMqkv, raw32).ok());
  auto lazy = ReadKvSet(dir.Path("big.mqkv"), FileFormat::kMqkv, stream);
  ASSERT_TRUE(lazy.ok());
  WriteOptions o;
  o.dtype = "f16";
  const Status big = WriteKvSet(*lazy, dir.Path("big.safetensors"), FileFormat::kSafetensors, o);
  EXPECT_EQ(big.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(big.message().find("beyond f16's range"), std::string::npos) << big.ToString();
}

TEST(Adapters, SafetensorsDataIsEightByteAlignedAndWritesAreAtomic) {
  TempDir dir;
  const std::string p = dir.Path("x.safetensors");
  ASSERT_TRUE(WriteKvSet(MakeSet("f32", true), p, FileFormat::kSafetensors).ok());
  auto b = ReadFile(p);
  uint64_t n;
  std::memcpy(&n, b.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  // A failed write (unwritable set) leaves the previous file untouched and no temp files.
  KvSet bad = MakeSet("f32", false);
  bad.tensors[0].data.pop_back();
  EXPECT_FALSE(WriteKvSet(bad, p, FileFormat::kSafetensors).ok());
  EXPECT_EQ(ReadFile(p), b);
  size_t files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.dir())) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
}

TEST(Adapters, NpyRejectsSetsItCannotHold) {
  TempDir dir;
  Status s = WriteKvSet(MakeSet("f32", true), dir.Path("q.npy"), FileFormat::kNpy);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("query"), std::string::npos) << s.ToString();
  KvSet uneven = MakeSet("f32", false);
  uneven.tensors[1].desc.head_dim = 4;
  uneven.tensors[1].data.resize(uint64_t(kTokens) * kHeads * 4);
  s = WriteKvSet(uneven, dir.Path("u.npy"), FileFormat::kNpy);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("equal K/V shapes"), std::string::npos) << s.ToString();
}

// ---------------------------------------------------------------------------------------------
// Hugging Face past_key_values naming

TEST(Adapters, ReadsHuggingFacePastKeyValues) {
  TempDir dir;
  constexpr uint32_t H = 2, T = 3, D = 4;
  std::vector<float> k(H * T * D), v(H * T * D);
  for (uint32_t i = 0; i < k.size(); ++i) k[i] = float(i), v[i] = -float(i);
  std::vector<uint8_t> data(2 * k.size() * 4);
  std::memcpy(data.data(), k.data(), k.size() * 4);
  std::memcpy(data.data() + k.size() * 4, v.data(), v.size() * 4);
  const std::string nb = std::to_string(k.size() * 4);
  const std::string header = "{\"__metadata__\":{\"format\":\"pt\"},\"past_key_values.0.key\":{\"dtype\":\"F32\",\"shape\":[1,2,3,4],\"data_offsets\":[0," + nb +
                             "]},\"past_key_values.0.value\":{\"dtype\":\"F32\",\"shape\":[1,2,3,4],\"data_offsets\":[" + nb + "," +
                             std::to_string(2 * k.size() * 4) + "]}}";
  WriteFile(dir.Path("hf.safetensors"), Safetensors(header, data));
  auto got = ReadKvSet(dir.Path("hf.safetensors"), FileFormat::kSafetensors);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->tensors.size(), 2u);
  const KvTensor& gk = got->tensors[0];
  EXPECT_EQ(gk.desc.kind, Kind::kK);
  EXPECT_EQ(gk.desc.n_tokens, T);
  EXPECT_EQ(gk.desc.n_heads, H);
  EXPECT_EQ(gk.desc.head_dim, D);
  // [1, heads, tokens, dim] -> [tokens, heads, dim]
  for (uint32_t t = 0; t < T; ++t)
    for (uint32_t h = 0; h < H; ++h)
      for (uint32_t d = 0; d < D; ++d) {
        EXPECT_EQ(gk.data[(t * H + h) * D + d], k[(h * T + t) * D + d]);
        EXPECT_EQ(got->tensors[1].data[(t * H + h) * D + d], v[(h * T + t) * D + d]);
      }
  EXPECT_EQ(got->model.n_layer, 1u);
  EXPECT_EQ(got->model.n_head_kv, H);
  EXPECT_EQ(got->model.source_format, "safetensors");
  ASSERT_EQ(got->model.metadata.size(), 1u);
  EXPECT_EQ(got->model.metadata[0], (std::pair<std::string, std::string>{"format", "pt"}));

  // Batch 2 cannot be one snapshot.
  const std::string h2 = "{\"past_key_values.0.key\":{\"dtype\":\"F32\",\"shape\":[2,1,3,4],\"data_offsets\":[0," + nb + "]}}";
  std::vector<uint8_t> half(data.begin(), data.begin() + k.size() * 4);
  WriteFile(dir.Path("b2.safetensors"), Safetensors(h2, half));
  ExpectBad(dir.Path("b2.safetensors"), FileFormat::kSafetensors, StatusCode::kFormatError, "batch size is 2");
}

// ---------------------------------------------------------------------------------------------
// Token ranges

TEST(Adapters, TokenRangeMatchesSliceForEveryFormat) {
  TempDir dir;
  const KvSet set = MakeSet("f16", true, 20);
  KvSet want = set;
  ASSERT_TRUE(SliceTokens(&want, 5, 13).ok());
  EXPECT_EQ(want.model.tokens.size(), 8u);
  for (FileFormat f : {FileFormat::kMqkv, FileFormat::kSafetensors, FileFormat::kNpz}) {
    SCOPED_TRACE(FileFormatName(f));
    const std::string p = dir.Path(std::string("r.") + FileFormatName(f));
    WriteOptions wo;
    wo.k_codec = wo.v_codec = CodecSpec::Parse("f16").value();
    wo.writer.max_block_tokens = 4;
    ASSERT_TRUE(WriteKvSet(set, p, f, wo).ok());
    auto got = ReadKvSet(p, f, ReadOptions{std::make_pair(5u, 13u)});
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ExpectSameTensors(want, *got, true);
    EXPECT_EQ(Sorted(got->model), Sorted(want.model));
    auto bad = ReadKvSet(p, f, ReadOptions{std::make_pair(5u, 21u)});
    EXPECT_EQ(bad.status().code(), StatusCode::kOutOfRange) << bad.status().ToString();
    auto rev = ReadKvSet(p, f, ReadOptions{std::make_pair(6u, 5u)});
    EXPECT_EQ(rev.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(Adapters, MqkvTokenRangeReadsOnlyTheBlocksItNeeds) {
  TempDir dir;
  const KvSet set = MakeSet("f32", false, 16);
  const std::string p = dir.Path("blocks.mqkv");
  WriteOptions wo;
  wo.k_codec = wo.v_codec = CodecSpec::Parse("f32").value();
  wo.writer.max_block_tokens = 4;
  ASSERT_TRUE(WriteKvSet(set, p, FileFormat::kMqkv, wo).ok());
  // Corrupt the payload of every tensor's first block (rows 0..3).
  std::vector<uint8_t> bytes = ReadFile(p);
  {
    auto s = Snapshot::Open(p);
    ASSERT_TRUE(s.ok());
    for (const BlockInfo& b : (*s)->blocks())
      if (b.token_begin == 0) bytes[b.offset + kBlockHeaderBytes] ^= 0x40;
  }
  WriteFile(p, bytes);
  auto full = ReadKvSet(p, FileFormat::kMqkv);
  EXPECT_EQ(full.status().code(), StatusCode::kChecksumMismatch) << full.status().ToString();
  auto part = ReadKvSet(p, FileFormat::kMqkv, ReadOptions{std::make_pair(4u, 12u)});
  ASSERT_TRUE(part.ok()) << "a range outside the corrupt blocks must not touch them: " << part.status().ToString();
  KvSet want = set;
  ASSERT_TRUE(SliceTokens(&want, 4, 12).ok());
  ExpectSameTensors(want, *part, false);
}

// ---------------------------------------------------------------------------------------------
// Crafted bad files

TEST(AdapterErrors, Safetensors) {
  TempDir dir;
  const FileFormat F = FileFormat::kSafetensors;
  auto put = [&](const std::string& name, const std::vector<uint8_t>& b) {
    const std::string p = dir.Path(name + ".safetensors");
    WriteFile(p, b);
    return p;
  };
  const std::vector<uint8_t> d16(16, 0);
  const std::string ok_entry = "\"layers.0.k\":{\"dtype\":\"F32\",\"shape\":[1,1,4],\"data_offsets\":[0,16]}";
  ASSERT_TRUE(ReadStatus(put("ok", Safetensors("{" + ok_entry + "}", d16)), F).ok());

  ExpectBad(put("short", Bytes("abc")), F, StatusCode::kFormatError, "too small");
  {
    std::vector<uint8_t> b(16, 0);
    const uint64_t huge = 200'000'000;
    std::memcpy(b.data(), &huge, 8);
    ExpectBad(put("cap", b), F, StatusCode::kFormatError, "cap");
    const uint64_t past = 1000;
    std::memcpy(b.data(), &past, 8);
    ExpectBad(put("past", b), F, StatusCode::kFormatError, "runs past the end");
  }
  ExpectBad(put("notobj", Safetensors("[1]", {})), F, StatusCode::kFormatError, "does not start with '{'");
  ExpectBad(put("json", Safetensors("{" + ok_entry + ",}", d16)), F, StatusCode::kFormatError, "JSON");
  ExpectBad(put("dup", Safetensors("{" + ok_entry + "," + ok_entry + "}", d16)), F, StatusCode::kFormatError, "duplicate key");
  ExpectBad(put("oob", Safetensors("{\"layers.0.k\":{\"dtype\":\"F32\",\"shape\":[1,1,8],\"data_offsets\":[0,32]}}", d16)), F,
            StatusCode::kFormatError, "past the 16 data bytes");
  ExpectBad(put("overlap", Safetensors("{" + ok_entry + ",\"layers.0.v\":{\"dtype\":\"F32\",\"shape\":[1,1,2],\"data_offsets\":[8,16]}}", d16)), F,
            StatusCode::kFormatError, "overlap");
  ExpectBad(put("gap", Safetensors("{\"layers.0.k\":{\"dtype\":\"F32\",\"shape\":[1,1,2],\"data_offsets\":[8,16]}}", d16)), F,
            StatusCode::kFormatError, "gap");
  ExpectBad(put("reversed", Safetensors("{\"layers.0.k\":{\"dtype\":\"F32\",\"shape\":[0,1,1],\"data_offsets\":[0,0]},"
                                        "\"layers.0.v\":{\"dtype\":\"F32\",\"shape\":[1,1,4],\"data_offsets\":[16,0]}}",
                                        d16)),
            F, StatusCode::kFormatError, "data_offsets");
  ExpectBad(put("overflow", Safetensors("{\"layers.0.k\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,16]}}", d16)), F,
            StatusCode::kFormatError, "overflows");
  ExpectBad(put("size", Safetensors("{\"layers.0.k\":{\"dtype\":\"F32\",\"shape\":[1,1,3],\"data_offsets\":[0,16]}}", d16)), F,
            StatusCode::kFormatError, "need 12 bytes");
  std::vector<uint8_t> d20(20, 0);
  ExpectBad(put("trailing", Safetensors("{" + ok_entry + "}", d20)), F, StatusCode::kFormatError, "trailing bytes");
  ExpectBad(put("dtype", Safetensors("{\"layers.0.k\":{\"dtype\":\"U8\",\"shape\":[1,1,16],\"data_offsets\":[0,16]}}", d16)), F,
            StatusCode::kUnsupported, "U8");
  ExpectBad(put("name", Safetensors("{\"model.embed\":{\"dtype\":\"F32\",\"shape\":[1,1,4],\"data_offsets\":[0,16]}}", d16)), F,
            StatusCode::kFormatError, "unknown tensor name");
  ExpectBad(put("rank", Safetensors("{\"layers.0.k\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d16)), F,
            StatusCode::kFormatError, "3 dimensions");
  ExpectBad(put("meta", Safetensors("{\"__metadata__\":{\"mqkv.n_layer\":\"x\"}," + ok_entry + "}", d16)), F, StatusCode::kFormatError,
            "mqkv.n_layer");
  ExpectBad(put("utf8", Safetensors("{\"__metadata__\":{\"a\":\"\xff\"}," + ok_entry + "}", d16)), F, StatusCode::kFormatError, "UTF-8");
}

namespace {

std::vector<uint8_t> NpyBytes(const std::string& dict, const std::vector<uint8_t>& data, uint8_t major = 1) {
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', major, 0};
  const uint32_t n = static_cast<uint32_t>(dict.size());
  if (major == 1) out.push_back(uint8_t(n)), out.push_back(uint8_t(n >> 8));
  else for (int i = 0; i < 4; ++i) out.push_back(uint8_t(n >> (8 * i)));
  out.insert(out.end(), dict.begin(), dict.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

uint32_t Crc32(const std::vector<uint8_t>& b) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t x : b) {
    c ^= x;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

// A minimal stored zip, written independently of the library's writer.
std::vector<uint8_t> ZipStored(const std::vector<std::pair<std::string, std::vector<uint8_t>>>& members) {
  std::vector<uint8_t> out, cd;
  auto p16 = [](std::vector<uint8_t>& v, uint32_t x) { v.push_back(uint8_t(x)), v.push_back(uint8_t(x >> 8)); };
  auto p32 = [&](std::vector<uint8_t>& v, uint32_t x) { p16(v, x & 0xFFFF), p16(v, x >> 16); };
  for (const auto& [name, data] : members) {
    const uint32_t off = static_cast<uint32_t>(out.size()), crc = Crc32(data), n = static_cast<uint32_t>(data.size());
    p32(out, 0x04034b50), p16(out, 20), p16(out, 0), p16(out, 0), p16(out, 0), p16(out, 0x21), p32(out, crc), p32(out, n), p32(out, n);
    p16(out, static_cast<uint32_t>(name.size())), p16(out, 0);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), data.begin(), data.end());
    p32(cd, 0x02014b50), p16(cd, 20), p16(cd, 20), p16(cd, 0), p16(cd, 0), p16(cd, 0), p16(cd, 0x21), p32(cd, crc), p32(cd, n), p32(cd, n);
    p16(cd, static_cast<uint32_t>(name.size())), p16(cd, 0), p16(cd, 0), p16(cd, 0), p16(cd, 0), p32(cd, 0), p32(cd, off);
    cd.insert(cd.end(), name.begin(), name.end());
  }
  const uint32_t cd_off = static_cast<uint32_t>(out.size()), cd_size = static_cast<uint32_t>(cd.size());
  out.insert(out.end(), cd.begin(), cd.end());
  p32(out, 0x06054b50), p16(out, 0), p16(out, 0), p16(out, static_cast<uint32_t>(members.size())), p16(out, static_cast<uint32_t>(members.size()));
  p32(out, cd_size), p32(out, cd_off), p16(out, 0);
  return out;
}

}  // namespace

TEST(AdapterErrors, NpzMembers) {
  TempDir dir;
  const FileFormat F = FileFormat::kNpz;
  auto put = [&](const std::string& name, const std::vector<uint8_t>& b) {
    const std::string p = dir.Path(name + ".npz");
    WriteFile(p, b);
    return p;
  };
  const std::vector<uint8_t> k = NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 2), }\n", std::vector<uint8_t>(8));
  const auto ok = put("ok", ZipStored({{"layers.0.k.npy", k}, {"layers.0.v.npy", k}}));
  auto r = ReadKvSet(ok, F);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tensors.size(), 2u);
  EXPECT_EQ(r->model.source_format, "npz");
  const std::vector<uint8_t> fortran = NpyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 1, 2), }\n", std::vector<uint8_t>(8));
  ExpectBad(put("fortran", ZipStored({{"layers.0.k.npy", fortran}})), F, StatusCode::kUnsupported, "zip member \"layers.0.k.npy\"");
  const std::vector<uint8_t> garbage = NpyBytes("{'descr': '<f4', 'shape': [1]}\n", std::vector<uint8_t>(4));
  ExpectBad(put("header", ZipStored({{"layers.0.k.npy", garbage}})), F, StatusCode::kFormatError, "of the member: npy header");
  ExpectBad(put("dup", ZipStored({{"layers.0.k.npy", k}, {"layers.0.k.npy", k}})), F, StatusCode::kFormatError, "appears twice");
  ExpectBad(put("unknown", ZipStored({{"weights.npy", k}})), F, StatusCode::kFormatError, "unknown tensor name");
  ExpectBad(put("strings", ZipStored({{"layers.0.k.npy", NpyBytes("{'descr': '<U2', 'fortran_order': False, 'shape': (1,), }\n", std::vector<uint8_t>(8))}})),
            F, StatusCode::kFormatError, "holds strings");
  ExpectBad(put("qpos", ZipStored({{"layers.0.k.npy", k}, {"layers.0.q.npy", k}})), F, StatusCode::kFormatError, "q_positions");
}

TEST(AdapterErrors, Npy) {
  TempDir dir;
  const FileFormat F = FileFormat::kNpy;
  auto put = [&](const std::string& name, const std::vector<uint8_t>& b) {
    const std::string p = dir.Path(name + ".npy");
    WriteFile(p, b);
    return p;
  };
  const std::vector<uint8_t> d(1 * 2 * 1 * 1 * 2 * 4, 0);
  ASSERT_TRUE(ReadStatus(put("ok", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 1, 1, 2), }\n", d)), F).ok());
  ASSERT_TRUE(ReadStatus(put("v2", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 1, 1, 2), }\n", d, 2)), F).ok());
  ASSERT_TRUE(ReadStatus(put("v3", NpyBytes("{\"descr\": \">f4\", \"fortran_order\": False, \"shape\": (1, 2, 1, 1, 2)}\n", d, 3)), F).ok());

  ExpectBad(put("magic", Bytes("NUMPY not really")), F, StatusCode::kFormatError, "magic");
  ExpectBad(put("version", NpyBytes("{}", {}, 4)), F, StatusCode::kUnsupported, "version 4.0");
  ExpectBad(put("hlen", std::vector<uint8_t>{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xFF, 0xFF, '{'}), F, StatusCode::kFormatError, "runs past the end");
  ExpectBad(put("garbage", NpyBytes("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}\n", d)), F, StatusCode::kFormatError, "True or False");
  ExpectBad(put("keys", NpyBytes("{'descr': '<f4', 'shape': (1,)}\n", d)), F, StatusCode::kFormatError, "lacks");
  ExpectBad(put("fortran", NpyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2, 1, 1, 2), }\n", d)), F, StatusCode::kUnsupported,
            "fortran_order");
  ExpectBad(put("dtype", NpyBytes("{'descr': '<c8', 'fortran_order': False, 'shape': (1, 2, 1, 1, 1), }\n", d)), F, StatusCode::kUnsupported, "<c8");
  ExpectBad(put("size", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 1, 1, 3), }\n", d)), F, StatusCode::kFormatError,
            "need 24 data bytes");
  ExpectBad(put("overflow", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 2, 4294967296, 1, 2), }\n", d)), F,
            StatusCode::kFormatError, "overflows");
  ExpectBad(put("rank", NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n", std::vector<uint8_t>(16))), F, StatusCode::kFormatError,
            "[n_layers, 2 (k, v)");
}

TEST(AdapterErrors, Npz) {
  TempDir dir;
  const FileFormat F = FileFormat::kNpz;
  const std::string good = dir.Path("good.npz");
  ASSERT_TRUE(WriteKvSet(MakeSet("f32", true), good, F).ok());
  const std::vector<uint8_t> b = ReadFile(good);
  auto put = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string p = dir.Path(name + ".npz");
    WriteFile(p, bytes);
    return p;
  };
  ExpectBad(put("trunc", std::vector<uint8_t>(b.begin(), b.begin() + b.size() / 2)), F, StatusCode::kFormatError, "end-of-central-directory");
  ExpectBad(put("tiny", Bytes("PK\x03\x04")), F, StatusCode::kFormatError, "too short");
  // Flip one byte of the last member's data (the central directory is after it): CRC mismatch.
  {
    std::vector<uint8_t> c = b;
    uint32_t cd_off;
    std::memcpy(&cd_off, c.data() + c.size() - 22 + 16, 4);
    c[cd_off - 1] ^= 1;
    ExpectBad(put("crc", c), F, StatusCode::kChecksumMismatch, "CRC-32");
  }
  // Central directory pointing past the end of the file.
  {
    std::vector<uint8_t> c = b;
    const uint32_t bad = 0x7FFFFFFF;
    std::memcpy(c.data() + c.size() - 22 + 16, &bad, 4);
    ExpectBad(put("cdoff", c), F, StatusCode::kFormatError, "outside");
  }
  // A member claiming far more bytes than the file holds.
  {
    std::vector<uint8_t> c = b;
    uint32_t cd_off;
    std::memcpy(&cd_off, c.data() + c.size() - 22 + 16, 4);
    const uint32_t big = 0x7FFFFFF0;
    std::memcpy(c.data() + cd_off + 20, &big, 4);
    std::memcpy(c.data() + cd_off + 24, &big, 4);
    ExpectBad(put("size", c), F, StatusCode::kFormatError, "run past the end");
  }
  // A deflated member claiming an impossible ratio.
  {
    std::vector<uint8_t> c = b;
    uint32_t cd_off;
    std::memcpy(&cd_off, c.data() + c.size() - 22 + 16, 4);
    const uint16_t deflate = 8;
    const uint32_t big = 0x7FFFFFF0;
    std::memcpy(c.data() + cd_off + 10, &deflate, 2);
    std::memcpy(c.data() + cd_off + 24, &big, 4);
    ExpectBad(put("bomb", c), F, StatusCode::kFormatError, "more than deflate can produce");
  }
  // A member that is not .npy.
  {
    std::vector<uint8_t> c = b;
    const std::string name = "__metadata__.npy";
    for (size_t i = 0; i + name.size() <= c.size(); ++i)
      if (std::memcmp(c.data() + i, name.data(), name.size()) == 0) c[i + name.size() - 1] = 'x';
    ExpectBad(put("member", c), F, StatusCode::kFormatError, "not a .npy array");
  }
  // A fortran-order array inside an npz.
  {
    std::vector<uint8_t> c = b;
    const std::string f = "'fortran_order': False";
    const std::string t = "'fortran_order': True ";
    size_t hits = 0;
    for (size_t i = 0; i + f.size() <= c.size(); ++i)
      if (std::memcmp(c.data() + i, f.data(), f.size()) == 0) std::memcpy(c.data() + i, t.data(), t.size()), ++hits;
    ASSERT_GT(hits, 0u);
    // CRCs now mismatch first; that is also a clean error.
    Status s = ReadStatus(put("fortran", c), F);
    EXPECT_FALSE(s.ok());
  }
}

TEST(AdapterErrors, TruncatedOrDamagedFilesNeverCrash) {
  TempDir dir;
  const KvSet set = MakeSet("f16", true);
  for (FileFormat f : {FileFormat::kSafetensors, FileFormat::kNpy, FileFormat::kNpz}) {
    const std::string p = dir.Path(std::string("full.") + FileFormatName(f));
    KvSet s = set;
    if (f == FileFormat::kNpy) s.tensors.pop_back();
    ASSERT_TRUE(WriteKvSet(s, p, f).ok());
    const std::vector<uint8_t> b = ReadFile(p);
    // Every cut inside the headers, then 40 spread over the rest.
    for (size_t cut = 0; cut < b.size(); cut += cut < 96 ? 1 : std::max<size_t>(1, b.size() / 40)) {
      const std::string q = dir.Path("cut");
      WriteFile(q, std::vector<uint8_t>(b.begin(), b.begin() + cut));
      EXPECT_FALSE(ReadStatus(q, f).ok()) << FileFormatName(f) << " cut at " << cut;
    }
    // Random byte damage (deterministic): any outcome but a crash is fine; under
    // MQKV_SANITIZE this also proves no out-of-bounds read.
    std::mt19937 rng(1234);
    for (int round = 0; round < 150; ++round) {
      std::vector<uint8_t> c = b;
      const size_t flips = 1 + rng() % 4;
      for (size_t i = 0; i < flips; ++i) {
        // Bias towards the first and last 512 bytes (headers, zip directory), where the parsers live.
        const size_t w = std::min<size_t>(c.size(), 512), region = rng() % 3;
        const size_t at = region == 0 ? rng() % w : region == 1 ? c.size() - 1 - rng() % w : rng() % c.size();
        c[at] = static_cast<uint8_t>(rng());
      }
      const std::string q = dir.Path("damaged");
      WriteFile(q, c);
      (void)ReadStatus(q, f);
    }
  }
}

TEST(Json, StrictParser) {
  auto ok = [](const char* t) { return json::Parse(t).ok(); };
  EXPECT_TRUE(ok("{\"a\":[1,-2.5e3,true,false,null,\"\\u00e9\\ud83d\\ude00\"]}"));
  EXPECT_FALSE(ok("{\"a\":1,}"));
  EXPECT_FALSE(ok("{\"a\":01}"));
  EXPECT_FALSE(ok("{\"a\":1} x"));
  EXPECT_FALSE(ok("{\"a\":\"\\ud83d\"}"));
  EXPECT_FALSE(ok("{'a':1}"));
  EXPECT_FALSE(ok("{\"a\":\"\x01\"}"));
  EXPECT_FALSE(ok(std::string(200, '[').c_str()));
  auto v = json::Parse("{\"s\":\"\\u00e9\\ud83d\\ude00\",\"n\":18446744073709551615,\"m\":18446744073709551616}");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->Find("s")->text, "\xc3\xa9\xf0\x9f\x98\x80");
  uint64_t x = 0;
  EXPECT_TRUE(v->Find("n")->AsUint64(&x));
  EXPECT_EQ(x, UINT64_MAX);
  EXPECT_FALSE(v->Find("m")->AsUint64(&x));
  EXPECT_TRUE(json::ValidUtf8("h\xc3\xa9"));
  EXPECT_FALSE(json::ValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(json::ValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(json::ValidUtf8("\xe2\x82"));          // truncated
}

// ---------------------------------------------------------------------------------------------
// numpy interop (skipped without numpy)

TEST(NumpyInterop, NumpyReadsOursAndWeReadNumpys) {
  const char* py = PythonWithNumpy();
  if (!py) GTEST_SKIP() << "python3 with numpy not found (set MQKV_PYTHON to an interpreter that has it)";
  TempDir dir;
  const KvSet set = MakeSet("f16", true);
  KvSet kv_only = set;
  kv_only.tensors.pop_back();
  ASSERT_TRUE(WriteKvSet(set, dir.Path("ours.npz"), FileFormat::kNpz).ok());
  ASSERT_TRUE(WriteKvSet(kv_only, dir.Path("ours.npy"), FileFormat::kNpy).ok());
  // numpy loads ours (no pickle), checks one value bit for bit, and writes stored and
  // deflated npz files plus a big-endian npy from them.
  const std::string script = dir.Path("t.py");
  {
    std::ofstream s(script);
    s << "import numpy as np, sys\n"
         "d = sys.argv[1]\n"
         "z = np.load(d + '/ours.npz', allow_pickle=False)\n"
         "a = np.load(d + '/ours.npy', allow_pickle=False)\n"
         "assert a.dtype == np.float16 and a.shape == (2, 2, 6, 2, 8), (a.dtype, a.shape)\n"
         "k0 = z['layers.0.k']\n"
         "assert k0.dtype == np.float16 and k0.shape == (6, 2, 8)\n"
         "assert np.array_equal(a[0, 0], k0, equal_nan=True)\n"
         "assert np.array_equal(a[1, 1], z['layers.1.v'], equal_nan=True)\n"
         "assert z['tokens'].dtype == np.int32 and list(z['tokens']) == list(range(100, 106))\n"
         "meta = dict(z['__metadata__'].tolist())\n"
         "assert meta['mqkv.architecture'] == 'llama' and meta['meta.unicode'] == 'h\\u00e9llo \\u20ac', meta\n"
         "arrs = {k: z[k] for k in z.files}\n"
         "np.savez(d + '/np_stored.npz', **arrs)\n"
         "np.savez_compressed(d + '/np_deflated.npz', **arrs)\n"
         "np.save(d + '/np_be.npy', a.astype('>f4'))\n";
  }
  const std::string cmd = std::string(py) + " " + script + " " + dir.dir().string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "numpy side failed: " << cmd;
  for (const char* name : {"np_stored.npz", "np_deflated.npz"}) {
    SCOPED_TRACE(name);
    auto got = ReadKvSet(dir.Path(name), FileFormat::kNpz);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ExpectSameTensors(set, *got, true);
    EXPECT_EQ(Sorted(got->model), Sorted(set.model));
  }
  auto be = ReadKvSet(dir.Path("np_be.npy"), FileFormat::kNpy);
  ASSERT_TRUE(be.ok()) << be.status().ToString();
  ExpectSameTensors(kv_only, *be, false);
}
