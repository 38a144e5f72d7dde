// Real CUDA launches against the scalar reference: every codec layout, every output type, odd
// shapes, unaligned row ranges and output pointers, token ranges of a multi-block zstd snapshot,
// the host-memory backend used by mqverify, and the device conversions over all their inputs.
// Without a device every test skips with "no CUDA device: <CUDA runtime error>".
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "decode_logic.cuh"
#include "layouts.h"
#include "mqkv/cuda.h"
#include "mqkv/mqkv.h"

using namespace mqkv;
using mqkv::cudatest::AllLayouts;
using mqkv::cudatest::BuildBlock;
using mqkv::cudatest::Layout;
using mqkv::cudatest::TestBlock;

namespace {

#define CUDA_OK(expr) ASSERT_EQ(cudaSuccess, (expr)) << #expr

class CudaGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!CudaDeviceAvailable(&why)) GTEST_SKIP() << why;
  }
};

struct DeviceMem {
  void* p = nullptr;
  explicit DeviceMem(size_t n) { EXPECT_EQ(cudaSuccess, cudaMalloc(&p, n ? n : 1)); }
  ~DeviceMem() { cudaFree(p); }
  uint8_t* bytes() const { return static_cast<uint8_t*>(p); }
};

std::vector<uint8_t> Scalar(const TestBlock& b, uint32_t r0, uint32_t r1, DType out) {
  std::vector<uint8_t> v((r1 - r0) * b.row_values() * DTypeSize(out));
  EXPECT_TRUE(GetCodec(b.h.codec)->Decode(b.view(), r0, r1, out, v.data(), Backend::kScalar).ok());
  return v;
}

__global__ void CountF16Mismatches(uint32_t hi, unsigned long long* bad) {
  const uint32_t lo = blockIdx.x * blockDim.x + threadIdx.x;  // 2^16 threads per launch
  const float f = __uint_as_float((hi << 16) | lo);
  if (cuda_detail::out_f16(f) != f32_to_f16(f)) atomicAdd(bad, 1ull);
  if (hi == 0) {
    const float a = cuda_detail::in_f16(static_cast<uint16_t>(lo)), b = f16_to_f32(static_cast<uint16_t>(lo));
    if (__float_as_uint(a) != __float_as_uint(b)) atomicAdd(bad, 1ull);
  }
}

}  // namespace

TEST_F(CudaGpu, DeviceConversionsMatchNumericForEveryInput) {
  DeviceMem bad(8);
  CUDA_OK(cudaMemset(bad.p, 0, 8));
  for (uint32_t hi = 0; hi < 0x10000; ++hi) CountF16Mismatches<<<256, 256>>>(hi, static_cast<unsigned long long*>(bad.p));
  CUDA_OK(cudaGetLastError());
  unsigned long long n = 1;
  CUDA_OK(cudaMemcpy(&n, bad.p, 8, cudaMemcpyDeviceToHost));
  EXPECT_EQ(n, 0u);
}

TEST_F(CudaGpu, EveryLayoutMatchesTheScalarReference) {
  uint32_t seed = 500;
  for (const Layout& l : AllLayouts()) {
    TestBlock b;
    ASSERT_TRUE(BuildBlock(l, ++seed, &b).ok()) << l.spec;
    DeviceMem payload(b.payload.size());
    CUDA_OK(cudaMemcpy(payload.p, b.payload.data(), b.payload.size(), cudaMemcpyHostToDevice));
    std::mt19937 rng(seed);
    std::vector<std::pair<uint32_t, uint32_t>> ranges = {{0, b.h.n_tokens}};
    for (int i = 0; i < 4; ++i) {
      const uint32_t a = rng() % b.h.n_tokens, c = rng() % b.h.n_tokens;
      ranges.push_back({std::min(a, c), std::max(a, c) + 1});
    }
    for (DType out : {DType::kF32, DType::kF16, DType::kBF16})
      for (auto [r0, r1] : ranges)
        for (size_t shift : {size_t(0), DTypeSize(out)}) {  // 16-byte aligned, and not (scalar stores)
          const std::vector<uint8_t> want = Scalar(b, r0, r1, out);
          DeviceMem dst(want.size() + 16);
          CUDA_OK(cudaMemset(dst.p, 0xA5, want.size() + 16));
          const Status st = CudaDecodeBlock(b.h, payload.p, r0, r1, out, dst.bytes() + shift);
          ASSERT_TRUE(st.ok()) << l.spec << ": " << st.ToString();
          std::vector<uint8_t> got(want.size() + 16);
          CUDA_OK(cudaMemcpy(got.data(), dst.p, got.size(), cudaMemcpyDeviceToHost));
          ASSERT_EQ(0, std::memcmp(want.data(), got.data() + shift, want.size()))
              << l.spec << " rows [" << r0 << ", " << r1 << ") as " << DTypeName(out) << " shift " << shift;
          for (size_t i = 0; i < shift; ++i) ASSERT_EQ(got[i], 0xA5) << "wrote before the output";
          for (size_t i = shift + want.size(); i < got.size(); ++i) ASSERT_EQ(got[i], 0xA5) << "wrote past the output";
        }
  }
}

