// Accounting, fidelity and backend agreement (spec/MEASURE.md).
#include <gtest/gtest.h>

#include <cmath>

#include "mqkv/mqkv.h"
#include "support.h"

using namespace mqkv;
using mqkv::testing::TempDir;

namespace {

constexpr uint32_t kHeads = 2, kDim = 16;

ModelInfo Model(uint32_t layers, uint32_t n_tokens) {
  ModelInfo m;
  m.architecture = "llama";
  m.n_layer = layers;
  m.n_head = 4;
  m.n_head_kv = kHeads;
  m.head_dim_k = m.head_dim_v = kDim;
  for (uint32_t i = 0; i < n_tokens; ++i) m.tokens.push_back(int32_t(i));
  return m;
}

// A KvSet of `layers` K/V tensors of random rows (rounded to f16 when `f16_exact`).
KvSet MakeSet(uint32_t layers, uint32_t n_tokens, uint32_t seed) {
  KvSet set;
  set.model = Model(layers, n_tokens);
  for (uint32_t l = 0; l < layers; ++l)
    for (Kind k : {Kind::kK, Kind::kV}) {
      KvTensor t;
      t.desc.layer = l;
      t.desc.kind = k;
      t.desc.n_heads = kHeads;
      t.desc.head_dim = kDim;
      t.desc.n_tokens = n_tokens;
      t.data = mqkv::testing::RandomRows(uint64_t(n_tokens) * kHeads * kDim, seed + 10 * l + uint32_t(k));
      set.tensors.push_back(std::move(t));
    }
  return set;
}

void AddQueries(KvSet* set, uint32_t n_q, std::vector<int32_t> positions, uint32_t seed) {
  for (uint32_t l = 0; l < set->model.n_layer; ++l) {
    KvTensor q;
    q.desc.layer = l;
    q.desc.kind = Kind::kQ;
    q.desc.n_heads = n_q;
    q.desc.head_dim = kDim;
    q.desc.n_tokens = uint32_t(positions.size());
    q.desc.positions = positions;
    q.data = mqkv::testing::RandomRows(uint64_t(positions.size()) * n_q * kDim, seed + l);
    set->tensors.push_back(std::move(q));
  }
}

void Write(const KvSet& set, const std::string& path, const char* codec, WriterOptions wo = {}) {
  WriteOptions o;
  o.k_codec = o.v_codec = CodecSpec::Parse(codec).value();
  o.writer = wo;
  o.writer.fsync = false;
  Status s = WriteKvSet(set, path, FileFormat::kMqkv, o);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

std::unique_ptr<Snapshot> Open(const std::string& path) {
  auto s = Snapshot::Open(path);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

}  // namespace

TEST(Accounting, BreakdownAddsUpToFileSizeForRawCodecs) {
  TempDir dir;
  const KvSet set = MakeSet(3, 37, 1);
  for (const char* codec : {"f32", "f16", "bf16"}) {
    for (uint32_t max_block : {0u, 8u}) {
      const std::string path = dir.Path(std::string(codec) + std::to_string(max_block) + ".mqkv");
      Write(set, path, codec, {.max_block_tokens = max_block});
      auto s = Open(path);
      ASSERT_TRUE(s);
      auto acc = AccountSnapshot(*s);
      ASSERT_TRUE(acc.ok()) << acc.status().ToString();
      const uint64_t file = std::filesystem::file_size(path);
      EXPECT_EQ(acc->file_bytes, file);
      EXPECT_EQ(acc->query_tensors, 0u);
      EXPECT_EQ(acc->total.stored_bytes, file);
      EXPECT_EQ(acc->total.breakdown.Sum(), int64_t(file));
      const uint64_t elem = std::string(codec) == "f32" ? 4 : 2;
      const uint64_t blocks_per_tensor = max_block ? (37 + max_block - 1) / max_block : 1;
      uint64_t tensor_bytes = 0;
      for (const TensorAccounting& t : acc->tensors) {
        EXPECT_EQ(t.values, 37u * kHeads * kDim);
        EXPECT_EQ(t.breakdown.Sum(), int64_t(t.stored_bytes));
        EXPECT_EQ(t.breakdown.codes, t.values * elem);
        EXPECT_EQ(t.breakdown.block_headers, 128 * blocks_per_tensor);
        EXPECT_EQ(t.n_blocks, blocks_per_tensor);
        EXPECT_EQ(t.stored_bytes % 64, 0u) << "blocks are 64-aligned";
        // Raw codecs: modeled bits are exactly the code bits; actual - modeled is the overhead.
        EXPECT_EQ(t.modeled_bits, 8.0 * double(t.breakdown.codes));
        EXPECT_EQ(t.modeled_bits_per_dim(), double(elem * 8));
        EXPECT_EQ(8.0 * double(t.stored_bytes) - t.modeled_bits, 8.0 * double(t.breakdown.Overhead()));
        EXPECT_TRUE(t.explained());
        EXPECT_EQ(t.breakdown.group_meta + t.breakdown.shared_ranges + t.breakdown.fp16_rows + t.breakdown.codebook, 0u);
        EXPECT_EQ(t.breakdown.footer_index, 0u);
        tensor_bytes += t.stored_bytes;
      }
      EXPECT_EQ(acc->total.breakdown.footer_index, 64 + s->footer_bytes() + 48);
      EXPECT_EQ(tensor_bytes + acc->total.breakdown.footer_index, file);
      EXPECT_EQ(8.0 * double(acc->total.stored_bytes) - acc->total.modeled_bits, 8.0 * double(acc->total.breakdown.Overhead()));
      EXPECT_TRUE(acc->total.explained());
    }
  }
}

TEST(Accounting, QueriesAreReportedSeparately) {
  TempDir dir;
  KvSet set = MakeSet(2, 20, 3);
  AddQueries(&set, 4, {4, 9, 19}, 50);
  const std::string path = dir.Path("q.mqkv");
  Write(set, path, "f16");
  auto s = Open(path);
  ASSERT_TRUE(s);
  auto acc = AccountSnapshot(*s);
  ASSERT_TRUE(acc.ok()) << acc.status().ToString();
  EXPECT_EQ(acc->query_tensors, 2u);
  EXPECT_EQ(acc->query_values, 2u * 3 * 4 * kDim);
  EXPECT_GT(acc->query_bytes, 0u);
  EXPECT_EQ(acc->total.stored_bytes + acc->query_bytes, acc->file_bytes);
  EXPECT_EQ(acc->total.values, 4u * 20 * kHeads * kDim);
  EXPECT_EQ(acc->total.modeled_bits, 16.0 * double(acc->total.values));
}

TEST(Accounting, ZstdSavingsAreNegativeEntropyCoding) {
  TempDir dir;
  KvSet set = MakeSet(1, 64, 5);
  for (KvTensor& t : set.tensors)
    for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = float(i % 4);  // very compressible
  const std::string path = dir.Path("z.mqkv");
  Write(set, path, "f32", {.zstd_level = 3});
  auto s = Open(path);
  ASSERT_TRUE(s);
  auto acc = AccountSnapshot(*s);
  ASSERT_TRUE(acc.ok());
  EXPECT_LT(acc->total.breakdown.entropy_coding, 0);
  EXPECT_EQ(acc->total.breakdown.Sum(), int64_t(acc->file_bytes));
  EXPECT_LT(acc->total.actual_bits_per_dim(), acc->total.modeled_bits_per_dim());
  EXPECT_TRUE(acc->total.explained());
}

TEST(Attention, HandComputedCase) {
  // q = (1, 0); keys (1, 0), (0, 1); scores 1/sqrt(2), 0; values (1, 2), (3, 4).
  const double q[2] = {1, 0}, k[4] = {1, 0, 0, 1}, v[4] = {1, 2, 3, 4};
  std::vector<double> w, o;
  CausalAttention(q, k, v, 2, 2, 2, &w, &o);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NEAR(w[0], 0.6697615493266569, 1e-15);
  EXPECT_NEAR(w[1], 0.3302384506733431, 1e-15);
  EXPECT_NEAR(o[0], 1.6604769013466862, 1e-14);
  EXPECT_NEAR(o[1], 2.6604769013466862, 1e-14);
  // Causal prefix of one key: all weight on it.
  CausalAttention(q, k, v, 1, 2, 2, &w, &o);
  EXPECT_EQ(w, std::vector<double>{1.0});
  EXPECT_EQ(o, (std::vector<double>{1.0, 2.0}));
  const double a[3] = {1, 2, 3}, b[3] = {-1, -2, -3}, z[3] = {0, 0, 0};
  EXPECT_EQ(Cosine(a, a, 3), 1.0);
  EXPECT_EQ(Cosine(a, b, 3), -1.0);
  EXPECT_EQ(Cosine(z, z, 3), 1.0);
  EXPECT_EQ(Cosine(a, z, 3), 0.0);
}

TEST(Fidelity, RawF32AgainstItselfIsExact) {
  TempDir dir;
  const KvSet set = MakeSet(2, 384, 7);
  const std::string path = dir.Path("f32.mqkv");
  Write(set, path, "f32");
  auto dec = ReadKvSet(path, FileFormat::kMqkv);
  ASSERT_TRUE(dec.ok());
  auto f = MeasureFidelity(*dec, set);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->total.rel_mse(), 0.0);
  EXPECT_EQ(f->total.mean_cosine(), 1.0);
  EXPECT_EQ(f->total.cos_min, 1.0);
  ASSERT_EQ(f->tensors.size(), 4u);
  EXPECT_EQ(f->queries, "proxy:reference-key");
  ASSERT_EQ(f->layers.size(), 2u);
  EXPECT_EQ(f->layers[0].positions, (std::vector<uint32_t>{95, 191, 287, 383}));
  EXPECT_EQ(f->attention.cases, 2u * 4 * kHeads);
  EXPECT_EQ(f->attention.mean_output_cosine(), 1.0);
  EXPECT_EQ(f->attention.out_cos_min, 1.0);
  EXPECT_EQ(f->attention.score_cos_min, 1.0);
}

TEST(Fidelity, F16AgainstF32ReferenceIsClose) {
  TempDir dir;
  KvSet set = MakeSet(2, 100, 11);
  AddQueries(&set, 4, {10, 50, 99}, 70);
  const std::string path = dir.Path("f16.mqkv");
  Write(set, path, "f16");
  auto dec = ReadKvSet(path, FileFormat::kMqkv);
  ASSERT_TRUE(dec.ok());
  auto f = MeasureFidelity(*dec, set);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  // f16 rounding: relative error <= 2^-11 per element, so relative MSE < 2^-22.
  EXPECT_GT(f->total.rel_mse(), 0.0);
  EXPECT_LT(f->total.rel_mse(), std::ldexp(1.0, -22));
  EXPECT_GT(f->total.mean_cosine(), 0.999999);
  EXPECT_LT(f->total.mean_cosine(), 1.0 + 1e-15);
  EXPECT_EQ(f->queries, "reference");
  EXPECT_EQ(f->attention.cases, 2u * 3 * 4);  // layers x query rows x query heads
  EXPECT_EQ(f->layers[0].positions, (std::vector<uint32_t>{10, 50, 99}));
  EXPECT_GT(f->attention.out_cos_min, 0.9999);
  EXPECT_GT(f->attention.score_cos_min, 0.9999);
  // Without queries in the reference, the file's own (f32) queries are used.
  KvSet no_q = set;
  no_q.tensors.resize(4);
  auto g = MeasureFidelity(*dec, no_q);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->queries, "file");
}

