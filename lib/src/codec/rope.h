// Keys before RoPE (format 1.4; spec/CODECS.md, "Keys before RoPE"): the rotation a writer undoes
// before quantizing a key tensor and the decoder redoes after decoding it. The decode arithmetic
// is normative and bit-exact: binary64 with round-to-nearest, no fused multiply-add (the project
// compiles with -ffp-contract=off), a fixed range reduction and fixed polynomials, so every
// backend and a second implementation agree to the bit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mqkv/snapshot.h"

namespace mqkv::rope {

// cos(a) and sin(a) by the spec's procedure (|a| <= 2^31).
void CosSin(double a, double* c, double* s);

// The table a writer stores for a model: theta_i = base^(-2i/n) for i < n/2, n = head_dim
// (llama.cpp's inverse frequencies with freq_scale 1). Informative: the decoder reads the table.
// Errors name what is missing (RoPE type other than norm / neox, base <= 0, odd head_dim).
Result<RopeUndo> TableFor(const ModelInfo& model, uint32_t head_dim);

// The checks a reader applies to a tensor's rope_undo (style known, 1..head_dim/2 pairs, every
// theta finite and in [0, 1]); `what` names the tensor in errors.
Status Check(const RopeUndo& r, uint32_t head_dim, const std::string& what);

// Rotates rows [0, n_rows) of rows ([row][head][dim], fp32) in place; row j has position
// positions[j]. sign = +1: the decoder's rotation (spec, normative); -1: the writer's undo.
void Rotate(const RopeUndo& r, float* rows, uint32_t n_rows, uint32_t n_heads, uint32_t head_dim,
            const int32_t* positions, int sign);

// Rotate with the active SIMD ISA (rope_kernels.h, bit-identical), or the reference above when
// `backend` is scalar or the ISA is.
void RotateOn(Backend backend, const RopeUndo& r, float* rows, uint32_t n_rows, uint32_t n_heads, uint32_t head_dim,
              const int32_t* positions, int sign);

}  // namespace mqkv::rope
