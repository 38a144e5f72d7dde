// CUDA decode (kernels/): every codec of spec/CODECS.md decoded on the GPU into device memory,
// bit-identical to the scalar reference (Backend::kScalar).
//
// Every function exists in every build. Without CUDA (configured with MQKV_CUDA=OFF or no nvcc)
// they return kUnsupported "built without CUDA"; with CUDA but no usable device they return
// kUnsupported "no CUDA device: <CUDA runtime error>". Other CUDA runtime failures (out of device
// memory, a failed launch) are kInternal with the runtime's error string.
//
// Streams are passed as `void*` so this header does not need cuda_runtime.h: pass a cudaStream_t
// (nullptr = the legacy default stream). The enqueue functions return once the work is queued on
// `stream`; the output is ready when the stream is synchronized.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "mqkv/block.h"
#include "mqkv/codec.h"
#include "mqkv/status.h"

namespace mqkv {

class Snapshot;

// True when this build has the CUDA kernels and the runtime sees at least one device. When false
// and `why` is given, it says why ("built without CUDA", "no CUDA device: <error>"). The answer is
// computed once per process.
bool CudaDeviceAvailable(std::string* why = nullptr);

// Decodes rows [row_begin, row_end) of one block whose verified, decompressed payload
// (header.payload_bytes bytes) is already in device memory at `d_payload` (8-byte aligned; a
// cudaMalloc pointer is). Output goes to `d_dst` as [row][head][dim] of `out` (aligned to the
// element size; 16-byte alignment enables vector stores). The header is checked as the reader
// checks it (codec fields and part layout); header.compression is ignored (the payload is
// decoded). Blocks with a Hadamard block length over 8192 dims are kUnsupported (shared memory).
// The payload itself is not read on the host: an fp8 block whose scale is not positive and finite
// (which the CPU decoder and the two functions below refuse with FormatError) decodes to NaN
// 0x7FC00000 here.
Status CudaDecodeBlock(const BlockHeader& header, const void* d_payload, uint32_t row_begin, uint32_t row_end,
                       DType out, void* d_dst, void* stream = nullptr);

// Decodes tensor rows [row_begin, row_end) of a snapshot into device memory `d_dst`: reads and
// verifies only the blocks holding those rows, uploads their payloads (stream-ordered device
// allocations, freed on the stream) and decodes each block's share. The whole tensor is
// [0, n_tokens).
Status CudaDecodeTensor(const Snapshot& snapshot, size_t tensor, uint32_t row_begin, uint32_t row_end, DType out,
                        void* d_dst, void* stream = nullptr);

// Backend::kCuda of Codec::Decode: host payload in, host `dst` out (upload the block, decode on
// the device, download, synchronize). Used by mqverify --backend cuda to compare with kScalar.
Status CudaDecodeHostBlock(const BlockView& block, uint32_t row_begin, uint32_t row_end, DType out, void* dst);

}  // namespace mqkv
