// The public CUDA API (mqkv/cuda.h) of a CUDA build: device detection, per-block, per-tensor and
// host-memory decode. Compiled into libmqkv by kernels/CMakeLists.txt; without CUDA the same
// functions come from lib/src/codec/cuda_absent.cpp.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>

#include "format/container.h"
#include "launch.h"
#include "mqkv/cuda.h"
#include "detail/fp8.h"
#include "mqkv/snapshot.h"
#include "codec/registry.h"

namespace mqkv {
namespace cuda_detail {

Status CudaStatus(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::OK();
  const std::string msg = std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  switch (e) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
      return Unsupported("no CUDA device: " + msg);
    case cudaErrorNoKernelImageForDevice:
      return Unsupported("the mqkv kernels were not built for this GPU's architecture (set CMAKE_CUDA_ARCHITECTURES): " + msg);
    default:
      return Internal(msg);
  }
}

// The container's own part rules (FORMAT.md §8 step 18: sizes, alignment, bounds, overlap,
// canonical layout), the same check the reader runs; offsets relative to the block header.
Status CheckHeader(const BlockHeader& h) { return format::CheckBlockParts(h, 0); }

namespace {

// What the kernels cannot check without a synchronizing copy, checked where the payload is in
// host memory: the codec's own per-decode checks (an fp8 block's scale must be positive and
// finite; spec/CODECS.md "fp8"), so the CPU and CUDA paths refuse with the same message.
Status CheckHostPayload(const BlockHeader& h, const uint8_t* payload) {
  return GetCodec(h.codec)->CheckDecodable(BlockView{&h, payload});
}

Status RequireDevice() {
  std::string why;
  if (!CudaDeviceAvailable(&why)) return Unsupported(why);
  return Status::OK();
}

// A device allocation freed when it goes out of scope (synchronous paths only).
struct DeviceBuffer {
  void* p = nullptr;
  ~DeviceBuffer() {
    if (p) cudaFree(p);
  }
  Status Alloc(size_t n) { return CudaStatus(cudaMalloc(&p, n ? n : 1), "cudaMalloc"); }
};

}  // namespace
}  // namespace cuda_detail

bool CudaDeviceAvailable(std::string* why) {
  static const std::string reason = [] {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      cudaGetLastError();  // not sticky, but leave no error behind for the caller's next check
      return "no CUDA device: " + std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
    }
    if (n == 0) return std::string("no CUDA device: the CUDA runtime sees 0 devices");
    return std::string();
  }();
  if (why) *why = reason;
  return reason.empty();
}

Status CudaDecodeBlock(const BlockHeader& header, const void* d_payload, uint32_t row_begin, uint32_t row_end, DType out,
                       void* d_dst, void* stream) {
  MQKV_RETURN_IF_ERROR(cuda_detail::RequireDevice());
  MQKV_RETURN_IF_ERROR(cuda_detail::CheckHeader(header));
  return cuda_detail::EnqueueBlockDecode(header, static_cast<const uint8_t*>(d_payload), row_begin, row_end, out, d_dst,
                                         static_cast<cudaStream_t>(stream));
}