TEST(Fidelity, GroupedQueryHeadsMapToKvHeadByDivision) {
  // 4 query heads over 2 KV heads: query head h reads KV head h / 2. Only KV head 1 of the
  // decoded keys is altered and only query heads 0 and 2 are non-zero, so exactly query head 2
  // sees different scores (a modulo mapping would route head 2 to the unaltered KV head 0).
  KvSet ref = MakeSet(1, 16, 21);
  AddQueries(&ref, 4, {15}, 80);
  KvTensor& q = ref.tensors[2];
  for (uint32_t h : {1u, 3u})
    for (uint32_t i = 0; i < kDim; ++i) q.data[h * kDim + i] = 0.0f;
  KvSet dec = ref;
  KvTensor& k = dec.tensors[0];
  for (uint32_t t = 0; t < 16; ++t)
    for (uint32_t i = 0; i < kDim; ++i) k.data[(t * kHeads + 1) * kDim + i] *= (t % 2 ? 1.5f : 0.5f);
  auto f = MeasureFidelity(dec, ref);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_EQ(f->attention.cases, 4u);
  EXPECT_LT(f->attention.score_cos_min, 0.9999);
  // Three cases are exact; their cosines are exactly 1.
  EXPECT_NEAR(f->attention.score_cos_sum - f->attention.score_cos_min, 3.0, 1e-12);
}

