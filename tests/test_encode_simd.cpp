// The SIMD affine encoder equals the scalar reference (lowbit::EncodeAffineScalar) byte for byte
// (header and every part), under every ISA this machine has, each forced in turn: every bit
// width, both axes, many group sizes, meta 16/8/4, sinks and residual rows, Hadamard rotation,
// shapes whose rows or groups are not a multiple of 16 lanes, and adversarial inputs (constant
// groups, +-0.0 mixes, magnitudes near the fp16 limits, subnormals, exact .5 code ties). Inputs
// the reference refuses (NaN, infinity, metadata outside fp16) give the same error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mqkv/mqkv.h"
#include "mqkv/simd.h"
#include "support.h"

using namespace mqkv;

namespace {

std::vector<std::string> SimdOnly() { return mqkv::testing::SimdOnlyArchs(); }
using AutoArch = mqkv::testing::AutoSimdArch;

struct Encoded {
  Status status;
  EncodedBlock block;
};

Encoded Encode(const std::string& arch, const CodecSpec& spec, const std::vector<float>& x, BlockShape shape) {
  EXPECT_TRUE(ForceSimdArch(arch).ok()) << arch;
  Encoded e;
  e.status = EncodeBlock(spec, x.data(), shape, &e.block);
  return e;
}

// First difference between two encodings, or "" when equal (status, header, every part).
std::string Difference(const Encoded& ref, const Encoded& got) {
  if (ref.status.ok() != got.status.ok() || ref.status.ToString() != got.status.ToString())
    return "status \"" + got.status.ToString() + "\" vs reference \"" + ref.status.ToString() + "\"";
  if (!ref.status.ok()) return "";
  if (std::memcmp(&ref.block.header, &got.block.header, sizeof(BlockHeader)) != 0) return "header";
  for (int p = 0; p < kNumParts; ++p) {
    const std::vector<uint8_t>& a = ref.block.parts[p];
    const std::vector<uint8_t>& b = got.block.parts[p];
    if (a.size() != b.size()) return "part " + std::to_string(p) + " size";
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i] != b[i])
        return "part " + std::to_string(p) + " byte " + std::to_string(i) + " of " + std::to_string(a.size()) + ": " +
               std::to_string(b[i]) + " vs reference " + std::to_string(a[i]);
  }
  return "";
}

// Encodes with every SIMD ISA and the scalar reference; returns false after the first mismatch.
bool ExpectSameAsReference(const CodecSpec& spec, const std::vector<float>& x, BlockShape shape, const std::string& what,
                           bool expect_ok = true) {
  const Encoded ref = Encode("scalar", spec, x, shape);
  if (expect_ok && !ref.status.ok()) {
    ADD_FAILURE() << what << ": " << spec.ToString() << ": reference failed: " << ref.status.ToString();
    return false;
  }
  for (const std::string& arch : SimdOnly()) {
    const std::string d = Difference(ref, Encode(arch, spec, x, shape));
    if (!d.empty()) {
      ADD_FAILURE() << what << ": " << arch << " " << spec.ToString() << " shape " << shape.n_tokens << "x" << shape.n_heads
                    << "x" << shape.head_dim << ": " << d;
      return false;
    }
  }
  return true;
}

// ---- inputs ---------------------------------------------------------------------------------

enum class Kind { kNormal, kTiny, kConstant, kZeros, kNonNegativeWithZeros, kNonPositiveWithZeros, kTies, kNearF16Max, kSubnormal, kMixed };
const Kind kKinds[] = {Kind::kNormal, Kind::kTiny, Kind::kConstant, Kind::kZeros, Kind::kNonNegativeWithZeros, Kind::kNonPositiveWithZeros,
                       Kind::kTies, Kind::kNearF16Max, Kind::kSubnormal, Kind::kMixed};
const char* KindName(Kind k) {
  switch (k) {
    case Kind::kNormal: return "normal";
    case Kind::kTiny: return "tiny";
    case Kind::kConstant: return "constant";
    case Kind::kZeros: return "zeros";
    case Kind::kNonNegativeWithZeros: return "nonnegative+zeros";
    case Kind::kNonPositiveWithZeros: return "nonpositive+zeros";
    case Kind::kTies: return "ties";
    case Kind::kNearF16Max: return "near-fp16-max";
    case Kind::kSubnormal: return "subnormal";
    case Kind::kMixed: return "mixed";
  }
  return "?";
}

