// The SIMD decoder equals the scalar reference bit for bit, under every ISA this machine has
// (each forced in turn), for every low-bit codec shape, every output type and odd row ranges;
// plus crafted edge values (NaN / Inf / subnormal metadata and levels) and the f16 / bf16
// conversions of arbitrary binary32 patterns against numeric.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "codec/simd.h"
#include "format/container.h"
#include "detail/lowbit.h"
#include "mqkv/mqkv.h"
#include "mqkv/simd.h"
#include "support.h"

using namespace mqkv;

namespace {

using mqkv::testing::Block;  // payload exactly payload_bytes: any over-read shows under ASan

Status Build(const CodecSpec& spec, const std::vector<float>& x, BlockShape shape, Block* out) {
  return mqkv::testing::BuildBlock(spec, x, shape, out);
}

std::vector<uint8_t> DecodeBytes(const Block& b, uint32_t r0, uint32_t r1, DType t, Backend be) {
  std::vector<uint8_t> out(uint64_t(r1 - r0) * b.h.n_heads * b.h.head_dim * DTypeSize(t) + 1, 0xA5);
  const Status s = GetCodec(b.h.codec)->Decode(b.view(), r0, r1, t, out.data(), be);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(out.back(), 0xA5) << "decode wrote past its output";
  return out;
}

std::vector<std::string> SimdOnly() { return mqkv::testing::SimdOnlyArchs(); }
using AutoArch = mqkv::testing::AutoSimdArch;  // restores automatic selection when a test ends

// Every ISA, every output type, the given row ranges: bytes equal to the scalar decode.
void ExpectAllArchsMatch(const Block& b, const std::vector<std::pair<uint32_t, uint32_t>>& ranges, const std::string& what) {
  AutoArch restore;
  for (const auto& [r0, r1] : ranges)
    for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
      const std::vector<uint8_t> ref = DecodeBytes(b, r0, r1, t, Backend::kScalar);
      for (const std::string& arch : SimdOnly()) {
        ASSERT_TRUE(ForceSimdArch(arch).ok());
        for (Backend be : {Backend::kSimd, Backend::kAuto}) {
          const std::vector<uint8_t> got = DecodeBytes(b, r0, r1, t, be);
          if (got != ref) {
            size_t i = 0;
            while (got[i] == ref[i]) ++i;
            ADD_FAILURE() << what << ": " << arch << " " << DTypeName(t) << " rows [" << r0 << ", " << r1
                          << ") differ from scalar first at byte " << i << " (element " << i / DTypeSize(t) << ")";
            return;
          }
        }
      }
    }
}

TEST(Simd, ArchListAndForcing) {
  AutoArch restore;
  const std::vector<std::string> archs = SimdArchs();
  ASSERT_FALSE(archs.empty());
  EXPECT_EQ(archs.back(), "scalar");
  EXPECT_EQ(BackendAvailable(Backend::kSimd), archs.size() > 1);
  for (const std::string& a : archs) {
    ASSERT_TRUE(ForceSimdArch(a).ok()) << a;
    EXPECT_EQ(ActiveSimdArch(), a);
  }
  const Status bad = ForceSimdArch("avx1024");
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("avx1024"), std::string::npos);
  EXPECT_EQ(ActiveSimdArch(), archs[archs.size() - 1]);  // unchanged by the failed call
  ASSERT_TRUE(ForceSimdArch("auto").ok());
  EXPECT_EQ(ActiveSimdArch(), archs.front());
#if defined(__x86_64__)
  EXPECT_NE(std::find(archs.begin(), archs.end(), "sse2"), archs.end()) << "SSE2 is the x86-64 baseline";
#elif defined(__aarch64__)
  EXPECT_EQ(archs.front(), "neon") << "Advanced SIMD is the AArch64 baseline";
#endif
}

