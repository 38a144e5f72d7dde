// The fp8 codec (spec/CODECS.md "fp8", CodecId 5, format 1.1): E4M3 conversions over every code,
// round-to-nearest-even against a brute-force reference, saturation, the round-trip error bound,
// NaN codes and bad scales at decode, header validation, accounting, the file version and
// feature bit a writer sets, and mqconvert / mqverify with --codec fp8.
//
// Error bound (x = input, s = block scale, x' = decoded): |x - x'| <= 2^-4 |x| + 2^-10 s, plus a few
// binary32 roundings (x / s and the decode multiply): half a step of a 3-bit mantissa in the
// normal range, half the subnormal step 2^-9 s below 2^-6 s.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "format/container.h"
#include "detail/fp8.h"
#include "format/test_hooks.h"
#include "mqkv/mqkv.h"
#include "support.h"

using namespace mqkv;
using mqkv::testing::TempDir;

namespace {

using mqkv::testing::Block;

Status Build(const std::vector<float>& x, BlockShape shape, Block* out) {
  return mqkv::testing::BuildBlock(CodecSpec::Parse("fp8").value(), x, shape, out);
}

float Scale(const Block& b) { return elem::load_f32(b.payload.data() + b.h.parts[kPartScales].offset); }
void SetScale(Block& b, float s) { std::memcpy(b.payload.data() + b.h.parts[kPartScales].offset, &s, 4); }

Status DecodeTo(const Block& b, DType t, std::vector<uint8_t>* out, Backend be = Backend::kScalar, uint32_t r0 = 0,
                uint32_t r1 = UINT32_MAX) {
  if (r1 == UINT32_MAX) r1 = b.h.n_tokens;
  out->assign(uint64_t(r1 - r0) * b.h.n_heads * b.h.head_dim * DTypeSize(t), 0);
  return GetCodec(CodecId::kFp8)->Decode(b.view(), r0, r1, t, out->data(), be);
}

std::vector<float> DecodeF32(const Block& b) {
  std::vector<uint8_t> bytes;
  Status s = DecodeTo(b, DType::kF32, &bytes);
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

// The E4M3 value of a code from the definition (binary64), NaN for S.1111.111.
double E4M3Reference(uint32_t c) {
  const int e = (c >> 3) & 15, m = c & 7;
  const double sign = (c & 0x80) ? -1.0 : 1.0;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  if (e == 0) return sign * std::ldexp(m / 8.0, -6);
  return sign * std::ldexp(1.0 + m / 8.0, e - 7);
}

// Nearest E4M3 code by exhaustive search, ties to the even code (even mantissa), saturating.
uint8_t NearestCode(float x) {
  const double a = std::fabs(double(x));
  uint32_t best = 0;
  double best_d = INFINITY;
  for (uint32_t c = 0; c <= 0x7E; ++c) {
    const double d = std::fabs(E4M3Reference(c) - a);
    if (d < best_d || (d == best_d && (c & 1) == 0)) best = c, best_d = d;
  }
  return static_cast<uint8_t>((std::signbit(x) ? 0x80 : 0) | best);
}

}  // namespace

TEST(Fp8E4M3, EveryCodeDecodesAsDefined) {
  for (uint32_t c = 0; c < 256; ++c) {
    const float got = fp8::e4m3_to_f32(c);
    const double want = E4M3Reference(c);
    if (std::isnan(want)) {
      EXPECT_TRUE(fp8::e4m3_is_nan(c)) << c;
      EXPECT_EQ(f32_bits(got), (c & 0x80 ? 0xFFC00000u : 0x7FC00000u)) << c;
    } else {
      EXPECT_FALSE(fp8::e4m3_is_nan(c)) << c;
      EXPECT_EQ(double(got), want) << c;
      EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << c;  // 0x80 is -0
    }
  }
  EXPECT_EQ(fp8::e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(fp8::e4m3_to_f32(0xFE), -448.0f);
  EXPECT_EQ(fp8::e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(fp8::e4m3_to_f32(0x08), 0x1p-6f);  // smallest normal
  EXPECT_EQ(fp8::e4m3_to_f32(0x01), 0x1p-9f);  // smallest subnormal
  EXPECT_EQ(fp8::e4m3_to_f32(0x07), 7 * 0x1p-9f);
  EXPECT_EQ(f32_bits(fp8::e4m3_to_f32(0x80)), 0x80000000u);
}

TEST(Fp8E4M3, EveryFiniteCodeRoundTripsThroughTheEncoderConversion) {
  for (uint32_t c = 0; c < 256; ++c) {
    if (fp8::e4m3_is_nan(c)) continue;
    EXPECT_EQ(fp8::f32_to_e4m3(fp8::e4m3_to_f32(c)), c) << c;
  }
}

TEST(Fp8E4M3, RoundsToNearestEvenAndSaturates) {
  std::vector<float> xs;
  // Every midpoint between neighbouring finite values (exact in binary32), and one ulp either side.
  for (uint32_t c = 0; c < 0x7E; ++c) {
    const float m = static_cast<float>((E4M3Reference(c) + E4M3Reference(c + 1)) / 2.0);
    xs.insert(xs.end(), {m, std::nextafter(m, 0.0f), std::nextafter(m, 1000.0f)});
  }
  xs.insert(xs.end(), {0.0f, 448.0f, 449.0f, 463.99997f, 464.0f, 465.0f, 1e30f, std::numeric_limits<float>::max(),
                       std::numeric_limits<float>::infinity(), std::numeric_limits<float>::denorm_min(), 0x1p-10f, 0x1.000002p-10f,
                       0x1p-11f, 1e-30f});
  std::mt19937 rng(8);
  for (int i = 0; i < 200000; ++i) {  // random magnitudes over the whole range and beyond
    const float m = std::uniform_real_distribution<float>(1.0f, 2.0f)(rng);
    xs.push_back(std::ldexp(m, static_cast<int>(rng() % 30) - 20));
  }
  for (float x : xs)
    for (float v : {x, -x}) ASSERT_EQ(fp8::f32_to_e4m3(v), NearestCode(v)) << v;
  EXPECT_EQ(fp8::f32_to_e4m3(464.0f), 0x7E);  // tie between 448 (even) and 480 (NaN pattern): 448
  EXPECT_EQ(fp8::f32_to_e4m3(-1e30f), 0xFE);
  EXPECT_EQ(fp8::f32_to_e4m3(-0.0f), 0x80);
  EXPECT_EQ(fp8::f32_to_e4m3(0x1p-10f), 0x00);  // half the smallest step: tie to even (0)
  EXPECT_EQ(fp8::f32_to_e4m3(0x1.8p-9f), 0x02);  // 1.5 steps: tie to even (2)
}

TEST(Fp8E4M3, ScaledValuesComeBackToTheirCode) {
  // x = e4m3(c) * s, then x / s converted: the code comes back for any scale whose products
  // stay normal binary32 (the two roundings are far below half an E4M3 step).
  std::mt19937 rng(21);
  std::vector<float> scales = {1.0f, 0x1p-20f, 1024.0f, 0.37f, 3.3e-3f, 1.0f / 448.0f};
  for (int i = 0; i < 200; ++i) scales.push_back(std::ldexp(std::uniform_real_distribution<float>(1.0f, 2.0f)(rng), int(rng() % 60) - 30));
  for (float s : scales)
    for (uint32_t c = 0; c < 256; ++c) {
      if (fp8::e4m3_is_nan(c)) continue;
      const float x = fp8::e4m3_to_f32(c) * s;
      ASSERT_EQ(fp8::f32_to_e4m3(x / s), c) << "code " << c << " scale " << s;
    }
}

TEST(Fp8Codec, EncoderReproducesEveryCodeOfABlock) {
  // A block holding every finite code times a power-of-two scale (absmax = 448 s, so the encoder's
  // scale is s exactly): the codes are the inputs' codes and the decode is the input, bit for bit.
  for (float s : {1.0f, 0x1p-12f, 0x1p+7f}) {
    std::vector<float> x;
    for (uint32_t c = 0; c < 256; ++c)
      if (!fp8::e4m3_is_nan(c)) x.push_back(fp8::e4m3_to_f32(c) * s);
    x.resize(256, 0.0f);
    Block b;
    ASSERT_TRUE(Build(x, BlockShape{4, 2, 32}, &b).ok());
    EXPECT_EQ(f32_bits(Scale(b)), f32_bits(s));
    const std::vector<float> dec = DecodeF32(b);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(f32_bits(dec[i]), f32_bits(x[i])) << i << " scale " << s;
      ASSERT_EQ(b.payload[b.h.parts[kPartCodes].offset + i], fp8::f32_to_e4m3(x[i] / s)) << i;
    }
  }
}

TEST(Fp8Codec, RoundTripMeetsTheErrorBound) {
  std::mt19937 rng(5);
  double worst = 0;
  for (int iter = 0; iter < 60; ++iter) {
    const BlockShape sh{1 + uint32_t(rng() % 20), 1 + uint32_t(rng() % 4), 1 + uint32_t(rng() % 96)};
    std::vector<float> x(sh.values());
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int kind = iter % 3;
    for (auto& v : x) {
      if (kind == 0) v = nd(rng);                                           // Gaussian
      if (kind == 1) v = nd(rng) * std::ldexp(1.0f, int(rng() % 40) - 20);  // wide dynamic range: subnormal codes
      if (kind == 2) v = nd(rng) * (rng() % 50 == 0 ? 300.0f : 1.0f);       // rare outliers
    }
    Block b;
    ASSERT_TRUE(Build(x, sh, &b).ok());
    const double s = Scale(b);
    float absmax = 0;
    for (float v : x) absmax = std::max(absmax, std::fabs(v));
    EXPECT_EQ(f32_bits(Scale(b)), f32_bits(absmax / 448.0f));
    const std::vector<float> dec = DecodeF32(b);
    for (size_t i = 0; i < x.size(); ++i) {
      const double err = std::fabs(double(dec[i]) - x[i]);
      const double bound = std::ldexp(std::fabs(double(x[i])), -4) + std::ldexp(s, -10) + std::ldexp(std::fabs(double(x[i])), -21);
      ASSERT_LE(err, bound) << "value " << x[i] << " decoded " << dec[i] << " scale " << s;
      worst = std::max(worst, err / bound);
      ASSERT_EQ(std::signbit(dec[i]), std::signbit(x[i])) << i;  // a code keeps the sign, zeros included
    }
  }
  std::printf("fp8 worst error / bound: %.4f\n", worst);
}

TEST(Fp8Codec, ZeroAndTinyBlocksUseScaleOne) {
  std::vector<float> x(64, 0.0f);
  x[3] = -0.0f;
  Block b;
  ASSERT_TRUE(Build(x, BlockShape{2, 1, 32}, &b).ok());
  EXPECT_EQ(Scale(b), 1.0f);
  std::vector<float> dec = DecodeF32(b);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(f32_bits(dec[i]), f32_bits(x[i])) << i;  // -0 stays -0
  // absmax / 448 underflows to 0: scale 1, everything decodes to (signed) zero.
  x[5] = std::numeric_limits<float>::denorm_min();
  ASSERT_TRUE(Build(x, BlockShape{2, 1, 32}, &b).ok());
  EXPECT_EQ(Scale(b), 1.0f);
  dec = DecodeF32(b);
  EXPECT_EQ(dec[5], 0.0f);
}

TEST(Fp8Codec, OutputTypesRowRangesAndBackendsAgree) {
  const BlockShape sh{9, 3, 24};
  std::vector<float> x = mqkv::testing::RandomRows(sh.values(), 4, 3.0f);
  Block b;
  ASSERT_TRUE(Build(x, sh, &b).ok());
  // Plant both NaN codes: they decode to the quiet NaN of their sign, in every output type.
  b.payload[b.h.parts[kPartCodes].offset + 5] = 0x7F;
  b.payload[b.h.parts[kPartCodes].offset + 6] = 0xFF;
  std::vector<uint8_t> f32, f16, bf16;
  ASSERT_TRUE(DecodeTo(b, DType::kF32, &f32).ok());
  ASSERT_TRUE(DecodeTo(b, DType::kF16, &f16).ok());
  ASSERT_TRUE(DecodeTo(b, DType::kBF16, &bf16).ok());
  const uint64_t n = sh.values();
  for (uint64_t i = 0; i < n; ++i) {
    float v;
    uint16_t h, bb;
    std::memcpy(&v, &f32[4 * i], 4);
    std::memcpy(&h, &f16[2 * i], 2);
    std::memcpy(&bb, &bf16[2 * i], 2);
    ASSERT_EQ(h, f32_to_f16(v)) << i;
    ASSERT_EQ(bb, f32_to_bf16(v)) << i;
    const uint8_t code = b.payload[b.h.parts[kPartCodes].offset + i];
    ASSERT_EQ(f32_bits(v), f32_bits(fp8::decode(code, Scale(b)))) << i;
  }
  float v5, v6;
  std::memcpy(&v5, &f32[20], 4);
  std::memcpy(&v6, &f32[24], 4);
  EXPECT_EQ(f32_bits(v5), 0x7FC00000u);
  EXPECT_EQ(f32_bits(v6), 0xFFC00000u);
  EXPECT_EQ(f16[10] | f16[11] << 8, 0x7E00);
  EXPECT_EQ(f16[12] | f16[13] << 8, 0xFE00);
  EXPECT_EQ(bf16[10] | bf16[11] << 8, 0x7FC0);
  EXPECT_EQ(bf16[12] | bf16[13] << 8, 0xFFC0);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::vector<uint8_t> full, part;
    ASSERT_TRUE(DecodeTo(b, t, &full).ok());
    for (Backend be : {Backend::kSimd, Backend::kAuto}) {
      ASSERT_TRUE(DecodeTo(b, t, &part, be).ok());
      EXPECT_EQ(part, full) << BackendName(be);
    }
    const uint64_t row = uint64_t(sh.n_heads) * sh.head_dim * DTypeSize(t);
    for (auto [r0, r1] : {std::pair{0u, 9u}, {2u, 7u}, {8u, 9u}, {4u, 4u}}) {
      ASSERT_TRUE(DecodeTo(b, t, &part, Backend::kScalar, r0, r1).ok());
      EXPECT_TRUE(std::equal(part.begin(), part.end(), full.begin() + r0 * row)) << r0 << ".." << r1;
    }
  }
  std::vector<uint8_t> out;
  EXPECT_EQ(DecodeTo(b, DType::kF32, &out, Backend::kScalar, 3, 10).code(), StatusCode::kOutOfRange);
}

TEST(Fp8Codec, DecodeRefusesABadScale) {
  std::vector<float> x = mqkv::testing::RandomRows(64, 2);
  Block b;
  ASSERT_TRUE(Build(x, BlockShape{2, 1, 32}, &b).ok());
  for (float s : {0.0f, -0.0f, -1.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    SetScale(b, s);
    std::vector<uint8_t> out;
    Status st = DecodeTo(b, DType::kF32, &out);
    EXPECT_EQ(st.code(), StatusCode::kFormatError) << s;
    EXPECT_NE(st.message().find("fp8 block scale"), std::string::npos) << st.message();
  }
  SetScale(b, std::numeric_limits<float>::denorm_min());  // positive and finite: valid
  std::vector<uint8_t> out;
  EXPECT_TRUE(DecodeTo(b, DType::kF32, &out).ok());
}

TEST(Fp8Codec, PartSizesRejectsBadHeaders) {
  std::vector<float> x = mqkv::testing::RandomRows(16 * 64, 3);
  Block b;
  ASSERT_TRUE(Build(x, BlockShape{16, 2, 32}, &b).ok());
  std::array<uint64_t, kNumParts> sizes{};
  ASSERT_TRUE(GetCodec(CodecId::kFp8)->PartSizes(b.h, &sizes).ok());
  EXPECT_EQ(sizes[kPartCodes], 16u * 64);
  EXPECT_EQ(sizes[kPartScales], 4u);
  struct Case {
    void (*mutate)(BlockHeader&);
    const char* field;
  };
  const Case cases[] = {
      {[](BlockHeader& h) { h.bits = 16; }, "bits=16"},
      {[](BlockHeader& h) { h.bits = 4; }, "bits=4"},
      {[](BlockHeader& h) { h.meta_bits = 16; }, "meta_bits=16"},
      {[](BlockHeader& h) { h.group_axis = 1; }, "group_axis=1"},
      {[](BlockHeader& h) { h.rotation = 1; }, "rotation=1"},
      {[](BlockHeader& h) { h.group_size = 32; }, "group_size=32"},
      {[](BlockHeader& h) { h.rot_block = 32; }, "rot_block=32"},
      {[](BlockHeader& h) { h.rot_seed = 7; }, "rot_seed=7"},
      {[](BlockHeader& h) { h.n_sink = 1; }, "n_sink=1"},
      {[](BlockHeader& h) { h.n_residual = 2; }, "n_residual=2"},
  };
  for (const Case& cs : cases) {
    BlockHeader h = b.h;
    cs.mutate(h);
    Status st = GetCodec(CodecId::kFp8)->PartSizes(h, &sizes);
    EXPECT_EQ(st.code(), StatusCode::kFormatError) << cs.field;
    EXPECT_NE(st.message().find(cs.field), std::string::npos) << cs.field << ": " << st.message();
  }
  // The largest header fields give a code part just under 2^64 bytes: no overflow, and the
  // container refuses it against payload_bytes (< 2^32).
  BlockHeader h = b.h;
  h.n_tokens = 0xFFFFFFFFu;
  h.n_heads = h.head_dim = 0xFFFF;
  ASSERT_TRUE(GetCodec(CodecId::kFp8)->PartSizes(h, &sizes).ok());
  EXPECT_EQ(sizes[kPartCodes], uint64_t(0xFFFFFFFFu) * 0xFFFF * 0xFFFF);
}

TEST(Fp8Codec, AccountingSpecAndEncoderChecks) {
  const BlockShape sh{5, 2, 24};
  std::vector<float> x = mqkv::testing::RandomRows(sh.values(), 6);
  Block b;
  ASSERT_TRUE(Build(x, sh, &b).ok());
  const Accounting a = GetCodec(CodecId::kFp8)->Account(b.h);
  EXPECT_EQ(a.modeled_bits, 8.0 * sh.values() + 32);
  EXPECT_EQ(a.codes, sh.values());
  EXPECT_EQ(a.group_meta, 4u);
  EXPECT_EQ(a.codes + a.group_meta + a.shared_ranges + a.fp16_rows + a.codebook + a.padding, b.h.payload_bytes);
  EXPECT_EQ(GetCodec(CodecId::kFp8)->SpecOf(b.h, b.payload.data()).ToString(), "fp8");
  EXPECT_STREQ(GetCodec(CodecId::kFp8)->name(), "fp8");
  auto spec = CodecSpec::Parse("fp8");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->codec, CodecId::kFp8);
  EXPECT_EQ(spec->bits, 8);
  EXPECT_EQ(spec->ToString(), "fp8");
  EXPECT_EQ(CodecSpec::Parse("fp8:bits=8").status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(CodecSpec::Parse("fp9").status().message().find("fp8"), std::string::npos);  // listed among the known codecs
  // Non-finite input is refused, naming the element; fp16 side rows are not part of fp8.
  EncodedBlock eb;
  x[1 * 48 + 30] = std::numeric_limits<float>::quiet_NaN();
  Status st = EncodeBlock(*spec, x.data(), sh, &eb);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("row 1 head 1 dim 6"), std::string::npos) << st.message();
  x[1 * 48 + 30] = -std::numeric_limits<float>::infinity();
  EXPECT_EQ(EncodeBlock(*spec, x.data(), sh, &eb).code(), StatusCode::kInvalidArgument);
  x[1 * 48 + 30] = 0.0f;
  CodecSpec with_sinks = *spec;
  with_sinks.sinks = 1;
  EXPECT_EQ(EncodeBlock(with_sinks, x.data(), sh, &eb).code(), StatusCode::kInvalidArgument);
}

TEST(Fp8File, WriterDeclaresFeatureAndVersion1_1) {
  TempDir dir;
  const BlockShape sh{20, 2, 16};
  const std::vector<float> x = mqkv::testing::RandomRows(sh.values(), 7, 2.0f);
  auto write = [&](const std::string& name, const char* k_codec, const char* v_codec, uint32_t max_block) {
    auto w = Writer::Create(dir.Path(name), {.zstd_level = 0, .max_block_tokens = max_block, .fsync = false});
    ASSERT_TRUE(w.ok());
    for (Kind k : {Kind::kK, Kind::kV}) {
      TensorDesc d;
      d.kind = k;
      d.n_heads = sh.n_heads;
      d.head_dim = sh.head_dim;
      d.n_tokens = sh.n_tokens;
      ASSERT_TRUE((*w)->AddTensor(d, x.data(), CodecSpec::Parse(k == Kind::kK ? k_codec : v_codec).value()).ok());
    }
    ASSERT_TRUE((*w)->Finish().ok());
  };
  write("mixed.mqkv", "f16", "fp8", 0);
  write("plain.mqkv", "f16", "affine:bits=4", 0);
  write("split.mqkv", "fp8", "fp8", 8);
  // fp8 present: version 1.1 in the file header, the tail and the footer; feature bit 4.
  for (const char* name : {"mixed.mqkv", "split.mqkv"}) {
    const std::vector<uint8_t> bytes = mqkv::testing::ReadFile(dir.Path(name));
    EXPECT_EQ(bytes[8] | bytes[9] << 8, 1);
    EXPECT_EQ(bytes[10] | bytes[11] << 8, 1) << name << ": file header minor";
    format::Tail tail;
    std::memcpy(&tail, bytes.data() + bytes.size() - 48, 48);
    EXPECT_EQ(tail.version_minor, 1);
    EXPECT_EQ(tail.required_features & kFeatureFp8, kFeatureFp8);
    // A 1.0 reader knows bits 0..3 only: its unknown-feature check sees exactly the fp8 bit.
    EXPECT_EQ(tail.required_features & ~uint64_t(0xF), kFeatureFp8);
    auto snap = Snapshot::Open(dir.Path(name), {.verify_all_blocks = true});
    ASSERT_TRUE(snap.ok()) << snap.status().ToString();
    EXPECT_EQ((*snap)->version_major(), 1);
    EXPECT_EQ((*snap)->version_minor(), 1);
    EXPECT_NE(FeatureNames((*snap)->required_features()).find("fp8"), std::string::npos);
  }
  // No fp8 block: still a 1.0 file, byte for byte what a 1.0 writer wrote.
  {
    const std::vector<uint8_t> bytes = mqkv::testing::ReadFile(dir.Path("plain.mqkv"));
    EXPECT_EQ(bytes[10] | bytes[11] << 8, 0);
    auto snap = Snapshot::Open(dir.Path("plain.mqkv"));
    ASSERT_TRUE(snap.ok());
    EXPECT_EQ((*snap)->version_minor(), 0);
    EXPECT_EQ((*snap)->required_features() & kFeatureFp8, 0u);
  }
  // Split tensor: one scale per block, each block decodes like encoding its rows alone.
  auto snap = Snapshot::Open(dir.Path("split.mqkv"), {.verify_all_blocks = true});
  ASSERT_TRUE(snap.ok());
  const TensorInfo& t = (*snap)->tensors()[0];
  ASSERT_EQ(t.n_blocks, 3u);
  EXPECT_EQ(t.codec, "fp8");
  auto all = (*snap)->DecodeF32(0, 0, sh.n_tokens);
  ASSERT_TRUE(all.ok());
  const uint64_t rv = uint64_t(sh.n_heads) * sh.head_dim;
  for (uint32_t b0 = 0; b0 < sh.n_tokens; b0 += 8) {
    const uint32_t rows = std::min(8u, sh.n_tokens - b0);
    Block one;
    ASSERT_TRUE(Build(std::vector<float>(x.begin() + b0 * rv, x.begin() + (b0 + rows) * rv), BlockShape{rows, sh.n_heads, sh.head_dim}, &one).ok());
    const std::vector<float> dec = DecodeF32(one);
    EXPECT_EQ(std::memcmp(dec.data(), all->data() + b0 * rv, dec.size() * 4), 0) << "block at row " << b0;
  }
  // The reader's refusal of a feature it does not know names it and lists what it knows (fp8 included).
  {
    auto w = Writer::Create(dir.Path("future.mqkv"), {.fsync = false});
    ASSERT_TRUE(w.ok());
    WriterTestHooks::SetRequiredFeatures(**w, 1ull << 7);
    ASSERT_TRUE((*w)->Finish().ok());
    auto s = Snapshot::Open(dir.Path("future.mqkv"));
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(s.status().message().find("bit 7 unknown to this reader (knows zstd|affine|codebook|hadamard|fp8|rans|rope_undo)"), std::string::npos)
        << s.status().message();
  }
  // A writer asked to declare fp8 without an fp8 block still writes 1.1 (the lowest version
  // that defines every declared bit).
  {
    auto w = Writer::Create(dir.Path("declared.mqkv"), {.fsync = false});
    ASSERT_TRUE(w.ok());
    WriterTestHooks::SetRequiredFeatures(**w, kFeatureFp8);
    ASSERT_TRUE((*w)->Finish().ok());
    auto s = Snapshot::Open(dir.Path("declared.mqkv"));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_EQ((*s)->version_minor(), 1);
  }
  EXPECT_EQ(FormatMinorFor(0), 0);
  EXPECT_EQ(FormatMinorFor(kFeatureAffine | kFeatureCodebook | kFeatureHadamard), 0);
  EXPECT_EQ(FormatMinorFor(kFeatureFp8), 1);
  // 1.2: zstd frames carry their content checksum (FORMAT.md §2.6).
  EXPECT_EQ(FormatMinorFor(kFeatureZstd), 2);
  EXPECT_EQ(FormatMinorFor(kFeatureZstd | kFeatureFp8), 2);
  EXPECT_EQ(FeatureNames(kFeatureFp8 | 1ull << 9), "fp8|bit 9");
}

namespace {

int Shell(const std::string& cmd, std::string* out) {
  TempDir tmp;
  const std::string o = tmp.Path("out.txt");
  const int st = std::system((cmd + " > " + o + " 2>&1").c_str());
  std::ifstream f(o);
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace

TEST(Fp8File, MqconvertAndMqverifyTakeTheCodec) {
  const std::string conv = std::string(MQKV_BINARY_DIR) + "/tools/mqconvert", verify = std::string(MQKV_BINARY_DIR) + "/tools/mqverify";
  if (!std::filesystem::exists(conv) || !std::filesystem::exists(verify)) GTEST_FAIL() << "build the mqconvert and mqverify targets first";
  TempDir dir;
  KvSet set;
  set.model.architecture = "llama";
  set.model.n_layer = 1;
  set.model.n_head = set.model.n_head_kv = 2;
  set.model.head_dim_k = set.model.head_dim_v = 32;
  for (Kind k : {Kind::kK, Kind::kV}) {
    KvTensor t;
    t.desc = {0, k, 2, 32, 24, {}, "f32", {}};
    t.data = mqkv::testing::RandomRows(24 * 64, 30 + uint32_t(k));
    set.tensors.push_back(std::move(t));
  }
  const std::string src = dir.Path("src.mqkv"), dst = dir.Path("fp8.mqkv");
  WriteOptions o;
  o.writer.fsync = false;
  ASSERT_TRUE(WriteKvSet(set, src, FileFormat::kMqkv, o).ok());
  std::string out;
  ASSERT_EQ(Shell(conv + " " + src + " " + dst + " --codec fp8", &out), 0) << out;
  auto snap = Snapshot::Open(dst, {.verify_all_blocks = true});
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  for (const TensorInfo& t : (*snap)->tensors()) EXPECT_EQ(t.codec, "fp8");
  EXPECT_EQ((*snap)->version_minor(), 1);
  ASSERT_EQ(Shell(verify + " " + dst + " --reference " + src + " --json", &out), 0) << out;
  EXPECT_NE(out.find("\"accounting_ok\":true"), std::string::npos) << out;
  EXPECT_NE(out.find("\"backends_ok\":true"), std::string::npos) << out;
  EXPECT_NE(out.find("\"modeled_bits_per_dim\":8.0"), std::string::npos) << out;  // 8 + 32 / values per tensor
}
