// ggml's element types as llama.cpp caches use them (f32, f16, bf16, q8_0, q4_0): a traits table
// like ggml's own type_traits (block size, bytes, to_float / from_float), the reference
// quantizers transcribed from ggml-quants.c, and the Hadamard rotation llama.cpp applies to
// quantized caches. Used by the llama.cpp state adapter (state.cpp; spec/LLAMA.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mqkv::adapters::ggml {

struct Type {
  int32_t id;            // ggml_type
  const char* name;
  uint32_t block_elems;  // values per block
  uint32_t block_bytes;  // bytes per block
  // n values (a multiple of block_elems) <-> fp32, exactly as ggml (dequantize_row_* /
  // quantize_row_*_ref for the block types; exact widening and round-to-nearest-even otherwise).
  void (*to_float)(const uint8_t* src, uint64_t n, float* dst);
  void (*from_float)(const float* src, uint64_t n, uint8_t* dst);
  bool quantized() const { return block_elems > 1; }
};

const Type* TypeById(int32_t id);          // nullptr for a type the adapter does not handle
const Type* TypeByName(std::string_view n);
std::string TypeName(int32_t id);          // any ggml type id, for messages

// llama.cpp's cache rotation (llama-kv-cache.cpp, attn_rot_k / attn_rot_v): every run of `nrot`
// consecutive row elements times the orthonormal Sylvester-Walsh-Hadamard matrix (its own
// inverse). RotSize: the run length llama.cpp uses for a cache of type t (0 = none).
void RotateRows(std::vector<float>& data, uint32_t nrot);
uint32_t RotSize(const Type& t, uint32_t head_dim, bool is_k);

}  // namespace mqkv::adapters::ggml
