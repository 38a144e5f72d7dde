// The CUDA kernels' logic on the CPU: kernels/decode_logic.cuh compiled by nvcc (its
// __host__ __device__ functions), driven by an emulation of the kernels' thread schedule (CTAs of
// X lanes by Y row slots, iterations, the barrier-separated Hadamard stages on a shared row buffer)
// and compared bit for bit with the scalar reference decoder for every codec layout, output type
// and several unaligned row ranges. Needs no GPU.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "decode_logic.cuh"
#include "layouts.h"
#include "detail/fp8.h"
#include "detail/lowbit.h"
#include "mqkv/cuda.h"
#include "mqkv/mqkv.h"

using namespace mqkv;
using namespace mqkv::cuda_detail;
using mqkv::cudatest::AllLayouts;
using mqkv::cudatest::BuildBlock;
using mqkv::cudatest::TestBlock;

namespace {

// LowbitKernel<Bits, O> run on the CPU, CTA by CTA, thread by thread, barrier by barrier.
template <uint32_t Bits, Out O>
void EmulateLowbit(const LowbitArgs& a) {
  const LaunchShape s = launch_shape(a);
  const uint32_t threads = s.x * s.y;
  float levels[16] = {};
  if (!is_affine(a.h))
    for (uint32_t i = 0; i < (1u << a.h.bits); ++i) levels[i] = elem::load_f32(a.payload + a.h.parts[kPartCodebook].offset + 4 * i);
  const bool rotate = a.h.rotation == static_cast<uint8_t>(Rotation::kHadamard);
  const bool stages = rotate && a.h.rot_block > 8;
  ASSERT_EQ(stages ? s.y * s.x * 8 * 4 : 0u, s.smem_bytes);
  ASSERT_LE(threads, 1024u);
  ASSERT_EQ(s.x & (s.x - 1), 0u);
  if (stages) ASSERT_EQ((s.x * 8) % a.h.rot_block, 0u) << "a CTA row buffer must hold whole rotation blocks";
  std::vector<float> smem(static_cast<size_t>(s.y) * s.x * 8, 0.0f);
  std::vector<Column> col(threads);
  std::vector<float> v(static_cast<size_t>(threads) * 8);
  std::vector<char> active(threads);
  for (uint32_t block = 0; block < s.col_chunks * s.row_tiles; ++block) {
    const uint32_t chunk = block % s.col_chunks, tile = block / s.col_chunks;
    for (uint32_t th = 0; th < threads; ++th) {
      const uint32_t octet = chunk * s.x + th % s.x;
      column_init(a, octet < a.octets ? octet : 0, col[th]);
    }
    for (uint32_t i = 0; i < s.iters; ++i) {
      for (uint32_t th = 0; th < threads; ++th) {
        const uint32_t lane = th % s.x, y = th / s.x;
        const uint64_t t = a.t0 + uint64_t(tile) * s.y * s.iters + y + uint64_t(i) * s.y;
        active[th] = chunk * s.x + lane < a.octets && t < a.t1;
        float* vt = &v[th * 8];
        if (active[th]) {
          dequant8<Bits>(a, col[th], levels, static_cast<uint32_t>(t), vt);
          if (rotate) fwht_inner8(vt);
          if (stages) std::memcpy(&smem[(static_cast<size_t>(y) * s.x + lane) * 8], vt, 32);
        }
      }
      if (stages) {
        for (uint32_t h = 8; h < a.h.rot_block; h <<= 1)  // barrier between stages
          for (uint32_t th = 0; th < threads; ++th) fwht_stage(&smem[static_cast<size_t>(th / s.x) * s.x * 8], th % s.x, h);
        for (uint32_t th = 0; th < threads; ++th)
          if (active[th]) std::memcpy(&v[th * 8], &smem[static_cast<size_t>(th) * 8], 32);
      }
      for (uint32_t th = 0; th < threads; ++th) {
        if (!active[th]) continue;
        const uint64_t t = a.t0 + uint64_t(tile) * s.y * s.iters + th / s.x + uint64_t(i) * s.y;
        if (rotate) rotate_finish8(&v[th * 8], a.rot_scale, col[th].neg);
        store8<O>(a.dst, (t - a.t0) * a.g.row_values + col[th].e0, &v[th * 8], a.vec_store != 0);
      }
    }
  }
}

template <Out O>
void EmulateLowbitBits(const LowbitArgs& a) {
  switch (a.h.bits) {
    case 1: return EmulateLowbit<1, O>(a);
    case 2: return EmulateLowbit<2, O>(a);
    case 3: return EmulateLowbit<3, O>(a);
    case 4: return EmulateLowbit<4, O>(a);
    case 8: return EmulateLowbit<8, O>(a);
  }
  FAIL() << "no kernel for bits=" << int(a.h.bits);
}

template <uint32_t Src, Out O>
void EmulateRaw(const uint8_t* src, uint64_t n, void* dst) {
  for (uint64_t i = 0; i < n; ++i) store1<O>(dst, i, load_raw<Src>(src, i));
}

template <Out O>
void EmulateRawFrom(uint32_t stored, const uint8_t* src, uint64_t n, void* dst) {
  if (stored == static_cast<uint32_t>(O)) {  // the device copies (cudaMemcpyAsync)
    std::memcpy(dst, src, n * (O == Out::kF32 ? 4 : 2));
    return;
  }
  if (stored == 0) EmulateRaw<0, O>(src, n, dst);
  if (stored == 1) EmulateRaw<1, O>(src, n, dst);
  if (stored == 2) EmulateRaw<2, O>(src, n, dst);
}

// Fp8Kernel<O>: every octet of the segment, the scale read from the payload.
template <Out O>
void EmulateFp8(const uint8_t* payload, const BlockHeader& h, const uint8_t* codes, uint64_t n, void* dst) {
  const float s = elem::load_f32(payload + h.parts[kPartScales].offset);
  const bool aligned = reinterpret_cast<uintptr_t>(codes) % 8 == 0, vec = reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  for (uint64_t k = 0; k < (n + 7) / 8; ++k) fp8_octet<O>(codes, n, s, fp8::scale_valid(s), dst, k, aligned, vec);
}

// EnqueueBlockDecode with every launch replaced by its emulation.
void EmulateBlock(const TestBlock& b, uint32_t r0, uint32_t r1, DType out, uint8_t* dst) {
  Segment seg[3];
  const int n = split_rows(b.h, r0, r1, seg);
  for (int i = 0; i < n; ++i) {
    uint8_t* o = dst + seg[i].dst_index * DTypeSize(out);
    if (seg[i].lowbit) {
      const LowbitArgs a = make_args(b.h, b.payload.data(), seg[i].t0, seg[i].t1, o);
      if (out == DType::kF32) EmulateLowbitBits<Out::kF32>(a);
      if (out == DType::kF16) EmulateLowbitBits<Out::kF16>(a);
      if (out == DType::kBF16) EmulateLowbitBits<Out::kBF16>(a);
    } else if (seg[i].stored == kStoredFp8) {
      const uint8_t* codes = b.payload.data() + seg[i].src_offset;
      if (out == DType::kF32) EmulateFp8<Out::kF32>(b.payload.data(), b.h, codes, seg[i].n, o);
      if (out == DType::kF16) EmulateFp8<Out::kF16>(b.payload.data(), b.h, codes, seg[i].n, o);
      if (out == DType::kBF16) EmulateFp8<Out::kBF16>(b.payload.data(), b.h, codes, seg[i].n, o);
    } else {
      const uint8_t* src = b.payload.data() + seg[i].src_offset;
      if (out == DType::kF32) EmulateRawFrom<Out::kF32>(seg[i].stored, src, seg[i].n, o);
      if (out == DType::kF16) EmulateRawFrom<Out::kF16>(seg[i].stored, src, seg[i].n, o);
      if (out == DType::kBF16) EmulateRawFrom<Out::kBF16>(seg[i].stored, src, seg[i].n, o);
    }
  }
}

std::vector<std::pair<uint32_t, uint32_t>> Ranges(uint32_t n, uint32_t seed) {
  std::vector<std::pair<uint32_t, uint32_t>> r = {{0, n}};
  if (n > 3) r.push_back({1, n - 2});
  std::mt19937 rng(seed);
  for (int i = 0; i < 3 && n > 0; ++i) {
    const uint32_t a = rng() % n, c = rng() % n;
    r.push_back({std::min(a, c), std::max(a, c) + 1});
  }
  r.push_back({n / 2, n / 2});  // empty
  return r;
}

}  // namespace