Status CudaDecodeTensor(const Snapshot& snapshot, size_t tensor, uint32_t row_begin, uint32_t row_end, DType out,
                        void* d_dst, void* stream) {
  MQKV_RETURN_IF_ERROR(cuda_detail::RequireDevice());
  if (tensor >= snapshot.tensors().size())
    return OutOfRange("tensor " + std::to_string(tensor) + " of " + std::to_string(snapshot.tensors().size())).WithFile(snapshot.path());
  const TensorInfo& t = snapshot.tensors()[tensor];
  if (row_begin > row_end || row_end > t.n_tokens)
    return OutOfRange("rows [" + std::to_string(row_begin) + ", " + std::to_string(row_end) + ") outside tensor " +
                      std::to_string(tensor) + "'s " + std::to_string(t.n_tokens) + " rows")
        .WithFile(snapshot.path());
  if (!t.rope.empty())  // the rotation back is a host pass (spec/CODECS.md, "Keys before RoPE")
    return Unsupported("tensor " + std::to_string(tensor) + " holds keys stored before RoPE (prerope=1): no device decoder "
                       "re-applies RoPE yet; decode it with Snapshot::Decode (any backend, host memory) and upload")
        .WithFile(snapshot.path());
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const uint64_t rv = uint64_t(t.n_heads) * t.head_dim;
  auto* o = static_cast<uint8_t*>(d_dst);
  for (uint32_t b = t.first_block; b < t.first_block + t.n_blocks; ++b) {
    const BlockInfo& bi = snapshot.blocks()[b];
    const uint32_t lo = std::max(row_begin, bi.token_begin);
    const uint32_t hi = std::min<uint64_t>(row_end, uint64_t(bi.token_begin) + bi.n_tokens);
    if (lo >= hi) continue;
    MQKV_ASSIGN_OR_RETURN(BlockData data, snapshot.ReadBlock(b));
    const BlockHeader& h = *data.view.header;
    Status st = cuda_detail::CheckHeader(h);
    if (st.ok()) st = cuda_detail::CheckHostPayload(h, data.view.payload);
    if (!st.ok()) return st.Prepend("block " + std::to_string(b)).WithFile(snapshot.path());
    // Stream-ordered allocation: freed on the stream after the kernels that read it. A pageable
    // host source is staged before cudaMemcpyAsync returns, so `data` may go out of scope.
    void* d_payload = nullptr;
    MQKV_RETURN_IF_ERROR(cuda_detail::CudaStatus(cudaMallocAsync(&d_payload, h.payload_bytes ? h.payload_bytes : 1, s), "cudaMallocAsync"));
    st = cuda_detail::CudaStatus(cudaMemcpyAsync(d_payload, data.view.payload, h.payload_bytes, cudaMemcpyHostToDevice, s),
                                 "cudaMemcpyAsync (block payload)");
    if (st.ok())
      st = cuda_detail::EnqueueBlockDecode(h, static_cast<const uint8_t*>(d_payload), lo - bi.token_begin, hi - bi.token_begin,
                                           out, o + uint64_t(lo - row_begin) * rv * DTypeSize(out), s);
    const Status freed = cuda_detail::CudaStatus(cudaFreeAsync(d_payload, s), "cudaFreeAsync");
    if (!st.ok()) return st.Prepend("block " + std::to_string(b)).WithFile(snapshot.path());
    MQKV_RETURN_IF_ERROR(freed);
  }
  return Status::OK();
}

Status CudaDecodeHostBlock(const BlockView& block, uint32_t row_begin, uint32_t row_end, DType out, void* dst) {
  MQKV_RETURN_IF_ERROR(cuda_detail::RequireDevice());
  const BlockHeader& h = *block.header;
  if (row_begin > row_end || row_end > h.n_tokens)
    return OutOfRange("rows [" + std::to_string(row_begin) + ", " + std::to_string(row_end) + ") outside the block's " +
                      std::to_string(h.n_tokens) + " rows");
  MQKV_RETURN_IF_ERROR(cuda_detail::CheckHeader(h));
  MQKV_RETURN_IF_ERROR(cuda_detail::CheckHostPayload(h, block.payload));
  const uint64_t out_bytes = uint64_t(row_end - row_begin) * h.n_heads * h.head_dim * DTypeSize(out);
  cuda_detail::DeviceBuffer payload, result;
  MQKV_RETURN_IF_ERROR(payload.Alloc(h.payload_bytes));
  MQKV_RETURN_IF_ERROR(result.Alloc(out_bytes));
  MQKV_RETURN_IF_ERROR(cuda_detail::CudaStatus(cudaMemcpy(payload.p, block.payload, h.payload_bytes, cudaMemcpyHostToDevice),
                                               "cudaMemcpy (block payload)"));
  MQKV_RETURN_IF_ERROR(cuda_detail::EnqueueBlockDecode(h, static_cast<const uint8_t*>(payload.p), row_begin, row_end, out,
                                                       result.p, nullptr));
  MQKV_RETURN_IF_ERROR(cuda_detail::CudaStatus(cudaMemcpy(dst, result.p, out_bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (decoded rows)"));
  return Status::OK();
}

}  // namespace mqkv
