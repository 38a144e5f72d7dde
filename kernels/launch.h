// Internal: the launchers of kernels/decode_kernels.cu, used by kernels/cuda_api.cpp, the GPU
// tests and the benchmark. Not installed.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "mqkv/block.h"
#include "mqkv/codec.h"
#include "mqkv/status.h"

namespace mqkv::cuda_detail {

// Status of a CUDA runtime call: OK, kUnsupported "no CUDA device: ..." for the errors that mean
// no usable device, else kInternal "<what>: <error string>".
Status CudaStatus(cudaError_t e, const char* what);

// Checks a header as the reader does before a decoder sees it: the codec's PartSizes, and every
// part inside payload_bytes with the size PartSizes gives.
Status CheckHeader(const BlockHeader& h);

// Enqueues the decode of block rows [r0, r1) (block-relative; sink, quantized and residual rows)
// from a device payload into d_dst on `stream`. The header must have passed CheckHeader; the row
// range and pointer alignment are checked here.
Status EnqueueBlockDecode(const BlockHeader& h, const uint8_t* d_payload, uint32_t r0, uint32_t r1, DType out,
                          void* d_dst, cudaStream_t stream);

}  // namespace mqkv::cuda_detail