// Random shapes and specs: all bit widths, meta 4/8/16, both axes, Hadamard with head_dim
// 64/128/80/96 (and odd ones whose Hadamard blocks are 8), sinks / residual, odd row ranges.
TEST(Simd, RandomBlocksEqualScalarUnderEveryIsa) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  std::mt19937 rng(20261129);
  auto pick = [&](auto... v) {
    const std::array<int, sizeof...(v)> a{v...};
    return a[rng() % a.size()];
  };
  int built = 0;
  for (int iter = 0; iter < 260; ++iter) {
    CodecSpec spec;
    const bool cb = iter % 4 == 3;
    spec.codec = cb ? CodecId::kCodebook : CodecId::kAffine;
    spec.bits = static_cast<uint8_t>(cb ? pick(1, 2, 3, 4) : pick(2, 3, 4, 8));
    spec.meta_bits = static_cast<uint8_t>(cb ? 16 : pick(4, 8, 16));
    const uint32_t head_dim = static_cast<uint32_t>(pick(64, 128, 80, 96, 64, 128, 8, 24, 40, 16, 32, 256));
    const uint32_t n_heads = static_cast<uint32_t>(pick(1, 2, 3, 4));
    spec.axis = rng() % 3 == 0 ? GroupAxis::kChannel : GroupAxis::kToken;
    if (spec.axis == GroupAxis::kToken) {
      std::vector<int> gs;
      for (uint32_t g = 8; g <= head_dim; g += 8)
        if (head_dim % g == 0) gs.push_back(static_cast<int>(g));
      spec.group = static_cast<uint16_t>(gs[rng() % gs.size()]);
    } else {
      spec.group = static_cast<uint16_t>(pick(0, 1, 3, 5, 8, 16, 32));
    }
    if (rng() % 2) {
      spec.rotation = Rotation::kHadamard;
      spec.seed = rng();
    }
    const uint32_t rows = 1 + rng() % 40;
    spec.sinks = rng() % 3 == 0 ? rng() % std::min<uint32_t>(rows, 3) : 0;
    spec.residual = rng() % 3 == 0 ? rng() % (rows - spec.sinks + 1) : 0;
    if (cb) {
      const uint32_t n = 1u << spec.bits;
      float v = -1.0f - float(rng() % 100) / 50.0f;
      for (uint32_t i = 0; i < n; ++i) {
        spec.levels.push_back(v);
        v += 0.05f + float(rng() % 100) / 60.0f;
      }
      spec.scale_rule = rng() % 2 ? ScaleRule::kRobust : ScaleRule::kAbsMax;
    }
    const BlockShape shape{rows, n_heads, head_dim};
    std::vector<float> x = mqkv::testing::RandomRows(shape.values(), 1000 + iter, rng() % 2 ? 1.0f : 1e-3f);
    if (rng() % 4 == 0)  // a constant head vector: scale 0 groups
      for (uint32_t d = 0; d < head_dim; ++d) x[d] = 0.25f;
    Block b;
    const Status s = Build(spec, x, shape, &b);
    ASSERT_TRUE(s.ok()) << spec.ToString() << ": " << s.ToString();
    ++built;
    std::vector<std::pair<uint32_t, uint32_t>> ranges = {{0, rows}};
    const uint32_t r0 = rng() % rows, r1 = r0 + 1 + rng() % (rows - r0);
    ranges.push_back({r0, r1});
    ExpectAllArchsMatch(b, ranges,
                        spec.ToString() + " shape " + std::to_string(rows) + "x" + std::to_string(n_heads) + "x" + std::to_string(head_dim));
    if (HasFailure()) return;
  }
  EXPECT_EQ(built, 260);
}

