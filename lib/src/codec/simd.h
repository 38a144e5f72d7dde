// Internal interface of the SIMD decoder of the low-bit codecs (affine, codebook).
//
// Layout: simd.cpp (built with the project's baseline flags) detects the CPU, picks a kernel
// table, and turns a block header into a DecodePlan of plain pointers and precomputed per-column
// constants. The kernels live in simd_sse2.cpp, simd_avx2.cpp, simd_avx512.cpp (x86) and
// simd_neon.cpp (AArch64), each built with its ISA's flags (lib/CMakeLists.txt) from the one
// algorithm source in simd_kernels.h / simd_encode_kernels.h, written over the xsimd::batch
// operations of simd_xsimd.h.
//
// The ISA translation units include nothing with external-linkage inline functions from the
// rest of mqkv (numeric.h, detail/lowbit.h): an inline function compiled with -mavx512f in one
// TU and emitted as a COMDAT could be the copy the linker keeps for the whole program and then
// fault on a CPU without AVX-512. xsimd's inline functions are templates on the architecture
// type, so each TU's copies have names of their own (tests/scripts/check_isa_symbols.sh checks
// that no weak symbol is shared between an ISA object and any other object of the library). So this header is plain data and declarations only, and the
// scalar reference helpers the kernels need (odd tails) are passed in as function pointers.
//
// Every result is bit-identical to the scalar reference (spec/CODECS.md, "Arithmetic"): the
// same binary32 operations in the same order, one rounding each, never fused.
#pragma once

#include <cstdint>

#include "mqkv/codec.h"

namespace mqkv {
struct RopeUndo;  // mqkv/snapshot.h
}

namespace mqkv::codec::simd {

struct DecodePlan {
  // Code stream of the quantized rows (row t starts at byte t * row_values * bits / 8; every
  // row_values is a multiple of 8, so rows start on bytes).
  const uint8_t* codes = nullptr;
  uint64_t code_bytes = 0;  // readable from codes (the code part): wide loads may pass a row's end, not this
  uint32_t bits = 0;
  uint32_t row_values = 0;  // n_heads * head_dim
  bool codebook = false;
  alignas(64) float levels[16] = {};  // codebook levels, zero-padded to 16

  // Metadata grid (detail/lowbit.h Geometry).
  uint32_t meta_bits = 16;
  uint32_t group_cols = 0, col_span = 0, row_span = 0;
  const uint8_t* scales = nullptr;
  const uint8_t* mins = nullptr;  // null for codebook
  // Meta-coded fields: per group column, lo and step = (hi - lo) / (2^M - 1) as the reference
  // computes them (index 0: scale, 1: min). Padded by 16 floats.
  const float* col_lo[2] = {nullptr, nullptr};
  const float* col_step[2] = {nullptr, nullptr};

  // Inverse Hadamard rotation.
  bool rotate = false;
  uint32_t head_dim = 0, rot_block = 0;
  float rot_c = 0;               // c_B
  const uint32_t* sign = nullptr;  // row_values sign masks (0x80000000 where the dim is negated)

  // Scratch owned by the caller, each padded by 16 floats: per-element scale and min of the
  // current group row (row_values), per-group values (group_cols), one fp32 row (rotation).
  float* elem_scale = nullptr;   // per element of the current group row (row_values)
  float* elem_min = nullptr;
  float* group_scale = nullptr;  // per group column of the current group row (group_cols)
  float* group_min = nullptr;
  float* row = nullptr;

  // Scalar reference helpers (compiled with baseline flags in simd.cpp).
  // n fp16 values at src (little-endian) -> binary32.
  void (*f16_to_f32)(const uint8_t* src, uint64_t n, float* dst) = nullptr;
  // Meta-coded field `field` of groups index0 .. index0+n-1 (grid index gr*group_cols+gc,
  // column gc0 for the first) -> binary32 values.
  void (*meta_values)(const DecodePlan& p, int field, uint64_t index0, uint32_t gc0, uint32_t n, float* dst) = nullptr;
  // Scalar Walsh-Hadamard butterflies on v[0, block) (the reference order).
  void (*butterflies)(float* v, uint32_t block) = nullptr;
};

// What the affine encode kernels need of a block (simd_encode_kernels.h). The kernels work on a
// chunk of whole group rows at a time (the last group row may be short); lo/hi/s/mn arrays are
// grid-ordered from the chunk's first group, codes from the chunk's first row.
struct EncodePlan {
  uint32_t bits = 0;        // 2, 3, 4 or 8
  float levels = 0;         // 2^bits - 1
  uint32_t row_values = 0;  // n_heads * head_dim, a multiple of the kernel's lanes
  // Metadata grid (detail/lowbit.h Geometry); token-axis col_span is a multiple of the lanes.
  uint32_t group_cols = 0, col_span = 0, row_span = 0;
  // Forward Hadamard rotation.
  uint32_t rot_block = 0;
  float rot_c = 0;                 // c_B
  const uint32_t* sign = nullptr;  // row_values sign masks (0x80000000 where the dim is negated)
  void (*butterflies)(float* v, uint32_t block) = nullptr;  // scalar reference (baseline flags)
};

struct Kernels {
  const char* name;
  uint32_t lanes;  // floats per vector
  // Quantized rows [t0, t1) (indices among the Q quantized rows) -> dst as `out`.
  void (*rows)(const DecodePlan& p, uint32_t t0, uint32_t t1, DType out, void* dst);
  // n fp16 values (sink / residual rows) -> dst as `out`.
  void (*f16_rows)(const uint8_t* src, uint64_t n, DType out, void* dst);