std::vector<float> Input(Kind kind, uint64_t n, uint32_t bits, std::mt19937& rng) {
  std::vector<float> x(n);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto zero = [&] { return rng() % 2 ? 0.0f : -0.0f; };
  const float levels = float((1u << bits) - 1u);
  for (uint64_t i = 0; i < n; ++i) {
    switch (kind) {
      case Kind::kNormal: x[i] = normal(rng) * 3.0f + 0.5f; break;
      case Kind::kTiny: x[i] = normal(rng) * 1e-6f; break;  // scales round to fp16 subnormals or 0
      case Kind::kConstant: x[i] = 0.3f; break;
      case Kind::kZeros: x[i] = zero(); break;
      case Kind::kNonNegativeWithZeros: x[i] = rng() % 3 ? zero() : std::fabs(normal(rng)); break;
      case Kind::kNonPositiveWithZeros: x[i] = rng() % 3 ? zero() : -std::fabs(normal(rng)); break;
      case Kind::kTies: {
        // Every group spans [0, levels] exactly (s = 1, mn = 0 in fp16): values k + 0.5 are
        // code ties, rounded half to even; anchors 0 and levels at known places.
        const uint64_t k = rng() % (1u << bits);
        x[i] = i % 8 == 0 ? 0.0f : i % 8 == 1 ? levels : float(k) + (rng() % 2 ? 0.5f : 0.0f);
        if (x[i] > levels) x[i] = levels;
        break;
      }
      case Kind::kNearF16Max:  // minimums near -65504 (some round past it), scales near 65504
        x[i] = -65000.0f - float(rng() % 520) + float(rng() % 1000) * (0.000999f * 65504.0f * levels);
        break;
      case Kind::kSubnormal: x[i] = std::ldexp(float(int(rng() % 2000) - 1000), -140); break;
      case Kind::kMixed: {
        const uint32_t r = rng() % 6;
        x[i] = r == 0 ? zero() : r == 1 ? std::ldexp(1.0f, -(int)(rng() % 30)) : r == 2 ? -0.5f : normal(rng);
        break;
      }
    }
  }
  return x;
}

struct Shape {
  uint32_t tokens, heads, head_dim;
};
// Rows of 16k lanes and not (n_heads * head_dim = 8 mod 16), heads of 8 .. 256 dims (Hadamard
// blocks 8 .. 256).
const Shape kShapes[] = {{21, 2, 64}, {9, 3, 24}, {12, 1, 8}, {17, 4, 80}, {10, 2, 128}, {7, 3, 96}, {5, 1, 256}, {6, 5, 40}};

std::vector<uint16_t> TokenGroups(uint32_t head_dim) {
  std::vector<uint16_t> g = {0};
  for (uint32_t v = 8; v <= head_dim; v += 8)
    if (head_dim % v == 0) g.push_back(static_cast<uint16_t>(v));
  return g;
}

// ---- tests ----------------------------------------------------------------------------------

TEST(EncodeSimd, ArchsIncludeScalar) {
  const std::vector<std::string> archs = SimdArchs();
  ASSERT_FALSE(archs.empty());
  EXPECT_EQ(archs.back(), "scalar");
}

// Every bit width, axis, group size, meta width and rotation on every shape, random inputs.
TEST(EncodeSimd, EverySpecFamilyEqualsReference) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  AutoArch restore;
  std::mt19937 rng(8);
  int checked = 0;
  for (const Shape& sh : kShapes) {
    const BlockShape shape{sh.tokens, sh.heads, sh.head_dim};
    for (uint8_t bits : {2, 3, 4, 8})
      for (GroupAxis axis : {GroupAxis::kToken, GroupAxis::kChannel}) {
        std::vector<uint16_t> groups = axis == GroupAxis::kToken ? TokenGroups(sh.head_dim) : std::vector<uint16_t>{0, 1, 3, 8, 32};
        for (uint16_t group : groups)
          for (uint8_t meta : {16, 8, 4})
            for (Rotation rot : {Rotation::kNone, Rotation::kHadamard}) {
              CodecSpec spec;
              spec.codec = CodecId::kAffine;
              spec.bits = bits;
              spec.axis = axis;
              spec.group = group;
              spec.meta_bits = meta;
              spec.rotation = rot;
              spec.seed = rng();
              if (rng() % 3 == 0) spec.sinks = rng() % 3;
              if (rng() % 3 == 0) spec.residual = rng() % 4;
              const std::vector<float> x = Input(Kind::kNormal, shape.values(), bits, rng);
              if (!ExpectSameAsReference(spec, x, shape, "random")) return;
              ++checked;
            }
      }
  }
  EXPECT_GT(checked, 1000);
}

