// Properties of the low-bit codecs (spec/CODECS.md): error bounds over random shapes and specs,
// bit-stream layout, Hadamard rotation, row-range and output-type consistency, presets and their
// modeled bits, header validation and encoder input checks.
//
// Error bounds tested (s', mn' = the metadata a decoder sees, y = the value in the quantized,
// possibly rotated, domain, qmax = 2^b - 1, slack = a few binary32 roundings):
//   affine:   |y - y'| <= max(s'/2, mn' - y, y - (mn' + qmax*s'))             + slack
//             with fp16 metadata the clipping terms are at most fp16 rounding:
//             <= 2^-10 * (|mn'| + qmax*s') + 2^-23 * (qmax + 1)
//   codebook: |y - y'| <= max(h*s', L[0]*s' - y, y - L[last]*s')               + slack
//             h = max_i max(t_i - L_i, L_{i+1} - t_i) over the encoder thresholds t
//   rotated blocks: the rotation is orthonormal, so per head vector
//             ||x - x'||_2 <= sqrt(sum of the per-element bounds^2)            + slack
//   sink and residual rows: exactly the fp16 rounding of the input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>

#include "codec/lowbit.h"
#include "format/container.h"
#include "detail/lowbit.h"
#include "mqkv/mqkv.h"
#include "support.h"

using namespace mqkv;