  // Affine encoder, on `rows` rows of x (row 0 starts a group row):
  // the min and max of every group (a zero's sign unspecified); false if a value is not finite.
  bool (*enc_ranges)(const EncodePlan& p, const float* x, uint32_t rows, float* lo, float* hi);
  // n metadata values -> fp16 at part and their decoded values (StoreMetaF16's bytes);
  // false if one does not fit fp16.
  bool (*enc_meta_f16)(const float* v, uint64_t n, uint8_t* part, float* decoded);
  // meta-coded metadata on the grid v[rows][cols] (cols a multiple of the lanes): the column
  // ranges (first smallest, first largest), then the M-bit codes (M = 4 or 8) against lo/step,
  // packed into part, and their decoded values (lowbit::StoreMetaField's bytes and values).
  void (*enc_column_ranges)(const float* v, uint32_t rows, uint32_t cols, float* lo, float* hi);
  void (*enc_meta_codes)(const float* v, uint32_t rows, uint32_t cols, uint32_t meta_bits, const float* lo, const float* step,
                         uint8_t* part, float* decoded);
  // the forward Hadamard rotation src -> dst.
  void (*enc_rotate)(const EncodePlan& p, const float* src, uint32_t rows, float* dst);
  // the codes against the decoded metadata s/mn, written to dst (every byte of those rows);
  // meanwhile the first ahead_n values at `ahead` (the next chunk's input) are prefetched.
  void (*enc_codes)(const EncodePlan& p, const float* x, uint32_t rows, const float* s, const float* mn, uint8_t* dst,
                    const float* ahead, uint64_t ahead_n);

  // Keys before RoPE: rope_kernels.h's RotateRowsAny compiled for this ISA.
  void (*rope_rows)(const double* theta, size_t pairs, bool norm, int sign, float* rows, uint32_t n_rows, uint32_t n_heads,
                    uint32_t head_dim, const int32_t* positions, double* cs);
};

// Kernel tables, null where the build has no such ISA (x86 ones off x86, NEON off AArch64).
const Kernels* KernelsSse2();
const Kernels* KernelsAvx2();
const Kernels* KernelsAvx512();
const Kernels* KernelsNeon();

// Encodes an affine block with the active ISA, byte-identical to lowbit::EncodeAffineScalar.
// Returns false (nothing decided) when the active ISA is "scalar"; otherwise true with *status
// the result (any error is the reference encoder's, which re-runs to report it).
bool EncodeAffine(const CodecSpec& spec, const float* src, BlockShape shape, EncodedBlock* out, Status* status);

// Decodes block rows [r0, r1) of a verified affine or codebook block with the active ISA.
// Returns false (nothing written) when the active ISA is "scalar" or the request is not one the
// SIMD path serves; the caller then runs the scalar reference, which also reports bad ranges.
bool Decode(const BlockView& b, uint32_t r0, uint32_t r1, DType out, void* dst);
// Whether the active ISA has decode kernels at all (false: the scalar reference serves kSimd).
bool HasKernels();

// n little-endian fp16 values -> `out` (not fp16: that is a copy) with the active ISA, bit-identical
// to the scalar f16_to_f32 / f32_to_bf16 (NaN rules of spec/CODECS.md "Output types" included).
// False when the active ISA is "scalar" or out is fp16.
bool F16Rows(const uint8_t* src, uint64_t n, DType out, void* dst);

// n binary32 values -> little-endian fp16 at dst, rounded to nearest even with the active ISA,
// bit-identical to the scalar f32_to_f16. False (dst partly written) when the ISA is "scalar" or
// a value does not come out finite (inf, NaN, or beyond fp16's range): the caller then runs the
// scalar reference, which decides those.
bool F32ToF16(const float* src, uint64_t n, uint8_t* dst);

// rope::Rotate with the active ISA (bit-identical: rope_kernels.h); false (nothing done) when the
// ISA is "scalar".
bool RopeRotate(const RopeUndo& r, float* rows, uint32_t n_rows, uint32_t n_heads, uint32_t head_dim,
                const int32_t* positions, int sign);

}  // namespace mqkv::codec::simd
