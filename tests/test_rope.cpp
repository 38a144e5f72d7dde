// Keys before RoPE (format 1.4; spec/CODECS.md, "Keys before RoPE"): the spec's cos/sin procedure,
// the writer's undo and the decoder's redo, and the file's records and errors.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>

#include "codec/rope.h"
#include "codec/simd.h"
#include "mqkv/mqkv.h"
#include "mqkv/numeric.h"
#include "mqkv/simd.h"
#include "support.h"

using namespace mqkv;
using mqkv::testing::TempDir;

namespace {

TEST(Rope, CosSinMatchesLibmClosely) {
  // Not bit-exact with libm (no libm is): within a few ulp of 1 over the angles RoPE produces.
  double worst = 0;
  for (double a : {0.0, 1e-300, 0.5, -0.7853981633974483, 0.7853981633974484, 1.5707963267948966, 3.141592653589793, -4.0,
                   100.0, 12345.678, 1e6 + 0.25, 8191.0, 131071.0, 2147483647.0, -2147483647.0}) {
    double c, s;
    rope::CosSin(a, &c, &s);
    worst = std::max({worst, std::abs(c - std::cos(a)), std::abs(s - std::sin(a))});
  }
  mqkv::testing::SplitMix64 g{7};
  for (int i = 0; i < 200000; ++i) {
    const double a = double(g.Next() >> 11) * 0x1p-53 * 200000.0 - 100000.0;
    double c, s;
    rope::CosSin(a, &c, &s);
    worst = std::max({worst, std::abs(c - std::cos(a)), std::abs(s - std::sin(a))});
  }
  EXPECT_LT(worst, 1e-9);  // the three-part pi/2 keeps angles up to 2^31 this close
  double c, s;
  rope::CosSin(0.0, &c, &s);
  EXPECT_EQ(c, 1.0);  // position 0 (an attention sink) is not rotated at all
  EXPECT_EQ(s, 0.0);
}

ModelInfo RopeModel(const std::string& type, uint32_t n_tokens, uint32_t heads, uint32_t dim, bool with_positions) {
  ModelInfo m;
  m.architecture = "llama";
  m.n_layer = 1;
  m.n_head = m.n_head_kv = heads;
  m.head_dim_k = m.head_dim_v = dim;
  m.rope_type = type;
  m.rope_base = 10000.0f;
  m.k_rope = KRope::kPostRope;
  for (uint32_t t = 0; t < n_tokens; ++t) {
    m.tokens.push_back(static_cast<int32_t>(100 + t));
    if (with_positions) m.positions.push_back(static_cast<int32_t>(40 + 3 * t));
  }
  return m;
}

// Keys as RoPE makes them: steady per-channel structure (a mean per channel plus noise), rotated
// by each row's position. Quantized per channel, these lose less before RoPE than after.
std::vector<float> PostRopeKeys(const ModelInfo& m, uint32_t n, uint32_t heads, uint32_t dim) {
  std::vector<float> pre = mqkv::testing::RandomRows(uint64_t(n) * heads * dim, 11, 0.3f);
  for (uint64_t i = 0; i < pre.size(); ++i) pre[i] += float((i % dim) % 5) - 2.0f;
  auto table = rope::TableFor(m, dim);
  EXPECT_TRUE(table.ok()) << table.status().ToString();
  std::vector<int32_t> pos(n);
  for (uint32_t t = 0; t < n; ++t) pos[t] = m.positions.empty() ? int32_t(t) : m.positions[t];
  rope::Rotate(*table, pre.data(), n, heads, dim, pos.data(), +1);
  return pre;
}

struct Written {
  std::vector<uint8_t> bytes;
  std::unique_ptr<Snapshot> snap;
};

Written Write(const ModelInfo& m, const std::vector<float>& k, uint32_t n, uint32_t heads, uint32_t dim, const std::string& spec,
              WriterOptions opts = {.zstd_level = 0, .max_block_tokens = 0, .fsync = false}) {
  Written w;
  auto wr = Writer::CreateInMemory(&w.bytes, "<rope>", opts);
  EXPECT_TRUE(wr.ok());
  (*wr)->SetModel(m);
  TensorDesc d;
  d.kind = Kind::kK;
  d.n_heads = heads;
  d.head_dim = dim;
  d.n_tokens = n;
  auto cs = CodecSpec::Parse(spec);
  EXPECT_TRUE(cs.ok()) << cs.status().ToString();
  Status s = (*wr)->AddTensor(d, k.data(), *cs);
  EXPECT_TRUE(s.ok()) << s.ToString();
  s = (*wr)->Finish();
  EXPECT_TRUE(s.ok()) << s.ToString();
  auto snap = Snapshot::OpenBytes(w.bytes.data(), w.bytes.size(), "<rope>", {.verify_all_blocks = true});
  EXPECT_TRUE(snap.ok()) << snap.status().ToString();
  w.snap = std::move(*snap);
  return w;
}

double RelMse(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0, r = 0;
  for (size_t i = 0; i < a.size(); ++i) e += (double(a[i]) - b[i]) * (double(a[i]) - b[i]), r += double(a[i]) * a[i];
  return e / r;
}

TEST(Rope, PreropeKeysDecodeToTheRotatedCodecOutputAndLoseLess) {
  for (const char* type : {"norm", "neox"}) {
    SCOPED_TRACE(type);
    const uint32_t n = 300, heads = 2, dim = 32;  // 300 rows: two decode chunks of 256
    const ModelInfo m = RopeModel(type, n, heads, dim, true);
    const std::vector<float> k = PostRopeKeys(m, n, heads, dim);
    const std::string base = "affine:levels=6,group=64,meta=4,axis=channel,entropy=rans,sinks=1";
    Written post = Write(m, k, n, heads, dim, base);
    Written pre = Write(m, k, n, heads, dim, base + ",prerope=1");
    const Snapshot& s = *pre.snap;
    EXPECT_EQ(s.version_minor(), 4);
    EXPECT_TRUE(s.required_features() & kFeatureRopeUndo);
    EXPECT_EQ(FeatureNames(s.required_features()), "affine|rans|rope_undo");
    const TensorInfo& t = s.tensors()[0];
    EXPECT_EQ(t.codec, CodecSpec::Parse(base + ",prerope=1")->ToString());
    ASSERT_EQ(t.rope.theta.size(), dim / 2);
    EXPECT_EQ(t.rope.style, std::string(type) == "norm" ? RopeUndo::kNorm : RopeUndo::kNeox);
    EXPECT_EQ(t.rope.theta[0], 1.0);
    auto spec = s.TensorSpec(0);
    ASSERT_TRUE(spec.ok());
    EXPECT_TRUE(spec->prerope);
    EXPECT_EQ(post.snap->version_minor(), 3);

    // Every CPU backend decodes the same bits (the rotation is one host pass over the codec's
    // fp32 output; MatchesTheSpecProcedureWrittenOutHere checks the pass itself).
    std::vector<float> raw(k.size());
    for (Backend b : {Backend::kScalar, Backend::kSimd}) {
      auto got = s.DecodeF32(0, 0, n, b);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      Status st = s.Decode(0, 0, n, DType::kF32, raw.data(), Backend::kScalar);
      ASSERT_TRUE(st.ok());
      EXPECT_EQ(std::memcmp(got->data(), raw.data(), raw.size() * 4), 0) << BackendName(b);
    }
    // f16 / bf16 output: the rotated fp32 value rounded.
    std::vector<uint16_t> f16(k.size()), bf16(k.size());
    ASSERT_TRUE(s.Decode(0, 0, n, DType::kF16, f16.data()).ok());
    ASSERT_TRUE(s.Decode(0, 0, n, DType::kBF16, bf16.data()).ok());
    for (size_t i = 0; i < k.size(); ++i) {
      ASSERT_EQ(f16[i], f32_to_f16(raw[i])) << i;
      ASSERT_EQ(bf16[i], f32_to_bf16(raw[i])) << i;
    }
    // Any row range and thread count: the same rows.
    std::vector<float> part(uint64_t(77) * heads * dim);
    ASSERT_TRUE(s.Decode(0, 200, 277, DType::kF32, part.data()).ok());
    EXPECT_EQ(std::memcmp(part.data(), raw.data() + uint64_t(200) * heads * dim, part.size() * 4), 0);
    std::vector<float> threaded(k.size());
    ASSERT_TRUE(s.Decode(0, 0, n, DType::kF32, threaded.data(), Backend::kAuto, 3).ok());
    EXPECT_EQ(std::memcmp(threaded.data(), raw.data(), raw.size() * 4), 0);
    // The sink row (position 40 here, so rotated) comes back within fp16 rounding of the input.
    for (uint32_t d = 0; d < heads * dim; ++d) EXPECT_NEAR(raw[d], k[d], 2e-3 * (1 + std::abs(k[d])));

    // The property the option exists for: per-channel codes lose less before RoPE.
    auto post_rows = post.snap->DecodeF32(0, 0, n);
    ASSERT_TRUE(post_rows.ok());
    const double e_pre = RelMse(k, raw), e_post = RelMse(k, *post_rows);
    EXPECT_LT(e_pre, 0.5 * e_post) << "pre " << e_pre << " post " << e_post;
  }
}

TEST(Rope, MatchesTheSpecProcedureWrittenOutHere) {
  // Decoding = codec output rotated pair by pair; here the rotation is written out from the spec
  // text (not through rope::Rotate) for the norm pairing, over the stored table.
  const uint32_t n = 20, heads = 1, dim = 8;
  const ModelInfo m = RopeModel("norm", n, heads, dim, false);  // no positions: row t at position t
  const std::vector<float> k = PostRopeKeys(m, n, heads, dim);
  Written w = Write(m, k, n, heads, dim, "affine:bits=4,group=8,prerope=1");
  const TensorInfo& t = w.snap->tensors()[0];
  // The same blocks without the tensor's rope record: the codec's own output.
  TensorInfo plain = t;
  plain.rope = {};
  std::vector<uint8_t> copy;
  {
    auto wr = Writer::CreateInMemory(&copy, "<copy>");
    ASSERT_TRUE(wr.ok());
    (*wr)->SetModel(m);
    auto blk = w.snap->ReadBlock(0);
    ASSERT_TRUE(blk.ok());
    EncodedBlock eb;
    eb.header = *blk->view.header;
    for (int p = 0; p < kNumParts; ++p)
      eb.parts[p].assign(blk->view.payload + eb.header.parts[p].offset, blk->view.payload + eb.header.parts[p].offset + eb.header.parts[p].bytes);
    TensorDesc d = plain;
    ASSERT_TRUE((*wr)->AddEncodedTensor(d, "affine:bits=4,group=8,meta=16,axis=token", {eb}).ok());
    ASSERT_TRUE((*wr)->Finish().ok());
  }
  auto cs = Snapshot::OpenBytes(copy.data(), copy.size(), "<copy>");
  ASSERT_TRUE(cs.ok()) << cs.status().ToString();
  EXPECT_EQ((*cs)->version_minor(), 0);
  auto codes = (*cs)->DecodeF32(0, 0, n);
  auto got = w.snap->DecodeF32(0, 0, n);
  ASSERT_TRUE(codes.ok() && got.ok());
  for (uint32_t r = 0; r < n; ++r)
    for (uint32_t i = 0; i < dim / 2; ++i) {
      double c, s;
      rope::CosSin(double(r) * t.rope.theta[i], &c, &s);
      const double y0 = (*codes)[r * dim + 2 * i], y1 = (*codes)[r * dim + 2 * i + 1];
      EXPECT_EQ((*got)[r * dim + 2 * i], static_cast<float>(y0 * c - y1 * s));
      EXPECT_EQ((*got)[r * dim + 2 * i + 1], static_cast<float>(y0 * s + y1 * c));
    }
}

// The spec's quadrant rule as written there: q = k mod 4 through an integer (the library computes
// k - 4 floor(k / 4), branch-free, so compilers vectorize it). Same results over the reader's domain.
TEST(Rope, QuadrantRuleMatchesIntegerModulo) {
  mqkv::testing::SplitMix64 g{21};
  for (int i = 0; i < 100000; ++i) {
    const double a = (double(g.Next() >> 11) * 0x1p-53 * 2.0 - 1.0) * (i % 2 ? 2147483647.0 : 64.0);
    double c, s;
    rope::CosSin(a, &c, &s);
    const double k = std::nearbyint(a * 0x1.45f306dc9c883p-1);
    const double r = ((a - k * 0x1.921fb00000000p+0) - k * 0x1.5110b00000000p-22) - k * 0x1.18469898cc517p-44;
    double c0, s0;  // the quadrant-0 values rope::CosSin returns for the reduced angle r
    rope::CosSin(r, &c0, &s0);
    ASSERT_EQ(std::nearbyint(r * 0x1.45f306dc9c883p-1), 0.0);
    double ec, es;
    switch (static_cast<int64_t>(k) & 3) {
      case 0: ec = c0, es = s0; break;
      case 1: ec = -s0, es = c0; break;
      case 2: ec = -c0, es = -s0; break;
      default: ec = s0, es = -c0; break;
    }
    ASSERT_EQ(std::memcmp(&c, &ec, 8), 0) << a;
    ASSERT_EQ(std::memcmp(&s, &es, 8), 0) << a;
  }
}

// Every SIMD ISA's rotation (rope_kernels.h compiled with that ISA's flags) equals the reference
// bit for bit: both styles, both directions, positions across int32's range, odd counts.
TEST(Rope, EveryIsaRotatesLikeTheReference) {
  mqkv::testing::AutoSimdArch restore;
  for (const std::string& arch : mqkv::testing::SimdOnlyArchs()) {
    ASSERT_TRUE(ForceSimdArch(arch).ok());
    for (uint8_t style : {RopeUndo::kNorm, RopeUndo::kNeox})
      for (uint32_t dim : {128u, 64u, 10u})
        for (uint32_t pairs : {dim / 2, dim / 2 - 1})
          for (int sign : {+1, -1}) {
            RopeUndo r;
            r.style = style;
            for (uint32_t i = 0; i < pairs; ++i) r.theta.push_back(std::pow(500000.0, -2.0 * i / dim));
            const uint32_t rows = 37, heads = 3;
            std::vector<float> ref = mqkv::testing::RandomRows(uint64_t(rows) * heads * dim, 5 + dim, 2.0f);
            std::vector<int32_t> pos(rows);
            mqkv::testing::SplitMix64 g{dim + pairs};
            for (uint32_t j = 0; j < rows; ++j)
              pos[j] = j < 4 ? std::array<int32_t, 4>{0, 1, 2147483647, -2147483647 - 1}[j] : static_cast<int32_t>(g.Next());
            std::vector<float> got = ref;
            rope::Rotate(r, ref.data(), rows, heads, dim, pos.data(), sign);
            ASSERT_TRUE(codec::simd::RopeRotate(r, got.data(), rows, heads, dim, pos.data(), sign)) << arch;
            ASSERT_EQ(std::memcmp(ref.data(), got.data(), ref.size() * 4), 0)
                << arch << " style " << int(style) << " dim " << dim << " pairs " << pairs << " sign " << sign;
          }
  }
  ASSERT_TRUE(ForceSimdArch("scalar").ok());
  std::vector<float> x(8, 1.0f);
  int32_t p[1] = {3};
  RopeUndo r;
  r.theta = {1.0};
  EXPECT_FALSE(codec::simd::RopeRotate(r, x.data(), 1, 1, 8, p, +1));  // scalar: the caller runs the reference
}

TEST(Rope, ErrorsNameTheProblem) {
  const uint32_t n = 8, heads = 1, dim = 8;
  std::vector<float> rows(n * heads * dim, 1.0f);
  auto add = [&](const ModelInfo& m, Kind kind, const std::string& spec) {
    std::vector<uint8_t> out;
    auto wr = Writer::CreateInMemory(&out, "<err>");
    (*wr)->SetModel(m);
    TensorDesc d;
    d.kind = kind;
    d.n_heads = heads;
    d.head_dim = dim;
    d.n_tokens = n;
    return (*wr)->AddTensor(d, rows.data(), *CodecSpec::Parse(spec));
  };
  const ModelInfo good = RopeModel("norm", n, heads, dim, true);
  EXPECT_TRUE(add(good, Kind::kK, "affine:bits=4,prerope=1").ok());
  Status s = add(good, Kind::kV, "affine:bits=4,prerope=1");
  EXPECT_NE(s.message().find("key tensors only"), std::string::npos) << s.ToString();
  s = add(good, Kind::kK, "f16");
  EXPECT_TRUE(s.ok());
  EXPECT_FALSE(CodecSpec::Parse("affine:bits=4,prerope=2").ok());
  ModelInfo m = good;
  m.rope_type = "mrope";
  s = add(m, Kind::kK, "affine:bits=4,prerope=1");
  EXPECT_NE(s.message().find("norm or neox"), std::string::npos) << s.ToString();
  m = good;
  m.rope_base = 0;
  s = add(m, Kind::kK, "affine:bits=4,prerope=1");
  EXPECT_NE(s.message().find("RoPE base"), std::string::npos) << s.ToString();
  m = good;
  m.k_rope = KRope::kPreRope;
  s = add(m, Kind::kK, "affine:bits=4,prerope=1");
  EXPECT_NE(s.message().find("already"), std::string::npos) << s.ToString();
  m = good;
  m.metadata = {{"llama.cell_positions", "0+8"}};
  m.positions.clear();
  s = add(m, Kind::kK, "affine:bits=4,prerope=1");
  EXPECT_NE(s.message().find("llama.cell_positions"), std::string::npos) << s.ToString();
  // A table outside the spec's bounds is refused by the writer (and by the reader).
  std::vector<uint8_t> out;
  auto wr = Writer::CreateInMemory(&out, "<err>");
  (*wr)->SetModel(good);
  TensorDesc d;
  d.n_heads = heads;
  d.head_dim = dim;
  d.n_tokens = 0;
  d.rope.theta = {1.0, 2.0};
  s = (*wr)->AddEncodedTensor(d, "affine:bits=4,group=0,meta=16,axis=token,prerope=1", {});
  EXPECT_NE(s.message().find("outside [0, 1]"), std::string::npos) << s.ToString();
  d.rope.theta = {1.0, 0.5, 0.25, 0.125, 0.0625};
  s = (*wr)->AddEncodedTensor(d, "affine:bits=4,group=0,meta=16,axis=token,prerope=1", {});
  EXPECT_NE(s.message().find("5 pairs for head_dim 8"), std::string::npos) << s.ToString();
}

TEST(Rope, SpecStringRoundTrips) {
  auto s = CodecSpec::Parse("affine:levels=6,group=64,meta=4,axis=channel,entropy=rans,prerope=1");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->prerope);
  auto back = CodecSpec::Parse(s->ToString());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *s);
  EXPECT_EQ(CodecSpec::Parse("affine:bits=4,prerope=0")->ToString().find("prerope"), std::string::npos);
}

}  // namespace