TEST_F(CudaGpu, HostBackendAgreesWithScalar) {
  EXPECT_TRUE(BackendAvailable(Backend::kCuda));
  uint32_t seed = 900;
  for (const Layout& l : AllLayouts()) {
    TestBlock b;
    ASSERT_TRUE(BuildBlock(l, ++seed, &b).ok()) << l.spec;
    const std::vector<uint8_t> want = Scalar(b, 0, b.h.n_tokens, DType::kF32);
    std::vector<uint8_t> got(want.size());
    ASSERT_TRUE(GetCodec(b.h.codec)->Decode(b.view(), 0, b.h.n_tokens, DType::kF32, got.data(), Backend::kCuda).ok()) << l.spec;
    EXPECT_EQ(want, got) << l.spec;
  }
}

TEST_F(CudaGpu, LargeBlockUsesManyCtasAndMatches) {
  for (const char* spec : {"affine:bits=2,group=32,meta=4", "affine:bits=3,group=16,axis=channel,rotate=hadamard,sinks=4,residual=64",
                           "codebook:bits=2,levels=-1.85/-0.55/0.55/1.85,group=64,rotate=hadamard"}) {
    TestBlock b;
    ASSERT_TRUE(BuildBlock({spec, {4099, 8, 128}}, 77, &b).ok()) << spec;
    DeviceMem payload(b.payload.size());
    CUDA_OK(cudaMemcpy(payload.p, b.payload.data(), b.payload.size(), cudaMemcpyHostToDevice));
    const std::vector<uint8_t> want = Scalar(b, 3, 4090, DType::kF16);
    DeviceMem dst(want.size());
    ASSERT_TRUE(CudaDecodeBlock(b.h, payload.p, 3, 4090, DType::kF16, dst.p).ok());
    std::vector<uint8_t> got(want.size());
    CUDA_OK(cudaMemcpy(got.data(), dst.p, got.size(), cudaMemcpyDeviceToHost));
    EXPECT_EQ(want, got) << spec;
  }
}