// The shapes the benchmarks and presets use, with every preset.
// The table kernels read 16 bytes at a time up to the end of the code part (not of the row):
// with the code part moved to the end of an exact-size payload, a read past it shows under ASan.
TEST(Simd, TableLoopsStayInsideACodePartAtThePayloadsEnd) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  for (const char* text : {"affine:bits=2,group=64", "affine:bits=3,group=64", "affine:bits=4,group=64",
                           "affine:bits=4,group=16", "codebook:bits=4,group=32,levels=-8/-7/-6/-5/-4/-3/-2/-1/1/2/3/4/5/6/7/8"}) {
    const CodecSpec spec = *CodecSpec::Parse(text);
    const BlockShape shape{37, 3, 64};  // SmolLM2's rows of 192 values, an odd row count
    const Block b = mqkv::testing::MustBuildBlock(spec, mqkv::testing::RandomRows(shape.values(), 7, 1.0f), shape);
    Block last;
    last.h = b.h;
    uint32_t at = 0;
    for (int k = 1; k < kNumParts; ++k) {  // every other part first, in order, then the codes
      last.h.parts[k].offset = at;
      at += (b.h.parts[k].bytes + kPartAlign - 1) / kPartAlign * kPartAlign;
    }
    last.h.parts[kPartCodes].offset = at;
    last.h.payload_bytes = last.h.stored_bytes = at + b.h.parts[kPartCodes].bytes;
    last.payload.assign(last.h.payload_bytes, 0);
    for (int k = 0; k < kNumParts; ++k)
      if (b.h.parts[k].bytes)
        std::memcpy(last.payload.data() + last.h.parts[k].offset, b.payload.data() + b.h.parts[k].offset, b.h.parts[k].bytes);
    ExpectAllArchsMatch(last, {{0, 37}, {36, 37}}, text);
  }
}

TEST(Simd, PresetsEqualScalarUnderEveryIsa) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  for (const std::string& name : PresetNames()) {
    Result<CodecSpec> spec = CodecSpec::Parse(name);
    ASSERT_TRUE(spec.ok()) << name;
    if (spec->codec != CodecId::kAffine && spec->codec != CodecId::kCodebook) continue;
    const BlockShape shape{200, 4, 128};
    Block b;
    const Status s = Build(*spec, mqkv::testing::RandomRows(shape.values(), 7), shape, &b);
    ASSERT_TRUE(s.ok()) << name << ": " << s.ToString();
    ExpectAllArchsMatch(b, {{0, 200}, {1, 2}, {5, 199}}, name);
  }
}

uint16_t* MetaF16(Block& b, int part) { return reinterpret_cast<uint16_t*>(b.payload.data() + b.h.parts[part].offset); }

