// llama.cpp's q4_0 / q8_0 grids inside the affine codec (spec/CODECS.md "ggml grids"; presets
// ggml_q4_0, ggml_q8_0; spec option rule=q4_0|q8_0).
//
// Checked against a transcription of ggml's reference quantizers (ggml-quants.c,
// quantize_row_q4_0_ref / quantize_row_q8_0_ref and their dequantize_row_*): per block of 32 the
// stored scale is ggml's fp16 scale (|d|), every decoded value lies on ggml's grid (exactly where
// the block's extreme value is negative, and for q8_0 always), codes differ from ggml's only where
// ggml's fp32-scale rounding and ours (against the stored fp16 scale, half to even) disagree, by one
// step, and the squared error is not larger than ggml's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "format/container.h"
#include "mqkv/mqkv.h"
#include "mqkv/numeric.h"
#include "support.h"

using namespace mqkv;

namespace {

using mqkv::testing::Block;

Block Build(const CodecSpec& spec, const std::vector<float>& x, BlockShape shape) {
  return mqkv::testing::MustBuildBlock(spec, x, shape);
}

std::vector<float> Decode(const Block& b, Backend backend = Backend::kScalar) {
  std::vector<float> out(uint64_t(b.h.n_tokens) * b.h.n_heads * b.h.head_dim);
  Status st = GetCodec(b.h.codec)->Decode(b.view(), 0, b.h.n_tokens, DType::kF32, out.data(), backend);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

float StoredScale(const Block& b, uint64_t group) {
  const uint8_t* p = b.payload.data() + b.h.parts[kPartScales].offset + 2 * group;
  return f16_to_f32(static_cast<uint16_t>(p[0] | (p[1] << 8)));
}

// ggml's q4_0 reference on one block of 32: fp16 scale bits and dequantized values.
void GgmlQ4_0(const float* x, uint16_t* d16, float* y) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  const float d = max / -8;
  const float id = d ? 1.0f / d : 0.0f;
  *d16 = f32_to_f16(d);
  const float df = f16_to_f32(*d16);
  for (int j = 0; j < 32; ++j) {
    const int q = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
    y[j] = static_cast<float>(q - 8) * df;
  }
}

// ggml's q8_0 reference on one block of 32.
void GgmlQ8_0(const float* x, uint16_t* d16, float* y) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / ((1 << 7) - 1);
  const float id = d ? 1.0f / d : 0.0f;
  *d16 = f32_to_f16(d);
  const float df = f16_to_f32(*d16);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int>(std::roundf(x[j] * id))) * df;
}

std::vector<float> KvLike(uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (uint64_t i = 0; i < n; ++i) x[i] = normal(rng) * (i % 64 == 5 ? 8.0f : 1.3f) + (i % 64 == 9 ? 2.0f : 0.0f);
  return x;
}

}  // namespace