TEST(Fidelity, MismatchedReferenceIsAnError) {
  const KvSet a = MakeSet(1, 10, 1);
  KvSet b = MakeSet(1, 12, 1);
  auto f = MeasureFidelity(a, b);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kFormatError);
  EXPECT_NE(f.status().message().find("layer 0 k"), std::string::npos) << f.status().message();
  b.tensors.clear();
  EXPECT_FALSE(MeasureFidelity(a, b).ok());
  FidelityOptions bad;
  bad.positions = {0.0};
  EXPECT_EQ(MeasureFidelity(a, a, bad).status().code(), StatusCode::kInvalidArgument);
}

TEST(Backends, ScalarIsAlwaysAvailableAndOthersAgree) {
  TempDir dir;
  const KvSet set = MakeSet(2, 33, 9);
  const std::string path = dir.Path("b.mqkv");
  Write(set, path, "bf16", {.max_block_tokens = 16});
  auto s = Open(path);
  ASSERT_TRUE(s);
  EXPECT_TRUE(BackendAvailable(Backend::kScalar));
  auto reps = CompareBackends(*s, {Backend::kSimd, Backend::kCuda});
  ASSERT_TRUE(reps.ok()) << reps.status().ToString();
  ASSERT_EQ(reps->size(), 3u);
  EXPECT_EQ((*reps)[0].backend, Backend::kScalar);
  for (const BackendReport& r : *reps) {
    EXPECT_EQ(r.available, BackendAvailable(r.backend));
    if (!r.available) continue;
    EXPECT_EQ(r.blocks + r.no_path, s->blocks().size());
    EXPECT_TRUE(r.agrees()) << BackendName(r.backend) << ": " << r.first_problem;
  }
  EXPECT_FALSE(CompareBackends(*s, {Backend::kAuto}).ok());
}