// NaN (quiet and signalling payloads), infinities, subnormal and overflowing metadata.
TEST(Simd, CraftedEdgeMetadataEqualScalar) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  const uint16_t specials[] = {0x7E00, 0x7D01, 0xFE3F, 0x7C00, 0xFC00, 0x0001, 0x8001, 0x03FF,
                               0x0400, 0x7BFF, 0xFBFF, 0x0000, 0x8000, 0x3C00, 0x1400, 0x0200};
  for (const char* text : {"affine:bits=4,group=32", "affine:bits=2,group=16,axis=channel", "affine:bits=3,group=64",
                           "affine:bits=8,group=64,rotate=hadamard", "codebook:bits=2,group=32,levels=-2/-1/1/2"}) {
    Result<CodecSpec> spec = CodecSpec::Parse(text);
    ASSERT_TRUE(spec.ok()) << text;
    const BlockShape shape{12, 2, 64};
    Block b;
    ASSERT_TRUE(Build(*spec, mqkv::testing::RandomRows(shape.values(), 3), shape, &b).ok()) << text;
    uint16_t* sc = MetaF16(b, kPartScales);
    uint16_t* mn = spec->codec == CodecId::kAffine ? MetaF16(b, kPartMins) : nullptr;
    const size_t groups = b.h.parts[kPartScales].bytes / 2;
    // The affine Hadamard kernels use butterflies that are exact for every non-NaN value
    // (simd_kernels.h RowHadamard), which finite metadata guarantees; the library never decodes
    // other metadata (the reader refuses it, spec/CODECS.md "Non-finite metadata"). So that
    // config gets the finite specials only; every other one gets NaNs and infinities too.
    const bool finite_only = spec->codec == CodecId::kAffine && spec->rotation != Rotation::kNone;
    auto special = [&](size_t k) {
      uint16_t u = specials[k % 16];
      while (finite_only && (u & 0x7C00u) == 0x7C00u) u = specials[++k % 16];
      return u;
    };
    for (size_t i = 0; i < groups; ++i) {
      if (i % 3 == 0) sc[i] = special(i);
      if (mn && i % 4 == 1) mn[i] = special(i * 7);
      if (i % 5 == 2) sc[i] = 0x0001;  // subnormal products
    }
    ExpectAllArchsMatch(b, {{0, 12}, {3, 4}}, std::string("crafted ") + text);
  }
  // Meta-coded fields against crafted shared ranges (NaN, Inf, reversed, subnormal).
  Result<CodecSpec> spec = CodecSpec::Parse("affine:bits=3,group=16,meta=4");
  ASSERT_TRUE(spec.ok());
  const BlockShape shape{9, 1, 64};
  Block b;
  ASSERT_TRUE(Build(*spec, mqkv::testing::RandomRows(shape.values(), 4), shape, &b).ok());
  uint16_t* r = MetaF16(b, kPartRanges);
  const size_t pairs = b.h.parts[kPartRanges].bytes / 4;
  const uint16_t lohi[][2] = {{0x7E00, 0x3C00}, {0x0000, 0x7C00}, {0x3C00, 0x0000}, {0x0001, 0x0003},
                              {0xFC00, 0x7C00}, {0x7BFF, 0xFBFF}, {0x8001, 0x0001}, {0x4000, 0x7D00}};
  for (size_t i = 0; i < pairs; ++i) {
    r[2 * i] = lohi[i % 8][0];
    r[2 * i + 1] = lohi[i % 8][1];
  }
  ExpectAllArchsMatch(b, {{0, 9}, {8, 9}}, "crafted meta4 ranges");
}