TEST(CudaLogic, UnpackMatchesReadCode) {
  std::mt19937 rng(7);
  std::vector<uint8_t> stream(8 * 64);
  for (auto& c : stream) c = static_cast<uint8_t>(rng());
  auto check = [&](auto bits_tag) {
    constexpr uint32_t B = decltype(bits_tag)::value;
    for (uint32_t oct = 0; oct < 64; ++oct) {
      uint32_t q[8];
      unpack8<B>(stream.data() + oct * B, q);
      for (uint32_t k = 0; k < 8; ++k) ASSERT_EQ(q[k], elem::read_code(stream.data(), uint64_t(oct) * 8 + k, B)) << B << " bits";
    }
  };
  check(std::integral_constant<uint32_t, 1>{});
  check(std::integral_constant<uint32_t, 2>{});
  check(std::integral_constant<uint32_t, 3>{});
  check(std::integral_constant<uint32_t, 4>{});
  check(std::integral_constant<uint32_t, 8>{});
}

TEST(CudaLogic, SplitStagesEqualTheReferenceButterflies) {
  // Inner register stages + shared stages over a buffer of several rotation blocks reproduce
  // elem::fwht_butterflies on each block exactly.
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (uint32_t B : {8u, 16u, 64u, 1024u, 8192u}) {
    const uint32_t lanes = std::max(128u, B / 8), n = lanes * 8;
    std::vector<float> ref(n), got(n);
    for (auto& x : ref) x = nd(rng);
    got = ref;
    for (uint32_t b0 = 0; b0 < n; b0 += B) elem::fwht_butterflies(&ref[b0], B);
    for (uint32_t l = 0; l < lanes; ++l) fwht_inner8(&got[l * 8]);
    for (uint32_t h = 8; h < B; h <<= 1)
      for (uint32_t l = 0; l < lanes; ++l) fwht_stage(got.data(), l, h);
    ASSERT_EQ(0, std::memcmp(ref.data(), got.data(), n * 4)) << "B=" << B;
  }
}