TEST(GgmlRules, PresetsAndSpecStrings) {
  auto q4 = CodecSpec::Parse("ggml_q4_0");
  ASSERT_TRUE(q4.ok());
  EXPECT_EQ(q4->codec, CodecId::kAffine);
  EXPECT_EQ(q4->bits, 4);
  EXPECT_EQ(q4->group, 32);
  EXPECT_EQ(q4->meta_bits, 16);
  EXPECT_EQ(q4->affine_rule, AffineRule::kQ4_0);
  EXPECT_EQ(q4->ToString(), "affine:bits=4,group=32,meta=16,rule=q4_0,axis=token");
  auto q8 = CodecSpec::Parse("ggml_q8_0");
  ASSERT_TRUE(q8.ok());
  EXPECT_EQ(q8->bits, 8);
  EXPECT_EQ(q8->affine_rule, AffineRule::kQ8_0);
  for (const CodecSpec& s : {*q4, *q8}) {
    auto back = CodecSpec::Parse(s.ToString());
    ASSERT_TRUE(back.ok()) << s.ToString();
    EXPECT_EQ(*back, s);
  }
  // The default rule is not printed, so every existing canonical string is unchanged.
  EXPECT_EQ(CodecSpec::Parse("affine:bits=3,group=64,rule=minmax")->ToString(), CodecSpec::Parse("affine:bits=3,group=64")->ToString());
  for (const char* bad : {"affine:bits=3,rule=q4_0", "affine:bits=4,meta=8,rule=q4_0", "affine:bits=4,rule=q8_0",
                          "affine:bits=4,rule=q5_1", "codebook:bits=2,levels=-1/-0.5/0.5/1,rule=q4_0"}) {
    auto r = CodecSpec::Parse(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  // A spec built in code that skips Parse is refused by the encoder.
  CodecSpec wrong = *q4;
  wrong.bits = 3;
  EncodedBlock eb;
  std::vector<float> x(32 * 64, 1.0f);
  Status st = EncodeBlock(wrong, x.data(), BlockShape{32, 1, 64}, &eb);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
}

TEST(GgmlRules, Q4_0MatchesGgmlGrid) {
  const BlockShape shape{96, 3, 64};
  const std::vector<float> x = KvLike(shape.values(), 1);
  auto spec = CodecSpec::Parse("ggml_q4_0");
  ASSERT_TRUE(spec.ok());
  const Block b = Build(*spec, x, shape);
  EXPECT_EQ(b.h.parts[kPartCodes].bytes, shape.values() / 2);
  const std::vector<float> ours = Decode(b);
  uint64_t exact = 0, exact_total = 0, one_step = 0;
  double err_ours = 0, err_ggml = 0;
  std::vector<float> y(32);
  for (uint64_t g = 0; g < shape.values() / 32; ++g) {
    const float* xg = x.data() + 32 * g;
    uint16_t d16;
    GgmlQ4_0(xg, &d16, y.data());
    const float d = f16_to_f32(d16);
    ASSERT_EQ(StoredScale(b, g), std::fabs(d)) << "group " << g;
    const bool negative_extreme = d > 0;  // d = max / -8
    for (int j = 0; j < 32; ++j) {
      const float o = ours[32 * g + j];
      err_ours += double(o - xg[j]) * (o - xg[j]);
      err_ggml += double(y[j] - xg[j]) * (y[j] - xg[j]);
      // On ggml's grid: o = k * |d| for an integer k in [-8, 7] (negative extreme) or [-7, 8].
      const float k = o / std::fabs(d);
      if (negative_extreme) {
        EXPECT_EQ(k, std::nearbyint(k)) << "group " << g << " value " << j;
        EXPECT_GE(k, -8.0f);
        EXPECT_LE(k, 7.0f);
        ++exact_total;
        if (o == y[j]) ++exact;
      }
      const float diff = std::fabs(o - y[j]);
      // Different codes: one step; positive extremes add the fp16 rounding of the -7|d| minimum.
      if (diff > 0) {
        ++one_step;
        EXPECT_LE(diff, std::fabs(d) * 1.01f) << "group " << g << " value " << j;
      }
    }
  }
  EXPECT_GT(exact_total, 1000u);
  EXPECT_GE(double(exact) / double(exact_total), 0.99) << exact << " of " << exact_total;
  EXPECT_LE(err_ours, err_ggml * 1.0001) << "rounding against the stored scale is not worse";
}

TEST(GgmlRules, Q8_0MatchesGgmlGrid) {
  const BlockShape shape{64, 2, 64};
  const std::vector<float> x = KvLike(shape.values(), 2);
  auto spec = CodecSpec::Parse("ggml_q8_0");
  ASSERT_TRUE(spec.ok());
  const Block b = Build(*spec, x, shape);
  const std::vector<float> ours = Decode(b);
  uint64_t exact = 0;
  double err_ours = 0, err_ggml = 0;
  std::vector<float> y(32);
  for (uint64_t g = 0; g < shape.values() / 32; ++g) {
    const float* xg = x.data() + 32 * g;
    uint16_t d16;
    GgmlQ8_0(xg, &d16, y.data());
    const float d = f16_to_f32(d16);
    ASSERT_EQ(StoredScale(b, g), d) << "group " << g;
    for (int j = 0; j < 32; ++j) {
      const float o = ours[32 * g + j];
      err_ours += double(o - xg[j]) * (o - xg[j]);
      err_ggml += double(y[j] - xg[j]) * (y[j] - xg[j]);
      const float k = o / d;  // exact: (q - 128) d with q - 128 in [-127, 127]
      EXPECT_EQ(k, std::nearbyint(k));
      EXPECT_LE(std::fabs(k), 127.0f);
      if (o == y[j]) ++exact;
      else EXPECT_LE(std::fabs(o - y[j]), d * 1.0001f);
    }
  }
  EXPECT_GE(double(exact) / double(shape.values()), 0.99);
  EXPECT_LE(err_ours, err_ggml * 1.0001);
}

TEST(GgmlRules, ZeroGroupsAndEveryBackendAgree) {
  const BlockShape shape{40, 2, 64};
  std::vector<float> x = KvLike(shape.values(), 3);
  for (int j = 0; j < 64; ++j) x[j] = (j % 2) ? 0.0f : -0.0f;  // two all-zero groups in row 0
  for (const char* name : {"ggml_q4_0", "ggml_q8_0"}) {
    const Block b = Build(*CodecSpec::Parse(name), x, shape);
    // An all-zero group stores scale +0 and minimum +0 (no -0.0 bits).
    const uint8_t* mins = b.payload.data() + b.h.parts[kPartMins].offset;
    EXPECT_EQ(mins[0] | (mins[1] << 8), 0) << name;
    const std::vector<float> ref = Decode(b, Backend::kScalar);
    for (int j = 0; j < 64; ++j) EXPECT_EQ(ref[j], 0.0f) << name;
    const std::vector<float> simd = Decode(b, Backend::kSimd);
    EXPECT_EQ(std::memcmp(ref.data(), simd.data(), ref.size() * 4), 0) << name;
  }
}