// f16 / bf16 output of arbitrary binary32 patterns: a 4-bit codebook with scale 1 outputs its
// levels exactly, so crafted levels reach the output conversions directly. Compared with
// numeric.h, not only with the scalar decoder.
TEST(Simd, OutputConversionsMatchNumericH) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  AutoArch restore;
  CodecSpec spec = *CodecSpec::Parse("codebook:bits=4,group=16,levels=-8/-7/-6/-5/-4/-3/-2/-1/1/2/3/4/5/6/7/8");
  const BlockShape shape{1, 1, 32};
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[i] = float(i % 16) - 7.5f;
  Block b;
  ASSERT_TRUE(Build(spec, x, shape, &b).ok());
  uint16_t* sc = MetaF16(b, kPartScales);
  sc[0] = sc[1] = 0x3C00;  // scale 1: output = L[q] exactly
  // Codes 0..15 twice, so output element i is level i % 16.
  uint8_t* codes = b.payload.data() + b.h.parts[kPartCodes].offset;
  for (int i = 0; i < 16; ++i) codes[i] = static_cast<uint8_t>((2 * i % 16) | ((2 * i + 1) % 16) << 4);
  uint8_t* levels = b.payload.data() + b.h.parts[kPartCodebook].offset;

  std::vector<uint32_t> patterns;
  // Around every f16 boundary: subnormal / normal, overflow, ties at each shift, NaN payloads.
  for (uint32_t e = 100; e <= 145; ++e)
    for (uint32_t m : {0u, 1u, 0xFFFu, 0x1000u, 0x1001u, 0x2000u, 0x3000u, 0x7FFFFFu, 0x400000u, 0x7FE000u, 0x7FF000u})
      for (uint32_t s : {0u, 0x80000000u}) patterns.push_back(s | e << 23 | m);
  for (uint32_t e = 102; e <= 113; ++e)  // subnormal-result ties: rem == half at each shift
    for (uint32_t k = 0; k < 24; ++k) patterns.push_back(e << 23 | (1u << k) | ((k + e) % 2 ? 1u << 23 >> 1 : 0u));
  for (uint32_t p : {0x7F800000u, 0xFF800000u, 0x7F800001u, 0x7FC00000u, 0xFFC00001u, 0x7FBFFFFFu, 0x00000001u,
                     0x807FFFFFu, 0x477FEFFFu, 0x477FF000u, 0x477FF001u, 0x7F7FFFFFu, 0x33000000u, 0x33000001u,
                     0x387FC000u, 0x387FE000u, 0x3F807FFFu, 0x3F808000u, 0x3F818000u, 0xFF7FFFFFu})
    patterns.push_back(p);
  std::mt19937 rng(5);
  for (int i = 0; i < 16 * 3000; ++i) patterns.push_back(rng());
  while (patterns.size() % 16) patterns.push_back(0x3F800000u);

  volatile float one_v = 1.0f;  // not folded: x * 1.0f is an IEEE multiply, as in the decoder
  const float one = one_v;
  for (const std::string& arch : SimdOnly()) {
    ASSERT_TRUE(ForceSimdArch(arch).ok());
    for (size_t base = 0; base < patterns.size(); base += 16) {
      std::memcpy(levels, patterns.data() + base, 64);
      uint16_t h[32], bf[32];
      float f[32];
      ASSERT_TRUE(GetCodec(CodecId::kCodebook)->Decode(b.view(), 0, 1, DType::kF16, h, Backend::kSimd).ok());
      ASSERT_TRUE(GetCodec(CodecId::kCodebook)->Decode(b.view(), 0, 1, DType::kBF16, bf, Backend::kSimd).ok());
      ASSERT_TRUE(GetCodec(CodecId::kCodebook)->Decode(b.view(), 0, 1, DType::kF32, f, Backend::kSimd).ok());
      for (int i = 0; i < 32; ++i) {
        const uint32_t p = patterns[base + i % 16];
        const float v = elem::codebook_value(bits_f32(p), one);  // a real multiply (quiets sNaN)
        ASSERT_EQ(f32_bits(f[i]), f32_bits(v)) << arch << " f32 of 0x" << std::hex << p;
        ASSERT_EQ(h[i], f32_to_f16(v)) << arch << " f16 of 0x" << std::hex << p;
        ASSERT_EQ(bf[i], f32_to_bf16(v)) << arch << " bf16 of 0x" << std::hex << p;
      }
    }
  }
}

// fp16 rows (sinks, residual) to every type: all 65536 half patterns.
TEST(Simd, Fp16RowsAllPatterns) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  CodecSpec spec = *CodecSpec::Parse("affine:bits=2,group=64,sinks=1,residual=2");
  const BlockShape shape{4, 128, 64};  // 8192 values per row: 3 fp16 rows hold 24576 patterns
  Block b;
  ASSERT_TRUE(Build(spec, mqkv::testing::RandomRows(shape.values(), 9), shape, &b).ok());
  uint16_t* sink = MetaF16(b, kPartSinkRows);
  uint16_t* res = MetaF16(b, kPartResidualRows);
  for (uint32_t round = 0; round < 3; ++round) {
    for (uint32_t i = 0; i < 8192; ++i) sink[i] = static_cast<uint16_t>(round * 24576 + i);
    for (uint32_t i = 0; i < 16384; ++i) res[i] = static_cast<uint16_t>(round * 24576 + 8192 + i);
    ExpectAllArchsMatch(b, {{0, 4}, {0, 1}, {3, 4}}, "fp16 rows round " + std::to_string(round));
  }
}

}  // namespace

