// CUDA decode kernels for every codec of spec/CODECS.md, bit-identical to the scalar reference.
// The per-element logic is in decode_logic.cuh (tested on the CPU); this file is the thread
// schedule and the launchers. Kernels are templated only by what changes the inner loop's code
// (code width, output type): 5 widths x 3 outputs low-bit kernels, 6 raw conversion kernels,
// 3 fp8 kernels.
// Codec (affine / codebook), group axis, metadata coding and rotation are CTA-uniform branches.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "decode_logic.cuh"
#include "launch.h"
#include "mqkv/codec.h"

namespace mqkv::cuda_detail {

namespace {

// Quantized rows [a.t0, a.t1) of a low-bit block. Grid: s.col_chunks * s.row_tiles CTAs of
// (s.x, s.y) threads; see LaunchShape. Every thread runs the same number of iterations (the
// barriers of the rotation need all of them); inactive threads skip loads and stores.
template <uint32_t Bits, Out O>
__global__ void __launch_bounds__(1024) LowbitKernel(const LowbitArgs a, const LaunchShape s) {
  extern __shared__ float row_buffers[];
  __shared__ float levels[16];
  const uint32_t lane = threadIdx.x, y = threadIdx.y;
  const uint32_t chunk = blockIdx.x % s.col_chunks, tile = blockIdx.x / s.col_chunks;
  const uint32_t octet = chunk * s.x + lane;
  const bool col_ok = octet < a.octets;

  if (!is_affine(a.h)) {
    const uint32_t id = y * s.x + lane;
    if (id < (1u << a.h.bits)) levels[id] = elem::load_f32(a.payload + a.h.parts[kPartCodebook].offset + 4 * id);
    __syncthreads();
  }
  Column c;
  column_init(a, col_ok ? octet : 0, c);
  const bool rotate = a.h.rotation == static_cast<uint8_t>(Rotation::kHadamard);
  const bool stages = rotate && a.h.rot_block > 8;
  float* row = row_buffers + static_cast<size_t>(y) * s.x * 8;
  const uint64_t first = a.t0 + static_cast<uint64_t>(tile) * s.y * s.iters + y;

  for (uint32_t i = 0; i < s.iters; ++i) {
    const uint64_t t = first + static_cast<uint64_t>(i) * s.y;
    const bool active = col_ok && t < a.t1;
    float v[8];
    if (active) {
      dequant8<Bits>(a, c, levels, static_cast<uint32_t>(t), v);
      if (rotate) fwht_inner8(v);
    }
    if (stages) {
      if (active) {
        reinterpret_cast<float4*>(row + lane * 8)[0] = make_float4(v[0], v[1], v[2], v[3]);
        reinterpret_cast<float4*>(row + lane * 8)[1] = make_float4(v[4], v[5], v[6], v[7]);
      }
      __syncthreads();
      for (uint32_t h = 8; h < a.h.rot_block; h <<= 1) {
        fwht_stage(row, lane, h);
        __syncthreads();
      }
      if (active) {
        const float4 p = reinterpret_cast<const float4*>(row + lane * 8)[0];
        const float4 q = reinterpret_cast<const float4*>(row + lane * 8)[1];
        v[0] = p.x, v[1] = p.y, v[2] = p.z, v[3] = p.w, v[4] = q.x, v[5] = q.y, v[6] = q.z, v[7] = q.w;
      }
      // No barrier needed before the next iteration's write: a thread writes only its own octet,
      // which no other thread reads after the last stage's barrier.
    }
    if (active) {
      if (rotate) rotate_finish8(v, a.rot_scale, c.neg);
      store8<O>(a.dst, (t - a.t0) * a.g.row_values + c.e0, v, a.vec_store != 0);
    }
  }
}

// n raw elements of stored type Src (0 f32, 1 f16, 2 bf16) to O; grid-stride, 8 loads in flight
// per thread, every access coalesced.
template <uint32_t Src, Out O>
__global__ void __launch_bounds__(256) RawKernel(const uint8_t* src, uint64_t n, void* dst) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t base = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; base < n; base += 8 * stride) {
    float v[8];
#pragma unroll
    for (uint32_t k = 0; k < 8; ++k) {
      const uint64_t i = base + k * stride;
      if (i < n) v[k] = load_raw<Src>(src, i);
    }
#pragma unroll
    for (uint32_t k = 0; k < 8; ++k) {
      const uint64_t i = base + k * stride;
      if (i < n) store1<O>(dst, i, v[k]);
    }
  }
}