namespace {

using mqkv::testing::Block;

// Encodes and lays the parts out as the writer does (tests/support).
Status Build(const CodecSpec& spec, const std::vector<float>& x, BlockShape shape, Block* out) {
  return mqkv::testing::BuildBlock(spec, x, shape, out);
}

std::vector<float> DecodeAll(const Block& b, DType t = DType::kF32, uint32_t r0 = 0, uint32_t r1 = UINT32_MAX) {
  if (r1 == UINT32_MAX) r1 = b.h.n_tokens;
  const uint64_t n = uint64_t(r1 - r0) * b.h.n_heads * b.h.head_dim;
  std::vector<float> out(n);
  std::vector<uint16_t> half(n);
  void* dst = t == DType::kF32 ? static_cast<void*>(out.data()) : static_cast<void*>(half.data());
  Status s = GetCodec(b.h.codec)->Decode(b.view(), r0, r1, t, dst, Backend::kScalar);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (t == DType::kF16)
    for (uint64_t i = 0; i < n; ++i) out[i] = f16_to_f32(half[i]);
  if (t == DType::kBF16)
    for (uint64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(half[i]);
  return out;
}

// Values with a little structure: per-channel scale (outlier channels), per-row offset.
std::vector<float> Rows(std::mt19937& rng, BlockShape s) {
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> ch(s.head_dim);
  for (auto& c : ch) c = std::uniform_real_distribution<float>(0.1f, 1.0f)(rng) * (rng() % 9 == 0 ? 8.0f : 1.0f);
  std::vector<float> v(s.values());
  for (uint64_t i = 0; i < v.size(); ++i) v[i] = n(rng) * ch[i % s.head_dim] + 0.3f * float((i / (s.n_heads * s.head_dim)) % 3);
  return v;
}

struct Check {
  double worst_ratio = 0;  // max over elements of err / bound (<= 1 passes)
};

// Checks the bounds of the header comment for one decoded block.
void CheckBounds(const CodecSpec& spec, const Block& b, const std::vector<float>& x, const std::vector<float>& dec, Check* c) {
  const BlockHeader& h = b.h;
  const elem::Geometry g = elem::geometry(h);
  const uint64_t rv = g.row_values;
  // fp16 rows.
  for (uint64_t i = 0; i < uint64_t(h.n_sink) * rv; ++i) ASSERT_EQ(f32_bits(dec[i]), f32_bits(round_to_f16(x[i]))) << "sink value " << i;
  for (uint64_t i = uint64_t(h.n_tokens - h.n_residual) * rv; i < uint64_t(h.n_tokens) * rv; ++i)
    ASSERT_EQ(f32_bits(dec[i]), f32_bits(round_to_f16(x[i]))) << "residual value " << i;
  const bool cb = h.codec == static_cast<uint8_t>(CodecId::kCodebook);
  const uint32_t qmax = (1u << h.bits) - 1u;
  std::vector<float> L, t;
  double half_gap = 0;
  if (cb) {
    L = spec.levels;
    t = spec.thresholds;
    if (t.empty())
      for (size_t i = 0; i + 1 < L.size(); ++i) t.push_back((L[i] + L[i + 1]) / 2.0f);
    for (size_t i = 0; i < t.size(); ++i) half_gap = std::max({half_gap, double(t[i]) - L[i], double(L[i + 1]) - t[i]});
  }
  const bool rotated = h.rotation != 0;
  std::vector<float> y(h.head_dim);
  for (uint32_t tq = 0; tq < g.q_rows; ++tq) {
    const uint64_t row = uint64_t(h.n_sink + tq) * rv;
    for (uint32_t hd = 0; hd < h.n_heads; ++hd) {
      const uint64_t base = row + uint64_t(hd) * h.head_dim;
      std::copy(x.begin() + base, x.begin() + base + h.head_dim, y.begin());
      if (rotated) elem::forward_rotate(y.data(), h.head_dim, h.rot_block, h.rot_seed);
      double sum_b2 = 0, sum_e2 = 0, norm = 0;
      for (uint32_t d = 0; d < h.head_dim; ++d) {
        const uint32_t e = hd * h.head_dim + d;
        const uint32_t gr = tq / g.row_span, gc = e / g.col_span;
        const double s = elem::meta_field(h, g, b.payload.data(), elem::kFieldScale, gr, gc);
        const double v = y[d];
        double bound, slack;
        if (cb) {
          bound = std::max({half_gap * s, L.front() * s - v, v - L.back() * s});
          slack = 1e-6 * (std::fabs(v) + std::max(std::fabs(L.front()), std::fabs(L.back())) * s) + 1e-30;
          if (spec.scale_rule == ScaleRule::kAbsMax && std::fabs(L.front()) == std::fabs(L.back())) {
            const double clip = std::max(L.front() * s - v, v - L.back() * s);
            ASSERT_LE(clip, std::ldexp(std::fabs(v), -10) + 1e-6) << "absmax codebook clipped beyond fp16 rounding";
          }
        } else {
          const double mn = elem::meta_field(h, g, b.payload.data(), elem::kFieldMin, gr, gc);
          const double lo = mn, hi = mn + qmax * s;
          const double clip = std::max({0.0, lo - v, v - hi});
          bound = std::max(s / 2, clip);
          slack = 1e-6 * (std::fabs(mn) + qmax * s + std::fabs(v)) + 1e-30;
          if (h.meta_bits == 16 && spec.affine_rule == AffineRule::kMinMax) {
            ASSERT_LE(clip, std::ldexp(std::fabs(mn) + qmax * s, -10) + std::ldexp(double(qmax + 1), -23)) << "fp16-meta affine clipped";
          }
          if (spec.affine_rule != AffineRule::kMinMax) {  // ggml's grids clip the far side by up to one step
            ASSERT_LE(clip, s * (1 + std::ldexp(1.0, -9))) << "ggml grid clipped by more than one step";
          }
        }
        if (!rotated) {
          const double err = std::fabs(double(dec[base + d]) - double(x[base + d]));
          ASSERT_LE(err, bound + slack) << "row " << h.n_sink + tq << " head " << hd << " dim " << d << " spec " << spec.ToString();
          c->worst_ratio = std::max(c->worst_ratio, err / (bound + slack));
        }
        sum_b2 += (bound + slack) * (bound + slack);
        const double ed = double(dec[base + d]) - double(x[base + d]);
        sum_e2 += ed * ed;
        norm += double(x[base + d]) * x[base + d];
      }
      if (rotated) {
        const double err = std::sqrt(sum_e2), bound = std::sqrt(sum_b2) + 4e-6 * std::sqrt(norm);
        ASSERT_LE(err, bound) << "rotated head vector, row " << h.n_sink + tq << " spec " << spec.ToString();
        c->worst_ratio = std::max(c->worst_ratio, err / bound);
      }
    }
  }
}

CodecSpec RandomSpec(std::mt19937& rng, BlockShape s) {
  CodecSpec spec;
  auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  const bool cb = pick(10) < 3;
  spec.codec = cb ? CodecId::kCodebook : CodecId::kAffine;
  spec.meta_bits = 16;
  if (cb) {
    spec.bits = static_cast<uint8_t>(1 + pick(4));
    const uint32_t n = 1u << spec.bits;
    std::set<float> lv;
    while (lv.size() < n) lv.insert(std::ldexp(float(int(pick(2001)) - 1000), -9));
    spec.levels.assign(lv.begin(), lv.end());
    if (pick(2))
      for (uint32_t i = 0; i + 1 < n; ++i) {
        const float a = spec.levels[i], b = spec.levels[i + 1];
        spec.thresholds.push_back(a + (b - a) * (0.2f + 0.6f * float(pick(100)) / 100.0f));
      }
    const ScaleRule rules[] = {ScaleRule::kAbsMax, ScaleRule::kRobust, ScaleRule::kRms};
    spec.scale_rule = rules[pick(3)];
  } else {
    const uint8_t bits[] = {2, 3, 4, 8};
    spec.bits = bits[pick(4)];
    const uint8_t meta[] = {4, 8, 16};
    spec.meta_bits = meta[pick(3)];
  }
  spec.axis = pick(2) ? GroupAxis::kChannel : GroupAxis::kToken;
  if (spec.axis == GroupAxis::kToken) {
    std::vector<uint16_t> groups = {0};
    for (uint32_t gsz = 8; gsz <= s.head_dim; gsz += 8)
      if (s.head_dim % gsz == 0) groups.push_back(static_cast<uint16_t>(gsz));
    spec.group = groups[pick(groups.size())];
  } else {
    spec.group = static_cast<uint16_t>(pick(s.n_tokens + 3));
  }
  if (pick(2)) {
    spec.rotation = Rotation::kHadamard;
    spec.seed = (uint64_t(rng()) << 32) | rng();
  }
  spec.sinks = pick(3) == 0 ? pick(std::min<uint32_t>(4, s.n_tokens + 1)) : 0;
  spec.residual = pick(3) == 0 ? pick(s.n_tokens - spec.sinks + 1) : 0;
  return spec;
}

}  // namespace

TEST(LowbitStream, ThreeBitCodesPackEightPerThreeBytes) {
  // Codes 0..7 LSB-first: sum c_i << 3i = 0xFAC688.
  std::vector<uint8_t> s(3, 0);
  codec::lowbit::BitWriter w(s.data(), 3);
  for (uint32_t c = 0; c < 8; ++c) w.Put(c);
  EXPECT_EQ(s, (std::vector<uint8_t>{0x88, 0xC6, 0xFA}));
  for (uint32_t c = 0; c < 8; ++c) EXPECT_EQ(elem::read_code(s.data(), c, 3), c);
}

TEST(LowbitStream, EveryWidthRoundTripsInExactSizeBuffers) {
  std::mt19937 rng(5);
  for (uint32_t bits = 1; bits <= 8; ++bits)
    for (uint64_t n : {1u, 7u, 8u, 9u, 63u, 1000u}) {
      std::vector<uint32_t> codes(n);
      for (auto& c : codes) c = rng() & ((1u << bits) - 1u);
      // Exact-size heap buffer: a read past the end is caught by the sanitizer build.
      std::vector<uint8_t> s(codec::lowbit::StreamBytes(n, bits), 0);
      codec::lowbit::BitWriter w(s.data(), bits);
      for (uint32_t c : codes) w.Put(c);
      for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(elem::read_code(s.data(), i, bits), codes[i]) << bits << " bits, code " << i;
    }
}

TEST(LowbitHadamard, SplitMix64AndSigns) {
  // splitmix64 from state 0: the reference implementation's first output.
  EXPECT_EQ(elem::splitmix64(0), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(elem::splitmix64(0x9E3779B97F4A7C15ull), 0x6E789E6AA1B965F4ull);  // its second output
  int neg = 0;
  for (uint32_t i = 0; i < 4096; ++i) neg += elem::hadamard_negative(0x6D716B76u, i);
  EXPECT_GT(neg, 1900);
  EXPECT_LT(neg, 2200);
}

TEST(LowbitHadamard, ScaleTableIsNearestFloat) {
  for (uint32_t k = 0; k < 16; ++k) {
    const float want = static_cast<float>(1.0 / std::sqrt(double(1u << k)));
    EXPECT_EQ(f32_bits(elem::hadamard_scale(1u << k)), f32_bits(want)) << "B = " << (1u << k);
  }
  EXPECT_EQ(f32_bits(elem::hadamard_scale(64)), 0x3E000000u);
  EXPECT_EQ(f32_bits(elem::hadamard_scale(128)), 0x3DB504F3u);
  EXPECT_EQ(elem::largest_pow2_divisor(80), 16u);
  EXPECT_EQ(elem::largest_pow2_divisor(96), 32u);
  EXPECT_EQ(elem::largest_pow2_divisor(128), 128u);
}

TEST(LowbitHadamard, ForwardInverseRoundTripAndOrthonormal) {
  std::mt19937 rng(11);
  std::normal_distribution<float> n(0.0f, 2.0f);
  for (uint32_t d : {8u, 16u, 24u, 80u, 96u, 128u, 256u}) {
    const uint32_t B = elem::largest_pow2_divisor(d);
    std::vector<float> x(d), y;
    for (auto& v : x) v = n(rng);
    y = x;
    elem::forward_rotate(y.data(), d, B, 42);
    double nx = 0, ny = 0, err = 0;
    for (uint32_t i = 0; i < d; ++i) nx += double(x[i]) * x[i], ny += double(y[i]) * y[i];
    EXPECT_NEAR(std::sqrt(ny), std::sqrt(nx), 1e-5 * std::sqrt(nx)) << d;
    elem::inverse_rotate(y.data(), d, B, 42);
    for (uint32_t i = 0; i < d; ++i) err = std::max(err, std::fabs(double(y[i]) - x[i]));
    EXPECT_LE(err, 1e-5 * std::sqrt(nx)) << d;
    // A unit vector maps to entries of magnitude c_B within its block, zero elsewhere.
    std::vector<float> e(d, 0.0f);
    e[1] = 1.0f;
    elem::forward_rotate(e.data(), d, B, 42);
    for (uint32_t i = 0; i < d; ++i) EXPECT_EQ(std::fabs(e[i]), i < B ? elem::hadamard_scale(B) : 0.0f) << d << " " << i;
  }
}

TEST(LowbitCodecs, RandomSpecsMeetErrorBoundsAndDecodeConsistently) {
  std::mt19937 rng(20240611);
  const uint32_t dims[] = {8, 16, 24, 32, 48, 64, 80, 96, 128};
  Check c;
  int configs = 0;
  for (int iter = 0; iter < 300; ++iter) {
    BlockShape s{1 + static_cast<uint32_t>(rng() % 40), 1 + static_cast<uint32_t>(rng() % 3), dims[rng() % 9]};
    const CodecSpec spec = RandomSpec(rng, s);
    const std::vector<float> x = Rows(rng, s);
    Block b;
    Status st = Build(spec, x, s, &b);
    ASSERT_TRUE(st.ok()) << spec.ToString() << ": " << st.ToString();
    SCOPED_TRACE(spec.ToString() + " shape " + std::to_string(s.n_tokens) + "x" + std::to_string(s.n_heads) + "x" + std::to_string(s.head_dim));
    const std::vector<float> dec = DecodeAll(b);
    CheckBounds(spec, b, x, dec, &c);
    if (HasFatalFailure()) return;
    // Row ranges equal slices of the full decode.
    for (int k = 0; k < 3; ++k) {
      uint32_t r0 = rng() % (s.n_tokens + 1), r1 = rng() % (s.n_tokens + 1);
      if (r0 > r1) std::swap(r0, r1);
      const std::vector<float> part = DecodeAll(b, DType::kF32, r0, r1);
      const uint64_t rv = uint64_t(s.n_heads) * s.head_dim;
      ASSERT_TRUE(std::equal(part.begin(), part.end(), dec.begin() + r0 * rv,
                             [](float a, float b) { return std::memcmp(&a, &b, 4) == 0; }))
          << "rows " << r0 << ".." << r1;
    }
    // f16 / bf16 output equals converting the f32 decode (round to nearest even).
    const std::vector<float> h16 = DecodeAll(b, DType::kF16), b16 = DecodeAll(b, DType::kBF16);
    for (uint64_t i = 0; i < dec.size(); ++i) {
      ASSERT_EQ(f32_bits(h16[i]), f32_bits(round_to_f16(dec[i]))) << i;
      ASSERT_EQ(f32_bits(b16[i]), f32_bits(bf16_to_f32(f32_to_bf16(dec[i])))) << i;
    }
    // Accounting covers the whole payload; SpecOf reproduces the header.
    const Accounting a = GetCodec(spec.codec)->Account(b.h);
    EXPECT_EQ(a.codes + a.group_meta + a.shared_ranges + a.fp16_rows + a.codebook + a.padding, b.h.payload_bytes);
    CodecSpec back = GetCodec(spec.codec)->SpecOf(b.h, b.payload.data());
    EncodedBlock again;
    if (spec.codec == CodecId::kCodebook) {
      EXPECT_EQ(back.levels, spec.levels);
      back.thresholds = spec.thresholds;
      back.scale_rule = spec.scale_rule;
    }
    ASSERT_TRUE(EncodeBlock(back, x.data(), s, &again).ok());
    EXPECT_EQ(std::memcmp(&again.header, &b.h, offsetof(BlockHeader, compression)), 0) << "SpecOf does not reproduce the header";
    ++configs;
  }
  EXPECT_EQ(configs, 300);
  EXPECT_LE(c.worst_ratio, 1.0);
  RecordProperty("worst_error_over_bound", std::to_string(c.worst_ratio));
  std::printf("worst error / bound over %d configurations: %.4f\n", configs, c.worst_ratio);
}

TEST(LowbitCodecs, EveryPresetEncodesAndDecodes) {
  std::mt19937 rng(3);
  const BlockShape s{160, 2, 64};
  const std::vector<float> x = Rows(rng, s);
  for (const std::string& name : PresetNames()) {
    auto spec = CodecSpec::Parse(name);
    ASSERT_TRUE(spec.ok()) << name;
    Block b;
    Status st = Build(*spec, x, s, &b);
    ASSERT_TRUE(st.ok()) << name << ": " << st.ToString();
    Check c;
    CheckBounds(*spec, b, x, DecodeAll(b), &c);
    CodecSpec back = GetCodec(spec->codec)->SpecOf(b.h, b.payload.data());
    if (spec->codec == CodecId::kAffine) {
      CodecSpec want = *spec;
      if (want.axis == GroupAxis::kToken && want.group == 0) want.group = 64;
      want.affine_rule = AffineRule::kMinMax;  // an encoder choice the block does not record (the footer's string does)
      EXPECT_EQ(back, want) << name;
    } else {
      EXPECT_EQ(back.levels, spec->levels) << name;
      EXPECT_EQ(back.sinks, spec->sinks) << name;
      EXPECT_EQ(back.rotation, spec->rotation) << name;
    }
  }
}

TEST(LowbitCodecs, PresetModeledBitsMatchTheSeedFormula) {
  std::mt19937 rng(4);
  for (uint32_t heads : {1u, 3u}) {
    for (uint32_t L : {64u, 185u}) {
      const BlockShape s{L, heads, 64};
      const std::vector<float> x = Rows(rng, s);
      const struct {
        const char* name;
        double want;
      } cases[] = {
          {"affine_seven_level_3bit_g64_meta4", 3 + 8.0 / 64 + 1.0 / L},
          {"hadamard_affine_four_level_2bit_g64_meta8", 2 + 16.0 / 64 + 1.0 / L},
          {"affine_seven_level_3bit_g32", 4.0},
          {"hadamard_affine_four_level_2bit_g32", 3.0},
          {"sink1_channelwise_four_level_2bit", 2 + 30.0 / L},
      };
      for (const auto& cs : cases) {
        Block b;
        ASSERT_TRUE(Build(CodecSpec::Parse(cs.name).value(), x, s, &b).ok()) << cs.name;
        const Accounting a = GetCodec(b.h.codec)->Account(b.h);
        EXPECT_NEAR(a.modeled_bits / double(s.values()), cs.want, 1e-12) << cs.name << " L=" << L << " heads=" << heads;
        // Stored bytes: exact packing, nothing but alignment on top of the parts.
        EXPECT_EQ(a.codes, (uint64_t(L - b.h.n_sink) * heads * 64 * b.h.bits + 7) / 8) << cs.name;
        EXPECT_LT(a.padding, 8u * kNumParts) << cs.name;
      }
    }
  }
}

TEST(LowbitCodecs, MetaCodedFieldsUseSharedColumnRanges) {
  // One group column whose scale and min take exactly two values over the rows: meta-4 stores
  // them as codes 0 and 15 of the column range, and decode gives back exactly those values.
  const BlockShape s{4, 1, 8};
  std::vector<float> x(s.values());
  for (uint32_t t = 0; t < 4; ++t)
    for (uint32_t d = 0; d < 8; ++d) x[t * 8 + d] = (t % 2 ? 0.0f : 1.0f) + float(d) * (t % 2 ? 2.0f : 1.0f);
  Block b;
  ASSERT_TRUE(Build(CodecSpec::Parse("affine:bits=3,meta=4").value(), x, s, &b).ok());
  EXPECT_EQ(b.h.parts[kPartRanges].bytes, 8u);
  const elem::Geometry g = elem::geometry(b.h);
  for (uint32_t t = 0; t < 4; ++t) {
    EXPECT_FLOAT_EQ(elem::meta_field(b.h, g, b.payload.data(), elem::kFieldMin, t, 0), t % 2 ? 0.0f : 1.0f);
    EXPECT_FLOAT_EQ(elem::meta_field(b.h, g, b.payload.data(), elem::kFieldScale, t, 0), t % 2 ? 2.0f : 1.0f);
  }
  const std::vector<float> dec = DecodeAll(b);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(dec[i], x[i]) << i;  // values on the grid decode exactly
}

TEST(LowbitCodecs, PartSizesRejectsBadHeaders) {
  std::mt19937 rng(9);
  const BlockShape s{16, 2, 64};
  const std::vector<float> x = Rows(rng, s);
  Block affine, rot, cb;
  ASSERT_TRUE(Build(CodecSpec::Parse("affine:bits=3,group=32,meta=4,sinks=1,residual=2").value(), x, s, &affine).ok());
  ASSERT_TRUE(Build(CodecSpec::Parse("hadamard_affine_four_level_2bit_g32").value(), x, s, &rot).ok());
  ASSERT_TRUE(Build(CodecSpec::Parse("sink1_channelwise_four_level_2bit").value(), x, s, &cb).ok());
  struct Case {
    const char* what;
    const Block* base;
    void (*mutate)(BlockHeader&);
    const char* field;
  };
  const Case cases[] = {
      {"affine bits 5", &affine, [](BlockHeader& h) { h.bits = 5; }, "bits"},
      {"affine bits 1", &affine, [](BlockHeader& h) { h.bits = 1; }, "bits"},
      {"meta 6", &affine, [](BlockHeader& h) { h.meta_bits = 6; }, "meta_bits"},
      {"meta 0", &affine, [](BlockHeader& h) { h.meta_bits = 0; }, "meta_bits"},
      {"axis 2", &affine, [](BlockHeader& h) { h.group_axis = 2; }, "group_axis"},
      {"rotation 2", &affine, [](BlockHeader& h) { h.rotation = 2; }, "rotation"},
      {"head_dim 60", &affine, [](BlockHeader& h) { h.head_dim = 60; }, "head_dim"},
      {"n_heads 0", &affine, [](BlockHeader& h) { h.n_heads = 0; }, "n_heads"},
      {"group 24", &affine, [](BlockHeader& h) { h.group_size = 24; }, "group_size"},
      {"group 0 token axis", &affine, [](BlockHeader& h) { h.group_size = 0; }, "group_size"},
      {"group 128 > head_dim", &affine, [](BlockHeader& h) { h.group_size = 128; }, "group_size"},
      {"rot_block without rotation", &affine, [](BlockHeader& h) { h.rot_block = 64; }, "rot_block"},
      {"rot_seed without rotation", &affine, [](BlockHeader& h) { h.rot_seed = 1; }, "rot_seed"},
      {"rot_block 32 for head_dim 64", &rot, [](BlockHeader& h) { h.rot_block = 32; }, "rot_block"},
      {"rot_block 0 with rotation", &rot, [](BlockHeader& h) { h.rot_block = 0; }, "rot_block"},
      {"sinks+residual > n_tokens", &affine, [](BlockHeader& h) { h.n_residual = 16; }, "n_sink"},
      {"sinks+residual overflow u32", &affine, [](BlockHeader& h) { h.n_sink = h.n_residual = 0x80000000u; }, "n_sink"},
      {"codebook meta 8", &cb, [](BlockHeader& h) { h.meta_bits = 8; }, "meta_bits"},
      {"codebook bits 5", &cb, [](BlockHeader& h) { h.bits = 5; }, "bits"},
      {"codebook bits 0", &cb, [](BlockHeader& h) { h.bits = 0; }, "bits"},
      {"huge block overflows", &affine,
       [](BlockHeader& h) {
         h.n_tokens = 0xFFFFFFFFu;
         h.n_heads = 0xFFFF;
         h.head_dim = 0xFFF8;
         h.group_size = 8;
         h.bits = 8;
       },
       "overflow"},
  };
  for (const Case& cs : cases) {
    BlockHeader h = cs.base->h;
    cs.mutate(h);
    std::array<uint64_t, kNumParts> sizes{};
    Status st = GetCodec(h.codec)->PartSizes(h, &sizes);
    EXPECT_EQ(st.code(), StatusCode::kFormatError) << cs.what;
    EXPECT_NE(st.message().find(cs.field), std::string::npos) << cs.what << ": " << st.message();
  }
  // The unmodified headers pass.
  for (const Block* b : {&affine, &rot, &cb}) {
    std::array<uint64_t, kNumParts> sizes{};
    EXPECT_TRUE(GetCodec(b->h.codec)->PartSizes(b->h, &sizes).ok());
  }
}

TEST(LowbitCodecs, EncoderRejectsBadInput) {
  const BlockShape s{6, 1, 32};
  std::vector<float> x(s.values(), 0.25f);
  EncodedBlock eb;
  const CodecSpec a = CodecSpec::Parse("affine:bits=4,group=16,sinks=1").value();
  x[0] = NAN;  // a sink row: stored as fp16 like the f16 codec does
  EXPECT_TRUE(EncodeBlock(a, x.data(), s, &eb).ok());
  x[0] = 0.0f;
  x[3 * 32 + 5] = INFINITY;
  Status st = EncodeBlock(a, x.data(), s, &eb);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("row 3 head 0 dim 5"), std::string::npos) << st.message();
  x[3 * 32 + 5] = 1e6f;  // range beyond fp16 metadata
  st = EncodeBlock(a, x.data(), s, &eb);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("fp16"), std::string::npos) << st.message();
  x[3 * 32 + 5] = 0.0f;
  EXPECT_EQ(EncodeBlock(a, x.data(), BlockShape{6, 1, 20}, &eb).code(), StatusCode::kInvalidArgument);  // head_dim % 8
  EXPECT_EQ(EncodeBlock(CodecSpec::Parse("affine:group=24").value(), x.data(), s, &eb).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeBlock(CodecSpec::Parse("affine:sinks=4,residual=3").value(), x.data(), s, &eb).code(), StatusCode::kInvalidArgument);
  CodecSpec c = CodecSpec::Parse("codebook:bits=2,levels=-2/-1/1/2").value();
  c.levels.pop_back();  // built in code, bypassing Parse
  EXPECT_EQ(EncodeBlock(c, x.data(), s, &eb).code(), StatusCode::kInvalidArgument);
}