// Issue 13, debt 1: agreement is counted only on blocks a backend really decoded. Raw blocks have
// no SIMD kernel (the dispatcher serves them with the scalar reference), affine blocks do.
TEST(Backends, CountsOnlyBlocksTheBackendServed) {
  TempDir dir;
  const KvSet set = MakeSet(2, 33, 11);
  const std::string path = dir.Path("mixed.mqkv");
  WriteOptions o;
  o.k_codec = CodecSpec::Parse("f32").value();  // 2 layers x 3 blocks of K: no SIMD path
  o.v_codec = CodecSpec::Parse("affine:bits=3,group=16").value();
  o.writer.max_block_tokens = 16;
  o.writer.fsync = false;
  ASSERT_TRUE(WriteKvSet(set, path, FileFormat::kMqkv, o).ok());
  auto s = Open(path);
  ASSERT_TRUE(s);
  ASSERT_EQ(s->blocks().size(), 12u);

  // The dispatcher says who served a decode.
  for (size_t b = 0; b < s->blocks().size(); ++b) {
    auto data = s->ReadBlock(b);
    ASSERT_TRUE(data.ok());
    const BlockHeader& h = *data->view.header;
    std::vector<float> out(uint64_t(h.n_tokens) * h.n_heads * h.head_dim);
    Backend served = Backend::kAuto;
    ASSERT_TRUE(GetCodec(h.codec)->Decode(data->view, 0, h.n_tokens, DType::kF32, out.data(), Backend::kScalar, &served).ok());
    EXPECT_EQ(served, Backend::kScalar);
    ASSERT_TRUE(GetCodec(h.codec)->Decode(data->view, 0, h.n_tokens, DType::kF32, out.data(), Backend::kAuto, &served).ok());
    const bool raw = h.codec == static_cast<uint8_t>(CodecId::kF32);
    EXPECT_EQ(served, raw || !BackendAvailable(Backend::kSimd) ? Backend::kScalar : Backend::kSimd) << "block " << b;
  }

  auto reps = CompareBackends(*s, {Backend::kSimd});
  ASSERT_TRUE(reps.ok()) << reps.status().ToString();
  ASSERT_EQ(reps->size(), 2u);
  EXPECT_EQ((*reps)[0].blocks, 12u);  // the reference decodes everything
  const BackendReport& simd = (*reps)[1];
  if (!BackendAvailable(Backend::kSimd)) GTEST_SKIP() << "no SIMD ISA on this machine";
  EXPECT_TRUE(simd.agrees()) << simd.first_problem;
  EXPECT_EQ(simd.blocks, 6u);   // the affine V blocks
  EXPECT_EQ(simd.no_path, 6u);  // the f32 K blocks
  EXPECT_NE(simd.no_path_what.find("f32 raw -> f32, f16"), std::string::npos) << simd.no_path_what;
}