TEST_F(CudaGpu, TensorTokenRangesAcrossCompressedBlocks) {
  mqkv::testing::TempDir dir;
  const std::string path = dir.Path("t.mqkv");
  const TensorDesc k{0, Kind::kK, 3, 64, 101};
  const TensorDesc v{0, Kind::kV, 3, 64, 101};
  const std::vector<float> xk = mqkv::testing::RandomRows(101 * 3 * 64, 1), xv = mqkv::testing::RandomRows(101 * 3 * 64, 2);
  {
    WriterOptions o;
    o.zstd_level = 3;
    o.max_block_tokens = 16;
    o.fsync = false;
    auto w = Writer::Create(path, o);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE((*w)->AddTensor(k, xk.data(), CodecSpec::Parse("affine:bits=3,group=8,axis=channel,sinks=2,residual=5,rotate=hadamard").value()).ok());
    ASSERT_TRUE((*w)->AddTensor(v, xv.data(), CodecSpec::Parse("affine:bits=2,group=32,meta=4").value()).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  auto s = Snapshot::Open(path);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  for (size_t t = 0; t < (*s)->tensors().size(); ++t)
    for (auto [r0, r1] : std::vector<std::pair<uint32_t, uint32_t>>{{0, 101}, {5, 6}, {15, 17}, {3, 99}, {100, 101}, {40, 40}}) {
      const uint64_t n = uint64_t(r1 - r0) * 3 * 64;
      std::vector<uint16_t> want(n), got(n);
      ASSERT_TRUE((*s)->Decode(t, r0, r1, DType::kBF16, want.data(), Backend::kScalar).ok());
      DeviceMem dst(n * 2);
      const Status st = CudaDecodeTensor(**s, t, r0, r1, DType::kBF16, dst.p);
      ASSERT_TRUE(st.ok()) << st.ToString();
      CUDA_OK(cudaDeviceSynchronize());
      CUDA_OK(cudaMemcpy(got.data(), dst.p, n * 2, cudaMemcpyDeviceToHost));
      EXPECT_EQ(want, got) << "tensor " << t << " rows [" << r0 << ", " << r1 << ")";
    }
  DeviceMem dst(16);
  EXPECT_EQ(CudaDecodeTensor(**s, 0, 0, 102, DType::kF32, dst.p).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(CudaDecodeTensor(**s, 9, 0, 1, DType::kF32, dst.p).code(), StatusCode::kOutOfRange);
}

TEST_F(CudaGpu, Fp8BadScaleIsRefusedOnTheHostAndNaNOnTheDevice) {
  TestBlock b;
  ASSERT_TRUE(BuildBlock({"fp8", {4, 2, 16}}, 8, &b).ok());
  const float zero = 0.0f;
  std::memcpy(b.payload.data() + b.h.parts[kPartScales].offset, &zero, 4);
  std::vector<float> host(4 * 32);
  const Status st = GetCodec(b.h.codec)->Decode(b.view(), 0, 4, DType::kF32, host.data(), Backend::kCuda);
  EXPECT_EQ(st.code(), StatusCode::kFormatError) << st.ToString();
  EXPECT_EQ(CudaDecodeHostBlock(b.view(), 0, 4, DType::kF32, host.data()).code(), StatusCode::kFormatError);
  DeviceMem payload(b.payload.size()), dst(4 * 32 * 4);
  CUDA_OK(cudaMemcpy(payload.p, b.payload.data(), b.payload.size(), cudaMemcpyHostToDevice));
  ASSERT_TRUE(CudaDecodeBlock(b.h, payload.p, 0, 4, DType::kF32, dst.p).ok());
  std::vector<uint32_t> got(4 * 32);
  CUDA_OK(cudaMemcpy(got.data(), dst.p, got.size() * 4, cudaMemcpyDeviceToHost));
  for (uint32_t u : got) ASSERT_EQ(u, 0x7FC00000u);
}

TEST_F(CudaGpu, BadArgumentsAreErrors) {
  TestBlock b;
  ASSERT_TRUE(BuildBlock({"affine:bits=4,group=16", {6, 2, 32}}, 5, &b).ok());
  DeviceMem payload(b.payload.size() + 8), dst(6 * 64 * 4 + 8);
  CUDA_OK(cudaMemcpy(payload.p, b.payload.data(), b.payload.size(), cudaMemcpyHostToDevice));
  EXPECT_EQ(CudaDecodeBlock(b.h, payload.p, 0, 7, DType::kF32, dst.p).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(CudaDecodeBlock(b.h, payload.bytes() + 4, 0, 6, DType::kF32, dst.p).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CudaDecodeBlock(b.h, payload.p, 0, 6, DType::kF32, dst.bytes() + 2).code(), StatusCode::kInvalidArgument);
  BlockHeader bad = b.h;
  bad.parts[kPartCodes].bytes += 1;
  EXPECT_EQ(CudaDecodeBlock(bad, payload.p, 0, 6, DType::kF32, dst.p).code(), StatusCode::kFormatError);
  // A Hadamard block over 8192 dims is refused with a reason, not mis-decoded.
  TestBlock big;
  ASSERT_TRUE(BuildBlock({"affine:bits=2,group=64,rotate=hadamard", {2, 1, 16384}}, 6, &big).ok());
  DeviceMem bp(big.payload.size()), bd(2 * 16384 * 4);
  CUDA_OK(cudaMemcpy(bp.p, big.payload.data(), big.payload.size(), cudaMemcpyHostToDevice));
  const Status st = CudaDecodeBlock(big.h, bp.p, 0, 2, DType::kF32, bd.p);
  EXPECT_EQ(st.code(), StatusCode::kUnsupported) << st.ToString();
}
