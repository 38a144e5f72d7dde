// Entropy-coded codes (spec/CODECS.md "Entropy-coded codes", format 1.3): round trips at any level
// count, the spec's reference rANS decoder against htscodecs (every SIMD decoder it has on this
// CPU), the header rules, and corrupted streams (always an error, never a crash or an over-read).
#include <gtest/gtest.h>
#include <htscodecs/rANS_static4x16.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "codec/rans.h"
#include "format/container.h"
#include "codec/registry.h"
#include "mqkv/mqkv.h"

using namespace mqkv;

namespace {

std::vector<float> Gaussian(uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Encodes with `spec`, lays the parts out as a reader sees them, and decodes with `backend`.
struct Block {
  EncodedBlock enc;
  std::vector<uint8_t> payload;
  BlockView view() {
    std::array<uint64_t, kNumParts> sizes{};
    for (int p = 0; p < kNumParts; ++p) sizes[p] = enc.parts[p].size();
    EXPECT_TRUE(format::LayoutParts(sizes, &enc.header).ok());
    payload.assign(enc.header.payload_bytes, 0);
    for (int p = 0; p < kNumParts; ++p)
      if (!enc.parts[p].empty()) std::memcpy(payload.data() + enc.header.parts[p].offset, enc.parts[p].data(), enc.parts[p].size());
    return BlockView{&enc.header, payload.data()};
  }
};

std::vector<float> DecodeAll(Block& b, Backend be) {
  BlockView v = b.view();
  const Codec* c = GetCodec(b.enc.header.codec);
  EXPECT_TRUE(c->CheckPayload(v).ok());
  std::vector<float> out(uint64_t(b.enc.header.n_tokens) * b.enc.header.n_heads * b.enc.header.head_dim);
  Status s = c->Decode(v, 0, b.enc.header.n_tokens, DType::kF32, out.data(), be);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(Rans, SpecStringsRoundTrip) {
  for (const char* text : {"affine:levels=6,group=64,meta=4,entropy=rans", "affine:bits=3,entropy=rans,axis=channel,group=64",
                           "codebook:entropy=rans,rotate=hadamard,scale=rms,levels=-1.5/-0.5/0.5/1.5/2.5"}) {
    auto s = CodecSpec::Parse(text);
    ASSERT_TRUE(s.ok()) << text << ": " << s.status().ToString();
    EXPECT_EQ(s->entropy, Entropy::kRans);
    EXPECT_EQ(s->bits, 8);
    auto back = CodecSpec::Parse(s->ToString());
    ASSERT_TRUE(back.ok()) << s->ToString();
    EXPECT_EQ(*back, *s);
  }
  EXPECT_EQ(CodecSpec::Parse("affine:bits=3,entropy=rans")->n_levels, 8);
  EXPECT_FALSE(CodecSpec::Parse("affine:levels=6").ok());  // a level count needs entropy=rans
  EXPECT_FALSE(CodecSpec::Parse("affine:levels=2,entropy=rans").ok());
  EXPECT_FALSE(CodecSpec::Parse("affine:levels=257,entropy=rans").ok());
  EXPECT_FALSE(CodecSpec::Parse("affine:bits=4,rule=q4_0,entropy=rans").ok());
  EXPECT_FALSE(CodecSpec::Parse("affine:levels=6,entropy=zip").ok());
}

TEST(Rans, EveryLevelCountRoundTripsAndBackendsAgree) {
  const BlockShape shape{96, 3, 64};  // 18432 codes: the 32-way stream
  const std::vector<float> x = Gaussian(shape.values(), 7);
  for (uint32_t levels : {3u, 5u, 6u, 8u, 13u, 16u, 17u, 100u, 256u}) {
    for (const char* base : {"affine:group=64,meta=4", "affine:group=32,axis=channel", "codebook:rotate=hadamard,scale=rms"}) {
      std::string text = std::string(base) + ",entropy=rans,levels=";
      if (text.rfind("codebook", 0) == 0) {
        for (uint32_t i = 0; i < levels; ++i) text += (i ? "/" : "") + std::to_string((double(i) - (levels - 1) / 2.0) * 4.0 / levels);
      } else {
        text += std::to_string(levels);
      }
      auto spec = CodecSpec::Parse(text);
      ASSERT_TRUE(spec.ok()) << text << ": " << spec.status().ToString();
      Block b;
      ASSERT_TRUE(EncodeBlock(*spec, x.data(), shape, &b.enc).ok()) << text;
      EXPECT_EQ(b.enc.header.code_coding, 1);
      EXPECT_EQ(b.enc.header.levels, levels);
      const std::vector<float> ref = DecodeAll(b, Backend::kScalar);
      const std::vector<float> fast = DecodeAll(b, Backend::kSimd);
      ASSERT_EQ(std::memcmp(ref.data(), fast.data(), ref.size() * 4), 0) << text;
      // The same quantizer with packed codes (where one exists) decodes to the same values.
      if (levels == 8 || levels == 16) {
        CodecSpec packed = *spec;
        packed.entropy = Entropy::kNone;
        packed.n_levels = 0;
        packed.bits = static_cast<uint8_t>(std::log2(levels));
        if (packed.codec == CodecId::kCodebook && packed.bits > 4) continue;
        Block p;
        ASSERT_TRUE(EncodeBlock(packed, x.data(), shape, &p.enc).ok()) << packed.ToString();
        const std::vector<float> pv = DecodeAll(p, Backend::kScalar);
        EXPECT_EQ(std::memcmp(ref.data(), pv.data(), ref.size() * 4), 0) << text;
        EXPECT_LT(b.enc.parts[kPartCodes].size(), p.enc.parts[kPartCodes].size()) << text;
      }
    }
  }
}

// The expanded codes of a rANS block go through a per-thread scratch block that is reused from one
// decode to the next (ScratchExpandedBlock, codec/registry.h): blocks of other sizes and layouts
// decoded in between must not leak into a decode. The packed 3-bit twin of each block (no scratch)
// is the truth.
TEST(Rans, ScratchReuseAcrossBlocksOfOtherSizes) {
  struct Case {
    BlockShape shape;
    const char* base;
  };
  const Case cases[] = {{{512, 3, 64}, "affine:group=64,meta=4"},
                        {{5, 1, 64}, "affine:group=32,axis=channel"},
                        {{130, 2, 64}, "affine:group=64,meta=4,rotate=hadamard"},
                        {{1, 3, 64}, "affine:group=64"}};
  std::vector<Block> rans(std::size(cases)), packed(std::size(cases));
  std::vector<std::vector<float>> truth;
  for (size_t i = 0; i < std::size(cases); ++i) {
    const std::vector<float> x = Gaussian(cases[i].shape.values(), 40 + uint32_t(i));
    auto r = CodecSpec::Parse(std::string(cases[i].base) + ",levels=8,entropy=rans");
    auto p = CodecSpec::Parse(std::string(cases[i].base) + ",bits=3");
    ASSERT_TRUE(r.ok() && p.ok()) << cases[i].base;
    ASSERT_TRUE(EncodeBlock(*r, x.data(), cases[i].shape, &rans[i].enc).ok());
    ASSERT_TRUE(EncodeBlock(*p, x.data(), cases[i].shape, &packed[i].enc).ok());
    truth.push_back(DecodeAll(packed[i], Backend::kScalar));
  }
  for (int round = 0; round < 2; ++round)
    for (size_t k = 0; k < std::size(cases); ++k) {
      const size_t i = round == 0 ? k : std::size(cases) - 1 - k;  // large to small, then back
      for (Backend be : {Backend::kSimd, Backend::kScalar}) {
        const std::vector<float> got = DecodeAll(rans[i], be);
        ASSERT_EQ(got.size(), truth[i].size());
        EXPECT_EQ(std::memcmp(got.data(), truth[i].data(), got.size() * 4), 0) << cases[i].base << " round " << round;
      }
    }
}

TEST(Rans, ReferenceDecoderMatchesEveryHtscodecsDecoder) {
  // Skewed symbols over 6 levels, sizes around the 4-way / 32-way switch and odd remainders.
  std::mt19937 rng(3);
  std::geometric_distribution<int> geo(0.45);
  for (uint64_t n : {0ull, 1ull, 5ull, 999ull, 1001ull, 4097ull, 100003ull}) {
    std::vector<uint8_t> codes(n);
    for (auto& c : codes) c = static_cast<uint8_t>(std::min(geo(rng), 5));
    std::vector<uint8_t> part;
    ASSERT_TRUE(codec::rans::Encode(codes.data(), n, &part).ok());
    std::vector<uint8_t> ref(n), got(n);
    ASSERT_TRUE(codec::rans::Decode(part.data(), part.size(), n, 6, true, ref.data()).ok()) << n;
    EXPECT_EQ(ref, codes);
    for (int cpu : {0, RANS_CPU_DEC_SSE4, RANS_CPU_DEC_AVX2, RANS_CPU_DEC_AVX512, -1}) {
      rans_set_cpu(cpu);  // 0: scalar only; -1: everything this CPU has
      std::fill(got.begin(), got.end(), 0xEE);
      ASSERT_TRUE(codec::rans::Decode(part.data(), part.size(), n, 6, false, got.data()).ok()) << n << " cpu " << cpu;
      EXPECT_EQ(got, codes) << n << " cpu " << cpu;
    }
    // A level count below a stored symbol is refused by the header rules.
    if (n > 100) {
      EXPECT_EQ(codec::rans::Decode(part.data(), part.size(), n, 3, true, ref.data()).code(), StatusCode::kFormatError);
    }
    // A recorded size other than the block's.
    EXPECT_EQ(codec::rans::Decode(part.data(), part.size(), n + 1, 6, true, ref.data()).code(), StatusCode::kFormatError);
  }
}

TEST(Rans, CorruptStreamsAreErrorsOnBothDecoders) {
  const uint64_t n = 20000;
  std::mt19937 rng(11);
  std::geometric_distribution<int> geo(0.5);
  std::vector<uint8_t> codes(n);
  for (auto& c : codes) c = static_cast<uint8_t>(std::min(geo(rng), 9));
  std::vector<uint8_t> part;
  ASSERT_TRUE(codec::rans::Encode(codes.data(), n, &part).ok());
  std::vector<uint8_t> out(n);
  int refused = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> bad = part;
    const int kind = trial % 3;
    if (kind == 0) {
      bad[rng() % bad.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    } else if (kind == 1) {
      bad.resize(rng() % bad.size());  // truncated (the buffer ends exactly there: ASan sees any over-read)
    } else {
      for (int k = 0; k < 4; ++k) bad[8 + rng() % std::min<size_t>(bad.size() - 8, 64)] = static_cast<uint8_t>(rng());  // header bytes
    }
    bad.shrink_to_fit();
    const Status a = codec::rans::Decode(bad.data(), bad.size(), n, 10, true, out.data());
    const Status b = codec::rans::Decode(bad.data(), bad.size(), n, 10, false, out.data());
    if (bad == part) continue;
    EXPECT_EQ(a.ok(), b.ok()) << "trial " << trial << ": " << a.ToString() << " / " << b.ToString();
    if (!a.ok()) {
      EXPECT_EQ(a.code(), StatusCode::kFormatError);
      ++refused;
    }
  }
  EXPECT_GT(refused, 2900);  // a flip in the hash or stream is refused (flips of unused bits may not be)
}

}  // namespace