// The honesty claim of issue 3 on a real low-bit snapshot: >= 1,000,000 values of
// affine_seven_level_3bit_g64_meta4; actual exceeds modeled by no more than the listed
// headers + index + padding + codebook, and by under 0.5 %.
TEST(Accounting, AffinePresetExcessIsOnlyListedOverheadAndUnderHalfPercent) {
  if (GetCodec(CodecId::kAffine) == nullptr) GTEST_SKIP() << "the affine codec is not in this build yet";
  auto spec = CodecSpec::Parse("affine_seven_level_3bit_g64_meta4");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  constexpr uint32_t kLayers = 30, kH = 3, kD = 64, kT = 1024;
  TempDir dir;
  const std::string path = dir.Path("affine.mqkv");
  {
    auto w = Writer::Create(path, {.fsync = false});
    ASSERT_TRUE(w.ok());
    ModelInfo m;
    m.n_layer = kLayers;
    m.n_head = m.n_head_kv = kH;
    m.head_dim_k = m.head_dim_v = kD;
    (*w)->SetModel(m);
    const std::vector<float> rows = mqkv::testing::RandomRows(uint64_t(kT) * kH * kD, 99);
    for (uint32_t l = 0; l < kLayers; ++l)
      for (Kind k : {Kind::kK, Kind::kV}) {
        TensorDesc d;
        d.layer = l;
        d.kind = k;
        d.n_heads = kH;
        d.head_dim = kD;
        d.n_tokens = kT;
        Status st = (*w)->AddTensor(d, rows.data(), *spec);
        ASSERT_TRUE(st.ok()) << st.ToString();
      }
    ASSERT_TRUE((*w)->Finish().ok());
  }
  auto s = Open(path);
  ASSERT_TRUE(s);
  auto acc = AccountSnapshot(*s);
  ASSERT_TRUE(acc.ok()) << acc.status().ToString();
  const TensorAccounting& t = acc->total;
  ASSERT_GE(t.values, 1000000u);
  EXPECT_EQ(t.breakdown.Sum(), int64_t(acc->file_bytes));
  const double excess_bits = 8.0 * double(t.stored_bytes) - t.modeled_bits;
  const Breakdown& b = t.breakdown;
  const double listed = 8.0 * double(b.block_headers + b.footer_index + b.padding + b.codebook);
  EXPECT_GE(excess_bits, 0.0);
  EXPECT_LE(excess_bits, listed) << "modeled " << t.modeled_bits_per_dim() << " actual " << t.actual_bits_per_dim();
  EXPECT_LT(t.excess_percent(), 0.5);
  // The seed's formula at d = 64, L = 1024: 3 + 8/64 + 1/L bits per value.
  EXPECT_NEAR(t.modeled_bits_per_dim(), 3.0 + 8.0 / 64 + 1.0 / kT, 1e-9);
  for (const TensorAccounting& ta : acc->tensors) EXPECT_TRUE(ta.explained()) << "layer " << ta.layer;
}