TEST(CudaLogic, ConversionsMatchNumeric) {
  for (uint32_t u = 0; u < 0x10000; ++u) {
    const float f = in_f16(static_cast<uint16_t>(u));
    const float r = f16_to_f32(static_cast<uint16_t>(u));
    ASSERT_EQ(0, std::memcmp(&f, &r, 4)) << u;
  }
  std::mt19937 rng(11);
  for (int i = 0; i < 1 << 20; ++i) {
    const float f = bits_f32(static_cast<uint32_t>(rng()));
    ASSERT_EQ(out_f16(f), f32_to_f16(f));
    ASSERT_EQ(out_bf16(f), f32_to_bf16(f));
  }
}

TEST(CudaLogic, LaunchShapesCoverEveryRowAndColumnOnce) {
  BlockHeader h{};
  h.codec = static_cast<uint8_t>(CodecId::kAffine);
  h.bits = 2;
  h.meta_bits = 16;
  for (uint32_t heads : {1u, 3u, 32u})
    for (uint32_t dim : {8u, 40u, 128u, 4096u})
      for (uint32_t rows : {1u, 7u, 1000u, 100000u})
        for (uint8_t rot : {0, 1}) {
          h.n_heads = static_cast<uint16_t>(heads);
          h.head_dim = static_cast<uint16_t>(dim);
          h.n_tokens = rows;
          h.group_size = 8;
          h.rotation = rot;
          h.rot_block = rot ? static_cast<uint16_t>(elem::largest_pow2_divisor(dim)) : 0;
          const LowbitArgs a = make_args(h, nullptr, 0, rows, nullptr);
          const LaunchShape s = launch_shape(a);
          EXPECT_LE(s.x * s.y, 1024u);
          EXPECT_GE(uint64_t(s.col_chunks) * s.x, a.octets);
          EXPECT_LT(uint64_t(s.col_chunks - 1) * s.x, a.octets);
          EXPECT_GE(uint64_t(s.row_tiles) * s.y * s.iters, rows);
          EXPECT_LT(uint64_t(s.row_tiles - 1) * s.y * s.iters, rows);
          EXPECT_LE(s.smem_bytes, 48u * 1024);
        }
}

