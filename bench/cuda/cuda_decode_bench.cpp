// CUDA decode throughput, per codec, in GB/s of decoded output, beside cudaMemcpy device-to-device
// of the same number of bytes in the same run (the device's own copy bandwidth: its GB/s counts
// the bytes copied, each read once and written once). Every decode is first checked bit for bit
// against the scalar reference, so a fast wrong kernel cannot post a number.
//
//   mqkv_cuda_bench [--rows N] [--heads H] [--dim D] [--reps R] [--out f16|bf16|f32]
//
// Prints a Markdown table on stdout. Without a device it prints why and exits 0 (skip).
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <array>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "format/container.h"
#include "mqkv/cuda.h"
#include "mqkv/mqkv.h"
#include "codec/registry.h"

using namespace mqkv;

namespace {

struct Config {
  const char* name;
  const char* spec;
};

const Config kConfigs[] = {
    {"f16 (raw)", "f16"},
    {"affine 2-bit g32", "affine:bits=2,group=32"},
    {"affine 3-bit g32", "affine:bits=3,group=32"},
    {"affine 4-bit g32", "affine:bits=4,group=32"},
    {"affine 8-bit g64", "affine:bits=8,group=64"},
    {"affine 2-bit g64 meta4", "affine:bits=2,group=64,meta=4"},
    {"affine 3-bit channel g64 meta8", "affine:bits=3,group=64,axis=channel,meta=8"},
    {"affine 2-bit g32 hadamard", "affine:bits=2,group=32,rotate=hadamard"},
    {"affine 4-bit channel g128 hadamard sinks4 res128", "affine:bits=4,group=128,axis=channel,rotate=hadamard,sinks=4,residual=128"},
    {"codebook 2-bit g32", "codebook:bits=2,levels=-1.85/-0.55/0.55/1.85,group=32"},
    {"codebook 2-bit channel g64 hadamard", "codebook:bits=2,levels=-1.85/-0.55/0.55/1.85,group=64,axis=channel,rotate=hadamard"},
};

struct Block {
  BlockHeader h{};
  std::vector<uint8_t> payload;
  Status status;
};

void Encode(const char* spec_text, const std::vector<float>& x, BlockShape shape, Block* out) {
  auto spec = CodecSpec::Parse(spec_text);
  if (!spec.ok()) {
    out->status = spec.status();
    return;
  }
  EncodedBlock eb;
  out->status = EncodeBlock(*spec, x.data(), shape, &eb);
  if (!out->status.ok()) return;
  std::array<uint64_t, kNumParts> sizes{};
  for (int p = 0; p < kNumParts; ++p) sizes[p] = eb.parts[p].size();
  out->status = format::LayoutParts(sizes, &eb.header);
  if (!out->status.ok()) return;
  out->h = eb.header;
  out->payload.assign(eb.header.payload_bytes, 0);
  for (int p = 0; p < kNumParts; ++p)
    if (!eb.parts[p].empty()) std::memcpy(out->payload.data() + eb.header.parts[p].offset, eb.parts[p].data(), eb.parts[p].size());
}

#define CHECK_CUDA(expr)                                                                              \
  do {                                                                                                \
    cudaError_t e_ = (expr);                                                                          \
    if (e_ != cudaSuccess) {                                                                          \
      std::fprintf(stderr, "mqkv_cuda_bench: %s: %s\n", #expr, cudaGetErrorString(e_));               \
      std::exit(1);                                                                                   \
    }                                                                                                 \
  } while (0)

}  // namespace

int main(int argc, char** argv) {
  uint32_t rows = 32768, heads = 8, dim = 128, reps = 20;
  DType out = DType::kF16;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--rows") rows = std::stoul(v);
    else if (k == "--heads") heads = std::stoul(v);
    else if (k == "--dim") dim = std::stoul(v);
    else if (k == "--reps") reps = std::stoul(v);
    else if (k == "--out") out = v == "f32" ? DType::kF32 : v == "bf16" ? DType::kBF16 : DType::kF16;
    else {
      std::fprintf(stderr, "usage: %s [--rows N] [--heads H] [--dim D] [--reps R] [--out f16|bf16|f32]\n", argv[0]);
      return 2;
    }
  }
  std::string why;
  if (!CudaDeviceAvailable(&why)) {
    std::printf("mqkv_cuda_bench: skipped: %s\n", why.c_str());
    return 0;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));

  const BlockShape shape{rows, heads, dim};
  const uint64_t n = shape.values();
  const uint64_t out_bytes = n * DTypeSize(out);
  // Gaussian rows with a few heavy outliers (like K/V activations), generated in parallel.
  std::vector<float> x(n);
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  {
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        std::mt19937 rng(1234 + t);
        std::normal_distribution<float> nd;
        for (uint64_t i = t; i < n; i += threads) x[i] = (i % 211 == 0 ? 8.0f : 1.0f) * nd(rng);
      });
    for (auto& th : pool) th.join();
  }
  constexpr size_t kN = sizeof(kConfigs) / sizeof(kConfigs[0]);
  std::vector<Block> blocks(kN);
  {
    std::vector<std::thread> pool;
    for (size_t c = 0; c < kN; ++c) pool.emplace_back([&, c] { Encode(kConfigs[c].spec, x, shape, &blocks[c]); });
    for (auto& th : pool) th.join();
  }

  void *d_out = nullptr, *d_src = nullptr;
  CHECK_CUDA(cudaMalloc(&d_out, out_bytes));
  CHECK_CUDA(cudaMalloc(&d_src, out_bytes));
  CHECK_CUDA(cudaMemset(d_src, 0x3C, out_bytes));
  cudaEvent_t e0, e1;
  CHECK_CUDA(cudaEventCreate(&e0));
  CHECK_CUDA(cudaEventCreate(&e1));
  auto time_ms = [&](auto&& op) {
    op();  // warm-up
    CHECK_CUDA(cudaDeviceSynchronize());
    CHECK_CUDA(cudaEventRecord(e0));
    for (uint32_t r = 0; r < reps; ++r) op();
    CHECK_CUDA(cudaEventRecord(e1));
    CHECK_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    return double(ms) / reps;
  };
  const double copy_ms = time_ms([&] { CHECK_CUDA(cudaMemcpyAsync(d_out, d_src, out_bytes, cudaMemcpyDeviceToDevice)); });
  const double copy_gbs = out_bytes / copy_ms / 1e6;

  std::printf("## mqkv CUDA decode: %s (sm_%d%d, %d SMs, %.0f GiB, %d-bit memory bus)\n\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0, prop.memoryBusWidth);
  std::printf("Block: %u rows x %u heads x %u dims = %.1f M values; output %s, %.1f MiB; %u timed runs each.\n",
              rows, heads, dim, n / 1e6, DTypeName(out), out_bytes / 1048576.0, reps);
  std::printf("cudaMemcpy device-to-device of the same %.1f MiB: %.3f ms = **%.0f GB/s**.\n\n", out_bytes / 1048576.0, copy_ms, copy_gbs);
  std::printf("| codec | payload MiB | decode ms | output GB/s | vs memcpy | bit-exact |\n|---|---:|---:|---:|---:|---|\n");
  int failures = 0;
  std::vector<uint8_t> want(out_bytes), got(out_bytes);
  for (size_t c = 0; c < kN; ++c) {
    Block& b = blocks[c];
    if (!b.status.ok()) {
      std::printf("| %s | | | | | encode failed: %s |\n", kConfigs[c].name, b.status.ToString().c_str());
      ++failures;
      continue;
    }
    void* d_payload = nullptr;
    CHECK_CUDA(cudaMalloc(&d_payload, b.payload.size()));
    CHECK_CUDA(cudaMemcpy(d_payload, b.payload.data(), b.payload.size(), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemset(d_out, 0xFF, out_bytes));
    Status st = CudaDecodeBlock(b.h, d_payload, 0, rows, out, d_out);
    if (st.ok()) st = GetCodec(b.h.codec)->Decode(BlockView{&b.h, b.payload.data()}, 0, rows, out, want.data(), Backend::kScalar);
    if (!st.ok()) {
      std::printf("| %s | | | | | decode failed: %s |\n", kConfigs[c].name, st.ToString().c_str());
      ++failures;
      CHECK_CUDA(cudaFree(d_payload));
      continue;
    }
    CHECK_CUDA(cudaMemcpy(got.data(), d_out, out_bytes, cudaMemcpyDeviceToHost));
    const bool exact = want == got;
    failures += exact ? 0 : 1;
    const double ms = time_ms([&] {
      const Status s2 = CudaDecodeBlock(b.h, d_payload, 0, rows, out, d_out);
      if (!s2.ok()) {
        std::fprintf(stderr, "mqkv_cuda_bench: %s\n", s2.ToString().c_str());
        std::exit(1);
      }
    });
    const double gbs = out_bytes / ms / 1e6;
    std::printf("| %s | %.1f | %.3f | %.0f | %.0f%% | %s |\n", kConfigs[c].name, b.payload.size() / 1048576.0, ms, gbs,
                100.0 * gbs / copy_gbs, exact ? "yes" : "**NO**");
    std::fflush(stdout);
    CHECK_CUDA(cudaFree(d_payload));
  }
  std::printf("\nGB/s counts decoded output bytes per second (memcpy: bytes copied per second).\n");
  CHECK_CUDA(cudaFree(d_out));
  CHECK_CUDA(cudaFree(d_src));
  return failures ? 1 : 0;
}