// Adversarial inputs for a set of specs covering the same families.
TEST(EncodeSimd, AdversarialInputsEqualReference) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  AutoArch restore;
  std::mt19937 rng(9);
  const char* specs[] = {"affine:bits=2,group=64",
                         "affine:bits=3,group=64",
                         "affine:bits=4,group=32",
                         "affine:bits=8,group=16",
                         "affine:bits=3,group=8",
                         "affine:bits=2,group=32,meta=4",
                         "affine:bits=4,group=64,meta=8",
                         "affine:bits=2,axis=channel,group=32",
                         "affine:bits=3,axis=channel,group=5,meta=4",
                         "affine:bits=8,axis=channel",
                         "affine:bits=4,axis=channel,group=1",
                         "affine:bits=2,group=64,rotate=hadamard",
                         "affine:bits=3,group=16,meta=8,rotate=hadamard",
                         "affine:bits=4,axis=channel,group=8,rotate=hadamard,sinks=1,residual=2",
                         "ggml_q4_0",
                         "ggml_q8_0",
                         "affine:bits=4,group=64,rule=q4_0,rotate=hadamard,sinks=1",
                         "affine:bits=8,axis=channel,group=8,rule=q8_0"};
  for (const char* text : specs) {
    Result<CodecSpec> spec = CodecSpec::Parse(text);
    ASSERT_TRUE(spec.ok()) << text;
    for (const Shape& sh : {Shape{24, 2, 64}, Shape{9, 3, 64}, Shape{33, 1, 128}}) {
      const BlockShape shape{sh.tokens, sh.heads, sh.head_dim};
      for (Kind kind : kKinds) {
        const std::vector<float> x = Input(kind, shape.values(), spec->bits, rng);
        // Near the fp16 limits some metadata may overflow: then both must refuse alike.
        if (!ExpectSameAsReference(*spec, x, shape, KindName(kind), kind != Kind::kNearF16Max)) return;
      }
    }
  }
}

// +-0.0 placements that decide the sign of a group's min / max: the reference keeps the first
// smallest and the last largest value.
TEST(EncodeSimd, SignedZeroOrderEqualsReference) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  AutoArch restore;
  for (const char* text : {"affine:bits=2,group=16", "affine:bits=4,group=64", "affine:bits=3,axis=channel,group=4",
                           "affine:bits=2,group=8,meta=4", "affine:bits=8,axis=channel,group=3,meta=8"}) {
    const CodecSpec spec = *CodecSpec::Parse(text);
    const BlockShape shape{12, 1, 64};
    const uint64_t n = shape.values();
    for (int pattern = 0; pattern < 8; ++pattern) {
      std::vector<float> x(n);
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t lane = i % 16;
        switch (pattern) {
          case 0: x[i] = lane == 0 ? 0.0f : -0.0f; break;             // +0 first, then -0
          case 1: x[i] = lane == 15 ? 0.0f : -0.0f; break;            // +0 last
          case 2: x[i] = lane % 2 ? 0.0f : -0.0f; break;              // alternating
          case 3: x[i] = lane == 9 ? -0.0f : lane < 4 ? 1.0f : 0.0f; break;  // min is a zero, -0 in a later lane
          case 4: x[i] = lane == 9 ? 0.0f : lane < 4 ? -1.0f : -0.0f; break;  // max is a zero
          case 5: x[i] = (i / 64) % 2 ? -0.0f : 0.0f; break;          // whole rows of one sign
          case 6: x[i] = i % 7 == 0 ? 0.0f : i % 5 == 0 ? -0.0f : 2.0f; break;
          case 7: x[i] = i % 7 == 0 ? -0.0f : i % 5 == 0 ? 0.0f : -2.0f; break;
        }
      }
      if (!ExpectSameAsReference(spec, x, shape, "signed zeros pattern " + std::to_string(pattern))) return;
    }
  }
}

// NaN and infinities among the quantized rows are refused with the reference's message (naming
// the first one); in sink / residual rows they are stored as fp16 like the reference does.
TEST(EncodeSimd, NonFiniteInputSameErrorAsReference) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  AutoArch restore;
  std::mt19937 rng(10);
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  for (const char* text : {"affine:bits=2,group=64", "affine:bits=3,axis=channel,group=8", "affine:bits=4,group=32,meta=4",
                           "affine:bits=2,group=64,rotate=hadamard,sinks=1,residual=1"}) {
    const CodecSpec spec = *CodecSpec::Parse(text);
    const BlockShape shape{40, 2, 64};
    for (int trial = 0; trial < 12; ++trial) {
      std::vector<float> x = Input(Kind::kNormal, shape.values(), spec.bits, rng);
      const uint64_t at = rng() % x.size();
      x[at] = bad[trial % 4];
      if (trial % 3 == 0) x[(at + 1 + rng() % 100) % x.size()] = bad[(trial + 1) % 4];  // a second one
      if (!ExpectSameAsReference(spec, x, shape, "non-finite at " + std::to_string(at), false)) return;
      const Encoded ref = Encode("scalar", spec, x, shape);
      const uint64_t row = at / 128;
      const bool quantized = row >= spec.sinks && row < shape.n_tokens - spec.residual;
      EXPECT_EQ(ref.status.ok(), !quantized) << text << " row " << row << ": " << ref.status.ToString();
    }
  }
}