// n fp8 codes to O: one octet per thread per grid-stride step (coalesced 8-byte loads, 16- or
// 32-byte stores). The scale is read once per thread from the device payload.
template <Out O>
__global__ void __launch_bounds__(256) Fp8Kernel(const uint8_t* codes, uint64_t n, const uint8_t* scale_p, void* dst,
                                                 uint32_t aligned, uint32_t vec) {
  const float scale = elem::load_f32(scale_p);
  const bool ok = fp8::scale_valid(scale);
  const uint64_t octets = (n + 7) / 8, stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t k = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < octets; k += stride)
    fp8_octet<O>(codes, n, scale, ok, dst, k, aligned != 0, vec != 0);
}

Status EnqueueFp8(const uint8_t* codes, uint64_t n, const uint8_t* scale_p, DType out, void* dst, cudaStream_t stream) {
  if (n == 0) return Status::OK();
  const uint64_t blocks64 = ((n + 7) / 8 + 255) / 256;
  const unsigned blocks = static_cast<unsigned>(blocks64 < 1u << 20 ? blocks64 : 1u << 20);
  const uint32_t aligned = reinterpret_cast<uintptr_t>(codes) % 8 == 0, vec = reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  switch (out) {
    case DType::kF32: Fp8Kernel<Out::kF32><<<blocks, 256, 0, stream>>>(codes, n, scale_p, dst, aligned, vec); break;
    case DType::kF16: Fp8Kernel<Out::kF16><<<blocks, 256, 0, stream>>>(codes, n, scale_p, dst, aligned, vec); break;
    case DType::kBF16: Fp8Kernel<Out::kBF16><<<blocks, 256, 0, stream>>>(codes, n, scale_p, dst, aligned, vec); break;
  }
  return CudaStatus(cudaGetLastError(), "fp8 decode kernel launch");
}

template <uint32_t Src>
Status LaunchRaw(const uint8_t* src, uint64_t n, DType out, void* dst, cudaStream_t stream) {
  const uint64_t blocks64 = (n + 256 * 8 - 1) / (256 * 8);
  const unsigned blocks = static_cast<unsigned>(blocks64 < 1u << 20 ? blocks64 : 1u << 20);
  switch (out) {
    case DType::kF32: RawKernel<Src, Out::kF32><<<blocks, 256, 0, stream>>>(src, n, dst); break;
    case DType::kF16: RawKernel<Src, Out::kF16><<<blocks, 256, 0, stream>>>(src, n, dst); break;
    case DType::kBF16: RawKernel<Src, Out::kBF16><<<blocks, 256, 0, stream>>>(src, n, dst); break;
  }
  return CudaStatus(cudaGetLastError(), "raw decode kernel launch");
}

