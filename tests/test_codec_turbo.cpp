// TurboQuant-style presets turbo2 / turbo3 / turbo4 (spec/CODECS.md "TurboQuant-style presets"):
// the codebook codec with a Hadamard rotation, one scale per head vector by the rms rule
// (s = ||x|| / sqrt(d)) and the Lloyd-Max levels of N(0, 1).
//
// Checked: the preset levels equal Lloyd-Max levels computed here (Lloyd's algorithm on the exact
// Gaussian, binary64) to 1e-6; the rms rule's exact value; and, for Gaussian head vectors of any
// norm, a relative MSE (sum of squared errors / sum of squares, = the MSE per coordinate of a unit
// vector scaled to unit variance) within 3% of the Lloyd-Max distortion of N(0, 1).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "format/container.h"
#include "detail/lowbit.h"
#include "mqkv/mqkv.h"
#include "support.h"

using namespace mqkv;

namespace {

double Pdf(double x) { return std::isinf(x) ? 0.0 : std::exp(-x * x / 2) / std::sqrt(2 * M_PI); }
double Cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

// Lloyd-Max levels of N(0, 1) with 2^bits levels: alternate midpoint thresholds and conditional
// means until nothing moves.
std::vector<double> LloydMax(int bits) {
  const int n = 1 << bits;
  std::vector<double> L(n);
  for (int i = 0; i < n; ++i) L[i] = -3.0 + 6.0 * (i + 0.5) / n;
  for (int it = 0; it < 100000; ++it) {
    double moved = 0;
    std::vector<double> next(n);
    for (int i = 0; i < n; ++i) {
      const double a = i == 0 ? -INFINITY : (L[i - 1] + L[i]) / 2, b = i == n - 1 ? INFINITY : (L[i] + L[i + 1]) / 2;
      next[i] = (Pdf(a) - Pdf(b)) / (Cdf(b) - Cdf(a));
      moved = std::max(moved, std::fabs(next[i] - L[i]));
    }
    L = next;
    if (moved < 1e-15) break;
  }
  return L;
}

// Mean squared error of the quantizer (levels L, midpoint thresholds) on N(0, 1).
double Distortion(const std::vector<double>& L) {
  const int n = static_cast<int>(L.size());
  double d = 0;
  for (int i = 0; i < n; ++i) {
    const double a = i == 0 ? -INFINITY : (L[i - 1] + L[i]) / 2, b = i == n - 1 ? INFINITY : (L[i] + L[i + 1]) / 2;
    const double p = Cdf(b) - Cdf(a), m1 = Pdf(a) - Pdf(b);
    const double m2 = p + (std::isinf(a) ? 0.0 : a * Pdf(a)) - (std::isinf(b) ? 0.0 : b * Pdf(b));
    d += m2 - 2 * L[i] * m1 + L[i] * L[i] * p;
  }
  return d;
}

using mqkv::testing::Block;

Block Build(const CodecSpec& spec, const std::vector<float>& x, BlockShape shape) {
  return mqkv::testing::MustBuildBlock(spec, x, shape);
}

std::vector<float> Decode(const Block& b) {
  std::vector<float> out(uint64_t(b.h.n_tokens) * b.h.n_heads * b.h.head_dim);
  Status st = GetCodec(b.h.codec)->Decode(b.view(), 0, b.h.n_tokens, DType::kF32, out.data(), Backend::kScalar);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

const double kLloydMaxMse[5] = {0, 0, 0.11748, 0.034548, 0.0095010};  // Distortion(LloydMax(b)), 5 digits

}  // namespace

TEST(TurboPresets, ExpandToRotatedRmsScaledLloydMaxCodebooks) {
  for (int bits : {2, 3, 4}) {
    const std::string name = "turbo" + std::to_string(bits);
    auto spec = CodecSpec::Parse(name);
    ASSERT_TRUE(spec.ok()) << name;
    EXPECT_EQ(spec->codec, CodecId::kCodebook);
    EXPECT_EQ(spec->bits, bits);
    EXPECT_EQ(spec->rotation, Rotation::kHadamard);
    EXPECT_EQ(spec->scale_rule, ScaleRule::kRms);
    EXPECT_EQ(spec->axis, GroupAxis::kToken);
    EXPECT_EQ(spec->group, 0);  // the whole head vector
    EXPECT_TRUE(spec->thresholds.empty());  // midpoints: Lloyd-Max's decision boundaries
    EXPECT_EQ(spec->sinks + spec->residual, 0u);
    const std::vector<double> lm = LloydMax(bits);
    ASSERT_EQ(spec->levels.size(), lm.size());
    for (size_t i = 0; i < lm.size(); ++i) {
      EXPECT_NEAR(spec->levels[i], lm[i], 1e-6) << name << " level " << i;
      EXPECT_EQ(spec->levels[i], -spec->levels[lm.size() - 1 - i]) << name << ": symmetric";
    }
    EXPECT_NEAR(Distortion(lm), kLloydMaxMse[bits], 1e-5 * kLloydMaxMse[bits] * 10) << name;
    // The canonical string keeps the rule and parses back to the same spec.
    EXPECT_NE(spec->ToString().find("scale=rms"), std::string::npos);
    auto again = CodecSpec::Parse(spec->ToString());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *spec);
  }
  // Known values (Max 1960): 2-bit +-0.4528, +-1.5104; 3-bit +-0.2451, +-0.7560, +-1.3440, +-2.1520.
  EXPECT_NEAR(CodecSpec::Parse("turbo2").value().levels[3], 1.5104, 5e-5);
  EXPECT_NEAR(CodecSpec::Parse("turbo3").value().levels[7], 2.1520, 1e-4);
  EXPECT_NEAR(CodecSpec::Parse("turbo4").value().levels[15], 2.7326, 5e-5);
}