// Metadata that does not fit fp16 (a group minimum below -65504, a scale above it) is refused
// alike, whichever group comes first in the reference's order.
TEST(EncodeSimd, MetadataOverflowSameErrorAsReference) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  AutoArch restore;
  std::mt19937 rng(11);
  for (const char* text : {"affine:bits=2,group=64", "affine:bits=8,group=16", "affine:bits=2,axis=channel,group=4",
                           "affine:bits=3,group=32,meta=4"}) {
    const CodecSpec spec = *CodecSpec::Parse(text);
    const BlockShape shape{300, 2, 64};  // several chunks
    for (int trial = 0; trial < 6; ++trial) {
      std::vector<float> x = Input(Kind::kNormal, shape.values(), spec.bits, rng);
      const uint64_t a = rng() % x.size(), b = rng() % x.size();
      x[a] = trial % 2 ? -70000.0f : 1e8f;  // min overflow / scale overflow (every bit width)
      x[b] = trial % 3 ? 3e7f : -2e5f;
      if (!ExpectSameAsReference(spec, x, shape, "metadata overflow", false)) return;
      EXPECT_FALSE(Encode("scalar", spec, x, shape).status.ok()) << text;
    }
  }
}

// Larger blocks (several encoder chunks, many group rows), Q = 0 and a channel group that
// holds every row.
TEST(EncodeSimd, ChunksAndEdgeShapesEqualReference) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  AutoArch restore;
  std::mt19937 rng(12);
  for (const char* text : {"affine:bits=2,group=64", "affine:bits=3,group=64,meta=4", "affine:bits=4,axis=channel,group=32",
                           "affine:bits=2,axis=channel", "affine:bits=3,group=64,rotate=hadamard",
                           "affine:bits=2,group=64,meta=8,rotate=hadamard", "affine:bits=8,axis=channel,group=5,rotate=hadamard"}) {
    const CodecSpec spec = *CodecSpec::Parse(text);
    for (const BlockShape shape : {BlockShape{513, 8, 128}, BlockShape{70, 1, 2048}, BlockShape{100, 3, 576}}) {
      const std::vector<float> x = Input(Kind::kMixed, shape.values(), spec.bits, rng);
      if (!ExpectSameAsReference(spec, x, shape, "large")) return;
    }
  }
  // No quantized rows at all.
  CodecSpec spec = *CodecSpec::Parse("affine:bits=2,group=64,sinks=2,residual=3");
  std::vector<float> x = Input(Kind::kNormal, 5 * 64, 2, rng);
  ExpectSameAsReference(spec, x, BlockShape{5, 1, 64}, "Q = 0");
  spec = *CodecSpec::Parse("affine:bits=2,axis=channel,group=4,meta=4,sinks=2,residual=3");
  ExpectSameAsReference(spec, x, BlockShape{5, 1, 64}, "Q = 0 channel meta4");
}

// An EncodedBlock reused across encodes of other shapes gives the bytes of a fresh one.
TEST(EncodeSimd, ReusedOutputEqualsFresh) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  AutoArch restore;
  std::mt19937 rng(13);
  for (const std::string& arch : SimdOnly()) {
    ASSERT_TRUE(ForceSimdArch(arch).ok());
    EncodedBlock reused;
    for (const char* text : {"affine:bits=4,group=32", "affine:bits=2,axis=channel,group=8,meta=4", "affine:bits=3,group=64"}) {
      const CodecSpec spec = *CodecSpec::Parse(text);
      const BlockShape shape{uint32_t(16 + rng() % 20), 2, 64};
      const std::vector<float> x = Input(Kind::kNormal, shape.values(), spec.bits, rng);
      EncodedBlock fresh;
      ASSERT_TRUE(EncodeBlock(spec, x.data(), shape, &fresh).ok());
      ASSERT_TRUE(EncodeBlock(spec, x.data(), shape, &reused).ok());
      EXPECT_EQ(std::memcmp(&fresh.header, &reused.header, sizeof(BlockHeader)), 0) << arch << " " << text;
      for (int p = 0; p < kNumParts; ++p) EXPECT_EQ(fresh.parts[p], reused.parts[p]) << arch << " " << text << " part " << p;
    }
  }
}

}  // namespace