TEST(LowbitCodecs, DecodeChecksRowsAndBackend) {
  const BlockShape s{6, 1, 32};
  std::vector<float> x(s.values(), 1.0f);
  Block b;
  ASSERT_TRUE(Build(CodecSpec::Parse("affine:bits=2").value(), x, s, &b).ok());
  std::vector<float> out(s.values());
  EXPECT_EQ(GetCodec(CodecId::kAffine)->Decode(b.view(), 0, 7, DType::kF32, out.data(), Backend::kScalar).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(GetCodec(CodecId::kAffine)->Decode(b.view(), 3, 2, DType::kF32, out.data(), Backend::kScalar).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(GetCodec(CodecId::kAffine)->Decode(b.view(), 0, 6, DType::kF32, out.data(), Backend::kCuda).code(), StatusCode::kUnsupported);
  // A constant input (zero-range groups) decodes exactly.
  ASSERT_TRUE(GetCodec(CodecId::kAffine)->Decode(b.view(), 0, 6, DType::kF32, out.data(), Backend::kAuto).ok());
  EXPECT_EQ(out, x);
}

TEST(LowbitCodecs, WriterSplitsBlocksKeepingSinksAndResidualExact) {
  mqkv::testing::TempDir dir;
  std::mt19937 rng(12);
  // The writer puts the residual rows in the last block only: keep that block >= residual rows.
  const BlockShape s{48, 2, 32};
  const std::vector<float> x = Rows(rng, s);
  const CodecSpec spec = CodecSpec::Parse("affine:bits=2,group=8,axis=channel,sinks=3,residual=7,rotate=hadamard").value();
  {
    auto w = Writer::Create(dir.Path("t.mqkv"), {.zstd_level = 3, .max_block_tokens = 16, .fsync = false});
    ASSERT_TRUE(w.ok());
    TensorDesc d;
    d.n_heads = s.n_heads;
    d.head_dim = s.head_dim;
    d.n_tokens = s.n_tokens;
    ASSERT_TRUE((*w)->AddTensor(d, x.data(), spec).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  auto snap = Snapshot::Open(dir.Path("t.mqkv"), {.verify_all_blocks = true});
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ((*snap)->blocks().size(), 3u);
  EXPECT_EQ((*snap)->required_features() & (kFeatureAffine | kFeatureHadamard), kFeatureAffine | kFeatureHadamard);
  auto dec = (*snap)->DecodeF32(0, 0, s.n_tokens);
  ASSERT_TRUE(dec.ok());
  const uint64_t rv = 64;
  for (uint64_t i = 0; i < 3 * rv; ++i) EXPECT_EQ((*dec)[i], round_to_f16(x[i])) << i;
  for (uint64_t i = 41 * rv; i < 48 * rv; ++i) EXPECT_EQ((*dec)[i], round_to_f16(x[i])) << i;
  auto mid = (*snap)->DecodeF32(0, 10, 40, Backend::kScalar);
  ASSERT_TRUE(mid.ok());
  EXPECT_EQ(std::memcmp(mid->data(), dec->data() + 10 * rv, mid->size() * 4), 0);
}

// The encoder's fast round-half-even equals nearbyint everywhere, halves and large values included.
TEST(CodecLowbit, RoundEvenMatchesNearbyint) {
  std::vector<float> vs = {0.0f, -0.0f, 0.5f, 1.5f, 2.5f, 254.5f, 255.49998f, 8388607.5f, 8388608.0f, 1e30f, -0.5f, -3.5f,
                           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), 1e-40f};
  uint64_t x = 1;
  for (int i = 0; i < 200000; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    vs.push_back(static_cast<float>(x >> 40) / 65536.0f);  // [0, 256) with 16 fraction bits: many exact halves
  }
  for (float v : vs) ASSERT_EQ(mqkv::codec::lowbit::RoundEven(v), std::nearbyint(v)) << v;
}