// Meta-coded fields of an odd number of groups end mid-byte: 15 groups of 4-bit scale codes take
// 7.5 bytes, stored as 8. Those sub-byte tails sit inside group_meta and are bounded by the
// tail allowance, so a correct file is still "explained".
TEST(Accounting, SubByteStreamTailsAreWithinTheAllowance) {
  if (GetCodec(CodecId::kAffine) == nullptr) GTEST_SKIP() << "the affine codec is not in this build yet";
  auto spec = CodecSpec::Parse("affine:bits=3,group=64,meta=4");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  TempDir dir;
  const std::string path = dir.Path("tails.mqkv");
  {
    auto w = Writer::Create(path, {.fsync = false});
    ASSERT_TRUE(w.ok());
    TensorDesc d;
    d.n_heads = 3;
    d.head_dim = 64;
    d.n_tokens = 5;  // 5 rows x 3 group columns = 15 groups
    const std::vector<float> rows = mqkv::testing::RandomRows(5 * 3 * 64, 4);
    ASSERT_TRUE((*w)->AddTensor(d, rows.data(), *spec).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  auto s = Open(path);
  ASSERT_TRUE(s);
  auto acc = AccountSnapshot(*s);
  ASSERT_TRUE(acc.ok()) << acc.status().ToString();
  const TensorAccounting& t = acc->tensors[0];
  EXPECT_EQ(t.content_minus_modeled_bits(), 8.0);  // two 4-bit tails (scales, mins)
  EXPECT_EQ(t.tail_allowance_bits, 4u * 7);        // codes, scales, mins, ranges
  EXPECT_TRUE(t.explained());
  EXPECT_EQ(acc->total.breakdown.Sum(), int64_t(acc->file_bytes));
}

// The verification pipeline as a library call (what mqverify and the bindings print).
TEST(Verify, ReportOnAnOpenSnapshot) {
  TempDir dir;
  const KvSet set = MakeSet(2, 20, 21);
  const std::string path = dir.Path("v.mqkv");
  Write(set, path, "affine:bits=4,group=16", {.max_block_tokens = 8});
  auto s = Open(path);
  ASSERT_TRUE(s);
  VerifyOptions vo;
  vo.backends = {Backend::kSimd};
  vo.reference = &set;
  vo.reference_name = "the input";
  auto r = VerifySnapshot(*s, vo);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->ok());
  EXPECT_TRUE(r->checksum_errors.empty());
  ASSERT_TRUE(r->fidelity.has_value());
  EXPECT_GT(r->fidelity->total.mean_cosine(), 0.9);
  EXPECT_EQ(r->accounting.tensors.size(), 4u);
  EXPECT_EQ(r->backends.front().backend, Backend::kScalar);
  VerifyOptions bad;
  bad.backends = {Backend::kAuto};
  EXPECT_FALSE(VerifySnapshot(*s, bad).ok());
}

// Quantize is the real writer and reader: its bytes are the tensor's bytes in a file written with
// the same codec, and its output is that file's decode.
TEST(Quantize, CostAndValuesAreTheFileTensors) {
  TempDir dir;
  const uint32_t n = 100;
  const std::vector<float> rows = mqkv::testing::RandomRows(uint64_t(n) * kHeads * kDim, 7);
  TensorDesc d;
  d.kind = Kind::kV;
  d.n_heads = kHeads;
  d.head_dim = kDim;
  d.n_tokens = n;
  const CodecSpec spec = CodecSpec::Parse("affine:bits=2,group=8,meta=8,sinks=2").value();
  std::vector<uint16_t> q(rows.size());
  auto acc = Quantize(d, rows.data(), spec, DType::kF16, q.data());
  ASSERT_TRUE(acc.ok()) << acc.status().ToString();

  const std::string path = dir.Path("one.mqkv");
  {
    auto w = Writer::Create(path, {.fsync = false});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddTensor(d, rows.data(), spec).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  auto s = Snapshot::Open(path);
  ASSERT_TRUE(s.ok());
  auto a = AccountSnapshot(**s);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(acc->stored_bytes, a->tensors[0].stored_bytes);
  EXPECT_EQ(acc->codec, spec.ToString());
  EXPECT_DOUBLE_EQ(acc->modeled_bits, a->tensors[0].modeled_bits);
  std::vector<uint16_t> f(rows.size());
  ASSERT_TRUE((*s)->Decode(0, 0, n, DType::kF16, f.data()).ok());
  EXPECT_EQ(q, f);
  EXPECT_FALSE(Quantize(d, rows.data(), CodecSpec::Parse("affine:bits=3,group=24").value(), DType::kF32, q.data()).ok());
}