TEST(TurboPresets, RmsScaleIsTheGroupRms) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  const BlockShape sh{5, 2, 64};
  std::vector<float> x(sh.values());
  for (auto& v : x) v = nd(rng);
  // Without rotation, groups of 16: s' = fp16(fp32(sqrt(sum x^2 / 16))), sum in binary64 in order.
  const CodecSpec plain = CodecSpec::Parse("codebook:bits=2,group=16,levels=-1.5/-0.5/0.5/1.5,scale=rms").value();
  Block b = Build(plain, x, sh);
  const elem::Geometry g = elem::geometry(b.h);
  for (uint32_t t = 0; t < sh.n_tokens; ++t)
    for (uint32_t gc = 0; gc < g.group_cols; ++gc) {
      double sum = 0;
      for (uint32_t k = 0; k < 16; ++k) sum += double(x[t * 128 + gc * 16 + k]) * x[t * 128 + gc * 16 + k];
      const float want = round_to_f16(static_cast<float>(std::sqrt(sum / 16)));
      EXPECT_EQ(elem::meta_field(b.h, g, b.payload.data(), elem::kFieldScale, t, gc), want) << t << " " << gc;
    }
  // turbo: one scale per head vector, the rms of the rotated vector = ||x|| / sqrt(d) (the
  // rotation is orthonormal) up to fp16 rounding.
  Block tb = Build(CodecSpec::Parse("turbo3").value(), x, sh);
  const elem::Geometry tg = elem::geometry(tb.h);
  EXPECT_EQ(tb.h.group_size, 64);
  EXPECT_EQ(tg.group_cols, 2u);
  for (uint32_t t = 0; t < sh.n_tokens; ++t)
    for (uint32_t hd = 0; hd < 2; ++hd) {
      double sum = 0;
      for (uint32_t k = 0; k < 64; ++k) sum += double(x[t * 128 + hd * 64 + k]) * x[t * 128 + hd * 64 + k];
      const double s = elem::meta_field(tb.h, tg, tb.payload.data(), elem::kFieldScale, t, hd);
      EXPECT_NEAR(s, std::sqrt(sum / 64), std::sqrt(sum / 64) * (0x1p-11 + 1e-5)) << t << " " << hd;
    }
  // An all-zero vector has scale 0 and decodes to zeros.
  std::vector<float> z(sh.values(), 0.0f);
  const std::vector<float> dz = Decode(Build(CodecSpec::Parse("turbo2").value(), z, sh));
  for (float v : dz) EXPECT_EQ(v, 0.0f);
  auto bad = CodecSpec::Parse("codebook:bits=1,levels=-1/1,scale=l2");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("absmax, robust or rms"), std::string::npos) << bad.status().message();
}