// Raw f16 blocks widened to f32 / bf16 by the SIMD kernel: every one of the 65536 f16 bit patterns
// (signalling and quiet NaNs, infinities, subnormals) on every ISA, bit for bit the scalar reference,
// and the dispatcher reports the SIMD kernel as the one that served it.
TEST(Simd, RawF16EveryBitPatternMatchesScalar) {
  Block b;
  b.h.codec = static_cast<uint8_t>(CodecId::kF16);
  b.h.bits = 16;
  b.h.n_tokens = 512;
  b.h.n_heads = 1;
  b.h.head_dim = 128;
  b.payload.resize(65536 * 2);
  for (uint32_t u = 0; u < 65536; ++u) {
    b.payload[2 * u] = static_cast<uint8_t>(u & 0xFF);
    b.payload[2 * u + 1] = static_cast<uint8_t>(u >> 8);
  }
  b.h.parts[kPartCodes] = PartRef{0, 65536 * 2};
  b.h.payload_bytes = b.h.stored_bytes = 65536 * 2;
  ExpectAllArchsMatch(b, {{0, 512}, {3, 7}, {511, 512}}, "raw f16");
  if (!BackendAvailable(Backend::kSimd)) GTEST_SKIP() << "no SIMD ISA on this machine";
  std::vector<float> out(65536);
  Backend served = Backend::kScalar;
  ASSERT_TRUE(GetCodec(CodecId::kF16)->Decode(b.view(), 0, 512, DType::kF32, out.data(), Backend::kAuto, &served).ok());
  EXPECT_EQ(served, Backend::kSimd);
  ASSERT_TRUE(GetCodec(CodecId::kF16)->Decode(b.view(), 0, 512, DType::kF16, out.data(), Backend::kAuto, &served).ok());
  EXPECT_EQ(served, Backend::kScalar) << "f16 -> f16 is a copy, not a SIMD kernel";
}

// The interchange writers' f32 -> f16 (codec::simd::F32ToF16): on every ISA, every finite value
// that rounds to a finite f16 (ties, subnormals, the largest f16, values just below the overflow
// threshold) gives the scalar f32_to_f16's bytes; a value that does not come out finite makes it
// decline (false), leaving the decision to the reference.
TEST(Simd, F32ToF16MatchesScalarOrDeclines) {
  if (SimdOnly().empty()) GTEST_SKIP() << "no SIMD ISA on this machine";
  mqkv::testing::AutoSimdArch restore;
  std::vector<float> v;
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; ++i) v.push_back(std::ldexp(std::uniform_real_distribution<float>(-2, 2)(rng), int(rng() % 40) - 30));
  for (uint32_t h = 0; h < 0x7C00; h += 7) {  // every 7th finite f16 and the midpoints around it
    const float x = f16_to_f32(static_cast<uint16_t>(h));
    v.push_back(x);
    v.push_back(-x);
    v.push_back(std::nextafter(x, 1e9f));
    const float next = f16_to_f32(static_cast<uint16_t>(h + 1));
    v.push_back((x + next) / 2);  // a tie: to even
  }
  v.push_back(65504.0f);
  v.push_back(65519.99f);  // still rounds to 65504
  v.push_back(0.0f);
  v.push_back(-0.0f);
  std::vector<uint8_t> want(v.size() * 2), got(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t h = f32_to_f16(v[i]);
    std::memcpy(&want[2 * i], &h, 2);
  }
  for (const std::string& arch : SimdOnly()) {
    ASSERT_TRUE(ForceSimdArch(arch).ok());
    std::fill(got.begin(), got.end(), 0xA5);
    ASSERT_TRUE(codec::simd::F32ToF16(v.data(), v.size(), got.data())) << arch;
    EXPECT_EQ(got, want) << arch;
    for (float bad : {65520.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
      std::vector<float> w = {1.0f, 2.0f, bad, 3.0f};
      std::vector<uint8_t> o(8);
      EXPECT_FALSE(codec::simd::F32ToF16(w.data(), w.size(), o.data())) << arch << " " << bad;
    }
  }
  ASSERT_TRUE(ForceSimdArch("scalar").ok());
  EXPECT_FALSE(codec::simd::F32ToF16(v.data(), v.size(), got.data())) << "the scalar arch declines";
}