// Raw rows (stored as `stored`) to `out`: a device copy when the types match, else a conversion.
Status EnqueueRaw(DType stored, const uint8_t* src, uint64_t n, DType out, void* dst, cudaStream_t stream) {
  if (n == 0) return Status::OK();
  if (stored == out) return CudaStatus(cudaMemcpyAsync(dst, src, n * DTypeSize(out), cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
  switch (stored) {
    case DType::kF32: return LaunchRaw<0>(src, n, out, dst, stream);
    case DType::kF16: return LaunchRaw<1>(src, n, out, dst, stream);
    case DType::kBF16: return LaunchRaw<2>(src, n, out, dst, stream);
  }
  return Internal("unknown stored type");
}

template <uint32_t Bits, Out O>
void LaunchLowbit(const LowbitArgs& a, const LaunchShape& s, cudaStream_t stream) {
  const dim3 block(s.x, s.y);
  const unsigned grid = s.col_chunks * s.row_tiles;
  LowbitKernel<Bits, O><<<grid, block, s.smem_bytes, stream>>>(a, s);
}

template <uint32_t Bits>
void LaunchLowbitOut(const LowbitArgs& a, const LaunchShape& s, DType out, cudaStream_t stream) {
  switch (out) {
    case DType::kF32: LaunchLowbit<Bits, Out::kF32>(a, s, stream); break;
    case DType::kF16: LaunchLowbit<Bits, Out::kF16>(a, s, stream); break;
    case DType::kBF16: LaunchLowbit<Bits, Out::kBF16>(a, s, stream); break;
  }
}

Status EnqueueLowbit(const BlockHeader& h, const uint8_t* d_payload, uint32_t t0, uint32_t t1, DType out, void* dst,
                     cudaStream_t stream) {
  if (t0 == t1) return Status::OK();
  if (shared_stages(h) && h.rot_block > kMaxRotBlock)
    return Unsupported("the CUDA decoder takes Hadamard blocks of up to " + std::to_string(kMaxRotBlock) +
                       " dims; this block's rot_block is " + std::to_string(h.rot_block) + " (head_dim=" +
                       std::to_string(h.head_dim) + ")");
  const LowbitArgs a = make_args(h, d_payload, t0, t1, dst);
  const LaunchShape s = launch_shape(a);
  switch (h.bits) {
    case 1: LaunchLowbitOut<1>(a, s, out, stream); break;
    case 2: LaunchLowbitOut<2>(a, s, out, stream); break;
    case 3: LaunchLowbitOut<3>(a, s, out, stream); break;
    case 4: LaunchLowbitOut<4>(a, s, out, stream); break;
    case 8: LaunchLowbitOut<8>(a, s, out, stream); break;
    default: return Internal("no CUDA kernel for " + std::to_string(h.bits) + "-bit codes");
  }
  return CudaStatus(cudaGetLastError(), "low-bit decode kernel launch");
}

}  // namespace

Status EnqueueBlockDecode(const BlockHeader& h, const uint8_t* d_payload, uint32_t r0, uint32_t r1, DType out,
                          void* d_dst, cudaStream_t stream) {
  if (r0 > r1 || r1 > h.n_tokens)
    return OutOfRange("rows [" + std::to_string(r0) + ", " + std::to_string(r1) + ") outside the block's " +
                      std::to_string(h.n_tokens) + " rows");
  if (reinterpret_cast<uintptr_t>(d_payload) % 8 != 0)
    return InvalidArgument("CUDA decode: the device payload must be 8-byte aligned");
  if (reinterpret_cast<uintptr_t>(d_dst) % DTypeSize(out) != 0)
    return InvalidArgument(std::string("CUDA decode: the device output must be aligned to its element type ") + DTypeName(out));
  Segment seg[3];
  const int n = split_rows(h, r0, r1, seg);
  const size_t es = DTypeSize(out);
  for (int i = 0; i < n; ++i) {
    uint8_t* o = static_cast<uint8_t*>(d_dst) + seg[i].dst_index * es;
    if (seg[i].lowbit)
      MQKV_RETURN_IF_ERROR(EnqueueLowbit(h, d_payload, seg[i].t0, seg[i].t1, out, o, stream));
    else if (seg[i].stored == kStoredFp8)
      MQKV_RETURN_IF_ERROR(EnqueueFp8(d_payload + seg[i].src_offset, seg[i].n, d_payload + h.parts[kPartScales].offset, out, o, stream));
    else
      MQKV_RETURN_IF_ERROR(EnqueueRaw(static_cast<DType>(seg[i].stored), d_payload + seg[i].src_offset, seg[i].n, out, o, stream));
  }
  return Status::OK();
}

}  // namespace mqkv::cuda_detail
