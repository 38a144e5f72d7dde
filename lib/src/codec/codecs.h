// Internal: the built-in codec objects, registered in registry.cpp.
#pragma once
#include "registry.h"

namespace mqkv::codec {

const Codec* RawF32();
const Codec* RawF16();
const Codec* RawBF16();
const Codec* Affine();
const Codec* Codebook();
const Codec* Fp8();

// Stores a decoded fp32 row segment as `out` (shared by every codec's scalar path).
void StoreF32(const float* src, size_t n, DType out, void* dst);

}  // namespace mqkv::codec
