// mqkv/cuda.h in a build without the CUDA kernels (MQKV_CUDA=OFF or no nvcc): every entry point
// reports kUnsupported "built without CUDA". A CUDA build compiles kernels/cuda_api.cpp instead.
#ifndef MQKV_WITH_CUDA
#include "mqkv/cuda.h"

namespace mqkv {
namespace {
constexpr const char* kNoCuda = "built without CUDA (configure with nvcc on PATH or -DMQKV_CUDA=ON)";
}

bool CudaDeviceAvailable(std::string* why) {
  if (why) *why = kNoCuda;
  return false;
}
Status CudaDecodeBlock(const BlockHeader&, const void*, uint32_t, uint32_t, DType, void*, void*) { return Unsupported(kNoCuda); }
Status CudaDecodeTensor(const Snapshot&, size_t, uint32_t, uint32_t, DType, void*, void*) { return Unsupported(kNoCuda); }
Status CudaDecodeHostBlock(const BlockView&, uint32_t, uint32_t, DType, void*) { return Unsupported(kNoCuda); }

}  // namespace mqkv
#endif