TEST(TurboPresets, GaussianMsePerCoordinateIsNearLloydMax) {
  // Gaussian head vectors with norms spread over 4 orders of magnitude: the rms scale makes the
  // error relative to the norm, so the relative MSE is the Lloyd-Max distortion whatever the norm.
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const BlockShape sh{1024, 2, 128};
  std::vector<float> x(sh.values());
  for (uint64_t v = 0; v < x.size(); v += sh.head_dim) {
    const float norm = std::pow(10.0f, std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng));
    for (uint32_t d = 0; d < sh.head_dim; ++d) x[v + d] = nd(rng) * norm;
  }
  for (int bits : {2, 3, 4}) {
    const std::string name = "turbo" + std::to_string(bits);
    const std::vector<float> dec = Decode(Build(CodecSpec::Parse(name).value(), x, sh));
    // Relative MSE per head vector (err^2 / ||x||^2), averaged: norm-free.
    double rel = 0;
    for (uint64_t v = 0; v < x.size(); v += sh.head_dim) {
      double e2 = 0, n2 = 0;
      for (uint32_t d = 0; d < sh.head_dim; ++d) {
        const double e = double(dec[v + d]) - x[v + d];
        e2 += e * e;
        n2 += double(x[v + d]) * x[v + d];
      }
      rel += e2 / n2;
    }
    rel /= double(x.size() / sh.head_dim);
    std::printf("%s: relative MSE %.6f (Lloyd-Max N(0,1) distortion %.6f, ratio %.4f)\n", name.c_str(), rel, kLloydMaxMse[bits],
                rel / kLloydMaxMse[bits]);
    EXPECT_NEAR(rel / kLloydMaxMse[bits], 1.0, 0.03) << name;
  }
}

namespace {

double SquaredError(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) e += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return e;
}

std::vector<float> StoredLevels(const Block& b) {
  std::vector<float> L;
  for (uint64_t i = 0; i < b.h.parts[kPartCodebook].bytes / 4; ++i)
    L.push_back(mqkv::elem::load_f32(b.payload.data() + b.h.parts[kPartCodebook].offset + 4 * i));
  return L;
}

}  // namespace

// fit=lloyd: the levels given are only Lloyd's starting point; the block stores levels fitted to its
// own scale-normalized values, which the decoder reads like any codebook.
TEST(CodebookFit, LloydFittedLevelsLowerTheErrorAndAreStored) {
  std::mt19937 rng(11);
  std::gamma_distribution<float> gd(0.7f, 1.0f);  // heavy-tailed, asymmetric: far from N(0, 1)
  const BlockShape sh{512, 2, 64};
  std::vector<float> x(sh.values());
  for (float& v : x) v = gd(rng) - 0.7f;
  for (const char* base : {"codebook:bits=3,rotate=hadamard,scale=rms,levels=-2.151946/-1.343909/-0.756005/-0.245094/0.245094/0.756005/1.343909/2.151946",
                           "codebook:bits=2,axis=channel,levels=-1/-0.33/0.33/1,scale=absmax",
                           "codebook:bits=8,entropy=rans,levels=-1.5/-0.5/0/0.5/1.5,scale=rms"}) {
    const CodecSpec plain = CodecSpec::Parse(base).value();
    const CodecSpec fit = CodecSpec::Parse(std::string(base) + ",fit=lloyd").value();
    ASSERT_TRUE(fit.fit_lloyd);
    EXPECT_EQ(CodecSpec::Parse(fit.ToString()).value(), fit) << fit.ToString();
    EXPECT_NE(fit.ToString().find(",fit=lloyd"), std::string::npos);
    const Block bp = Build(plain, x, sh), bf = Build(fit, x, sh);
    const std::vector<float> L = StoredLevels(bf);
    ASSERT_EQ(L.size(), plain.levels.size()) << base;
    EXPECT_NE(L, plain.levels) << base << ": the levels did not move";
    for (size_t i = 1; i < L.size(); ++i) EXPECT_LT(L[i - 1], L[i]) << base;
    const double ep = SquaredError(Decode(bp), x), ef = SquaredError(Decode(bf), x);
    // Under the Hadamard rotation the values are close to N(0, 1), which the given levels fit
    // already: a small gain there, a large one on the raw, skewed values.
    const double want = fit.rotation == Rotation::kHadamard ? 1.0 : 0.9;
    EXPECT_LT(ef, want * ep) << base << ": fitted " << ef << " vs given levels " << ep;
    // What a reader sees: the block's levels, and the same decode on every backend.
    EXPECT_EQ(GetCodec(bf.h.codec)->SpecOf(bf.h, bf.payload.data()).levels, L);
  }
  EXPECT_FALSE(CodecSpec::Parse("codebook:bits=2,levels=-1/-0.3/0.3/1,thresholds=-0.5/0/0.5,fit=lloyd").ok());
  EXPECT_FALSE(CodecSpec::Parse("codebook:bits=2,levels=-1/-0.3/0.3/1,fit=kmeans").ok());
  EXPECT_FALSE(CodecSpec::Parse("affine:bits=2,fit=lloyd").ok());
}