TEST(CudaLogic, EveryLayoutMatchesTheScalarReferenceBitForBit) {
  uint32_t seed = 100;
  int checked = 0;
  for (const auto& layout : AllLayouts()) {
    TestBlock b;
    ASSERT_TRUE(BuildBlock(layout, ++seed, &b).ok()) << layout.spec;
    const Codec* codec = GetCodec(b.h.codec);
    for (DType out : {DType::kF32, DType::kF16, DType::kBF16})
      for (auto [r0, r1] : Ranges(b.h.n_tokens, seed)) {
        const uint64_t bytes = (r1 - r0) * b.row_values() * DTypeSize(out);
        std::vector<uint8_t> want(bytes + 16, 0xA5), got(bytes + 16, 0xA5);
        ASSERT_TRUE(codec->Decode(b.view(), r0, r1, out, want.data(), Backend::kScalar).ok()) << layout.spec;
        EmulateBlock(b, r0, r1, out, got.data());
        ASSERT_EQ(want, got) << layout.spec << " rows [" << r0 << ", " << r1 << ") as " << DTypeName(out);
        ++checked;
      }
  }
  EXPECT_GT(checked, 300);
}

TEST(CudaLogic, Fp8OctetsMatchTheScalarCodeAndBadScalesGiveNaN) {
  // Every code in every lane, from aligned and unaligned starts, full and partial octets.
  std::vector<uint8_t> codes(256 + 16);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i * 37 + 5);
  for (uint32_t start : {0u, 3u})
    for (uint64_t n : {uint64_t(256), uint64_t(253)}) {
      std::vector<float> got(n, -1.0f);
      for (uint64_t k = 0; k < (n + 7) / 8; ++k)
        fp8_octet<Out::kF32>(codes.data() + start, n, 0.75f, true, got.data(), k, start % 8 == 0, false);
      for (uint64_t i = 0; i < n; ++i)
        ASSERT_EQ(f32_bits(got[i]), f32_bits(fp8::decode(codes[start + i], 0.75f))) << "start " << start << " element " << i;
    }
  for (float bad : {0.0f, -2.0f, INFINITY, NAN}) {
    std::vector<uint16_t> got(12, 0);
    for (uint64_t k = 0; k < 2; ++k) fp8_octet<Out::kF16>(codes.data(), 12, bad, fp8::scale_valid(bad), got.data(), k, true, false);
    for (uint16_t h : got) ASSERT_EQ(h, 0x7E00) << bad;
  }
}

TEST(CudaLogic, NoDeviceIsReportedNotCrashed) {
  std::string why;
  if (CudaDeviceAvailable(&why)) GTEST_SKIP() << "a CUDA device is present; test_cuda_gpu covers it";
  EXPECT_NE(why.find("no CUDA device"), std::string::npos) << why;
  EXPECT_FALSE(BackendAvailable(Backend::kCuda));
  TestBlock b;
  ASSERT_TRUE(BuildBlock({"affine:bits=2,group=16", {4, 1, 32}}, 1, &b).ok());
  std::vector<float> out(4 * 32);
  const Status st = GetCodec(b.h.codec)->Decode(b.view(), 0, 4, DType::kF32, out.data(), Backend::kCuda);
  EXPECT_EQ(st.code(), StatusCode::kUnsupported);
  EXPECT_NE(st.message().find("no CUDA device"), std::string::npos) << st.message();
  EXPECT_EQ(CudaDecodeBlock(b.h, nullptr, 0, 4, DType::kF32, nullptr).code(), StatusCode::kUnsupported);
}
